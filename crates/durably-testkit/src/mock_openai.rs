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
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// One scripted answer of the mock server.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MockReply {
    /// An assistant message with this text.
    Text(String),
    /// An assistant message calling these tools: `(name, arguments)`. String arguments are
    /// sent as they are; other JSON values are serialized.
    ToolCalls(Vec<(String, Value)>),
    /// An HTTP error with an OpenAI-style error body.
    Status {
        /// The HTTP status code.
        code: u16,
        /// The error message.
        message: String,
    },
    /// A JSON body served verbatim with status 200.
    Raw(Value),
}

impl MockReply {
    /// An assistant message with this text (`finish_reason: "stop"`).
    pub fn text(text: impl Into<String>) -> Self {
        MockReply::Text(text.into())
    }

    /// An assistant message calling the given tools, each `(name, arguments)`.
    pub fn tool_calls<N: Into<String>>(calls: impl IntoIterator<Item = (N, Value)>) -> Self {
        MockReply::ToolCalls(calls.into_iter().map(|(n, a)| (n.into(), a)).collect())
    }

    /// An HTTP error `code` with an OpenAI-style body carrying `message`.
    pub fn status(code: u16, message: impl Into<String>) -> Self {
        MockReply::Status { code, message: message.into() }
    }

    /// A recorded response body, served verbatim with status 200.
    pub fn raw(body: Value) -> Self {
        MockReply::Raw(body)
    }

    /// Parses one fixture entry (see the [module docs](self)).
    pub fn from_json(entry: &Value) -> io::Result<Self> {
        let invalid =
            |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("mock reply {entry}: {what}"));
        if let Some(text) = entry.get("text") {
            let text = text.as_str().ok_or_else(|| invalid("`text` must be a string"))?;
            return Ok(MockReply::text(text));
        }
        if let Some(calls) = entry.get("tool_calls") {
            let calls = calls.as_array().ok_or_else(|| invalid("`tool_calls` must be an array"))?;
            let mut parsed = Vec::with_capacity(calls.len());
            for call in calls {
                let name = call
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid("each tool call needs a string `name`"))?;
                let arguments = call.get("arguments").cloned().unwrap_or_else(|| json!({}));
                parsed.push((name.to_owned(), arguments));
            }
            return Ok(MockReply::ToolCalls(parsed));
        }
        if let Some(code) = entry.get("status") {
            let code = code
                .as_u64()
                .and_then(|c| u16::try_from(c).ok())
                .filter(|c| (100..=999).contains(c))
                .ok_or_else(|| invalid("`status` must be an HTTP status code"))?;
            let message = entry.get("message").and_then(Value::as_str).unwrap_or("mock error");
            return Ok(MockReply::status(code, message));
        }
        if let Some(raw) = entry.get("raw") {
            return Ok(MockReply::raw(raw.clone()));
        }
        Err(invalid("expected one of `text`, `tool_calls`, `status`, `raw`"))
    }
}

/// Parses a fixture document: `{"replies": [...]}` or `[...]`.
pub fn parse_fixture(doc: &Value) -> io::Result<Vec<MockReply>> {
    let entries = match doc {
        Value::Array(entries) => entries,
        Value::Object(map) => map.get("replies").and_then(Value::as_array).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "fixture object without a `replies` array")
        })?,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a fixture is an array of replies or an object with `replies`",
            ));
        }
    };
    entries.iter().map(MockReply::from_json).collect()
}

/// The workspace's `fixtures/` directory.
pub fn fixtures_dir() -> PathBuf {
    workspace_root().join("fixtures")
}

