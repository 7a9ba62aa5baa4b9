//! [`MockReply`]: one scripted answer, and how a fixture file spells it.

use std::io;

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

    /// Parses one fixture entry (see the [module docs](crate::mock_openai)).
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
