//! How failed model calls become step errors: the stored text is the JSON of a [`ModelError`]
//! (`{kind, message, retryable}`), with anything that looks like a credential blanked out.

use std::fmt;

use durably_core::{BoxError, Error};
use rig_core::error::ErrorReport;

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

/// The [`ModelError`] a rig error report stands for. An HTTP status decides retryability
/// (429 and 5xx retry, other 4xx do not); without one, the report's own `retryable` does.
pub(crate) fn model_error(report: &ErrorReport) -> ModelError {
    let message = redact(&report.message);
    match report.http_status {
        Some(status) => ModelError::from_status(status, message),
        None => ModelError::new(report.kind.code(), message, report.retryable),
    }
}

/// The error a model step's attempt fails with: retried when the model error is retryable,
/// permanent otherwise (so a 400 is sent exactly once).
pub(crate) fn attempt_error(error: ModelError) -> BoxError {
    let retryable = error.retryable;
    let recorded = RecordedModelError(error);
    if retryable { Box::new(recorded) } else { Box::new(Error::permanent(recorded)) }
}

/// The [`ModelError`] behind a failed model step, if `error` is one.
///
/// ```
/// # fn demo(err: durably_core::Error) {
/// if let Some(e) = durably_agent::rig::model_error_of(&err) {
///     eprintln!("{} (retryable: {})", e.kind, e.retryable);
/// }
/// # }
/// ```
pub fn model_error_of(error: &Error) -> Option<ModelError> {
    error.downcast_source_ref::<RecordedModelError>().map(|e| e.0.clone())
}

/// Blanks out bearer tokens and `sk-…` keys that a provider may echo in an error message, so
/// that no credential reaches the store.
pub(crate) fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let bearer = find_ci(rest, "bearer ");
        let key = find_key(rest);
        let (at, skip) = match (bearer, key) {
            (Some(b), Some(k)) if b <= k => (b, "bearer ".len()),
            (Some(b), None) => (b, "bearer ".len()),
            (_, Some(k)) => (k, 0),
            (None, None) => break,
        };
        out.push_str(&rest[..at + skip]);
        let secret = &rest[at + skip..];
        let end = secret
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ';'))
            .unwrap_or(secret.len());
        out.push_str("[redacted]");
        rest = &secret[end..];
    }
    out.push_str(rest);
    out
}

fn find_ci(haystack: &str, needle: &str) -> Option<usize> {
    haystack.to_ascii_lowercase().find(needle)
}

/// The first `sk-` that starts a word (not the one in "risk-free").
fn find_key(text: &str) -> Option<usize> {
    text.match_indices("sk-")
        .map(|(i, _)| i)
        .find(|&i| text[..i].chars().next_back().is_none_or(|c| !c.is_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_bearer_tokens_are_blanked() {
        assert_eq!(
            redact("Incorrect API key provided: sk-test-SECRET123. See docs."),
            "Incorrect API key provided: [redacted] See docs."
        );
        assert_eq!(
            redact("header Authorization: Bearer abc.def, next"),
            "header Authorization: Bearer [redacted], next"
        );
        assert_eq!(redact("nothing to hide"), "nothing to hide");
        assert_eq!(redact("a risk-free call"), "a risk-free call");
    }

    #[test]
    fn recorded_text_is_the_json_form() {
        let e = RecordedModelError(ModelError::from_status(400, "bad"));
        assert_eq!(e.to_string(), r#"{"kind":"http_400","message":"bad","retryable":false}"#);
        let boxed = attempt_error(ModelError::from_status(400, "bad"));
        assert_eq!(boxed.to_string(), r#"{"kind":"http_400","message":"bad","retryable":false}"#);
    }
}
