//! A mock OpenAI-compatible chat-completions server for offline agent tests and examples.
//!
//! [`MockOpenAi::start`] binds an axum server to `127.0.0.1:0` on the current tokio runtime and
//! answers `POST /v1/chat/completions` (also `POST /chat/completions`) from a FIFO script of
//! [`MockReply`]s, or from a [responder](#responders) that computes the reply from the request,
//! counting every request it receives. Point a client at
//! [`MockOpenAi::base_url`] (`http://127.0.0.1:PORT/v1`). The server stops when the
//! `MockOpenAi` is dropped.
//!
//! ```ignore
//! use durably_testkit::mock_openai::{MockOpenAi, MockReply};
//!
//! let mock = MockOpenAi::start().await;
//! mock.push(MockReply::tool_calls([("search", serde_json::json!({"query": "rust"}))]));
//! mock.push(MockReply::text("Rust is a language."));
//! // ... run an agent against mock.base_url() ...
//! assert_eq!(mock.requests(), 2);
//! assert_eq!(mock.received()[1]["messages"][2]["role"], "tool");
//! ```
//!
//! # Replies
//!
//! - [`MockReply::text`]: an assistant message, `finish_reason: "stop"`.
//! - [`MockReply::tool_calls`]: an assistant message with tool calls, `finish_reason:
//!   "tool_calls"`; call ids are `call_1`, `call_2`, … in the order they are served, unique per
//!   server.
//! - [`MockReply::status`]: an HTTP error with an OpenAI-style body
//!   `{"error": {"message", "type", "param", "code"}}`.
//! - [`MockReply::raw`]: a JSON body served verbatim with status 200 (a recorded response).
//! - [`MockReply::with_code`], [`MockReply::with_header`]: an HTTP error whose body names an
//!   error code (`insufficient_quota`) or that sends headers (`retry-after: 1`).
//! - [`MockReply::delayed`]: any reply, sent after a wait (a hung model).
//!
//! Generated responses carry an id `chatcmpl-mock-N`, the request's `model`, and `usage`
//! counts (about one token per four characters of the request's messages and of the reply).
//! When the script is empty and no responder is set the server answers HTTP 500 with a message
//! saying the script ran out; that request is counted too.
//!
//! # Responders
//!
//! A FIFO script needs the number and order of requests known in advance. A run that crashes
//! and resumes does not have that: a request in flight at the crash is sent again, recorded
//! ones are not. [`MockOpenAi::responder`] (or [`MockOpenAi::respond_with`] on a running
//! server) answers with a function of the request body instead, so a reply depends only on the
//! conversation so far, as a real model's would:
//!
//! ```ignore
//! // One tool call per turn until three tool results are in, then the answer.
//! let mock = MockOpenAi::responder(|req: &serde_json::Value| {
//!     let messages = req["messages"].as_array().cloned().unwrap_or_default();
//!     let results = messages.iter().filter(|m| m["role"] == "tool").count();
//!     if results < 3 {
//!         MockReply::tool_calls([("work", serde_json::json!({ "n": results + 1 }))])
//!     } else {
//!         MockReply::text("all done")
//!     }
//! })
//! .await;
//! ```
//!
//! Scripted replies still come first: the responder answers the requests the script has no
//! reply for, so a test can push a `429` in front of a responder.
//!
//! # Streaming
//!
//! A request with `"stream": true` is answered as server-sent events, `data: {chunk}` lines
//! ending with `data: [DONE]`, built from the same scripted reply: a first chunk with the
//! assistant role, the text split into several `content` deltas, tool calls announced with
//! their id and name and then their arguments in several pieces (as OpenAI streams them), a
//! last chunk with the `finish_reason`, and, if the request asked for
//! `stream_options.include_usage`, a chunk with empty `choices` and the `usage`. An error reply
//! is an HTTP error, not a stream.
//!
//! # Fixture files
//!
//! [`MockOpenAi::from_fixture`] and [`MockOpenAi::push_fixture`] read a scripted conversation
//! from JSON, either an object with a `replies` array (other keys, such as `description`, are
//! ignored) or the array itself. Each reply is one of:
//!
//! ```json
//! { "text": "The answer." }
//! { "tool_calls": [ { "name": "search", "arguments": { "query": "rust" } } ] }
//! { "status": 429, "message": "Rate limit reached" }
//! { "status": 429, "message": "Quota", "code": "insufficient_quota", "headers": { "retry-after": "1" } }
//! { "text": "Late.", "delay_ms": 5000 }
//! { "raw": { "id": "chatcmpl-…", "object": "chat.completion", "choices": [ … ] } }
//! ```
//!
//! `arguments` may be a JSON value (serialized for the wire) or a string sent as it is.
//! A relative fixture path that does not exist from the current directory is looked up under
//! the workspace root and its `fixtures/` directory, so tests of any crate can say
//! `MockOpenAi::from_fixture("research_pipeline.json")`.
//!
//! All methods take `&self`: the script can be extended and inspected while requests are
//! being served.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use serde_json::Value;
use tokio::sync::oneshot;

mod completion;
mod fixtures;
mod reply;
mod routes;
mod stream;
#[cfg(test)]
mod tests;

use fixtures::resolve_fixture;
pub use fixtures::{fixtures_dir, parse_fixture};
pub use reply::MockReply;
use routes::{chat_completions, not_found};

