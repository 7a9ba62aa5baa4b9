//! How a server is configured: where it is bound, how requests authenticate, which `Host`
//! names it answers, how large a body may be, and which agents can take session turns.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

use crate::guard::AllowedHosts;

/// The default limit of a request body: 1 MiB. A larger one is refused with 413.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The queue runs started over HTTP go to unless the request or [`ServerConfig::queue`] names
/// another.
pub const DEFAULT_QUEUE: &str = "default";

/// The shortest token accepted, in bytes: a short token can be guessed.
pub const MIN_TOKEN_BYTES: usize = 16;

/// What can go wrong while configuring or starting a server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// No token was given and the server may not run without one: it is not bound to a loopback
    /// address, or running without a token was not asked for.
    #[error(
        "refusing to serve on {addr} without a token: give one (--token-file or DURABLY_TOKEN), or bind to \
         a loopback address and pass --insecure-loopback"
    )]
    Insecure {
        /// The address the server is bound to.
        addr: SocketAddr,
    },
    /// A token that cannot be used (its text is never part of the message).
    #[error("unusable API token from {source_name}: {problem}")]
    Token {
        /// Where it came from: an environment variable or a file.
        source_name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A name given to [`AllowedHosts::allow`] that is not a host name or address.
    #[error(
        "--allowed-host takes a host name or address, optionally with `:PORT` (like `dash.example` or \
         `dash.example:8443`), not `{name}`"
    )]
    AllowedHost {
        /// The name as given.
        name: String,
    },
    /// Binding or serving failed.
    #[error("server I/O on {addr}: {source}")]
    Io {
        /// The address.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The bearer token requests must present (`Authorization: Bearer <token>`). Only its SHA-256
/// digest is kept, and it is compared in constant time; `Debug` never shows it.
#[derive(Clone)]
pub struct Token {
    digest: [u8; 32],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// A token from its text (surrounding whitespace, such as a file's last newline, is
    /// ignored). At least [`MIN_TOKEN_BYTES`] bytes of visible ASCII.
    pub fn new(text: &str) -> Result<Token, ServerError> {
        Self::checked(text, "the configuration")
    }

    /// The token in environment variable `var`.
    pub fn from_env(var: &str) -> Result<Token, ServerError> {
        let text = std::env::var(var).map_err(|e| ServerError::Token {
            source_name: format!("environment variable {var}"),
            problem: e.to_string(),
        })?;
        Self::checked(&text, &format!("environment variable {var}"))
    }

    /// The token in the file at `path` (its only content, a trailing newline allowed).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Token, ServerError> {
        let path = path.as_ref();
        let name = format!("file `{}`", path.display());
        let text = std::fs::read_to_string(path)
            .map_err(|e| ServerError::Token { source_name: name.clone(), problem: e.to_string() })?;
        Self::checked(&text, &name)
    }

    fn checked(text: &str, source_name: &str) -> Result<Token, ServerError> {
        let text = text.trim();
        let problem = if text.len() < MIN_TOKEN_BYTES {
            Some(format!("it is {} bytes long; use at least {MIN_TOKEN_BYTES}", text.len()))
        } else if !text.bytes().all(|b| b.is_ascii_graphic()) {
            Some("it may hold only visible ASCII characters (no spaces)".to_owned())
        } else {
            None
        };
        match problem {
            Some(problem) => Err(ServerError::Token { source_name: source_name.to_owned(), problem }),
            None => Ok(Token { digest: Sha256::digest(text.as_bytes()).into() }),
        }
    }

    /// Whether `presented` is this token. Both sides are hashed first and every byte of the
    /// digests is compared, so the time taken tells nothing about the token or its length.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let other: [u8; 32] = Sha256::digest(presented).into();
        same(&self.digest, &other)
    }

    /// The value of the dashboard's login cookie: derived from the token, so the browser never
    /// keeps the token itself, and useless once the token changes.
    pub(crate) fn session_value(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"durably-session/");
        h.update(self.digest);
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `presented` is [`session_value`](Self::session_value), compared like a token.
    pub(crate) fn matches_session(&self, presented: &[u8]) -> bool {
        let expected: [u8; 32] = Sha256::digest(self.session_value().as_bytes()).into();
        let other: [u8; 32] = Sha256::digest(presented).into();
        same(&expected, &other)
    }
}

/// Every byte compared, whatever the first difference.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// How requests authenticate.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Auth {
    /// Every request presents this bearer token.
    Token(Token),
    /// No authentication: only accepted for a server bound to a loopback address, where only
    /// this machine's users (and, through their browsers, the guard's rules) reach it.
    InsecureLoopback,
}

