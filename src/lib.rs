//! durably facade (placeholder).
