//! Resumable event streams on real stores (rule 27 of docs/design.md): a client follows a run's
//! events from a `durably serve` process over SQLite (a file), Redis and PostgreSQL; that
//! process is killed with SIGKILL mid-stream; the client reconnects to a new `durably serve`
//! process with `Last-Event-ID` and gets exactly the events after the last one it saw, then
//! live ones, none lost and none twice. The run executes in this test's process meanwhile.
//!
//! Redis and PostgreSQL come from `DURABLY_REDIS_URL` / `DURABLY_POSTGRES_URL` (defaults: the
//! local servers); one that does not answer fails the test naming it, or, with
//! `DURABLY_SKIP_SERVICES=1`, skips it with the reason. Run ids are unique per test run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use durably_core::store::prelude::*;
use durably_core::{Error, RunStatus, Workflow, signal, step};
use durably_testkit::raw_http::SseClient;

const TOKEN: &str = "streams-test-token-0123456789";

/// A `durably serve` process, SIGKILLed when dropped if the test did not kill it before.
struct Served {
    child: Child,
    addr: String,
}

impl Served {
    fn start(store_url: &str) -> Served {
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("durably"))
            .env_remove("DURABLY_STORE")
            .env("DURABLY_TOKEN", TOKEN)
            .args(["--store", store_url, "serve", "--addr", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("durably API on http://")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("unexpected first line of durably serve: {line:?}"))
            .to_owned();
        Served { child, addr }
    }

    /// SIGKILL: the process dies at once, its connections with it.
    fn kill(mut self) {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "durably serve was killed, not ended: {status}");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Opens the run's stream at `path` with the server's token, resuming after `last` when given.
async fn connect(addr: &str, path: &str, last: Option<u64>) -> SseClient {
    let bearer = format!("Bearer {TOKEN}");
    let last = last.map(|id| id.to_string());
    let mut headers = vec![("Authorization", bearer.as_str())];
    if let Some(last) = &last {
        headers.push(("Last-Event-ID", last.as_str()));
    }
    let (status, client) = SseClient::connect(addr, path, &headers, Duration::from_secs(30)).await.unwrap();
    assert_eq!(status, 200, "GET {path}");
    client
}

/// Waits (bounded) until the run waits on `signal`.
async fn wait_on(wf: &Workflow, run_id: &str, name: &str) {
    for _ in 0..2000 {
        let run = wf.get_run(run_id).await.unwrap();
        if run
            .as_ref()
            .is_some_and(|r| r.status == RunStatus::Waiting && r.waiting_on.as_deref() == Some(name))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("run {run_id} never waited on {name}: {:?}", wf.get_run(run_id).await.unwrap());
}

async fn a_killed_server_is_resumed_by_another_with_no_event_lost_or_repeated(
    kind: &str,
    store_url: &str,
    store: Arc<dyn Store>,
) {
    let run_id = format!("sse-kill-{kind}-{}-{}", std::process::id(), durably_core::now_ms());
    let wf = Workflow::builder("streams").shared_store(store.clone()).default_retries(0).build();
    let runner = {
        let (wf, run_id) = (wf.clone(), run_id.clone());
        tokio::spawn(async move {
            wf.run(&run_id, |_| async move {
                step("draft", || async { Ok::<_, Error>(1u32) }).await?;
                let first: String = signal("go").await?;
                step("review", || async { Ok::<_, Error>(2u32) }).await?;
                let second: String = signal("go-again").await?;
                step("publish", || async { Ok::<_, Error>(3u32) }).await?;
                Ok::<_, Error>(format!("{first} {second}"))
            })
            .await
        })
    };
    wait_on(&wf, &run_id, "go").await;
    let path = format!("/api/runs/{run_id}/events");

    let first = Served::start(store_url);
    let mut client = connect(&first.addr, &path, None).await;
    let mut seen = Vec::new();
    client.until("waiting", &mut seen).await.unwrap();
    // The server process dies mid-stream; the run goes on meanwhile.
    first.kill();
    assert_eq!(client.next().await.unwrap(), None, "the stream of a killed server ended");
    assert!(wf.complete(&run_id, "go", "yes").await.unwrap());
    wait_on(&wf, &run_id, "go-again").await;

    // Another server process on the same store: the client resumes after the last event it
    // saw, gets the events written while no server ran, then the live ones.
    let second = Served::start(store_url);
    let last = seen.last().unwrap().id;
    let mut client = connect(&second.addr, &path, last).await;
    client.until("waiting", &mut seen).await.unwrap();
    assert!(wf.complete(&run_id, "go-again", "again").await.unwrap());
    while let Some(event) = client.next().await.unwrap() {
        seen.push(event);
    }
    assert_eq!(runner.await.unwrap().unwrap(), "yes again");

    let stored = store.read_events(&run_id, 0, 1000).await.unwrap();
    let ids: Vec<Option<u64>> = seen.iter().map(|e| e.id).collect();
    let all: Vec<Option<u64>> = (0..stored.len() as u64).map(Some).collect();
    assert_eq!(ids, all, "{kind}: an event was lost or repeated: {seen:?}");
    for (got, want) in seen.iter().zip(&stored) {
        assert_eq!(
            (got.kind.as_str(), got.data.as_str()),
            (want.kind.as_str(), want.data.as_str()),
            "{kind}"
        );
    }
    let kinds: Vec<&str> = seen.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["started", "step", "waiting", "signal", "step", "waiting", "signal", "step", "completed"],
        "{kind}"
    );
    drop(second);
    let _ = store.delete_run(&run_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_killed_server_is_resumed_by_another_with_no_event_lost_or_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("streams.db");
    let store = common::sqlite(&db).await;
    let url = format!("sqlite:{}", db.display());
    a_killed_server_is_resumed_by_another_with_no_event_lost_or_repeated("sqlite", &url, store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_killed_server_is_resumed_by_another_with_no_event_lost_or_repeated() {
    if let Some((url, store)) =
        common::store_or_skip("redis", "DURABLY_REDIS_URL", "redis://127.0.0.1:6379").await
    {
        a_killed_server_is_resumed_by_another_with_no_event_lost_or_repeated("redis", &url, store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_killed_server_is_resumed_by_another_with_no_event_lost_or_repeated() {
    if let Some((url, store)) =
        common::store_or_skip("postgres", "DURABLY_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
            .await
    {
        a_killed_server_is_resumed_by_another_with_no_event_lost_or_repeated("postgres", &url, store).await;
    }
}