/// Sends one session turn: `(session, turn_id, message)` to the answer's text.
pub(crate) type TurnSender =
    Arc<dyn Fn(String, String, String) -> BoxFuture<'static, durably_core::Result<String>> + Send + Sync>;

/// A server's configuration: built with [`ServerConfig::new`], which refuses an insecure one.
#[derive(Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    pub(crate) auth: Auth,
    pub(crate) hosts: AllowedHosts,
    pub(crate) body_limit: usize,
    pub(crate) agents: BTreeMap<String, TurnSender>,
    pub(crate) queue: String,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("auth", &self.auth)
            .field("hosts", &self.hosts)
            .field("body_limit", &self.body_limit)
            .field("queue", &self.queue)
            .field("agents", &self.agents.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ServerConfig {
    /// A server bound to `bound` (the listener's own address, port included) authenticating
    /// with `auth`. [`Auth::InsecureLoopback`] on an address that is not loopback (0.0.0.0
    /// included) fails with [`ServerError::Insecure`] (rule 21 of docs/design.md).
    pub fn new(bound: SocketAddr, auth: Auth) -> Result<ServerConfig, ServerError> {
        if matches!(auth, Auth::InsecureLoopback) && !bound.ip().is_loopback() {
            return Err(ServerError::Insecure { addr: bound });
        }
        Ok(ServerConfig {
            auth,
            hosts: AllowedHosts::new(bound),
            body_limit: DEFAULT_BODY_LIMIT,
            agents: BTreeMap::new(),
            queue: DEFAULT_QUEUE.to_owned(),
        })
    }

    /// Also answers requests whose `Host` is `name` (see [`AllowedHosts::allow`]).
    pub fn allow_host(mut self, name: &str) -> Result<ServerConfig, ServerError> {
        self.hosts = self.hosts.allow(name)?;
        Ok(self)
    }

    /// The largest request body accepted, in bytes (default [`DEFAULT_BODY_LIMIT`]).
    pub fn body_limit(mut self, bytes: usize) -> ServerConfig {
        self.body_limit = bytes;
        self
    }

    /// The queue `POST /api/runs` enqueues runs in when the request names none (default
    /// [`DEFAULT_QUEUE`]). Define it on the engine (`wf.add_queue(Queue::new(name))`) and run a
    /// queue worker for it (`wf.queue_worker([name]).start()`), in this process or another.
    pub fn queue(mut self, name: impl Into<String>) -> ServerConfig {
        self.queue = name.into();
        self
    }

    /// Lets `POST /api/sessions/{agent}/{session}/turns` send turns to the sessions of agent
    /// `agent`: `send(session, turn_id, message)` sends the turn (for the OpenAI agent,
    /// `agent.session(session).send_with_id(turn_id, message)`) and returns the answer's text.
    pub fn session_agent<F, Fut>(mut self, agent: impl Into<String>, send: F) -> ServerConfig
    where
        F: Fn(String, String, String) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = durably_core::Result<String>> + Send + 'static,
    {
        let sender: TurnSender =
            Arc::new(move |session, turn_id, message| Box::pin(send(session, turn_id, message)));
        self.agents.insert(agent.into(), sender);
        self
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_are_checked_and_never_shown() {
        let t = Token::new("  s3cret-token-0123456789\n").unwrap();
        assert!(t.matches(b"s3cret-token-0123456789"));
        assert!(!t.matches(b"s3cret-token-012345678"));
        assert!(!t.matches(b""));
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
        let short = Token::new("short").unwrap_err().to_string();
        assert!(short.contains("5 bytes") && !short.contains("short"), "{short}");
        let spaced = Token::new("a token with spaces in it").unwrap_err().to_string();
        assert!(spaced.contains("visible ASCII"), "{spaced}");
        let missing = Token::from_file("/nonexistent/durably-token").unwrap_err().to_string();
        assert!(missing.contains("/nonexistent/durably-token"), "{missing}");
    }

    #[test]
    fn no_token_only_on_loopback() {
        for ok in ["127.0.0.1:8080", "[::1]:1"] {
            assert!(ServerConfig::new(ok.parse().unwrap(), Auth::InsecureLoopback).is_ok(), "{ok}");
        }
        for no in ["0.0.0.0:8080", "10.0.0.5:80", "[::]:8080"] {
            let err = ServerConfig::new(no.parse().unwrap(), Auth::InsecureLoopback).unwrap_err();
            assert!(matches!(err, ServerError::Insecure { .. }), "{no}: {err}");
            assert!(err.to_string().contains("--insecure-loopback"), "{err}");
        }
        let token = Token::new("0123456789abcdef").unwrap();
        assert!(ServerConfig::new("0.0.0.0:8080".parse().unwrap(), Auth::Token(token)).is_ok());
    }
}
