//! How an async-openai error becomes a [`ModelError`]; the shared step-error form is in
//! `crate::failure`.

use async_openai::error::OpenAIError;

use crate::ModelError;

/// The [`ModelError`] for an async-openai error (the caller redacts its message). An HTTP status decides retryability (408,
/// 409, 429 and 5xx retry; other 4xx do not); transport errors retry; a response that does not
/// parse, or a request the client refuses, does not.
pub(crate) fn model_error(error: &OpenAIError) -> ModelError {
    match error {
        OpenAIError::ApiError(resp) => {
            ModelError::from_status(resp.status_code.as_u16(), resp.api_error.to_string())
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
