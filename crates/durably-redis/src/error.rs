//! How Redis errors reach the engine: naming the operation, what it concerned, and the
//! server (without its password).

use std::fmt;

use durably_core::{Error, StoreErrorKind};

/// Maps a driver error to a store error naming the operation and run.
pub(crate) fn fail<'a>(
    op: &'static str,
    run_id: impl Into<Option<&'a str>>,
) -> impl FnOnce(redis::RedisError) -> Error {
    let run_id = run_id.into().map(str::to_owned);
    move |e| Error::Store { kind: kind_of(&e), op, run_id, source: Box::new(e) }
}

/// A driver error with what it concerned (`step `fetch``).
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) what: String,
    pub(crate) source: redis::RedisError,
}

impl Context {
    pub(crate) fn new(what: String, source: redis::RedisError) -> Self {
        Context { what, source }
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

impl std::error::Error for Context {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// A failed connection, naming the server.
#[derive(Debug)]
pub(crate) struct ConnectError {
    pub(crate) url: String,
    pub(crate) source: redis::RedisError,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot connect to Redis at {}: {}", self.url, self.source)
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The URL with its password (user-info after `:`, or a `password=` query parameter) replaced
/// by `***`.
pub(crate) fn redact(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            let userinfo = &rest[..at];
            if let Some(colon) = userinfo.find(':') {
                let start = scheme_end + 3 + colon + 1;
                out.replace_range(start..scheme_end + 3 + at, "***");
            }
        }
    }
    if let Some(query) = out.find('?') {
        let (head, tail) = out.split_at(query + 1);
        let params: Vec<String> = tail
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("pass") => {
                    format!("{k}=***")
                }
                _ => p.to_owned(),
            })
            .collect();
        out = format!("{head}{}", params.join("&"));
    }
    out
}

/// How a Redis error is classified for the engine.
pub(crate) fn kind_of(e: &redis::RedisError) -> StoreErrorKind {
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() {
        StoreErrorKind::Transient
    } else if e.kind() == redis::ErrorKind::AuthenticationFailed {
        StoreErrorKind::Refused
    } else {
        StoreErrorKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_hidden_in_urls() {
        assert_eq!(redact("redis://:s3cret@host:6379/0"), "redis://:***@host:6379/0");
        assert_eq!(redact("redis://user:s3cret@host"), "redis://user:***@host");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact("redis://user@host"), "redis://user@host");
        assert_eq!(
            redact("redis+unix:///tmp/r.sock?db=1&pass=s3cret"),
            "redis+unix:///tmp/r.sock?db=1&pass=***"
        );
    }
}