fn workspace_root() -> PathBuf {
    // crates/durably-testkit -> the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

fn resolve_fixture(path: &Path) -> PathBuf {
    if path.is_relative() && !path.exists() {
        for candidate in [workspace_root().join(path), fixtures_dir().join(path)] {
            if candidate.exists() {
                return candidate;
            }
        }
    }
    path.to_path_buf()
}

/// Computes the reply to a request from its JSON body.
type Responder = Arc<dyn Fn(&Value) -> MockReply + Send + Sync>;

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<MockReply>>,
    bodies: Mutex<Vec<Value>>,
    headers: Mutex<Vec<Vec<(String, String)>>>,
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

async fn not_found() -> Response {
    error_response(404, "mock OpenAI server: only POST /v1/chat/completions is served")
}

async fn chat_completions(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let headers = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let (number, reply) = {
        // Count and dequeue under one lock order so concurrent requests get distinct replies.
        let mut bodies = lock(&shared.bodies);
        bodies.push(request.clone());
        lock(&shared.headers).push(headers);
        (bodies.len(), lock(&shared.script).pop_front())
    };
    // The responder runs outside the locks: it is the caller's code.
    let reply = match reply {
        Some(reply) => Some(reply),
        None => {
            let responder = lock(&shared.responder).clone();
            responder.map(|respond| respond(&request))
        }
    };
    let latency = *lock(&shared.latency);
    if !latency.is_zero() {
        // A thread's sleep, not Tokio's timer: the timer rounds up to the next millisecond,
        // which would add up to 1 ms of noise to every simulated model call.
        let slept = tokio::task::spawn_blocking(move || std::thread::sleep(latency)).await;
        if slept.is_err() {
            tokio::time::sleep(latency).await;
        }
    }
    let Some(reply) = reply else {
        return error_response_typed(
            500,
            &format!(
                "mock OpenAI script ran out: request #{number} has no scripted reply \
                 (push more MockReply values, extend the fixture or set a responder)"
            ),
            "mock_script_exhausted",
        );
    };
    let completion = match reply {
        MockReply::Status { code, message } => return error_response(code, &message),
        MockReply::Raw(body) => body,
        MockReply::Text(text) => completion(&shared, &request, Some(&text), &[]),
        MockReply::ToolCalls(calls) => completion(&shared, &request, None, &calls),
    };
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage =
            request.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false);
        stream_response(&completion, include_usage)
    } else {
        json_response(StatusCode::OK, &completion)
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn error_response(code: u16, message: &str) -> Response {
    let kind = match code {
        400 | 404 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        _ => "server_error",
    };
    error_response_typed(code, message, kind)
}

fn error_response_typed(code: u16, message: &str, kind: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({
        "error": { "message": message, "type": kind, "param": null, "code": null }
    });
    json_response(status, &body)
}

fn approx_tokens(chars: usize) -> u64 {
    u64::try_from(chars.div_ceil(4).max(1)).unwrap_or(u64::MAX)
}

fn completion(shared: &Shared, request: &Value, text: Option<&str>, calls: &[(String, Value)]) -> Value {
    let id = shared.next_completion_id.fetch_add(1, Ordering::Relaxed);
    let model = request.get("model").cloned().unwrap_or_else(|| json!("mock-model"));
    let prompt_chars = request.get("messages").map(|m| m.to_string().len()).unwrap_or(0);
    let mut completion_chars = text.map(str::len).unwrap_or(0);
    let tool_calls: Vec<Value> = calls
        .iter()
        .map(|(name, arguments)| {
            let call_id = shared.next_call_id.fetch_add(1, Ordering::Relaxed);
            let arguments = match arguments {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            completion_chars += name.len() + arguments.len();
            json!({
                "id": format!("call_{call_id}"),
                "type": "function",
                "function": { "name": name, "arguments": arguments }
            })
        })
        .collect();
    let mut message = json!({ "role": "assistant", "content": text, "refusal": null });
    let finish_reason = if tool_calls.is_empty() {
        "stop"
    } else {
        message["tool_calls"] = Value::Array(tool_calls);
        "tool_calls"
    };
    let prompt_tokens = approx_tokens(prompt_chars);
    let completion_tokens = approx_tokens(completion_chars);
    json!({
        "id": format!("chatcmpl-mock-{id}"),
        "object": "chat.completion",
        "created": 1_700_000_000u64 + id,
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens
        },
        "system_fingerprint": "fp_mock"
    })
}

/// Splits `s` into about `parts` pieces on character boundaries (at least one piece).
fn split_pieces(s: &str, parts: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    let size = chars.len().div_ceil(parts.max(1)).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// Splits text into word-sized deltas, whitespace kept, at least two when possible.
fn text_deltas(text: &str) -> Vec<String> {
    let words: Vec<String> = text.split_inclusive(' ').map(str::to_owned).collect();
    if words.len() >= 2 { words } else { split_pieces(text, 2) }
}

fn stream_chunks(completion: &Value, include_usage: bool) -> Vec<Value> {
    let id = completion.get("id").cloned().unwrap_or(Value::Null);
    let created = completion.get("created").cloned().unwrap_or(Value::Null);
    let model = completion.get("model").cloned().unwrap_or(Value::Null);
    let usage_field = if include_usage { Some(Value::Null) } else { None };
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_mock",
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }]
        });
        if let Some(u) = &usage_field {
            c["usage"] = u.clone();
        }
        c
    };
    let choice = completion.pointer("/choices/0").cloned().unwrap_or(Value::Null);
    let message = choice.get("message").cloned().unwrap_or(Value::Null);
    let mut chunks = vec![chunk(json!({ "role": "assistant", "content": "" }), Value::Null)];
    if let Some(text) = message.get("content").and_then(Value::as_str) {
        for piece in text_deltas(text) {
            chunks.push(chunk(json!({ "content": piece }), Value::Null));
        }
    }
    if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
        for (index, call) in calls.iter().enumerate() {
            let name = call.pointer("/function/name").cloned().unwrap_or(Value::Null);
            let args = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("");
            chunks.push(chunk(
                json!({ "tool_calls": [{
                    "index": index,
                    "id": call.get("id").cloned().unwrap_or(Value::Null),
                    "type": "function",
                    "function": { "name": name, "arguments": "" }
                }]}),
                Value::Null,
            ));
            for piece in split_pieces(args, 3) {
                chunks.push(chunk(
                    json!({ "tool_calls": [{ "index": index, "function": { "arguments": piece } }]}),
                    Value::Null,
                ));
            }
        }
    }
    let finish = choice.get("finish_reason").cloned().unwrap_or_else(|| json!("stop"));
    chunks.push(chunk(json!({}), finish));
    if include_usage {
        let mut last = chunk(json!({}), Value::Null);
        last["choices"] = json!([]);
        last["usage"] = completion.get("usage").cloned().unwrap_or(Value::Null);
        chunks.push(last);
    }
    chunks
}

