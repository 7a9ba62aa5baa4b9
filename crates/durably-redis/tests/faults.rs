//! Bad input and faults: a server that refuses connections, a malformed URL, a value over
//! Redis's 512 MiB limit, connections killed mid-run, and a server killed and restarted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

mod common;

use std::time::{Duration, Instant};

use common::{Cleanup, PrivateRedis, free_port, fresh_prefix, raw, server_or_skip};
use durably_core::store::prelude::*;
use durably_core::{Error, NewRun, RunStatus, SignalRecord, StepRecord, StepStatus, Workflow};
use durably_redis::RedisStore;

#[tokio::test]
async fn connection_refused_names_the_url_without_the_password() {
    let url = format!("redis://:hunter2@127.0.0.1:{}/0", free_port());
    let started = Instant::now();
    let err = RedisStore::connect(url).await.expect_err("nothing listens on that port");
    let text = err.to_string();
    assert!(matches!(err, Error::Store { op: "connect", run_id: None, .. }), "{err:?}");
    assert!(text.contains("cannot connect to Redis at redis://:***@127.0.0.1:"), "{text}");
    assert!(!text.contains("hunter2"), "the password leaked: {text}");
    println!("refused after {:?}: {text}", started.elapsed());
}

#[tokio::test]
async fn a_malformed_url_is_invalid() {
    let err = RedisStore::connect("http://:pw@localhost:6379").await.expect_err("not a Redis URL");
    assert!(matches!(err, Error::Invalid { what: "Redis URL", .. }), "{err:?}");
    assert!(!err.to_string().contains(":pw@"), "the password leaked: {err}");
    let err = RedisStore::builder("redis://127.0.0.1").prefix("").connect().await.expect_err("empty prefix");
    assert!(matches!(err, Error::Invalid { what: "Redis key prefix", .. }), "{err:?}");
}

#[tokio::test]
async fn a_value_over_512_mib_is_refused_naming_run_and_step_and_nothing_is_written() {
    let Some(url) = server_or_skip() else { return };
    let prefix = fresh_prefix();
    let _cleanup = Cleanup { url: url.clone(), prefix: prefix.clone() };
    let store = RedisStore::builder(url.as_str()).prefix(prefix.as_str()).connect().await.unwrap();
    store.open_run(NewRun::new("big-run", "wf", None, 1_000)).await.unwrap();
    let huge = format!("\"{}\"", "x".repeat(512 * 1024 * 1024));
    let mut step = StepRecord::new("huge-step", "task", StepStatus::Completed, 1_000);
    step.value = Some(huge.clone());
    let err = store.save_step("big-run", &step).await.expect_err("over the limit");
    let text = err.to_string();
    assert!(
        matches!(&err, Error::Store { op: "save_step", run_id: Some(r), .. } if r == "big-run"),
        "{err:?}"
    );
    assert!(text.contains("step `huge-step`") && text.contains("512 MiB"), "{text}");
    assert!(store.list_steps("big-run").await.unwrap().is_empty());

    let err = store.deliver_signal("big-run", &SignalRecord::new("sig", huge.clone(), 1)).await.unwrap_err();
    assert!(err.to_string().contains("signal `sig`") && err.run_id() == Some("big-run"), "{err}");
    assert_eq!(store.get_signal("big-run", "sig").await.unwrap(), None);
    let err = store.open_run(NewRun::new("big-input", "wf", Some(huge), 1)).await.unwrap_err();
    assert!(err.to_string().contains("input") && err.run_id() == Some("big-input"), "{err}");
    assert_eq!(store.get_run("big-input").await.unwrap(), None);
}

#[tokio::test]
async fn a_value_over_the_servers_own_limit_fails_naming_run_and_step_then_the_store_goes_on() {
    // A server configured below the default 512 MiB: its refusal must be as clear as ours.
    let Some(server) = PrivateRedis::start_with(&["--proto-max-bulk-len", "1mb"]) else { return };
    let store = RedisStore::builder(server.url()).prefix("p").connect().await.unwrap();
    store.open_run(NewRun::new("r", "wf", None, 1)).await.unwrap();
    let mut big = StepRecord::new("big-step", "task", StepStatus::Completed, 1);
    big.value = Some(format!("\"{}\"", "x".repeat(2 * 1024 * 1024)));
    let err = store.save_step("r", &big).await.expect_err("over the server's limit");
    let text = err.to_string();
    assert!(matches!(&err, Error::Store { op: "save_step", run_id: Some(r), .. } if r == "r"), "{err:?}");
    assert!(text.contains("step `big-step`") && text.contains("proto-max-bulk-len"), "{text}");
    println!("server refusal: {text}");
    // The server closed the connection; the store reconnects and smaller values go through.
    let small = StepRecord::new("small-step", "task", StepStatus::Completed, 2);
    eventually(|| store.save_step("r", &small)).await;
    let steps: Vec<String> = store.list_steps("r").await.unwrap().into_iter().map(|s| s.step_id).collect();
    assert_eq!(steps, ["small-step"]);
}

