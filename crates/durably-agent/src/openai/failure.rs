//! How a failed chat-completions call becomes a step error: the stored error text is the JSON of
//! a [`ModelError`] (`{kind, message, retryable}`), with credentials blanked out.

use std::fmt;

use async_openai::error::OpenAIError;
use durably_core::{BoxError, Error};

use crate::ModelError;

/// A model error as a step error: its `Display` is the JSON of the [`ModelError`], so the
/// failed step's stored error text is `{"kind":…,"message":…,"retryable":…}`.
#[derive(Debug, Clone)]
pub(crate) struct RecordedModelError(pub(crate) ModelError);

impl fmt::Display for RecordedModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match serde_json::to_string(&self.0) {
            Ok(json) => f.write_str(&json),
            Err(_) => write!(f, "{}", self.0),
        }
    }
}

impl std::error::Error for RecordedModelError {}

/// The [`ModelError`] for an async-openai error. An HTTP status decides retryability (408,
/// 409, 429 and 5xx retry; other 4xx do not); transport errors retry; a response that does not
/// parse, or a request the client refuses, does not.
pub(crate) fn model_error(error: &OpenAIError, secret: Option<&str>) -> ModelError {
    let clean = |text: String| redact(&text, secret);
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

/// The error a model step's attempt fails with: retried when the model error is retryable,
/// permanent otherwise (so a 400 is sent exactly once).
pub(crate) fn attempt_error(error: ModelError) -> BoxError {
    let retryable = error.retryable;
    let recorded = RecordedModelError(error);
    if retryable { Box::new(recorded) } else { Box::new(Error::permanent(recorded)) }
}

/// The [`ModelError`] behind a failed model step of the OpenAI agent or of
/// [`durable_chat`](super::durable_chat), if `error` is one.
///
/// ```
/// # fn demo(err: durably_core::Error) {
/// if let Some(e) = durably_agent::openai::model_error_of(&err) {
///     eprintln!("{} (retryable: {})", e.kind, e.retryable);
/// }
/// # }
/// ```
pub fn model_error_of(error: &Error) -> Option<ModelError> {
    error.downcast_source_ref::<RecordedModelError>().map(|e| e.0.clone())
}

/// Blanks out the API key itself, bearer tokens and `sk-…` keys that a provider may echo in
/// an error message, so that no credential reaches the store.
pub(crate) fn redact(text: &str, secret: Option<&str>) -> String {
    let mut out = match secret {
        Some(s) if !s.is_empty() => text.replace(s, "[redacted]"),
        _ => text.to_owned(),
    };
    for marker in ["Bearer ", "bearer ", "sk-"] {
        let mut result = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(at) = rest.find(marker) {
            let keep = if marker == "sk-" { at } else { at + marker.len() };
            result.push_str(&rest[..keep]);
            let secret = &rest[at + marker.len()..];
            let end = secret
                .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ';' | ')'))
                .unwrap_or(secret.len());
            if end == 0 {
                result.push_str(&rest[keep..at + marker.len()]);
            } else {
                result.push_str("[redacted]");
            }
            rest = &secret[end..];
        }
        result.push_str(rest);
        out = result;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_blanks_keys_and_tokens() {
        assert_eq!(redact("bad key sk-abc123, try again", None), "bad key [redacted], try again");
        assert_eq!(redact("header Bearer xyz.1 rejected", None), "header Bearer [redacted] rejected");
        assert_eq!(redact("key mysecret here", Some("mysecret")), "key [redacted] here");
        assert_eq!(redact("plain text", None), "plain text");
    }

    #[test]
    fn recorded_errors_display_as_json() {
        let e = RecordedModelError(ModelError::from_status(400, "bad"));
        assert_eq!(e.to_string(), r#"{"kind":"http_400","message":"bad","retryable":false}"#);
    }
}