/// Computes the reply to a request from its JSON body.
type Responder = Arc<dyn Fn(&Value) -> MockReply + Send + Sync>;

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<MockReply>>,
    bodies: Mutex<Vec<Value>>,
    headers: Mutex<Vec<Vec<(String, String)>>>,
    arrivals: Mutex<Vec<std::time::Instant>>,
    latency: Mutex<Duration>,
    responder: Mutex<Option<Responder>>,
    next_call_id: AtomicU64,
    next_completion_id: AtomicU64,
}

// A poisoned lock only means a handler panicked mid-update of plain data; keep serving.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running mock OpenAI-compatible server. Dropping it stops the server.
pub struct MockOpenAi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for MockOpenAi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockOpenAi")
            .field("addr", &self.addr)
            .field("requests", &self.requests())
            .field("remaining", &self.remaining())
            .field("responder", &lock(&self.shared.responder).is_some())
            .finish()
    }
}

impl MockOpenAi {
    /// Starts a server on `127.0.0.1` (a free port) with an empty script, on the current tokio
    /// runtime.
    ///
    /// # Panics
    ///
    /// If no loopback port can be bound (a test-environment failure with nothing to recover);
    /// [`MockOpenAi::try_start`] returns the error instead.
    #[allow(clippy::panic)]
    pub async fn start() -> MockOpenAi {
        match Self::try_start().await {
            Ok(mock) => mock,
            Err(e) => panic!("mock OpenAI server: cannot bind 127.0.0.1:0: {e}"),
        }
    }

    /// Like [`MockOpenAi::start`], returning the bind error.
    pub async fn try_start() -> io::Result<MockOpenAi> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            next_call_id: AtomicU64::new(1),
            next_completion_id: AtomicU64::new(1),
            ..Shared::default()
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .route("/chat/completions", post(chat_completions))
            .fallback(not_found)
            .with_state(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(MockOpenAi { addr, shared, shutdown: Some(tx) })
    }

    /// Starts a server whose script is the fixture file at `path` (see the
    /// [module docs](self) for the format and how relative paths are found).
    pub async fn from_fixture(path: impl AsRef<Path>) -> io::Result<MockOpenAi> {
        let mock = Self::try_start().await?;
        mock.push_fixture(path)?;
        Ok(mock)
    }

    /// Starts a server that answers every request with `reply(request body)` (see
    /// [Responders](self#responders)).
    ///
    /// # Panics
    ///
    /// As [`MockOpenAi::start`].
    pub async fn responder(reply: impl Fn(&Value) -> MockReply + Send + Sync + 'static) -> MockOpenAi {
        let mock = Self::start().await;
        mock.respond_with(reply);
        mock
    }

    /// Answers the requests the script has no reply for with `reply(request body)`, replacing
    /// any earlier responder (see [Responders](self#responders)). The function runs on the
    /// server's tasks, once per such request.
    pub fn respond_with(&self, reply: impl Fn(&Value) -> MockReply + Send + Sync + 'static) -> &Self {
        *lock(&self.shared.responder) = Some(Arc::new(reply));
        self
    }

    /// Appends the replies of the fixture file at `path` to the script.
    pub fn push_fixture(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let path = resolve_fixture(path.as_ref());
        let text = std::fs::read_to_string(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("reading fixture {}: {e}", path.display())))?;
        let doc: Value = serde_json::from_str(&text).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("fixture {}: {e}", path.display()))
        })?;
        let replies = parse_fixture(&doc)
            .map_err(|e| io::Error::new(e.kind(), format!("fixture {}: {e}", path.display())))?;
        self.push_all(replies);
        Ok(())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/v1`, the API base for OpenAI clients.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.uri())
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Appends one reply to the script.
    pub fn push(&self, reply: MockReply) -> &Self {
        lock(&self.shared.script).push_back(reply);
        self
    }

    /// Appends replies to the script, in order.
    pub fn push_all(&self, replies: impl IntoIterator<Item = MockReply>) -> &Self {
        lock(&self.shared.script).extend(replies);
        self
    }

    /// Waits this long before answering each request (simulated model latency), to within a
    /// thread's sleep (tens of microseconds), not the millisecond of Tokio's timer.
    pub fn latency(&self, latency: Duration) -> &Self {
        *lock(&self.shared.latency) = latency;
        self
    }

    /// How many chat-completion requests were received (answered or not, including those
    /// answered with an error or after the script ran out).
    pub fn requests(&self) -> usize {
        lock(&self.shared.bodies).len()
    }

    /// The request bodies received, in order (a body that is not JSON is kept as a string).
    pub fn received(&self) -> Vec<Value> {
        lock(&self.shared.bodies).clone()
    }

    /// The request headers received, one list of `(lowercase name, value)` per request.
    pub fn headers(&self) -> Vec<Vec<(String, String)>> {
        lock(&self.shared.headers).clone()
    }

    /// When each request arrived (its body read), in order: what a test of a rate limit
    /// checks, as the provider would count.
    pub fn arrivals(&self) -> Vec<std::time::Instant> {
        lock(&self.shared.arrivals).clone()
    }

    /// How many scripted replies have not been served yet.
    pub fn remaining(&self) -> usize {
        lock(&self.shared.script).len()
    }
}

impl Drop for MockOpenAi {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
