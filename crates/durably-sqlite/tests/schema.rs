//! The schema version and malformed records: a file from a newer durably is refused with a clear
//! error, and a corrupt row is `Error::Corrupt`, never a panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{raw, start, step, temp_db};
use std::time::Duration;

use durably_core::store::prelude::*;
use durably_core::{
    Claim, Error, LeaseOutcome, NewEvent, NewRun, QueuedRun, RateAcquire, RateCost, RateDecision, RateLimit,
    RunFilter, RunRecord, RunStatus, now_ms,
};
use durably_sqlite::{SCHEMA_VERSION, SqliteStore};

#[tokio::test]
async fn a_file_with_a_newer_schema_version_is_refused_naming_both_versions() {
    let db = temp_db();
    drop(SqliteStore::open(&db.path).await.unwrap());
    let future = SCHEMA_VERSION + 1;
    raw(&db.path).pragma_update(None, "user_version", future).unwrap();
    let err = SqliteStore::open(&db.path).await.unwrap_err();
    match &err {
        Error::Invalid { detail, .. } => {
            assert!(
                detail.contains(&format!("schema version {future}")),
                "names the file's version: {detail}"
            );
            assert!(detail.contains(&format!("up to {SCHEMA_VERSION}")), "names the known version: {detail}");
            assert!(detail.contains("durably.db"), "names the file: {detail}");
        }
        other => panic!("expected Error::Invalid, got {other:?}"),
    }
    let version: i64 = raw(&db.path).pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, future, "a refused file is left untouched");
}

