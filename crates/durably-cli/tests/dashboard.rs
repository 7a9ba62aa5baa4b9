//! The dashboard's pages and endpoints, served in-process on a prepared SQLite store, driven
//! with reqwest. Approve and Reject deliver the signal a run executing here is waiting on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Counter, approval_flow, dashboard, wait_for_status};
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
