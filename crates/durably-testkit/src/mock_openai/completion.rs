//! The chat-completion body of a text or tool-call reply: ids, model, message and usage counts.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::Shared;

fn approx_tokens(chars: usize) -> u64 {
    u64::try_from(chars.div_ceil(4).max(1)).unwrap_or(u64::MAX)
}

pub(super) fn completion(
    shared: &Shared,
    request: &Value,
    text: Option<&str>,
    calls: &[(String, Value)],
) -> Value {
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
