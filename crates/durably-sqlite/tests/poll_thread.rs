//! The signal poll thread of a SQLite store runs only while some run waits and ends with the
//! store. Its own test binary: it counts the process's poll threads, which other tests would
//! start too.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{raw, temp_db};
use durably_core::store::prelude::*;
use durably_sqlite::SqliteStore;

/// Longer than any test: a wait that returns before it was woken.
const FOREVER: Duration = Duration::from_secs(60);

async fn open_polling(path: &std::path::Path) -> SqliteStore {
    SqliteStore::builder(path).poll_interval(Duration::from_millis(20)).open().await.unwrap()
}

/// How many poll threads this process runs.
fn poll_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "durably-poll")
        .count()
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what} never happened");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poll_thread_runs_only_while_a_run_waits() {
    let db = temp_db();
    let store = Arc::new(open_polling(&db.path).await);
    assert_eq!(poll_threads(), 0, "no thread before anything waits");

    let waiting = tokio::spawn({
        let store = store.clone();
        async move { store.wait_for_signal("r", "go", FOREVER).await }
    });
    until("the poll thread starting", || poll_threads() == 1).await;

    // A delivery by a bare connection (another program) is found by the thread.
    raw(&db.path)
        .execute(
            "INSERT INTO signals (run_id, name, payload, delivered_at_ms) VALUES ('r', 'go', '1', 1)",
            [],
        )
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("woken by the poll").unwrap();
    until("the poll thread ending once nothing waits", || poll_threads() == 0).await;

    // A wait starts it again, and dropping the store stops it.
    let again = tokio::spawn({
        let store = store.clone();
        async move { store.wait_for_signal("r", "later", Duration::from_millis(300)).await }
    });
    until("the poll thread starting again", || poll_threads() == 1).await;
    again.await.unwrap();
    drop(store);
    until("the poll thread ending with the store", || poll_threads() == 0).await;
}
