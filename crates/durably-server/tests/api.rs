//! The API's operations over HTTP: start by run id (idempotent), read and list runs, approve,
//! reject, deliver a signal, cancel, fork, the registered workflows, and the OpenAPI document
//! (served, and the same as `docs/openapi.json`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{BEARER, authed, send, serve, wait_for, with_waiting_run};
use std::time::Duration;

use durably_core::{Queue, RunFilter, RunStatus};
use serde_json::{Value, json};

async fn get(addr: &str, path: &str) -> (u16, Value) {
    let r = send(addr, "GET", path, &[("Authorization", BEARER)], b"").await;
    (r.status, common::json(&r))
}

async fn post(addr: &str, path: &str, body: &str) -> (u16, Value) {
    let r = send(addr, "POST", path, &authed(), body.as_bytes()).await;
    (r.status, common::json(&r))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_is_idempotent_by_run_id_and_the_run_reads_back_with_its_steps() {
    let s = with_waiting_run().await;
    let (code, run) = get(&s.addr, "/api/runs/waiting-1").await;
    assert_eq!(code, 200);
    assert_eq!(run["status"], "waiting");
    assert_eq!(run["workflow"], "approval");
    assert_eq!(run["input"], "Q3");
    assert_eq!(run["waiting_on"], "manager-approval");
    assert_eq!(run["steps"][0]["step_id"], "draft");
    assert_eq!(run["steps"][0]["value"], "draft of Q3", "values are JSON, not JSON text");
    // Starting the same id again returns the run as it is and executes nothing.
    let (code, again) =
        post(&s.addr, "/api/runs", r#"{"workflow":"approval","run_id":"waiting-1","input":"other"}"#).await;
    assert_eq!(code, 200, "{again}");
    assert_eq!((again["status"].as_str(), again["input"].as_str()), (Some("waiting"), Some("Q3")));
    assert_eq!(s.wf.list_steps("waiting-1").await.unwrap().len(), 1);
    // The id belongs to `approval`: another workflow may not take it.
    s.wf.register_fn("other", |_ctx, _: Value| async move { Ok::<_, durably_core::Error>(1) });
    let (code, body) = post(&s.addr, "/api/runs", r#"{"workflow":"other","run_id":"waiting-1"}"#).await;
    assert_eq!(code, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("belongs to workflow `approval`"), "{body}");
    let (_, workflows) = get(&s.addr, "/api/workflows").await;
    assert_eq!(workflows["workflows"], json!(["approval", "other"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_and_reject_deliver_the_agent_approval_payload() {
    let s = with_waiting_run().await;
    let (code, d) = post(&s.addr, "/api/runs/waiting-1/approve", "").await;
    assert_eq!(code, 200, "{d}");
    assert_eq!((d["delivered"].as_bool(), d["signal"].as_str()), (Some(true), Some("manager-approval")));
    wait_for(&s.wf, "waiting-1", RunStatus::Completed).await;
    let (_, run) = get(&s.addr, "/api/runs/waiting-1").await;
    assert_eq!(run["output"], "published draft of Q3");
    let signals = run["signals"].as_array().unwrap();
    let approval = signals.iter().find(|s| s["name"] == "manager-approval").unwrap();
    assert_eq!(approval["payload"], json!({ "approved": true }));
    let (code, body) = post(&s.addr, "/api/runs/waiting-1/approve", "{}").await;
    assert_eq!(code, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("is completed, not waiting"), "{body}");

    let (code, _) =
        post(&s.addr, "/api/runs", r#"{"workflow":"approval","run_id":"waiting-2","input":"Q4"}"#).await;
    assert_eq!(code, 202);
    wait_for(&s.wf, "waiting-2", RunStatus::Waiting).await;
    let (code, _) = post(&s.addr, "/api/runs/waiting-2/reject", r#"{"reason":"numbers are wrong"}"#).await;
    assert_eq!(code, 200);
    wait_for(&s.wf, "waiting-2", RunStatus::Completed).await;
    assert_eq!(s.wf.output::<String>("waiting-2").await.unwrap().unwrap(), "held draft of Q4");
    let decision = s.wf.store().get_signal("waiting-2", "manager-approval").await.unwrap();
    assert_eq!(decision.as_deref(), Some(r#"{"approved":false,"reason":"numbers are wrong"}"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_are_first_write_wins_and_cancel_and_fork_work() {
    let s = with_waiting_run().await;
    let (code, d) = post(&s.addr, "/api/runs/waiting-1/signals/early", r#"{"k":1}"#).await;
    assert_eq!((code, d["delivered"].as_bool()), (200, Some(true)));
    let (code, d) = post(&s.addr, "/api/runs/waiting-1/signals/early", r#"{"k":2}"#).await;
    assert_eq!((code, d["delivered"].as_bool()), (200, Some(false)));
    assert!(d["message"].as_str().unwrap().contains("the first payload stays"));

    // A fork from the first step is a new run that executes again and waits again.
    let (code, fork) =
        post(&s.addr, "/api/runs/waiting-1/fork", r#"{"from_step":"draft","new_run_id":"waiting-1b"}"#).await;
    assert_eq!(code, 201, "{fork}");
    assert_eq!(fork["run_id"], "waiting-1b");
    wait_for(&s.wf, "waiting-1b", RunStatus::Waiting).await;
    let (_, runs) = get(&s.addr, "/api/runs?status=waiting&workflow=approval").await;
    let ids: Vec<&str> =
        runs["runs"].as_array().unwrap().iter().map(|r| r["run_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2, "{runs}");
    assert!(ids.contains(&"waiting-1") && ids.contains(&"waiting-1b"), "{runs}");
    assert!(runs["runs"][0].get("steps").is_none(), "lists leave steps out");
    let (_, one) = get(&s.addr, "/api/runs?limit=1").await;
    assert_eq!(one["runs"].as_array().unwrap().len(), 1);

    let (code, c) = post(&s.addr, "/api/runs/waiting-1/cancel", "").await;
    assert_eq!((code, c["cancelled"].as_bool()), (200, Some(true)));
    wait_for(&s.wf, "waiting-1", RunStatus::Cancelled).await;
    let (code, c) = post(&s.addr, "/api/runs/waiting-1/cancel", "{}").await;
    assert_eq!((code, c["cancelled"].as_bool()), (200, Some(false)));
    let waiting = s.wf.list_runs(&RunFilter::new().status(RunStatus::Waiting)).await.unwrap();
    assert_eq!(waiting.len(), 1, "the fork still waits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_without_agents_are_listed_empty_and_turns_need_a_registered_agent() {
    let s = serve(common::engine()).await;
    let (code, list) = get(&s.addr, "/api/sessions").await;
    assert_eq!((code, list), (200, json!({ "sessions": [] })));
    let (code, body) = post(&s.addr, "/api/sessions/bot/s1/turns", r#"{"message":"hi"}"#).await;
    assert_eq!(code, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("no agent `bot` takes session turns"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engines_own_signals_are_not_listed_and_cannot_be_delivered() {
    let s = with_waiting_run().await;
    // `durably.done` (what `RunHandle::result` waits on) and `durably.child:*` (a child's
    // outcome, what its parent waits on) would forge the engine's reports: refused, nothing stored.
    for name in ["durably.done", "durably.child:waiting-1%2Fx"] {
        let (code, body) = post(&s.addr, &format!("/api/runs/waiting-1/signals/{name}"), "{}").await;
        assert_eq!(code, 400, "{name}: {body}");
        assert!(body["error"].as_str().unwrap().contains("the engine's own"), "{body}");
    }
    let (code, body) = post(&s.addr, "/api/runs/waiting-1/approve", r#"{"signal":"durably.done"}"#).await;
    assert_eq!(code, 400, "{body}");
    assert!(s.wf.store().list_signals("waiting-1").await.unwrap().is_empty());

    // The queued run ends: the engine delivers its `durably.done`, which the run view omits.
    let (code, _) = post(&s.addr, "/api/runs/waiting-1/approve", "").await;
    assert_eq!(code, 200);
    wait_for(&s.wf, "waiting-1", RunStatus::Completed).await;
    // It is delivered just after the final status: wait for it.
    let mut stored = Vec::new();
    for _ in 0..1000 {
        stored = s.wf.store().list_signals("waiting-1").await.unwrap().into_iter().map(|s| s.name).collect();
        if stored.iter().any(|n| n == "durably.done") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(stored.iter().any(|n| n == "durably.done"), "the engine delivered its signal: {stored:?}");
    let (_, run) = get(&s.addr, "/api/runs/waiting-1").await;
    let names: Vec<&str> =
        run["signals"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["manager-approval"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_are_listed_with_their_depth_oldest_run_and_limits() {
    let s = with_waiting_run().await;
    // `batch` has no worker: what is enqueued there waits.
    s.wf.add_queue(
        Queue::new("batch").concurrency(2).per_key(1).rate(5, Duration::from_secs(1)).worker_concurrency(3),
    )
    .unwrap();
    for i in 0..3 {
        s.wf.enqueue("batch", "approval", &format!("batch-{i}"), "Q").await.unwrap();
    }
    let oldest = s.wf.get_run("batch-0").await.unwrap().unwrap().created_at_ms;

    let (code, list) = get(&s.addr, "/api/queues").await;
    assert_eq!(code, 200, "{list}");
    let names: Vec<&str> =
        list["queues"].as_array().unwrap().iter().map(|q| q["queue"].as_str().unwrap()).collect();
    assert_eq!(names, ["batch", "default"]);
    let batch = &list["queues"][0];
    assert_eq!((batch["enqueued"].as_u64(), batch["executing"].as_u64()), (Some(3), Some(0)), "{batch}");
    assert_eq!(batch["oldest_enqueued_at_ms"].as_i64(), Some(oldest), "{batch}");
    assert_eq!(
        batch["limits"],
        json!({ "concurrency": 2, "per_key": 1, "rate_starts": 5, "rate_period_ms": 1000, "per_worker": 3 })
    );
    assert_eq!(list["queues"][1]["enqueued"], 0, "the waiting run left the queue's depth");

    let (code, only) = get(&s.addr, "/api/queues?queue=default").await;
    assert_eq!(code, 200);
    assert_eq!(only["queues"].as_array().unwrap().len(), 1);
    assert_eq!(only["queues"][0]["queue"], "default");
    // A queue neither the store nor the engine knows is listed empty, without limits.
    let (_, unknown) = get(&s.addr, "/api/queues?queue=nowhere").await;
    assert_eq!(unknown["queues"][0]["enqueued"], 0);
    assert!(unknown["queues"][0]["limits"].is_null(), "{unknown}");

    let r = send(&s.addr, "GET", "/api/queues", &[], b"").await;
    assert_eq!(r.status, 401, "the queues are not listed without the token");
}

fn checked_in_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
}

/// `DURABLY_WRITE_OPENAPI=1 cargo test -p durably-server --test api` rewrites the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_openapi_document_is_the_checked_in_one() {
    let generated = durably_server::openapi_json();
    let path = checked_in_path();
    if std::env::var_os("DURABLY_WRITE_OPENAPI").is_some() {
        std::fs::write(&path, format!("{generated}\n")).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in.trim_end() == generated,
        "docs/openapi.json differs from the API's handlers: run `DURABLY_WRITE_OPENAPI=1 cargo test -p \
         durably-server --test api` and commit the file"
    );
    let s = serve(common::engine()).await;
    let r = send(&s.addr, "GET", "/openapi.json", &[("Authorization", BEARER)], b"").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("application/json"));
    assert_eq!(r.body, generated);
    let doc = common::json(&r);
    for path in [
        "/api/runs",
        "/api/runs/{run_id}",
        "/api/runs/{run_id}/signals/{name}",
        "/api/runs/{run_id}/approve",
        "/api/runs/{run_id}/reject",
        "/api/runs/{run_id}/cancel",
        "/api/runs/{run_id}/fork",
        "/api/workflows",
        "/api/sessions",
        "/api/sessions/{agent}/{session}",
        "/api/sessions/{agent}/{session}/turns",
        "/api/queues",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is not documented");
    }
    assert!(
        doc["paths"]["/api/runs"].get("post").is_some() && doc["paths"]["/api/runs"].get("get").is_some()
    );
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert!(doc["components"]["schemas"].get("RunView").is_some());
}
