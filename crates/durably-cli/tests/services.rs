//! Smoke tests of the `durably` binary against the Redis and PostgreSQL stores: runs prepared
//! with the durably API are listed, shown, exported, signalled and cancelled through the CLI.
//!
//! URLs come from `DURABLY_REDIS_URL` / `DURABLY_POSTGRES_URL` (defaults: the local servers).
//! A server that does not answer fails the test naming it, or, with `DURABLY_SKIP_SERVICES=1`,
//! skips it with the reason. Run ids are unique per test run, so the shared servers' other data
//! is untouched (no purge here).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use assert_cmd::Command;
use common::{Counter, approval_flow, pipeline, store_or_skip, wait_for_status};
use durably_core::store::prelude::*;
use durably_core::{Error, RunStatus, Workflow};

fn ok(store_url: &str, args: &[&str]) -> String {
    let out = Command::cargo_bin("durably")
        .unwrap()
        .env_remove("DURABLY_STORE")
        .args(["--store", store_url])
        .args(args)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
    assert!(out.status.success(), "durably {args:?} failed: {stderr}{stdout}");
    stdout
}

async fn smoke(kind: &str, url: &str, store: Arc<dyn Store>) {
    let tag = format!("cli-{kind}-{}-{}", std::process::id(), durably_core::now_ms());
    let wf = Workflow::builder("shop").shared_store(store).default_retries(0).build();
    let (done, waiting, cancelled) = (format!("{tag}-done"), format!("{tag}-wait"), format!("{tag}-cancel"));
    pipeline(&wf, &done, Counter::default()).await.unwrap();

    let listed = ok(url, &["runs", "--json", "--workflow", "shop", "--since", "1h", "--limit", "100000"]);
    let runs: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    assert!(runs.iter().any(|r| r["run_id"] == done.as_str() && r["status"] == "completed"), "{listed}");
    let shown = ok(url, &["show", &done]);
    assert!(
        shown.contains("status    completed") && shown.contains("\"order 42 shipped for 19.5\""),
        "{shown}"
    );
    let doc: serde_json::Value = serde_json::from_str(&ok(url, &["export", &done])).unwrap();
    assert_eq!(doc["steps"].as_array().unwrap().len(), 3);

    // A run waiting in this process resumes on a signal from the CLI process.
    let published = Counter::default();
    let runner = {
        let (wf, c, id) = (wf.clone(), published.clone(), waiting.clone());
        tokio::spawn(async move { approval_flow(&wf, &id, c).await })
    };
    wait_for_status(&wf, &waiting, RunStatus::Waiting).await;
    assert!(ok(url, &["pending"]).lines().any(|l| l.starts_with(&waiting) && l.contains("manager-approval")));
    ok(url, &["signal", &waiting, "manager-approval", r#"{"approved":true}"#]);
    let result = tokio::time::timeout(Duration::from_secs(20), runner).await.unwrap().unwrap();
    assert_eq!(result.unwrap(), "published Q3 report draft");

    // A run waiting in this process stops when the CLI cancels it.
    let runner = {
        let (wf, id) = (wf.clone(), cancelled.clone());
        tokio::spawn(async move { approval_flow(&wf, &id, Counter::default()).await })
    };
    wait_for_status(&wf, &cancelled, RunStatus::Waiting).await;
    assert!(ok(url, &["cancel", &cancelled]).contains("cancelled run"));
    let result = tokio::time::timeout(Duration::from_secs(20), runner).await.unwrap().unwrap();
    assert!(matches!(result, Err(Error::Cancelled { .. })), "{result:?}");

    // Fork re-runs from a step.
    let fork = format!("{tag}-fork");
    ok(url, &["fork", &done, "--from", "ship", "--id", &fork]);
    let executed = Counter::default();
    pipeline(&wf, &fork, executed.clone()).await.unwrap();
    assert_eq!(executed.get(), 1, "only ship ran again");

    for id in [&done, &waiting, &cancelled, &fork] {
        assert!(wf.store().delete_run(id).await.unwrap(), "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_works_against_redis() {
    if let Some((url, store)) = store_or_skip("redis", "DURABLY_REDIS_URL", "redis://127.0.0.1:6379").await {
        smoke("redis", &url, store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_works_against_postgres() {
    if let Some((url, store)) =
        store_or_skip("postgres", "DURABLY_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test").await
    {
        smoke("postgres", &url, store).await;
    }
}
