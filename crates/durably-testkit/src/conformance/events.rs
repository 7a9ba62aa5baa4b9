//! The behaviours of [`Events`](durably_core::store::Events): each run's log with dense offsets
//! that concurrent appends never share, read from an offset, verbatim data, wake-ups, deletion
//! with the run, and the retention limit (the newest events kept, offsets never given twice, a
//! read below the oldest kept starting there: rule 27 of docs/design.md).

// A test suite reports failure by panicking: the workspace's library lints do not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use durably_core::{EventRecord, NewEvent, RunStatus, RunUpdate, Store};

use super::support::*;

async fn append<S: Store>(store: &S, run_id: &str, events: &[NewEvent]) -> u64 {
    keeping(store, run_id, events, u64::MAX).await
}

/// Appends, keeping the newest `keep` events of the log.
async fn keeping<S: Store>(store: &S, run_id: &str, events: &[NewEvent], keep: u64) -> u64 {
    store
        .append_events(run_id, events, keep)
        .await
        .unwrap_or_else(|e| panic!("append_events(`{run_id}`, keep {keep}) failed: {e}"))
}

fn offsets(events: &[EventRecord]) -> Vec<u64> {
    events.iter().map(|e| e.offset).collect()
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
    assert_eq!(offsets(&read(&*store, "run-1", 4, 3).await), [4, 5, 6]);
    assert_eq!(offsets(&read(&*store, "run-1", 8, 100).await), [8, 9]);
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

/// Each append keeps the newest `keep` events; the offsets of the others do not change, and an
/// offset is never given twice, however many were dropped (a batch longer than `keep` too).
pub async fn append_events_keeps_the_newest_and_never_gives_an_offset_twice<S: Store>(store: Arc<S>) {
    let batch: Vec<NewEvent> = (0..10).map(event).collect();
    assert_eq!(keeping(&*store, "run-1", &batch, 4).await, 0);
    let kept = read(&*store, "run-1", 0, 100).await;
    assert_eq!(offsets(&kept), [6, 7, 8, 9]);
    for e in &kept {
        assert_eq!(
            e,
            &EventRecord::new(e.offset, event(e.offset)),
            "event {} must be the one appended",
            e.offset
        );
    }
    assert_eq!(keeping(&*store, "run-1", &[event(10), event(11), event(12)], 4).await, 10);
    assert_eq!(offsets(&read(&*store, "run-1", 0, 100).await), [9, 10, 11, 12]);
    // A batch longer than what is kept: only its newest events stay, its offsets are used.
    let long: Vec<NewEvent> = (13..19).map(event).collect();
    assert_eq!(keeping(&*store, "run-1", &long, 2).await, 13);
    assert_eq!(
        read(&*store, "run-1", 0, 100).await,
        vec![EventRecord::new(17, event(17)), EventRecord::new(18, event(18))]
    );
    // A keep of 0 counts as 1: the newest event stays.
    assert_eq!(keeping(&*store, "run-1", &[event(19)], 0).await, 19);
    assert_eq!(offsets(&read(&*store, "run-1", 0, 100).await), [19]);
    // Keeping more again: nothing dropped comes back, and the log grows from where it was.
    assert_eq!(append(&*store, "run-1", &[event(20)]).await, 20);
    assert_eq!(offsets(&read(&*store, "run-1", 0, 100).await), [19, 20]);
    // Other runs' logs are untouched.
    append(&*store, "run-2", &[event(0), event(1)]).await;
    keeping(&*store, "run-1", &[event(21)], 1).await;
    assert_eq!(offsets(&read(&*store, "run-2", 0, 100).await), [0, 1]);
}

/// A read from an offset that was dropped starts at the oldest event kept (so that a reader
/// sees the gap from the first offset); reads from kept offsets are as before.
pub async fn a_read_below_the_oldest_event_kept_starts_there<S: Store>(store: Arc<S>) {
    let batch: Vec<NewEvent> = (0..20).map(event).collect();
    keeping(&*store, "run-1", &batch, 5).await;
    for from in [0, 1, 14] {
        assert_eq!(offsets(&read(&*store, "run-1", from, 2).await), [15, 16], "read from {from}");
    }
    assert_eq!(offsets(&read(&*store, "run-1", 15, 100).await), [15, 16, 17, 18, 19]);
    assert_eq!(offsets(&read(&*store, "run-1", 18, 100).await), [18, 19]);
    assert!(read(&*store, "run-1", 20, 100).await.is_empty());
    assert!(read(&*store, "run-1", u64::MAX, 100).await.is_empty());
    assert!(read(&*store, "run-1", 0, 0).await.is_empty());
}

/// Concurrent appends that drop old events never share or skip an offset; once they are done,
/// an append keeps exactly the newest events.
pub async fn concurrent_appends_under_retention_stay_dense<S: Store>(store: Arc<S>) {
    let mut tasks = Vec::new();
    for i in 0..16u64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            keeping(&*store, "run-1", &[event(i * 2), event(i * 2 + 1)], 5).await
        }));
    }
    let mut firsts = BTreeSet::new();
    for task in tasks {
        firsts.insert(task.await.expect("an append task panicked"));
    }
    assert_eq!(firsts, (0..16).map(|i| i * 2).collect::<BTreeSet<u64>>(), "offsets shared or skipped");
    assert_eq!(keeping(&*store, "run-1", &[event(32)], 5).await, 32);
    assert_eq!(offsets(&read(&*store, "run-1", 0, 100).await), [28, 29, 30, 31, 32]);
}

