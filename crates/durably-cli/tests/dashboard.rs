//! The dashboard's pages and endpoints, served in-process on a prepared SQLite store, driven
//! with reqwest. Approve and Reject deliver the signal a run executing here is waiting on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{
    Counter, agent_dashboard, approval_flow, dashboard, define_mail_queue, start_payout, wait_for_status,
};
use durably_core::RunStatus;
use reqwest::StatusCode;

async fn get(url: String) -> (StatusCode, String) {
    let res = reqwest::get(url).await.unwrap();
    (res.status(), res.text().await.unwrap())
}

async fn post(url: String, body: &str) -> (StatusCode, serde_json::Value) {
    let res = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (res.status(), res.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runs_page_lists_runs_and_filters_by_status() {
    let s = dashboard().await;
    let (code, html) = get(format!("{}/", s.base)).await;
    assert_eq!(code, StatusCode::OK);
    for id in ["order-1", "order-2", "approval-1"] {
        assert!(html.contains(&format!("<a href=\"/runs/{id}\">{id}</a>")), "{id}: {html}");
    }
    for filter in ["running", "waiting", "completed", "failed", "cancelled"] {
        assert!(html.contains(&format!("href=\"/?status={filter}\"")), "{filter}");
    }
    let (_, waiting) = get(format!("{}/?status=waiting", s.base)).await;
    assert!(waiting.contains("approval-1") && !waiting.contains("order-1"), "{waiting}");
    assert!(waiting.contains("waiting on <code>manager-approval</code>"));
    let (code, _) = get(format!("{}/?status=bogus", s.base)).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let (code, json) = get(format!("{}/api/runs?status=failed", s.base)).await;
    assert_eq!(code, StatusCode::OK);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["run_id"], "order-2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_page_shows_a_timeline_and_each_step_value() {
    let s = dashboard().await;
    let (code, html) = get(format!("{}/runs/order-1", s.base)).await;
    assert_eq!(code, StatusCode::OK);
    assert!(html.contains("<svg id=\"timeline\""), "{html}");
    assert_eq!(html.matches("<g class=\"bar\" data-step=").count(), 3);
    for step in ["fetch", "price", "ship"] {
        assert!(html.contains(&format!("data-step=\"{step}\"")), "{step}");
    }
    assert!(
        html.contains("{&quot;id&quot;:42,&quot;items&quot;:[&quot;book&quot;,&quot;pen&quot;]}"),
        "{html}"
    );
    assert!(html.contains("id=\"status\">completed<"), "{html}");
    assert!(!html.contains("id=\"approve\""), "no approval buttons on a completed run");
    let (_, failed) = get(format!("{}/runs/order-2", s.base)).await;
    assert!(failed.contains("error: ") && failed.contains("upstream 503"), "{failed}");
    let (code, missing) = get(format!("{}/runs/nope", s.base)).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(missing.contains("No run with id <code>nope</code>"));
    let (code, _) = get(format!("{}/api/runs/nope", s.base)).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_delivers_the_signal_and_the_run_completes() {
    let s = dashboard().await;
    let published = Counter::default();
    let runner = {
        let (wf, c) = (s.wf.clone(), published.clone());
        tokio::spawn(async move { approval_flow(&wf, "approval-2", c).await })
    };
    wait_for_status(&s.wf, "approval-2", RunStatus::Waiting).await;
    let (_, html) = get(format!("{}/runs/approval-2", s.base)).await;
    assert!(html.contains("<button id=\"approve\">Approve</button>"), "{html}");
    assert!(html.contains("<button id=\"reject\">Reject</button>") && html.contains("id=\"note\""));
    assert!(html.contains("Waiting on signal <code>manager-approval</code>"));
    assert!(html.contains("waiting: manager-approval"), "the timeline shows the wait");

    let (code, body) = post(format!("{}/api/runs/approval-2/approve", s.base), r#"{"note":""}"#).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["delivered"], true);
    let result = tokio::time::timeout(Duration::from_secs(20), runner).await.unwrap().unwrap();
    assert_eq!(result.unwrap(), "published Q3 report draft");
    assert_eq!(published.get(), 2);
    let (_, doc) = get(format!("{}/api/runs/approval-2", s.base)).await;
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(doc["signals"][0]["payload"], serde_json::json!({ "approved": true }));
    // The run is no longer waiting: a second decision is refused.
    let (code, body) = post(format!("{}/api/runs/approval-2/approve", s.base), "").await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap().contains("is completed, not waiting"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_sends_the_note_as_the_reason() {
    let s = dashboard().await;
    let published = Counter::default();
    let runner = {
        let (wf, c) = (s.wf.clone(), published.clone());
        tokio::spawn(async move { approval_flow(&wf, "approval-3", c).await })
    };
    wait_for_status(&s.wf, "approval-3", RunStatus::Waiting).await;
    let (code, body) =
        post(format!("{}/api/runs/approval-3/reject", s.base), r#"{"note":"numbers are wrong"}"#).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let result = tokio::time::timeout(Duration::from_secs(20), runner).await.unwrap().unwrap();
    assert_eq!(result.unwrap(), "held: numbers are wrong");
    assert_eq!(published.get(), 1, "publish did not run");
    let signals = s.wf.store().list_signals("approval-3").await.unwrap();
    assert_eq!(signals[0].payload, r#"{"approved":false,"reason":"numbers are wrong"}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_and_cancel_endpoints_check_their_input() {
    let s = dashboard().await;
    let (code, body) = post(format!("{}/api/runs/approval-1/signals/other", s.base), "{oops").await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("not JSON"));
    let (code, _) = post(format!("{}/api/runs/nope/signals/x", s.base), "1").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, body) = post(format!("{}/api/runs/approval-1/signals/other", s.base), r#"{"k":1}"#).await;
    assert_eq!((code, body["delivered"].as_bool()), (StatusCode::OK, Some(true)));
    let (code, body) = post(format!("{}/api/runs/approval-1/cancel", s.base), "").await;
    assert_eq!((code, body["cancelled"].as_bool()), (StatusCode::OK, Some(true)));
    assert_eq!(s.wf.get_run("approval-1").await.unwrap().unwrap().status, RunStatus::Cancelled);
    let (code, _) = post(format!("{}/api/runs/nope/cancel", s.base), "").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _) = post(format!("{}/api/runs/order-1/reject", s.base), "not json").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_run_shows_its_conversation_tool_calls_and_tokens() {
    let s = agent_dashboard().await;
    let (code, html) = get(format!("{}/runs/trip-1", s.base)).await;
    assert_eq!(code, StatusCode::OK);
    assert!(html.contains("<section id=\"agent\">"), "{html}");
    assert!(html.contains("agent <code>guide</code>") && html.contains("2 model call(s)"), "{html}");
    assert!(html.contains("Weather in Paris and Berlin?"), "the prompt, from the run's output: {html}");
    assert_eq!(html.matches("<li class=\"tool\"").count(), 2, "{html}");
    assert!(html.contains("&quot;city&quot;: &quot;Paris&quot;"), "the arguments: {html}");
    assert!(html.contains("sunny in Paris") && html.contains("raining in Berlin"), "the results: {html}");
    assert!(html.contains("It is sunny in Paris and raining in Berlin."), "the answer: {html}");
    assert!(html.contains("in / ") && html.contains("out tokens"), "tokens per call: {html}");
    assert!(html.contains("no price recorded"), "{html}");
    assert!(html.contains("Executed 1 time(s)") && html.contains("executed fresh in execution 1"), "{html}");
    assert!(html.contains("<ol id=\"events\" data-next=\""), "the event log: {html}");
    assert!(html.contains("<span class=\"ek\">tool_result</span>"), "{html}");
    assert!(!html.contains("sk-test-dashboard"), "no secret on the page");
    // A plain run has no agent view.
    let (_, plain) = get(format!("{}/runs/order-1", s.base)).await;
    assert!(!plain.contains("id=\"agent\""), "{plain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_run_waiting_for_an_approval_shows_it_requested_then_granted() {
    let s = agent_dashboard().await;
    let payout = start_payout(&s.wf, "payout-7").await;
    let (_, html) = get(format!("{}/runs/payout-7", s.base)).await;
    assert!(html.contains("approval requested: waiting"), "{html}");
    assert!(
        html.contains("DE89 3704 0044 0532 0130 00"),
        "the arguments of the call awaiting approval: {html}"
    );
    assert!(html.contains("<button id=\"approve\">Approve</button>"), "{html}");
    let (code, body) = post(format!("{}/api/runs/payout-7/approve", s.base), "{}").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let run = tokio::time::timeout(Duration::from_secs(30), payout.task).await.unwrap().unwrap().unwrap();
    assert!(run.output.starts_with("Done: 250 EUR"), "{}", run.output);
    assert_eq!(payout.transfers.get(), 1);
    let (_, html) = get(format!("{}/runs/payout-7", s.base)).await;
    assert!(html.contains("approval granted") && html.contains("transferred 250 EUR"), "{html}");
    assert!(!html.contains("id=\"approve\""), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sessions_pages_list_sessions_and_a_sessions_turns() {
    let s = agent_dashboard().await;
    let (code, html) = get(format!("{}/sessions", s.base)).await;
    assert_eq!(code, StatusCode::OK);
    assert!(html.contains("<a href=\"/sessions/support/conv-42\">conv-42</a>"), "{html}");
    let (code, html) = get(format!("{}/sessions/support/conv-42", s.base)).await;
    assert_eq!(code, StatusCode::OK);
    for text in ["I am Ann", "Hello Ann.", "Who am I?", "You are Ann.", "2 (2 completed)"] {
        assert!(html.contains(text), "{text}: {html}");
    }
    assert!(html.contains("href=\"/runs/support%3Aconv-42%231\""), "each turn links to its run: {html}");
    let (_, turn) = get(format!("{}/runs/support%3Aconv-42%232", s.base)).await;
    assert!(turn.contains("agent <code>support</code>") && turn.contains("Who am I?"), "{turn}");
    let (code, html) = get(format!("{}/sessions/support/nope", s.base)).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(html.contains("No session <code>nope</code>"), "{html}");
    // An empty store says so.
    let other = dashboard().await;
    let (_, empty) = get(format!("{}/sessions", other.base)).await;
    assert!(empty.contains("No sessions."), "{empty}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queues_page_shows_depth_and_the_limits_the_engine_defines() {
    let s = agent_dashboard().await;
    let (code, html) = get(format!("{}/queues", s.base)).await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        html.contains("<tr data-queue=\"mail\"><td><code>mail</code></td><td>1</td><td>0</td><td>0</td>"),
        "{html}"
    );
    assert!(html.contains("not defined here"), "`durably ui` defines no queue: {html}");
    // Embedded in an application that defines the queue, its limits show.
    define_mail_queue(&s.wf);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hosts = durably_cli::ui::AllowedHosts::new(listener.local_addr().unwrap());
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = durably_cli::ui::router(s.wf.clone(), hosts);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (_, html) = get(format!("{base}/queues")).await;
    assert!(html.contains("<td>concurrency 2</td>"), "{html}");
}