#[tokio::test]
async fn reopening_a_current_file_keeps_its_data_and_version() {
    let db = temp_db();
    let store = SqliteStore::open(&db.path).await.unwrap();
    start(&store, "r").await;
    drop(store);
    let store = SqliteStore::open(&db.path).await.unwrap();
    assert!(store.get_run("r").await.unwrap().is_some());
    let version: i64 = raw(&db.path).pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

/// The tables of schema version 1 exactly as durably-sqlite created them before leases, with a
/// few records.
const SCHEMA_V1_AS_SHIPPED: &str = r#"
CREATE TABLE runs (
    run_id TEXT NOT NULL PRIMARY KEY, workflow TEXT NOT NULL, status TEXT NOT NULL, input TEXT,
    output TEXT, error TEXT, waiting_on TEXT, created_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX runs_by_created ON runs (created_at_ms, run_id);
CREATE INDEX runs_by_status ON runs (status, created_at_ms, run_id);
CREATE INDEX runs_by_workflow ON runs (workflow, created_at_ms, run_id);
CREATE TABLE steps (
    run_id TEXT NOT NULL, step_id TEXT NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL, value TEXT,
    error TEXT, attempts INTEGER NOT NULL, request_hash TEXT, started_at_ms INTEGER NOT NULL,
    finished_at_ms INTEGER, PRIMARY KEY (run_id, step_id)
) STRICT, WITHOUT ROWID;
CREATE TABLE signals (
    run_id TEXT NOT NULL, name TEXT NOT NULL, payload TEXT NOT NULL, delivered_at_ms INTEGER NOT NULL,
    PRIMARY KEY (run_id, name)
) STRICT, WITHOUT ROWID;
INSERT INTO runs VALUES ('old-run', 'wf', 'running', '{"n":1}', NULL, NULL, NULL, 1000, 1000);
INSERT INTO runs VALUES ('old-done', 'wf', 'completed', NULL, '42', NULL, NULL, 900, 1100);
INSERT INTO steps VALUES ('old-run', 'fetch', 'fetch', 'completed', '"v"', NULL, 1, NULL, 1000, 1001);
INSERT INTO signals VALUES ('old-run', 'go', 'true', 1002);
PRAGMA user_version = 1;
"#;

#[tokio::test]
async fn a_version_1_file_is_upgraded_in_place_keeping_every_record() {
    assert_eq!(SCHEMA_VERSION, 5, "this test upgrades version 1 to the current version 5");
    let db = temp_db();
    raw(&db.path).execute_batch(SCHEMA_V1_AS_SHIPPED).unwrap();

    let store = SqliteStore::open(&db.path).await.unwrap();
    let version: i64 = raw(&db.path).pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, 5, "the file is marked as upgraded");

    // Everything written by version 1 is still there.
    let run = store.get_run("old-run").await.unwrap().expect("the v1 run survives");
    assert_eq!((run.status, run.input.as_deref()), (RunStatus::Running, Some(r#"{"n":1}"#)));
    let steps = store.list_steps("old-run").await.unwrap();
    assert_eq!((steps.len(), steps[0].value.as_deref()), (1, Some("\"v\"")));
    assert_eq!(store.get_signal("old-run", "go").await.unwrap().as_deref(), Some("true"));
    assert_eq!(store.get_run("old-done").await.unwrap().unwrap().output.as_deref(), Some("42"));

    // The new table works: leases, and the recoverable runs they hide.
    let ids = |runs: Vec<RunRecord>| runs.into_iter().map(|r| r.run_id).collect::<Vec<_>>();
    assert_eq!(ids(store.recoverable_runs(now_ms(), 10).await.unwrap()), ["old-run"]);
    let ttl = Duration::from_secs(60);
    assert_eq!(store.acquire_lease("old-run", "a", ttl, now_ms()).await.unwrap(), LeaseOutcome::Acquired);
    assert!(matches!(
        store.acquire_lease("old-run", "b", ttl, now_ms()).await.unwrap(),
        LeaseOutcome::HeldBy(lease) if lease.owner == "a"
    ));
    assert!(store.recoverable_runs(now_ms(), 10).await.unwrap().is_empty());
    drop(store);

    // Reopening the upgraded file migrates nothing more and keeps the lease.
    let store = SqliteStore::open(&db.path).await.unwrap();
    assert!(matches!(
        store.acquire_lease("old-run", "b", ttl, now_ms()).await.unwrap(),
        LeaseOutcome::HeldBy(lease) if lease.owner == "a"
    ));
}

/// Schema version 2 as shipped: version 1 plus `leases`, with a lease and a waiting run.
const SCHEMA_V2_AS_SHIPPED: &str = r#"
CREATE TABLE leases (
    run_id TEXT NOT NULL PRIMARY KEY, owner TEXT NOT NULL, expires_at_ms INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
INSERT INTO runs VALUES ('old-wait', 'wf', 'waiting', NULL, NULL, NULL, 'go', 800, 800);
INSERT INTO leases VALUES ('old-run', 'old-owner', 9000000000000);
PRAGMA user_version = 2;
"#;

#[tokio::test]
async fn a_version_2_file_is_upgraded_in_place_with_queues_event_logs_and_worker_versions() {
    assert_eq!(SCHEMA_VERSION, 5, "this test upgrades version 2 to the current version 5");
    let db = temp_db();
    raw(&db.path).execute_batch(SCHEMA_V1_AS_SHIPPED).unwrap();
    raw(&db.path).execute_batch(SCHEMA_V2_AS_SHIPPED).unwrap();

    let store = SqliteStore::open(&db.path).await.unwrap();
    let version: i64 = raw(&db.path).pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, 5, "the file is marked as upgraded");

    // The old records read with the new columns empty, and the old lease still holds.
    let run = store.get_run("old-wait").await.unwrap().expect("the v2 run survives");
    assert_eq!((run.status, run.waiting_on.as_deref()), (RunStatus::Waiting, Some("go")));
    assert_eq!((run.queue, run.parent_id, run.wake_at_ms), (None, None, None));
    assert_eq!((run.claimed_at_ms, run.version), (None, None));
    assert!(matches!(
        store.acquire_lease("old-run", "b", Duration::from_secs(60), now_ms()).await.unwrap(),
        LeaseOutcome::HeldBy(lease) if lease.owner == "old-owner"
    ));
    // A run that is not parked is still recovered.
    let ids = |runs: Vec<RunRecord>| runs.into_iter().map(|r| r.run_id).collect::<Vec<_>>();
    assert_eq!(ids(store.recoverable_runs(now_ms(), 10).await.unwrap()), ["old-wait"]);

    // The new tables and columns work: a queue, a claim, a parked run, an event log.
    let (queued, created) =
        store.enqueue(&QueuedRun::new("new-job", "wf", None, "q", 2_000).parent("old-run")).await.unwrap();
    assert!(created);
    assert_eq!((queued.status, queued.queue.as_deref()), (RunStatus::Enqueued, Some("q")));
    let claim = Claim::new("q", "w", Duration::from_secs(60), now_ms(), 10).version("v1");
    let claimed = store.claim_runs(&claim).await.unwrap();
    assert_eq!(claimed[0].version.as_deref(), Some("v1"), "the claim binds the run to its version");
    assert!(claimed[0].claimed_at_ms.is_some(), "the claim records its time");
    assert_eq!(ids(claimed), ["new-job"]);
    assert!(store.park_run("new-job", "w", "go", None, now_ms()).await.unwrap());
    assert_eq!(store.queue_stats("q", now_ms()).await.unwrap().parked, 1);
    assert_eq!(ids(store.list_runs(&RunFilter::new().parent("old-run")).await.unwrap()), ["new-job"]);
    assert_eq!(store.append_events("old-run", &[NewEvent::new("text", "{}", 1)], u64::MAX).await.unwrap(), 0);
    drop(store);

    // Reopening migrates nothing more and keeps what the new version wrote.
    let store = SqliteStore::open(&db.path).await.unwrap();
    let job = store.get_run("new-job").await.unwrap().unwrap();
    assert_eq!((job.wake_at_ms, job.version.as_deref()), (Some(i64::MAX), Some("v1")));
    assert_eq!(store.read_events("old-run", 0, 10).await.unwrap().len(), 1);
}

/// Schema version 3 as shipped: version 2 plus queues and event logs, with a queued run, a
/// claim time and an event.
const SCHEMA_V3_AS_SHIPPED: &str = r#"
ALTER TABLE runs ADD COLUMN queue TEXT;
ALTER TABLE runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN queue_key TEXT;
ALTER TABLE runs ADD COLUMN parent_id TEXT;
ALTER TABLE runs ADD COLUMN wake_at_ms INTEGER;
CREATE INDEX runs_runnable ON runs (queue, status, priority DESC, created_at_ms, run_id)
    WHERE queue IS NOT NULL;
CREATE INDEX runs_by_parent ON runs (parent_id, created_at_ms, run_id) WHERE parent_id IS NOT NULL;
CREATE INDEX runs_by_wake ON runs (wake_at_ms) WHERE wake_at_ms IS NOT NULL;
CREATE TABLE queue_claims (
    queue TEXT NOT NULL, claimed_at_ms INTEGER NOT NULL, claims INTEGER NOT NULL,
    PRIMARY KEY (queue, claimed_at_ms)
) STRICT, WITHOUT ROWID;
CREATE TABLE events (
    run_id TEXT NOT NULL, event_offset INTEGER NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL,
    at_ms INTEGER NOT NULL, PRIMARY KEY (run_id, event_offset)
) STRICT, WITHOUT ROWID;
INSERT INTO runs (run_id, workflow, status, created_at_ms, updated_at_ms, queue, priority)
    VALUES ('old-job', 'wf', 'enqueued', 700, 700, 'q', 0);
INSERT INTO queue_claims VALUES ('q', 600, 1);
INSERT INTO events VALUES ('old-run', 0, 'text', '{}', 1003);
PRAGMA user_version = 3;
"#;

#[tokio::test]
async fn a_version_3_file_is_upgraded_in_place_with_rate_limits() {
    assert_eq!(SCHEMA_VERSION, 5, "this test upgrades version 3 to the current version 5");
    let db = temp_db();
    for schema in [SCHEMA_V1_AS_SHIPPED, SCHEMA_V2_AS_SHIPPED, SCHEMA_V3_AS_SHIPPED] {
        raw(&db.path).execute_batch(schema).unwrap();
    }

    let store = SqliteStore::open(&db.path).await.unwrap();
    let version: i64 = raw(&db.path).pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, 5, "the file is marked as upgraded");

    // The queued run and the event log of version 3 are still there.
    let ids = |runs: Vec<RunRecord>| runs.into_iter().map(|r| r.run_id).collect::<Vec<_>>();
    let claim = Claim::new("q", "w", Duration::from_secs(60), now_ms(), 10);
    assert_eq!(ids(store.claim_runs(&claim).await.unwrap()), ["old-job"]);
    assert_eq!(store.read_events("old-run", 0, 10).await.unwrap().len(), 1);

    // The new tables work: a grant, a refusal, a settle, a block.
    let limit = RateLimit::per(Duration::from_secs(60)).requests(1).tokens(100);
    let acquire = |id: &str| RateAcquire::new("model:m", id, limit, RateCost::new(1, 10), now_ms());
    assert_eq!(store.acquire_rate(&acquire("a")).await.unwrap(), RateDecision::Granted);
    assert!(matches!(store.acquire_rate(&acquire("b")).await.unwrap(), RateDecision::RetryAt { .. }));
    store.settle_rate("model:m", "a", RateCost::new(1, 20), now_ms()).await.unwrap();
    store.block_rate("model:other", Duration::from_secs(60), now_ms()).await.unwrap();
    drop(store);

    // Reopening migrates nothing more and keeps the log and the block.
    let store = SqliteStore::open(&db.path).await.unwrap();
    assert!(matches!(store.acquire_rate(&acquire("b")).await.unwrap(), RateDecision::RetryAt { .. }));
    let other = RateAcquire::new("model:other", "x", limit, RateCost::new(1, 10), now_ms());
    assert!(matches!(store.acquire_rate(&other).await.unwrap(), RateDecision::RetryAt { .. }));
}

#[tokio::test]
async fn two_stores_opening_a_version_1_file_at_once_upgrade_it_once() {
    let db = temp_db();
    raw(&db.path).execute_batch(SCHEMA_V1_AS_SHIPPED).unwrap();
    let (a, b) = tokio::join!(SqliteStore::open(&db.path), SqliteStore::open(&db.path));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        a.acquire_lease("old-run", "a", Duration::from_secs(60), now_ms()).await.unwrap(),
        LeaseOutcome::Acquired
    );
    assert!(matches!(
        b.acquire_lease("old-run", "b", Duration::from_secs(60), now_ms()).await.unwrap(),
        LeaseOutcome::HeldBy(lease) if lease.owner == "a"
    ));
    assert_eq!(b.list_steps("old-run").await.unwrap().len(), 1);
}

fn assert_corrupt(err: &Error, run_id: &str, step_id: Option<&str>, needle: &str) {
    match err {
        Error::Corrupt { run_id: r, step_id: s, detail } => {
            assert_eq!(r, run_id);
            assert_eq!(s.as_deref(), step_id);
            assert!(detail.contains(needle), "detail `{detail}` should mention `{needle}`");
        }
        other => panic!("expected Error::Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn a_run_with_an_unknown_status_is_corrupt_everywhere_it_is_read() {
    let db = temp_db();
    let store = SqliteStore::open(&db.path).await.unwrap();
    start(&store, "bad").await;
    raw(&db.path).execute("UPDATE runs SET status = 'exploded' WHERE run_id = 'bad'", []).unwrap();
    assert_corrupt(&store.get_run("bad").await.unwrap_err(), "bad", None, "exploded");
    assert_corrupt(&store.list_runs(&RunFilter::new()).await.unwrap_err(), "bad", None, "exploded");
    let reopened = store.open_run(NewRun::new("bad", "wf", None, 2_000)).await.unwrap_err();
    assert_corrupt(&reopened, "bad", None, "exploded");
}

#[tokio::test]
async fn a_step_with_an_unknown_status_or_negative_attempts_is_corrupt() {
    let db = temp_db();
    let store = SqliteStore::open(&db.path).await.unwrap();
    start(&store, "r").await;
    store.save_step("r", &step("odd-status", 1)).await.unwrap();
    raw(&db.path).execute("UPDATE steps SET status = 'half-done' WHERE step_id = 'odd-status'", []).unwrap();
    assert_corrupt(&store.list_steps("r").await.unwrap_err(), "r", Some("odd-status"), "half-done");

    start(&store, "s").await;
    store.save_step("s", &step("negative", 1)).await.unwrap();
    raw(&db.path).execute("UPDATE steps SET attempts = -1 WHERE step_id = 'negative'", []).unwrap();
    assert_corrupt(&store.list_steps("s").await.unwrap_err(), "s", Some("negative"), "attempts is -1");
    let history = store.open_run(NewRun::new("s", "wf", None, 2_000)).await.unwrap_err();
    assert_corrupt(&history, "s", Some("negative"), "attempts");
}

#[tokio::test]
async fn text_that_is_not_utf8_is_corrupt() {
    let db = temp_db();
    let store = SqliteStore::open(&db.path).await.unwrap();
    start(&store, "r").await;
    store.save_step("r", &step("bytes", 1)).await.unwrap();
    raw(&db.path)
        .execute("UPDATE steps SET value = CAST(x'ff00fe' AS TEXT) WHERE step_id = 'bytes'", [])
        .unwrap();
    assert_corrupt(&store.list_steps("r").await.unwrap_err(), "r", Some("bytes"), "UTF-8");
    store.deliver_signal("r", &durably_core::SignalRecord::new("sig", "1", 1)).await.unwrap();
    raw(&db.path).execute("UPDATE signals SET payload = CAST(x'ff' AS TEXT)", []).unwrap();
    assert_corrupt(&store.get_signal("r", "sig").await.unwrap_err(), "r", None, "sig");
}
