//! How a failed model call becomes a step error, for both agents: the stored error text is the
//! JSON of a [`ModelError`] (`{kind, message, retryable}`), its message redacted by the agent
//! core before it gets here.
// Without an agent (neither `rig` nor `openai`), only `model_error_of` is used.
#![cfg_attr(not(any(feature = "rig", feature = "openai")), allow(dead_code))]

use std::fmt;
use std::time::Duration;

use durably_core::{BoxError, Error, RetryAfter};

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
#[cfg_attr(not(feature = "openai"), allow(dead_code))]
pub(crate) fn attempt_error(error: ModelError) -> BoxError {
    attempt_error_within(error, crate::core::provider::DEFAULT_MAX_RETRY_AFTER)
}

/// [`attempt_error`], and a retryable error whose provider asked for a wait carries that wait
/// (at most `max_wait`) as a [`RetryAfter`], which replaces the backoff delay.
pub(crate) fn attempt_error_within(error: ModelError, max_wait: Duration) -> BoxError {
    let retryable = error.retryable;
    let wait = error.retry_after_ms.map(|ms| Duration::from_millis(ms).min(max_wait));
    let recorded = RecordedModelError(error);
    match (retryable, wait) {
        (false, _) => Box::new(Error::permanent(recorded)),
        (true, Some(wait)) => Box::new(RetryAfter::new(wait, recorded)),
        (true, None) => Box::new(recorded),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_text_is_the_json_form() {
        let e = RecordedModelError(ModelError::from_status(400, "bad"));
        assert_eq!(e.to_string(), r#"{"kind":"http_400","message":"bad","retryable":false}"#);
        let boxed = attempt_error(ModelError::from_status(400, "bad"));
        assert_eq!(boxed.to_string(), r#"{"kind":"http_400","message":"bad","retryable":false}"#);
    }
}
