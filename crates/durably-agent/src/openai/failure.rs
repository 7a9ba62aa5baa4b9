//! How an async-openai error becomes a [`ModelError`]; the shared step-error form is in
//! `crate::failure`.

use async_openai::error::OpenAIError;

use crate::ModelError;
use crate::core::redact::Secrets;

/// The [`ModelError`] for an async-openai error. An HTTP status decides retryability (408,
/// 409, 429 and 5xx retry; other 4xx do not); transport errors retry; a response that does not
/// parse, or a request the client refuses, does not.
pub(crate) fn model_error(error: &OpenAIError, secrets: &Secrets) -> ModelError {
    let clean = |text: String| secrets.redact(&text);
    match error {
        OpenAIError::ApiError(resp) => {
            ModelError::from_status(resp.status_code.as_u16(), clean(resp.api_error.to_string()))
        }
        OpenAIError::Reqwest(e) if e.is_timeout() => ModelError::new("timeout", clean(e.to_string()), true),
        OpenAIError::Reqwest(e) if e.is_connect() => {
            ModelError::new("connection", clean(e.to_string()), true)
        }
        OpenAIError::Reqwest(e) => match e.status() {
            Some(status) => ModelError::from_status(status.as_u16(), clean(e.to_string())),
            None => ModelError::new("http", clean(e.to_string()), true),
        },
        OpenAIError::JSONDeserialize(e, _) => ModelError::new("deserialize", clean(e.to_string()), false),
        OpenAIError::StreamError(e) => ModelError::new("stream", clean(e.to_string()), true),
        OpenAIError::InvalidArgument(m) => ModelError::new("invalid_request", clean(m.clone()), false),
        other => ModelError::new("transport", clean(other.to_string()), true),
    }
}
