//! How a rig error report becomes a [`ModelError`]; the shared step-error form is in
//! `crate::failure`, the reading of a provider's error in the core's `provider`.

use rig_core::error::ErrorReport;

use crate::ModelError;
use crate::core::provider::{self, ErrorBody};

/// The [`ModelError`] a rig error report stands for (the core redacts its message). An HTTP
/// error is read from its status and the code of the body rig kept (a 429 whose code says the
/// quota is spent is not retried), with the wait its `retry-after` headers asked for; without a
/// status, the report's own `retryable` decides.
pub(crate) fn model_error(report: &ErrorReport) -> ModelError {
    let message = report.message.clone();
    match report.http_status {
        Some(status) => {
            let mut body = report
                .provider_response
                .as_ref()
                .map(|response| ErrorBody::parse(&response.body))
                .unwrap_or_default();
            if body.code.is_none() {
                body.code.clone_from(&report.code);
            }
            let retry_after = report.provider_response_headers().and_then(|headers| {
                provider::retry_after(|name| headers.get(name).and_then(|v| v.to_str().ok()))
            });
            provider::http_error(status, &body, message, retry_after)
        }
        None => ModelError::new(report.kind.code(), message, report.retryable),
    }
}
