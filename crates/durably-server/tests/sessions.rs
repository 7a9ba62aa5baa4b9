//! A session turn over HTTP whose tool call needs an approval: the turn's request waits, the
//! session lists the turn as pending, another request approves it by the turn's run id, and the
//! first request then answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{BEARER, authed, send};
use durably_agent::openai::{OpenAiAgent, Tool};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize, JsonSchema)]
struct Refund {
    /// The order.
    order: String,
}

/// A path segment: a turn's run id holds `:` and `#`.
fn seg(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_waiting_for_an_approval_is_pending_and_answers_once_approved() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("refund", json!({ "order": "A-17" }))]));
    mock.push(MockReply::text("Refunded order A-17."));
    let wf = common::engine();
    let tool = Tool::new("refund", "Refund an order", |r: Refund| async move {
        Ok::<_, std::io::Error>(format!("refunded {}", r.order))
    })
    .requires_approval();
    let agent = OpenAiAgent::builder(&wf)
        .name("support")
        .model("gpt-4o-mini")
        .api_base(mock.base_url())
        .api_key("sk-test-sessions")
        .tool(tool)
        .build();
    let s = common::serve_with(wf, move |c| {
        c.session_agent("support", move |session, turn_id, message| {
            let agent = agent.clone();
            async move { agent.session(session).send_with_id(turn_id, message).await.map(|r| r.output) }
        })
    })
    .await;

    let addr = s.addr.clone();
    let turn = tokio::spawn(async move {
        send(
            &addr,
            "POST",
            "/api/sessions/support/c1/turns",
            &authed(),
            br#"{"message":"Refund A-17","turn_id":"r1"}"#,
        )
        .await
    });
    let mut pending = None;
    for _ in 0..1000 {
        let r = send(&s.addr, "GET", "/api/sessions/support/c1", &[("Authorization", BEARER)], b"").await;
        if r.status == 200 {
            let doc = common::json(&r);
            if let Some(p) = doc["pending"].as_array().and_then(|p| p.first()) {
                pending = Some(p.clone());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pending = pending.expect("the turn never became pending");
    assert_eq!(pending["run_id"], "support:c1#1");
    assert!(pending["waiting_on"].as_str().unwrap().starts_with("approve:"), "{pending}");
    assert!(!turn.is_finished(), "the turn's request waits for the approval");

    let path = format!("/api/runs/{}/approve", seg("support:c1#1"));
    let r = send(&s.addr, "POST", &path, &authed(), b"{}").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let reply = tokio::time::timeout(Duration::from_secs(30), turn).await.unwrap().unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = common::json(&reply);
    assert_eq!(
        (reply["output"].as_str(), reply["turn_id"].as_str()),
        (Some("Refunded order A-17."), Some("r1"))
    );
    let r = send(&s.addr, "GET", "/api/sessions/support/c1", &[("Authorization", BEARER)], b"").await;
    let doc = common::json(&r);
    assert_eq!(doc["pending"], json!([]));
    assert_eq!(doc["messages"][1], json!({ "role": "assistant", "content": "Refunded order A-17." }));
    assert_eq!(mock.requests(), 2);
}
