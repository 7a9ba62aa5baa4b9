//! The behaviours of [`Events`](durably_core::store::Events): each run's log with dense offsets
//! that concurrent appends never share, read from an offset, verbatim data, wake-ups, deletion
//! with the run.

// A test suite reports failure by panicking: the workspace's library lints do not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use durably_core::{EventRecord, NewEvent, Store};

use super::support::*;

async fn append<S: Store>(store: &S, run_id: &str, events: &[NewEvent]) -> u64 {
    store
        .append_events(run_id, events)
        .await
        .unwrap_or_else(|e| panic!("append_events(`{run_id}`) failed: {e}"))
}

async fn read<S: Store>(store: &S, run_id: &str, from: u64, limit: usize) -> Vec<EventRecord> {
    store
        .read_events(run_id, from, limit)
        .await
        .unwrap_or_else(|e| panic!("read_events(`{run_id}`, {from}) failed: {e}"))
}

fn event(i: u64) -> NewEvent {
    NewEvent::new("text", format!("{{\"chunk\":{i}}}"), 1_000 + i as i64)
}

/// Appends get offsets 0, 1, 2… in order, and each append returns the offset of its first.
pub async fn append_events_assigns_dense_offsets_from_zero<S: Store>(store: Arc<S>) {
    assert_eq!(append(&*store, "run-1", &[event(0), event(1)]).await, 0);
    assert_eq!(append(&*store, "run-1", &[event(2)]).await, 2);
    assert_eq!(append(&*store, "run-1", &[event(3), event(4), event(5)]).await, 3);
    let all = read(&*store, "run-1", 0, 100).await;
    let offsets: Vec<u64> = all.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, [0, 1, 2, 3, 4, 5]);
    for e in &all {
        assert_eq!(e, &EventRecord::new(e.offset, event(e.offset)), "event {} must round-trip", e.offset);
    }
}

/// A read starts at its offset and stops at its limit; past the end it is empty.
pub async fn read_events_starts_at_the_offset_and_keeps_the_limit<S: Store>(store: Arc<S>) {
    let batch: Vec<NewEvent> = (0..10).map(event).collect();
    append(&*store, "run-1", &batch).await;
    let offsets = |events: Vec<EventRecord>| events.iter().map(|e| e.offset).collect::<Vec<_>>();
    assert_eq!(offsets(read(&*store, "run-1", 4, 3).await), [4, 5, 6]);
    assert_eq!(offsets(read(&*store, "run-1", 8, 100).await), [8, 9]);
    assert!(read(&*store, "run-1", 10, 100).await.is_empty());
    assert!(read(&*store, "run-1", u64::MAX, 100).await.is_empty());
    assert!(read(&*store, "no-such-run", 0, 100).await.is_empty());
}

/// Logs of different runs are separate, each from offset 0.
pub async fn event_logs_of_different_runs_are_separate<S: Store>(store: Arc<S>) {
    append(&*store, "run-a", &[event(0), event(1)]).await;
    assert_eq!(append(&*store, "run-b", &[event(7)]).await, 0);
    assert_eq!(read(&*store, "run-a", 0, 100).await.len(), 2);
    let b = read(&*store, "run-b", 0, 100).await;
    assert_eq!(b, vec![EventRecord::new(0, event(7))]);
}

/// Concurrent appends to one run never share or skip an offset.
pub async fn concurrent_appends_never_share_an_offset<S: Store>(store: Arc<S>) {
    let mut tasks = Vec::new();
    for i in 0..16u64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(
            async move { append(&*store, "run-1", &[event(i * 2), event(i * 2 + 1)]).await },
        ));
    }
    let mut firsts = BTreeSet::new();
    for task in tasks {
        firsts.insert(task.await.expect("an append task panicked"));
    }
    assert_eq!(firsts.len(), 16, "two appends got the same first offset: {firsts:?}");
    let all = read(&*store, "run-1", 0, 1_000).await;
    let offsets: Vec<u64> = all.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, (0..32).collect::<Vec<_>>());
    // Each append's two events are adjacent, in order.
    for first in firsts {
        let (a, b) = (&all[first as usize], &all[first as usize + 1]);
        assert_eq!(b.at_ms, a.at_ms + 1, "an append's events must stay together and in order");
    }
}

/// Event kinds and data are kept byte for byte.
pub async fn event_texts_round_trip_verbatim<S: Store>(store: Arc<S>) {
    let events: Vec<NewEvent> =
        awkward_json().into_iter().map(|data| NewEvent::new("tool_call", data, 5)).collect();
    append(&*store, "run-1", &events).await;
    let read_back = read(&*store, "run-1", 0, 100).await;
    assert_eq!(read_back.len(), events.len());
    for (got, sent) in read_back.iter().zip(&events) {
        assert_eq!(got.data, sent.data, "event data must be verbatim: {}", show(&sent.data));
        assert_eq!(got.kind, "tool_call");
    }
}

/// `wait_for_events` returns when an event at or after its offset is appended.
pub async fn wait_for_events_returns_when_an_event_is_appended<S: Store>(store: Arc<S>) {
    append(&*store, "run-1", &[event(0)]).await;
    let waiter = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.wait_for_events("run-1", 1, Duration::from_secs(120)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    append(&*store, "run-1", &[event(1)]).await;
    tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("wait_for_events did not return after an append")
        .expect("the waiting task panicked");
}

/// Deleting a run deletes its event log: a new run of that id starts again at offset 0.
pub async fn delete_run_removes_its_events<S: Store>(store: Arc<S>) {
    open(&*store, new_run("run-1", None, 1_000)).await;
    append(&*store, "run-1", &[event(0), event(1)]).await;
    append(&*store, "run-2", &[event(0)]).await;
    assert!(store.delete_run("run-1").await.unwrap());
    assert!(read(&*store, "run-1", 0, 100).await.is_empty());
    assert_eq!(append(&*store, "run-1", &[event(5)]).await, 0);
    assert_eq!(read(&*store, "run-2", 0, 100).await.len(), 1, "other runs keep their events");
}
