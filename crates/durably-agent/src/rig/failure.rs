//! How a rig error report becomes a [`ModelError`]; the shared step-error form is in
//! `crate::failure`.

use rig_core::error::ErrorReport;

use crate::ModelError;
use crate::core::redact::Secrets;

/// The [`ModelError`] a rig error report stands for. An HTTP status decides retryability
/// (429 and 5xx retry, other 4xx do not); without one, the report's own `retryable` does.
pub(crate) fn model_error(report: &ErrorReport, secrets: &Secrets) -> ModelError {
    let message = secrets.redact(&report.message);
    match report.http_status {
        Some(status) => ModelError::from_status(status, message),
        None => ModelError::new(report.kind.code(), message, report.retryable),
    }
}
