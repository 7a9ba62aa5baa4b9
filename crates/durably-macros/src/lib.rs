//! Macros (placeholder).
