//! How an async-openai error becomes a [`ModelError`]; the shared step-error form is in
//! `crate::failure`, the reading of a provider's error in the core's `provider`.

use async_openai::error::OpenAIError;

use super::http::HttpFailure;
use crate::ModelError;
use crate::core::provider::{self, ErrorBody};

/// The [`ModelError`] for an async-openai error (the caller redacts its message). An HTTP error
/// is read from its status and its body's code (a 429 whose code says the quota is spent is not
/// retried), with the wait its `retry-after` asked for when the agent's transport saw it;
/// transport errors retry; a response that does not parse, or a request the client refuses,
/// does not.
pub(crate) fn model_error(error: &OpenAIError) -> ModelError {
    match error {
        OpenAIError::Boxed(boxed) => match boxed.downcast_ref::<HttpFailure>() {
            Some(failure) => {
                let body = ErrorBody::parse(&failure.body);
                provider::http_error(failure.status, &body, failure.to_string(), failure.retry_after)
            }
            None => ModelError::new("transport", boxed.to_string(), true),
        },
        OpenAIError::ApiError(resp) => {
            let body = ErrorBody {
                message: Some(resp.api_error.message.clone()),
                code: resp.api_error.code.clone(),
                kind: resp.api_error.r#type.clone(),
            };
            provider::http_error(resp.status_code.as_u16(), &body, resp.api_error.to_string(), None)
        }
        OpenAIError::Reqwest(e) if e.is_timeout() => ModelError::new("timeout", e.to_string(), true),
        OpenAIError::Reqwest(e) if e.is_connect() => ModelError::new("connection", e.to_string(), true),
        OpenAIError::Reqwest(e) => match e.status() {
            Some(status) => ModelError::from_status(status.as_u16(), e.to_string()),
            None => ModelError::new("http", e.to_string(), true),
        },
        OpenAIError::JSONDeserialize(e, _) => ModelError::new("deserialize", e.to_string(), false),
        OpenAIError::StreamError(e) => ModelError::new("stream", e.to_string(), true),
        OpenAIError::InvalidArgument(m) => ModelError::new("invalid_request", m.clone(), false),
        other => ModelError::new("transport", other.to_string(), true),
    }
}