/// `wait_for_events` from an offset that was dropped returns (the read that follows shows the
/// gap), and an append that drops events wakes a waiter past the end.
pub async fn wait_for_events_below_the_oldest_kept_returns_and_appends_that_drop_wake<S: Store>(
    store: Arc<S>,
) {
    let batch: Vec<NewEvent> = (0..5).map(event).collect();
    keeping(&*store, "run-1", &batch, 2).await;
    tokio::time::timeout(
        Duration::from_secs(30),
        store.wait_for_events("run-1", 1, Duration::from_secs(120)),
    )
    .await
    .expect("wait_for_events below the oldest kept did not return");
    let waiter = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.wait_for_events("run-1", 5, Duration::from_secs(120)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    keeping(&*store, "run-1", &[event(5), event(6), event(7)], 2).await;
    tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("wait_for_events did not return after an append that dropped events")
        .expect("the waiting task panicked");
    assert_eq!(offsets(&read(&*store, "run-1", 5, 100).await), [6, 7]);
}

/// Deleting a run whose log dropped events deletes what the store kept of it too: a new run
/// of that id starts again at offset 0.
pub async fn delete_run_of_a_trimmed_log_starts_again_at_zero<S: Store>(store: Arc<S>) {
    open(&*store, new_run("run-1", None, 1_000)).await;
    let batch: Vec<NewEvent> = (0..6).map(event).collect();
    keeping(&*store, "run-1", &batch, 2).await;
    assert!(store.delete_run("run-1").await.unwrap());
    assert!(read(&*store, "run-1", 0, 100).await.is_empty());
    assert_eq!(append(&*store, "run-1", &[event(0)]).await, 0);
    assert_eq!(read(&*store, "run-1", 0, 100).await, vec![EventRecord::new(0, event(0))]);
}

/// `save_step_with_events`: a store that writes a checkpoint with events (`Some`) saves the
/// step and gives the events the next offsets of the log, under its retention; one that cannot
/// (`None`) has written neither.
pub async fn a_checkpoint_with_events_writes_both_or_neither<S: Store>(store: Arc<S>) {
    open(&*store, new_run("run-1", None, 1_000)).await;
    append(&*store, "run-1", &[event(0), event(1)]).await;
    let first = step("s1", 1_001);
    match store.save_step_with_events("run-1", &first, &[event(2), event(3)], u64::MAX).await {
        None => {
            assert!(list_steps(&*store, "run-1").await.is_empty(), "`None`, yet the step was saved");
            assert_eq!(
                offsets(&read(&*store, "run-1", 0, 100).await),
                [0, 1],
                "`None`, yet events were appended"
            );
            return;
        }
        Some(written) => written.unwrap_or_else(|e| panic!("save_step_with_events failed: {e}")),
    }
    assert_eq!(list_steps(&*store, "run-1").await, std::slice::from_ref(&first));
    let all = read(&*store, "run-1", 0, 100).await;
    assert_eq!(offsets(&all), [0, 1, 2, 3]);
    assert_eq!(all[3], EventRecord::new(3, event(3)), "the events round-trip");
    // The retention holds, and a step saved again is replaced.
    let mut again = first.clone();
    again.value = Some("\"again\"".to_owned());
    let written = store.save_step_with_events("run-1", &again, &[event(4), event(5)], 3).await;
    written.expect("the store wrote a checkpoint with events before").unwrap();
    assert_eq!(list_steps(&*store, "run-1").await, [again]);
    assert_eq!(offsets(&read(&*store, "run-1", 0, 100).await), [3, 4, 5]);
    assert_eq!(append(&*store, "run-1", &[event(6)]).await, 6, "no offset is given twice");
}

/// `update_run_unless_cancelled_with_events`: a store that writes a status with events
/// (`Some`) appends the events at the next offsets under the log's retention and applies the
/// update; on a cancelled run the events are appended and the status stays `cancelled`
/// (`false`); an unknown run is `RunNotFound`. One that cannot (`None`) has written neither.
pub async fn a_status_with_events_writes_both_or_neither<S: Store>(store: Arc<S>) {
    open(&*store, new_run("run-1", None, 1_000)).await;
    append(&*store, "run-1", &[event(0)]).await;
    let done = RunUpdate::new(RunStatus::Completed, 1_001).output("7");
    match store.update_run_unless_cancelled_with_events("run-1", &done, &[event(1), event(2)], u64::MAX).await
    {
        None => {
            assert_eq!(
                expect_run(&*store, "run-1").await.status,
                RunStatus::Running,
                "`None`, yet the status changed"
            );
            assert_eq!(
                offsets(&read(&*store, "run-1", 0, 100).await),
                [0],
                "`None`, yet events were appended"
            );
            return;
        }
        Some(applied) => assert!(applied.unwrap_or_else(|e| panic!("the write failed: {e}")), "not applied"),
    }
    let run = expect_run(&*store, "run-1").await;
    assert_eq!((run.status, run.output.as_deref()), (RunStatus::Completed, Some("7")));
    let all = read(&*store, "run-1", 0, 100).await;
    assert_eq!(offsets(&all), [0, 1, 2]);
    assert_eq!(all[2], EventRecord::new(2, event(2)), "the events round-trip");

    // A cancelled run keeps its status; the events land, under the retention.
    open(&*store, new_run("run-2", None, 2_000)).await;
    update(&*store, "run-2", RunUpdate::new(RunStatus::Cancelled, 2_001)).await;
    let failed = RunUpdate::new(RunStatus::Failed, 2_002).error("boom");
    let written = store
        .update_run_unless_cancelled_with_events("run-2", &failed, &[event(0), event(1), event(2)], 2)
        .await;
    assert!(
        !written.expect("the store wrote a status with events before").unwrap(),
        "a cancelled run was updated"
    );
    assert_eq!(expect_run(&*store, "run-2").await.status, RunStatus::Cancelled);
    assert_eq!(offsets(&read(&*store, "run-2", 0, 100).await), [1, 2]);

    let unknown = store.update_run_unless_cancelled_with_events("nobody", &done, &[event(0)], u64::MAX).await;
    match unknown.expect("the store wrote a status with events before") {
        Err(durably_core::Error::RunNotFound { run_id }) => assert_eq!(run_id, "nobody"),
        other => panic!("an unknown run must be RunNotFound, got {other:?}"),
    }
    assert!(read(&*store, "nobody", 0, 100).await.is_empty(), "events of an unknown run were written");
}

/// `end_run`: a store that ends a run in one write (`Some`) appends the events, applies the
/// update unless the run is cancelled, and releases the caller's lease either way (never
/// another owner's); an unknown run is `RunNotFound`. One that cannot (`None`) has written
/// nothing and released nothing.
pub async fn end_run_writes_the_status_and_releases_the_lease<S: Store>(store: Arc<S>) {
    open(&*store, new_run("run-1", None, 1_000)).await;
    assert_eq!(acquire(&*store, "run-1", "owner-a", LONG_TTL).await, durably_core::LeaseOutcome::Acquired);
    let done = RunUpdate::new(RunStatus::Completed, 1_001).output("7");
    match store.end_run("run-1", &done, &[event(0), event(1)], u64::MAX, "owner-a").await {
        None => {
            assert_eq!(
                expect_run(&*store, "run-1").await.status,
                RunStatus::Running,
                "`None`, yet the status changed"
            );
            assert!(read(&*store, "run-1", 0, 100).await.is_empty(), "`None`, yet events were appended");
            let lease = held_by(acquire(&*store, "run-1", "owner-b", LONG_TTL).await, "`None`");
            assert_eq!(lease.owner, "owner-a", "`None`, yet the lease was released");
            return;
        }
        Some(applied) => assert!(applied.unwrap_or_else(|e| panic!("the write failed: {e}")), "not applied"),
    }
    let run = expect_run(&*store, "run-1").await;
    assert_eq!((run.status, run.output.as_deref()), (RunStatus::Completed, Some("7")));
    assert_eq!(offsets(&read(&*store, "run-1", 0, 100).await), [0, 1]);
    assert_eq!(
        acquire(&*store, "run-1", "owner-b", LONG_TTL).await,
        durably_core::LeaseOutcome::Acquired,
        "the lease must be released with the status"
    );

    // A cancelled run keeps its status, and the lease is released all the same; no events.
    open(&*store, new_run("run-2", None, 2_000)).await;
    update(&*store, "run-2", RunUpdate::new(RunStatus::Cancelled, 2_001)).await;
    assert_eq!(acquire(&*store, "run-2", "owner-a", LONG_TTL).await, durably_core::LeaseOutcome::Acquired);
    let failed = RunUpdate::new(RunStatus::Failed, 2_002).error("boom");
    let written = store.end_run("run-2", &failed, &[], u64::MAX, "owner-a").await;
    assert!(!written.expect("the store ended a run before").unwrap(), "a cancelled run was updated");
    assert_eq!(expect_run(&*store, "run-2").await.status, RunStatus::Cancelled);
    assert_eq!(acquire(&*store, "run-2", "owner-b", LONG_TTL).await, durably_core::LeaseOutcome::Acquired);

    // Another owner's lease stays.
    open(&*store, new_run("run-3", None, 3_000)).await;
    assert_eq!(acquire(&*store, "run-3", "owner-b", LONG_TTL).await, durably_core::LeaseOutcome::Acquired);
    let written = store.end_run("run-3", &done, &[], u64::MAX, "owner-a").await;
    assert!(written.expect("the store ended a run before").unwrap());
    let lease = held_by(acquire(&*store, "run-3", "owner-c", LONG_TTL).await, "another owner's lease");
    assert_eq!(lease.owner, "owner-b", "end_run released another owner's lease");

    let unknown = store.end_run("nobody", &done, &[event(0)], u64::MAX, "owner-a").await;
    match unknown.expect("the store ended a run before") {
        Err(durably_core::Error::RunNotFound { run_id }) => assert_eq!(run_id, "nobody"),
        other => panic!("an unknown run must be RunNotFound, got {other:?}"),
    }
}
