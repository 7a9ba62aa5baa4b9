//! How a provider's HTTP error becomes a [`ModelError`], for both agents: the decision to retry
//! reads the error body, not the status alone (OpenAI answers `429` both to "slow down" and to
//! "your quota is spent", and only the first clears by waiting), and a `retry-after` or
//! `retry-after-ms` header on a 429 or 503 says how long to wait before the next attempt.

use std::time::Duration;

use serde_json::Value;

use crate::ModelError;

/// The longest wait a provider's `retry-after` may impose when the agent is not told otherwise.
pub(crate) const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Error codes (or types) saying that the same request will fail again however long one waits:
/// a spent quota, a bad key, a closed account, a model that does not exist.
const WILL_NOT_CLEAR: &[&str] = &[
    "insufficient_quota",
    "billing_hard_limit_reached",
    "billing_not_active",
    "account_deactivated",
    "invalid_api_key",
    "invalid_organization",
    "model_not_found",
    "unsupported_country_region_territory",
    "authentication_error",
    "permission_error",
    "context_length_exceeded",
];

/// What a provider's error body says: its message and its machine code (OpenAI's
/// `error.code`, else `error.type`; Anthropic's `error.type`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ErrorBody {
    pub(crate) message: Option<String>,
    pub(crate) code: Option<String>,
    pub(crate) kind: Option<String>,
}

impl ErrorBody {
    /// Reads an error body; a body that is not JSON is its own message.
    pub(crate) fn parse(body: &str) -> ErrorBody {
        let Ok(value) = serde_json::from_str::<Value>(body) else {
            let text = body.trim();
            return ErrorBody {
                message: (!text.is_empty()).then(|| text.to_owned()),
                ..ErrorBody::default()
            };
        };
        let error = value.get("error").unwrap_or(&value);
        let text = |field: &str| {
            error.get(field).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned)
        };
        ErrorBody { message: text("message"), code: text("code"), kind: text("type") }
    }

    /// The code that decides: the specific `code`, else the `type`.
    fn decisive_code(&self) -> Option<&str> {
        self.code.as_deref().or(self.kind.as_deref())
    }
}

/// The wait a response's headers ask for: `retry-after-ms` (milliseconds), else `retry-after`
/// (seconds; an HTTP date is not read). `header(name)` looks a header up by lowercase name.
pub(crate) fn retry_after<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Option<Duration> {
    let parse = |text: &str| text.trim().parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0);
    if let Some(ms) = header("retry-after-ms").and_then(parse) {
        return Duration::try_from_secs_f64(ms / 1000.0).ok();
    }
    header("retry-after").and_then(parse).and_then(|s| Duration::try_from_secs_f64(s).ok())
}

/// The [`ModelError`] of an HTTP error `status` whose body says `body` and whose headers asked
/// for `retry_after`. The status decides first (408, 409, 429 and 5xx are retryable); a code
/// that will not clear makes it permanent whatever the status; `retry_after` is kept for a 429
/// or 503 that stays retryable.
pub(crate) fn http_error(
    status: u16,
    body: &ErrorBody,
    message: String,
    retry_after: Option<Duration>,
) -> ModelError {
    let mut error = ModelError::from_status(status, message);
    error.code = body.decisive_code().map(str::to_owned);
    if body.decisive_code().is_some_and(|code| WILL_NOT_CLEAR.contains(&code)) {
        error.retryable = false;
    }
    if error.retryable && matches!(status, 429 | 503) {
        error.retry_after_ms = retry_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    }
    error
}

/// The text of an error body as async-openai shows an API error: `{type}: {message} (code: …)`.
pub(crate) fn describe(status: u16, body: &ErrorBody, raw: &str) -> String {
    let mut parts = Vec::new();
    if let Some(kind) = &body.kind {
        parts.push(format!("{kind}:"));
    }
    parts.push(body.message.clone().unwrap_or_else(|| raw.trim().to_owned()));
    if let Some(code) = &body.code {
        parts.push(format!("(code: {code})"));
    }
    format!("{status} {}", parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(status: u16, body: &str, retry: Option<Duration>) -> ModelError {
        let parsed = ErrorBody::parse(body);
        http_error(status, &parsed, describe(status, &parsed, body), retry)
    }

    #[test]
    fn the_body_decides_whether_a_429_clears() {
        let quota = r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
        let e = classify(429, quota, Some(Duration::from_secs(1)));
        assert!(!e.retryable);
        assert_eq!(e.code.as_deref(), Some("insufficient_quota"));
        assert_eq!(e.retry_after_ms, None);
        let rate =
            r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#;
        let e = classify(429, rate, Some(Duration::from_millis(250)));
        assert!(e.retryable);
        assert_eq!(e.retry_after_ms, Some(250));
        assert_eq!(e.kind, "http_429");
        // A retry-after on another status is not a promise.
        assert_eq!(classify(500, "oops", Some(Duration::from_secs(1))).retry_after_ms, None);
        assert!(!classify(401, r#"{"error":{"message":"bad","code":"invalid_api_key"}}"#, None).retryable);
        let anthropic = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert!(classify(529, anthropic, None).retryable);
    }

    #[test]
    fn retry_after_headers() {
        let h = |pairs: &'static [(&'static str, &'static str)]| {
            retry_after(|name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v))
        };
        assert_eq!(h(&[("retry-after", "2")]), Some(Duration::from_secs(2)));
        assert_eq!(h(&[("retry-after", "0.5")]), Some(Duration::from_millis(500)));
        assert_eq!(h(&[("retry-after-ms", "120"), ("retry-after", "9")]), Some(Duration::from_millis(120)));
        assert_eq!(h(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]), None);
        assert_eq!(h(&[("retry-after", "-1")]), None);
        assert_eq!(h(&[]), None);
    }
}
