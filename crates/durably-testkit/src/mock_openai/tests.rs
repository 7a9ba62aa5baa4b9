//! The mock server's behaviour through its public API, over HTTP with reqwest.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;

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
async fn error_replies_carry_codes_and_headers_and_replies_can_be_delayed() {
    let mock = MockOpenAi::start().await;
    mock.push(
        MockReply::status(429, "quota").with_code("insufficient_quota").with_header("retry-after", "2"),
    );
    let fixture = json!([{ "text": "late", "delay_ms": 200 }, { "status": 503, "headers": { "retry-after-ms": "50" } }]);
    mock.push_all(parse_fixture(&fixture).unwrap());
    let resp = reqwest::Client::new()
        .post(format!("{}/chat/completions", mock.base_url()))
        .json(&request(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "2");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        (v["error"]["code"].as_str(), v["error"]["type"].as_str()),
        (Some("insufficient_quota"), Some("rate_limit_error"))
    );
    let started = std::time::Instant::now();
    let (status, body) = post(&mock, request(false)).await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(status, 200);
    assert!(body.contains("late"));
    let resp = reqwest::Client::new()
        .post(format!("{}/chat/completions", mock.base_url()))
        .json(&request(false))
        .send()
        .await
        .unwrap();
    assert_eq!((resp.status().as_u16(), resp.headers()["retry-after-ms"].to_str().unwrap()), (503, "50"));
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
        let r =
            reqwest::Client::new().post(format!("{url}/chat/completions")).json(&request(false)).send().await;
        if r.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the server still answers after drop");
}