fn stream_response(completion: &Value, include_usage: bool) -> Response {
    let mut events: Vec<Result<Bytes, Infallible>> = stream_chunks(completion, include_usage)
        .into_iter()
        .map(|c| Ok(Bytes::from(format!("data: {c}\n\n"))))
        .collect();
    events.push(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
    let body = Body::from_stream(futures::stream::iter(events));
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], body)
        .into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    async fn post(mock: &MockOpenAi, body: Value) -> (u16, String) {
        let resp = reqwest::Client::new()
            .post(format!("{}/chat/completions", mock.base_url()))
            .bearer_auth("sk-test")
            .json(&body)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    fn request(stream: bool) -> Value {
        json!({
            "model": "gpt-test",
            "messages": [{ "role": "user", "content": "hello there" }],
            "stream": stream,
            "stream_options": if stream { json!({ "include_usage": true }) } else { Value::Null }
        })
    }

    fn sse_data(body: &str) -> Vec<String> {
        body.split("\n\n").filter_map(|e| e.strip_prefix("data: ")).map(str::to_owned).collect()
    }

    #[tokio::test]
    async fn serves_the_script_in_order_and_counts_requests() {
        let mock = MockOpenAi::start().await;
        assert!(mock.base_url().starts_with("http://127.0.0.1:"));
        assert!(mock.base_url().ends_with("/v1"));
        mock.push(MockReply::tool_calls([("search", json!({ "q": "rust" }))])).push(MockReply::text("done"));

        let (status, body) = post(&mock, request(false)).await;
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], "gpt-test");
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        let call = &v["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["id"], "call_1");
        assert_eq!(call["function"]["name"], "search");
        assert_eq!(call["function"]["arguments"], r#"{"q":"rust"}"#);
        assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

        let (_, body) = post(&mock, request(false)).await;
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "done");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        let u = &v["usage"];
        assert_eq!(
            u["total_tokens"].as_u64().unwrap(),
            u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
        );

        assert_eq!(mock.requests(), 2);
        assert_eq!(mock.received()[0]["messages"][0]["content"], "hello there");
        let auth = mock.headers()[0].iter().find(|(k, _)| k == "authorization").cloned();
        assert_eq!(auth.unwrap().1, "Bearer sk-test");
        assert_eq!(mock.remaining(), 0);
    }

    #[tokio::test]
    async fn call_ids_are_unique_per_server() {
        let mock = MockOpenAi::start().await;
        mock.push(MockReply::tool_calls([("a", json!({})), ("b", json!({}))]));
        mock.push(MockReply::tool_calls([("a", json!({}))]));
        let (_, first) = post(&mock, request(false)).await;
        let (_, second) = post(&mock, request(false)).await;
        let first: Value = serde_json::from_str(&first).unwrap();
        let second: Value = serde_json::from_str(&second).unwrap();
        let ids: Vec<&Value> = vec![
            &first["choices"][0]["message"]["tool_calls"][0]["id"],
            &first["choices"][0]["message"]["tool_calls"][1]["id"],
            &second["choices"][0]["message"]["tool_calls"][0]["id"],
        ];
        assert_eq!(ids, [&json!("call_1"), &json!("call_2"), &json!("call_3")]);
    }

    #[tokio::test]
    async fn status_replies_are_openai_style_errors() {
        let mock = MockOpenAi::start().await;
        mock.push_all([MockReply::status(429, "slow down"), MockReply::status(400, "bad")]);
        let (status, body) = post(&mock, request(false)).await;
        assert_eq!(status, 429);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["message"], "slow down");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        let (status, body) = post(&mock, request(true)).await;
        assert_eq!(status, 400);
        assert!(body.contains("invalid_request_error"));
    }

    #[tokio::test]
    async fn an_empty_script_answers_500_and_still_counts() {
        let mock = MockOpenAi::start().await;
        let (status, body) = post(&mock, request(false)).await;
        assert_eq!(status, 500);
        assert!(body.contains("script ran out"), "{body}");
        assert_eq!(mock.requests(), 1);
    }

    #[tokio::test]
    async fn raw_replies_are_served_verbatim() {
        let mock = MockOpenAi::start().await;
        let recorded = json!({ "id": "chatcmpl-rec", "object": "chat.completion", "x": [1, 2] });
        mock.push(MockReply::raw(recorded.clone()));
        let (status, body) = post(&mock, request(false)).await;
        assert_eq!(status, 200);
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), recorded);
    }

    #[tokio::test]
    async fn streamed_text_arrives_in_several_deltas_then_done() {
        let mock = MockOpenAi::start().await;
        mock.push(MockReply::text("one two three four"));
        let (status, body) = post(&mock, request(true)).await;
        assert_eq!(status, 200);
        let data = sse_data(&body);
        assert_eq!(data.last().unwrap(), "[DONE]");
        let chunks: Vec<Value> =
            data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
        assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let deltas: Vec<&str> = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .filter(|s| !s.is_empty())
            .collect();
        assert!(deltas.len() >= 2, "{deltas:?}");
        assert_eq!(deltas.concat(), "one two three four");
        let finish: Vec<&Value> =
            chunks.iter().map(|c| &c["choices"][0]["finish_reason"]).filter(|f| !f.is_null()).collect();
        assert_eq!(finish, [&json!("stop")]);
        let usage = chunks.last().unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert!(usage["usage"]["total_tokens"].as_u64().unwrap() > 0);
    }

    #[tokio::test]
    async fn streamed_tool_calls_send_id_and_name_then_argument_pieces() {
        let mock = MockOpenAi::start().await;
        mock.push(MockReply::tool_calls([
            ("search", json!({ "query": "durable rust" })),
            ("fetch", json!({ "url": "https://example.com" })),
        ]));
        let (_, body) = post(&mock, request(true)).await;
        let data = sse_data(&body);
        let chunks: Vec<Value> =
            data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
        let mut args = [String::new(), String::new()];
        let mut heads = Vec::new();
        let mut pieces = 0;
        for c in &chunks {
            for tc in c["choices"][0]["delta"]["tool_calls"].as_array().into_iter().flatten() {
                let i = tc["index"].as_u64().unwrap() as usize;
                if let Some(id) = tc["id"].as_str() {
                    heads.push((id.to_owned(), tc["function"]["name"].clone()));
                }
                let piece = tc["function"]["arguments"].as_str().unwrap();
                if !piece.is_empty() {
                    pieces += 1;
                }
                args[i].push_str(piece);
            }
        }
        assert_eq!(heads, [("call_1".to_owned(), json!("search")), ("call_2".to_owned(), json!("fetch"))]);
        assert!(pieces > 2, "arguments should be streamed in pieces");
        assert_eq!(serde_json::from_str::<Value>(&args[0]).unwrap(), json!({"query": "durable rust"}));
        assert_eq!(serde_json::from_str::<Value>(&args[1]).unwrap(), json!({"url": "https://example.com"}));
        let finish = chunks.iter().find_map(|c| c["choices"][0]["finish_reason"].as_str());
        assert_eq!(finish, Some("tool_calls"));
    }

    #[tokio::test]
    async fn fixtures_load_all_reply_forms() {
        let dir = std::env::temp_dir().join(format!("mock-openai-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("conv.json");
        std::fs::write(
            &path,
            json!({
                "description": "test",
                "replies": [
                    { "tool_calls": [{ "name": "search", "arguments": { "q": "x" } }] },
                    { "status": 503, "message": "overloaded" },
                    { "raw": { "recorded": true } },
                    { "text": "bye" }
                ]
            })
            .to_string(),
        )
        .unwrap();
        let mock = MockOpenAi::from_fixture(&path).await.unwrap();
        assert_eq!(mock.remaining(), 4);
        let (_, b) = post(&mock, request(false)).await;
        assert!(b.contains("call_1"));
        let (s, _) = post(&mock, request(false)).await;
        assert_eq!(s, 503);
        let (_, b) = post(&mock, request(false)).await;
        assert_eq!(serde_json::from_str::<Value>(&b).unwrap(), json!({ "recorded": true }));
        let (_, b) = post(&mock, request(false)).await;
        assert!(b.contains("bye"));
        std::fs::remove_dir_all(&dir).unwrap();

        let bad = parse_fixture(&json!([{ "nothing": 1 }])).unwrap_err();
        assert!(bad.to_string().contains("expected one of"), "{bad}");
    }

    #[tokio::test]
    async fn the_workspace_fixtures_parse() {
        for entry in std::fs::read_dir(fixtures_dir()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) == Some("json") {
                let mock = MockOpenAi::from_fixture(&path).await;
                assert!(mock.is_ok(), "{}: {:?}", path.display(), mock.err());
            }
        }
    }

    #[tokio::test]
    async fn latency_delays_each_answer() {
        let mock = MockOpenAi::start().await;
        mock.latency(Duration::from_millis(150)).push(MockReply::text("slow"));
        let started = std::time::Instant::now();
        let (status, _) = post(&mock, request(false)).await;
        assert_eq!(status, 200);
        // A lower bound only: the answer cannot come before the simulated latency.
        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    fn tool_results(req: &Value) -> usize {
        req["messages"].as_array().map_or(0, |m| m.iter().filter(|m| m["role"] == "tool").count())
    }

    fn conversation(tool_results: usize) -> Value {
        let mut messages = vec![json!({ "role": "user", "content": "work" })];
        for n in 1..=tool_results {
            messages.push(json!({ "role": "tool", "tool_call_id": format!("c{n}"), "content": "ok" }));
        }
        json!({ "model": "gpt-test", "messages": messages })
    }

    #[tokio::test]
    async fn a_responder_answers_from_the_request_in_any_order_and_counts() {
        let mock = MockOpenAi::responder(|req| {
            let done = tool_results(req);
            if done < 2 {
                MockReply::tool_calls([("work", json!({ "n": done + 1 }))])
            } else {
                MockReply::text(format!("finished after {done} results"))
            }
        })
        .await;
        // Out of order and repeated, as after a crash: each answer depends on the request only.
        for results in [2, 0, 1, 1, 0] {
            let (status, body) = post(&mock, conversation(results)).await;
            assert_eq!(status, 200, "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            let message = &v["choices"][0]["message"];
            if results < 2 {
                assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
                assert_eq!(message["tool_calls"][0]["function"]["name"], "work");
                let args: Value =
                    serde_json::from_str(message["tool_calls"][0]["function"]["arguments"].as_str().unwrap())
                        .unwrap();
                assert_eq!(args, json!({ "n": results + 1 }));
            } else {
                assert_eq!(message["content"], "finished after 2 results");
            }
        }
        assert_eq!(mock.requests(), 5);
        assert_eq!(tool_results(&mock.received()[1]), 0);
        // Streaming requests get the same computed reply as events.
        let (status, body) = post(&mock, request(true)).await;
        assert_eq!(status, 200);
        assert!(body.contains("\"tool_calls\"") && body.ends_with("data: [DONE]\n\n"), "{body}");
    }

    #[tokio::test]
    async fn scripted_replies_come_before_the_responder() {
        let mock = MockOpenAi::start().await;
        mock.push(MockReply::status(429, "slow down"));
        mock.respond_with(|_| MockReply::text("computed"));
        let (status, _) = post(&mock, request(false)).await;
        assert_eq!(status, 429);
        for _ in 0..2 {
            let (status, body) = post(&mock, request(false)).await;
            assert_eq!(status, 200);
            assert!(body.contains("computed"), "{body}");
        }
        // A later responder replaces the first; a pushed reply still goes first.
        mock.respond_with(|_| MockReply::status(503, "down"));
        mock.push(MockReply::text("scripted"));
        assert!(post(&mock, request(false)).await.1.contains("scripted"));
        assert_eq!(post(&mock, request(false)).await.0, 503);
        assert_eq!(mock.requests(), 5);
        assert_eq!(mock.remaining(), 0);
    }

    #[tokio::test]
    async fn the_server_stops_when_dropped() {
        let mock = MockOpenAi::start().await;
        let url = mock.base_url();
        drop(mock);
        let mut refused = false;
        for _ in 0..100 {
            let r = reqwest::Client::new()
                .post(format!("{url}/chat/completions"))
                .json(&request(false))
                .send()
                .await;
            if r.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(refused, "the server still answers after drop");
    }
}
