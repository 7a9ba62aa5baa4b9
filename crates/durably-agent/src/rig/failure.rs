//! How a rig error report becomes a [`ModelError`]; the shared step-error form is in
//! `crate::failure`.

use rig_core::error::ErrorReport;

use crate::ModelError;

/// The [`ModelError`] a rig error report stands for (the core redacts its message). An HTTP status decides retryability
/// (429 and 5xx retry, other 4xx do not); without one, the report's own `retryable` does.
pub(crate) fn model_error(report: &ErrorReport) -> ModelError {
    let message = report.message.clone();
    match report.http_status {
        Some(status) => ModelError::from_status(status, message),
        None => ModelError::new(report.kind.code(), message, report.retryable),
    }
}
