//! A completion as server-sent events, in the pieces OpenAI streams: role, text deltas, tool
//! calls announced then their arguments in pieces, the finish reason, optionally the usage.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

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

pub(super) fn stream_response(completion: &Value, include_usage: bool) -> Response {
    let mut events: Vec<Result<Bytes, Infallible>> = stream_chunks(completion, include_usage)
        .into_iter()
        .map(|c| Ok(Bytes::from(format!("data: {c}\n\n"))))
        .collect();
    events.push(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
    let body = Body::from_stream(futures::stream::iter(events));
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], body)
        .into_response()
}
