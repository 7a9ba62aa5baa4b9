//! How a failed model call is recorded.

use durably_core::Retryable;
use serde::{Deserialize, Serialize};

/// A model call that failed, as stored in its step: `{kind, message, retryable}`.
///
/// Provider error types are not serializable; this is. `retryable` decides whether the step is
/// attempted again (HTTP 429 and 5xx, timeouts and connection errors are; a 400 is not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("model call failed ({kind}): {message}")]
pub struct ModelError {
    /// A short class: `http_429`, `http_500`, `timeout`, `connection`, `invalid_request`,
    /// `deserialize`, `max_turns`…
    pub kind: String,
    /// What the provider said.
    pub message: String,
    /// Whether another attempt may succeed.
    pub retryable: bool,
    /// The provider's machine code for the error, from its body (`insufficient_quota`,
    /// `rate_limit_exceeded`…), when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// How long the provider asked to wait before the next attempt (`retry-after` or
    /// `retry-after-ms` on a 429 or 503), in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ModelError {
    /// A model error.
    pub fn new(kind: impl Into<String>, message: impl Into<String>, retryable: bool) -> Self {
        ModelError { kind: kind.into(), message: message.into(), retryable, code: None, retry_after_ms: None }
    }

    /// The error for an HTTP status: 408, 409, 429 and 5xx are retryable, other 4xx are not.
    pub fn from_status(status: u16, message: impl Into<String>) -> Self {
        let retryable = matches!(status, 408 | 409 | 429) || (500..600).contains(&status);
        ModelError::new(format!("http_{status}"), message, retryable)
    }
}

impl Retryable for ModelError {
    fn is_retryable(&self) -> bool {
        self.retryable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_retryable_or_not() {
        assert!(ModelError::from_status(429, "slow down").retryable);
        assert!(ModelError::from_status(503, "down").retryable);
        assert!(!ModelError::from_status(400, "bad request").retryable);
        assert!(!ModelError::from_status(401, "bad key").retryable);
        let e = ModelError::from_status(500, "boom");
        assert_eq!(e.kind, "http_500");
        let json = serde_json::to_string(&e).unwrap_or_default();
        assert_eq!(json, r#"{"kind":"http_500","message":"boom","retryable":true}"#);
    }
}
