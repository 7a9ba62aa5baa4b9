//! The server's handlers: record each request, take its reply from the script or the responder,
//! wait the configured latency, and answer as JSON, as a stream, or as an OpenAI-style error.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::completion::completion;
use super::stream::stream_response;
use super::{MockReply, Shared, lock};

pub(super) async fn not_found() -> Response {
    error_response(404, "mock OpenAI server: only POST /v1/chat/completions is served")
}

pub(super) async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
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
        lock(&shared.arrivals).push(std::time::Instant::now());
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
    let mut reply = reply;
    while let MockReply::Delayed { delay, reply: inner } = reply {
        tokio::time::sleep(delay).await;
        reply = *inner;
    }
    let completion = match reply {
        MockReply::Status { code, message } => return error_response(code, &message),
        MockReply::HttpError { code, body, headers } => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = json_response(status, &body);
            for (name, value) in headers {
                if let (Ok(name), Ok(value)) = (
                    axum::http::HeaderName::try_from(name.as_str()),
                    axum::http::HeaderValue::try_from(value.as_str()),
                ) {
                    response.headers_mut().append(name, value);
                }
            }
            return response;
        }
        MockReply::Delayed { .. } => return error_response(500, "mock OpenAI server: nested delay"),
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
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, &super::reply::error_body(code, message, None))
}

fn error_response_typed(code: u16, message: &str, kind: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({
        "error": { "message": message, "type": kind, "param": null, "code": null }
    });
    json_response(status, &body)
}
