//! How a failed model call becomes a step error, for both agents: the stored error text is the
//! JSON of a [`ModelError`] (`{kind, message, retryable}`), with anything that looks like a
//! credential blanked out.
// Without an agent (neither `rig` nor `openai`), only `model_error_of` is used.
#![cfg_attr(not(any(feature = "rig", feature = "openai")), allow(dead_code))]

use std::fmt;

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

/// The error a model step's attempt fails with: retried when the model error is retryable,
/// permanent otherwise (so a 400 is sent exactly once).
pub(crate) fn attempt_error(error: ModelError) -> BoxError {
    let retryable = error.retryable;
    let recorded = RecordedModelError(error);
    if retryable { Box::new(recorded) } else { Box::new(Error::permanent(recorded)) }
}

/// The [`ModelError`] behind a failed model step of either agent (or of a durable single
/// call), if `error` is one.
///
/// ```
/// # fn demo(err: durably_core::Error) {
/// if let Some(e) = durably_agent::model_error_of(&err) {
///     eprintln!("{} (retryable: {})", e.kind, e.retryable);
/// }
/// # }
/// ```
pub fn model_error_of(error: &Error) -> Option<ModelError> {
    error.downcast_source_ref::<RecordedModelError>().map(|e| e.0.clone())
}

/// Blanks out `secret` (the API key in use, when known), bearer tokens and `sk-…` keys that a
/// provider may echo in an error message, so that no credential reaches the store.
pub(crate) fn redact(text: &str, secret: Option<&str>) -> String {
    let text = match secret {
        Some(s) if !s.is_empty() => text.replace(s, "[redacted]"),
        _ => text.to_owned(),
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
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
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ';' | ')'))
            .unwrap_or(secret.len());
        // "Bearer " followed by nothing keeps nothing; a token already blanked stays as it is.
        if end > 0 {
            out.push_str(if secret.starts_with("[redacted]") { &secret[..end] } else { "[redacted]" });
        }
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
            redact("Incorrect API key provided: sk-test-SECRET123. See docs.", None),
            "Incorrect API key provided: [redacted] See docs."
        );
        assert_eq!(
            redact("header Authorization: Bearer abc.def, next", None),
            "header Authorization: Bearer [redacted], next"
        );
        assert_eq!(redact("header Bearer xyz.1 rejected", None), "header Bearer [redacted] rejected");
        assert_eq!(redact("bad key sk-abc123, try again", None), "bad key [redacted], try again");
        assert_eq!(redact("key mysecret here", Some("mysecret")), "key [redacted] here");
        assert_eq!(redact("Bearer mysecret", Some("mysecret")), "Bearer [redacted]");
        assert_eq!(redact("nothing to hide", None), "nothing to hide");
        assert_eq!(redact("a risk-free call", None), "a risk-free call");
    }

    #[test]
    fn recorded_text_is_the_json_form() {
        let e = RecordedModelError(ModelError::from_status(400, "bad"));
        assert_eq!(e.to_string(), r#"{"kind":"http_400","message":"bad","retryable":false}"#);
        let boxed = attempt_error(ModelError::from_status(400, "bad"));
        assert_eq!(boxed.to_string(), r#"{"kind":"http_400","message":"bad","retryable":false}"#);
    }
}
