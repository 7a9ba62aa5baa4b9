//! Signals across two SQLite store handles on one file (rule 10 of docs/design.md): nothing is
//! shared in memory, so a delivery reaches the waiter through the store's poll. The
//! store-generic signal and sleep behaviours are in the engine suite (`durably_testkit::engine`),
//! run by `tests/engine.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use durably::{Error, RunStatus};

/// Two engines on one SQLite file, each with its own store handle, share nothing in memory: the
/// waiter notices a delivery from the other through the store's poll interval, as it would from
/// another process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_signal_from_another_engine_wakes_the_waiter_within_the_poll_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let poll = Duration::from_millis(50);
    let store_a = durably::SqliteStore::builder(&path).poll_interval(poll).open().await.unwrap();
    let store_b = durably::SqliteStore::builder(&path).poll_interval(poll).open().await.unwrap();
    let waiter = durably::Workflow::builder("x").store(store_a).build();
    let sender = durably::Workflow::builder("x").store(store_b).build();
    let woke_at = std::sync::Arc::new(std::sync::Mutex::new(None));
    let runner = {
        let woke_at = woke_at.clone();
        tokio::spawn(async move {
            waiter
                .run("cross", |_| async move {
                    let v: u32 = durably::signal("go").await?;
                    *woke_at.lock().unwrap() = Some(std::time::Instant::now());
                    Ok::<_, Error>(v)
                })
                .await
        })
    };
    for _ in 0..500 {
        if sender.get_run("cross").await.unwrap().is_some_and(|r| r.status == RunStatus::Waiting) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let sent = std::time::Instant::now();
    assert!(sender.complete("cross", "go", &9u32).await.unwrap());
    let v = tokio::time::timeout(Duration::from_secs(5), runner).await.unwrap().unwrap().unwrap();
    assert_eq!(v, 9);
    let woke = woke_at.lock().unwrap().expect("the body resumed");
    let latency = woke.duration_since(sent);
    assert!(
        latency < poll + Duration::from_millis(200),
        "woke after {latency:?} with a {poll:?} poll interval"
    );
}
