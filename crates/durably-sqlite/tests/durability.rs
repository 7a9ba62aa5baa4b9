//! What survives: everything written before the store is closed is there when the file is
//! opened again, including writes still queued to the writer thread when the store was dropped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{WriteLock, new_run, step, temp_db};
use durably_core::store::prelude::*;
use durably_core::{NewRun, RunFilter, RunStatus, RunUpdate, SignalRecord};
use durably_sqlite::{Durability, SqliteStore};

#[tokio::test]
async fn data_survives_closing_and_reopening_the_file() {
    for durability in [Durability::Full, Durability::Normal] {
        let db = temp_db();
        let store = SqliteStore::builder(&db.path).durability(durability).open().await.unwrap();
        store.open_run(NewRun::new("kept", "wf", Some(r#"{"in":1}"#.into()), 1_000)).await.unwrap();
        store.save_step("kept", &step("a", 1_100)).await.unwrap();
        store.save_step("kept", &step("b", 1_200)).await.unwrap();
        store.deliver_signal("kept", &SignalRecord::new("go", "true", 1_300)).await.unwrap();
        store.update_run("kept", &RunUpdate::new(RunStatus::Completed, 1_400).output("42")).await.unwrap();
        let before = store.get_run("kept").await.unwrap().unwrap();
        drop(store);

        let store = SqliteStore::builder(&db.path).durability(durability).open().await.unwrap();
        assert_eq!(store.get_run("kept").await.unwrap(), Some(before), "{durability:?}");
        assert_eq!(store.list_steps("kept").await.unwrap(), vec![step("a", 1_100), step("b", 1_200)]);
        assert_eq!(store.get_signal("kept", "go").await.unwrap().as_deref(), Some("true"));
        assert_eq!(store.list_runs(&RunFilter::new()).await.unwrap().len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_store_with_writes_queued_loses_none() {
    const WRITES: usize = 500;
    let db = temp_db();
    let store = SqliteStore::open(&db.path).await.unwrap();
    store.open_run(new_run("r")).await.unwrap();
    let committed_before = store.stats().writes;

    // Another connection holds the write lock, so nothing can commit while the writes queue up.
    let lock = WriteLock::take(&db.path);
    for i in 0..WRITES {
        // Poll each save once (it is queued to the writer thread), then stop waiting for it:
        // the caller is gone, the write must still happen.
        let record = step(&format!("s{i:03}"), i as i64);
        let save = store.save_step("r", &record);
        assert!(tokio::time::timeout(Duration::ZERO, save).await.is_err(), "nothing can commit yet");
    }
    assert_eq!(store.stats().writes, committed_before, "every write is still queued");

    // Dropping the store waits for the queue; release the lock while it waits.
    let dropper = std::thread::spawn(move || drop(store));
    std::thread::sleep(Duration::from_millis(100));
    assert!(!dropper.is_finished(), "drop must wait for the queued writes");
    lock.release();
    dropper.join().unwrap();

    let store = SqliteStore::open(&db.path).await.unwrap();
    assert_eq!(store.list_steps("r").await.unwrap().len(), WRITES, "every queued write landed");
}

#[tokio::test]
async fn a_shared_store_keeps_working_until_the_last_handle_is_dropped() {
    let db = temp_db();
    let store = Arc::new(SqliteStore::open(&db.path).await.unwrap());
    let other = Arc::clone(&store);
    drop(store);
    other.open_run(new_run("still")).await.unwrap();
    assert!(other.get_run("still").await.unwrap().is_some());
}
