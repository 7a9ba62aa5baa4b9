//! [`MockReply`]: one scripted answer, and how a fixture file spells it.

use std::io;
use std::time::Duration;

use serde_json::{Value, json};

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
    /// An HTTP error with this JSON body and these response headers (`retry-after`…).
    HttpError {
        /// The HTTP status code.
        code: u16,
        /// The body, served as JSON.
        body: Value,
        /// Response headers, `(name, value)`.
        headers: Vec<(String, String)>,
    },
    /// Another reply, sent after a wait (a model that hangs, for timeout tests).
    Delayed {
        /// How long the server waits before answering.
        delay: Duration,
        /// The reply.
        reply: Box<MockReply>,
    },
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

    /// This reply as an HTTP error with an OpenAI-style body whose `error.code` is `code`
    /// (e.g. `insufficient_quota`); a reply that is not an error becomes a 500 first.
    pub fn with_code(self, code: impl Into<String>) -> Self {
        let code = Value::String(code.into());
        self.edit_error(move |body, _| body["error"]["code"] = code)
    }

    /// This reply as an HTTP error that also sends the header `name: value` (e.g.
    /// `retry-after: 1`); a reply that is not an error becomes a 500 first.
    pub fn with_header(self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let header = (name.into(), value.into());
        self.edit_error(move |_, headers| headers.push(header))
    }

    fn edit_error(self, edit: impl FnOnce(&mut Value, &mut Vec<(String, String)>)) -> Self {
        match self {
            MockReply::Delayed { delay, reply } => {
                MockReply::Delayed { delay, reply: Box::new(reply.edit_error(edit)) }
            }
            MockReply::HttpError { code, mut body, mut headers } => {
                edit(&mut body, &mut headers);
                MockReply::HttpError { code, body, headers }
            }
            MockReply::Status { code, message } => {
                MockReply::HttpError { code, body: error_body(code, &message, None), headers: Vec::new() }
                    .edit_error(edit)
            }
            _ => MockReply::status(500, "mock error").edit_error(edit),
        }
    }

    /// This reply, sent only after `delay` (a hung model, for timeout tests). A request whose
    /// client gave up is still counted.
    pub fn delayed(self, delay: Duration) -> Self {
        MockReply::Delayed { delay, reply: Box::new(self) }
    }

    /// A recorded response body, served verbatim with status 200.
    pub fn raw(body: Value) -> Self {
        MockReply::Raw(body)
    }

    /// Parses one fixture entry (see the [module docs](crate::mock_openai)).
    pub fn from_json(entry: &Value) -> io::Result<Self> {
        let invalid =
            |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("mock reply {entry}: {what}"));
        if let Some(text) = entry.get("text") {
            let text = text.as_str().ok_or_else(|| invalid("`text` must be a string"))?;
            return Ok(delay(entry, MockReply::text(text)));
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
            return Ok(delay(entry, MockReply::ToolCalls(parsed)));
        }
        if let Some(code) = entry.get("status") {
            let code = code
                .as_u64()
                .and_then(|c| u16::try_from(c).ok())
                .filter(|c| (100..=999).contains(c))
                .ok_or_else(|| invalid("`status` must be an HTTP status code"))?;
            let message = entry.get("message").and_then(Value::as_str).unwrap_or("mock error");
            let mut reply = MockReply::status(code, message);
            if let Some(error_code) = entry.get("code").and_then(Value::as_str) {
                reply = reply.with_code(error_code);
            }
            if let Some(headers) = entry.get("headers").and_then(Value::as_object) {
                for (name, value) in headers {
                    let value = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
                    reply = reply.with_header(name.clone(), value);
                }
            }
            return Ok(delay(entry, reply));
        }
        if let Some(raw) = entry.get("raw") {
            return Ok(MockReply::raw(raw.clone()));
        }
        Err(invalid("expected one of `text`, `tool_calls`, `status`, `raw`"))
    }
}

/// `reply`, delayed by the entry's `delay_ms` when it has one.
fn delay(entry: &Value, reply: MockReply) -> MockReply {
    match entry.get("delay_ms").and_then(Value::as_u64) {
        Some(ms) => reply.delayed(Duration::from_millis(ms)),
        None => reply,
    }
}

/// An OpenAI-style error body.
pub(super) fn error_body(code: u16, message: &str, error_code: Option<&str>) -> Value {
    let kind = match code {
        400 | 404 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        _ => "server_error",
    };
    json!({ "error": { "message": message, "type": kind, "param": null, "code": error_code } })
}