#[tokio::test]
async fn a_frozen_server_times_calls_out_and_they_go_through_once_it_resumes() {
    let Some(server) = PrivateRedis::start() else { return };
    let store = RedisStore::builder(server.url())
        .prefix("p")
        .response_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    store.open_run(NewRun::new("r", "wf", None, 1)).await.unwrap();
    server.signal("STOP");
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        store.save_step("r", &StepRecord::new("s", "t", StepStatus::Completed, 2)),
    )
    .await
    .expect("the call must time out by itself, not hang");
    server.signal("CONT");
    let err = result.expect_err("the server is frozen");
    assert!(matches!(&err, Error::Store { op: "save_step", run_id: Some(r), .. } if r == "r"), "{err:?}");
    println!("frozen server: {err} after {:?}", started.elapsed());
    let later = StepRecord::new("s2", "t", StepStatus::Completed, 3);
    eventually(|| store.save_step("r", &later)).await;
    let steps = store.list_steps("r").await.unwrap();
    // The timed-out write may or may not have been carried out; the later one was.
    assert!(steps.iter().any(|s| s.step_id == "s2"), "{steps:?}");
}

/// Retries `op` until it succeeds, for at most 30 s.
async fn eventually<T, F: std::future::Future<Output = durably_core::Result<T>>>(
    mut op: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match op().await {
            Ok(value) => return value,
            Err(e) if Instant::now() < deadline => {
                println!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the store did not recover within 30 s: {e}"),
        }
    }
}

async fn task_step(name: &'static str, value: u32) -> durably_core::Result<u32> {
    durably_core::step(name, move || async move { Ok::<_, std::io::Error>(value) }).retries(0).await
}

#[tokio::test]
async fn killed_connections_reconnect_and_lose_nothing() {
    let Some(server) = PrivateRedis::start() else { return };
    let url = server.url();
    let store = RedisStore::builder(url.as_str()).prefix("p").connect().await.unwrap();
    let wf = Workflow::builder("app").store(store).build();
    let total: u32 = wf
        .run("before", |_| async { Ok::<_, Error>(task_step("a", 1).await? + task_step("b", 2).await?) })
        .await
        .unwrap();
    assert_eq!(total, 3);
    // Drop every client connection, as a network blip or a proxy restart would.
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query(&mut raw(&url))
        .unwrap();
    assert!(killed >= 1);
    // The first call may see the dropped connection; the manager reconnects.
    let after = eventually(|| wf.store().get_run("before")).await.expect("the run survived");
    assert_eq!((after.status, after.output.as_deref()), (RunStatus::Completed, Some("3")));
    assert_eq!(wf.store().list_steps("before").await.unwrap().len(), 2, "both checkpoints survived");
    let again: u32 = wf.run("after", |_| async { task_step("c", 5).await }).await.unwrap();
    assert_eq!(again, 5);
}

#[tokio::test]
async fn a_restarted_server_gives_errors_then_the_store_recovers() {
    let Some(mut server) = PrivateRedis::start() else { return };
    let url = server.url();
    let store = RedisStore::builder(url.as_str()).prefix("p").connect().await.unwrap();
    let wf = Workflow::builder("app").store(store).build();
    let first: u32 = wf.run("first", |_| async { task_step("a", 1).await }).await.unwrap();
    assert_eq!(first, 1);

    server.kill();
    let err = wf
        .store()
        .save_step("first", &StepRecord::new("x", "task", StepStatus::Completed, 1))
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::Store { op: "save_step", run_id: Some(r), .. } if r == "first"), "{err:?}");
    println!("while the server is down: {err}");
    let err = wf.run("during", |_| async { task_step("b", 2).await }).await.unwrap_err();
    assert_eq!(err.run_id(), Some("during"), "{err}");

    server.restart();
    let second: u32 = eventually(|| wf.run("second", |_| async { task_step("c", 3).await })).await;
    assert_eq!(second, 3);
    assert_eq!(wf.store().get_run("second").await.unwrap().unwrap().status, RunStatus::Completed);
    // This server runs without persistence (`--save ""`, no AOF): what it held before the
    // restart is gone, as the crate docs say. With AOF it would still be there.
    assert_eq!(wf.store().get_run("first").await.unwrap(), None);
}
