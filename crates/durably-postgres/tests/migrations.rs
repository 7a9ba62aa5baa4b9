//! The versioned schema: created on first use, re-running is a no-op that keeps data,
//! concurrent first starts migrate once, a schema from a future version is refused and left
//! alone; plus what connecting refuses (bad schema names, an unreachable server).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::{SchemaGuard, fresh, raw, start, step, unique, url};
use durably_core::store::prelude::*;
use durably_core::{
    Claim, Error, LeaseOutcome, NewEvent, QueuedRun, RateAcquire, RateCost, RateDecision, RateLimit,
    RunFilter, RunStatus, now_ms,
};
use durably_postgres::{PostgresStore, SCHEMA_VERSION};

async fn version(schema: &str) -> Vec<i32> {
    raw()
        .await
        .query(&format!("SELECT version FROM \"{schema}\".durably_schema_version"), &[])
        .await
        .expect("read the schema version")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn tables(schema: &str) -> Vec<String> {
    raw()
        .await
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn first_connect_creates_the_schema_its_tables_and_indexes_at_the_current_version() {
    let Some((builder, guard)) = fresh().await else { return };
    assert!(tables(&guard.0).await.is_empty(), "the schema must not exist before");
    let _store = builder.connect().await.unwrap();
    assert_eq!(
        tables(&guard.0).await,
        [
            "durably_schema_version",
            "event_heads",
            "events",
            "leases",
            "queue_claims",
            "rate_grants",
            "rate_keys",
            "runs",
            "signals",
            "steps"
        ]
    );
    assert_eq!(version(&guard.0).await, [SCHEMA_VERSION]);
    let indexes: Vec<String> = raw()
        .await
        .query("SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 ORDER BY 1", &[&guard.0])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for wanted in [
        "runs_by_created",
        "runs_by_status",
        "runs_by_workflow",
        "runs_runnable",
        "runs_by_parent",
        "runs_by_wake",
        "runs_claim_order",
        "rate_grants_by_time",
    ] {
        assert!(indexes.iter().any(|i| i == wanted), "index {wanted} missing: {indexes:?}");
    }
}

#[tokio::test]
async fn connecting_again_keeps_the_data_and_the_version() {
    let Some((builder, guard)) = fresh().await else { return };
    let store = builder.clone().connect().await.unwrap();
    start(&store, "kept").await;
    store.save_step("kept", &step("s", 1_000)).await.unwrap();
    drop(store);
    let again = builder.connect().await.unwrap();
    assert!(again.get_run("kept").await.unwrap().is_some(), "the run survives a second connect");
    assert_eq!(again.list_steps("kept").await.unwrap(), vec![step("s", 1_000)]);
    assert_eq!(version(&guard.0).await, [SCHEMA_VERSION], "one version row, unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_connects_all_succeed_and_migrate_once() {
    let Some((builder, guard)) = fresh().await else { return };
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let builder = builder.clone().pool_size(1);
        tasks.push(tokio::spawn(async move { builder.connect().await }));
    }
    let mut stores = Vec::new();
    for task in tasks {
        stores.push(Arc::new(task.await.unwrap().expect("every concurrent connect succeeds")));
    }
    assert_eq!(version(&guard.0).await, [SCHEMA_VERSION]);
    // Every store sees the same tables: a run written by one is read by all.
    start(&*stores[0], "shared").await;
    for store in &stores {
        assert_eq!(store.list_runs(&RunFilter::new()).await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn a_schema_from_a_future_version_is_refused_naming_both_versions_and_left_alone() {
    let Some((builder, guard)) = fresh().await else { return };
    let store = builder.clone().connect().await.unwrap();
    start(&store, "old-run").await;
    drop(store);
    let future = SCHEMA_VERSION + 1;
    raw()
        .await
        .execute(&format!("UPDATE \"{}\".durably_schema_version SET version = $1", guard.0), &[&future])
        .await
        .unwrap();
    let err = builder.connect().await.unwrap_err();
    match &err {
        Error::Invalid { detail, .. } => {
            assert!(detail.contains(&format!("version {future}")), "names the schema's version: {detail}");
            assert!(detail.contains(&format!("up to {SCHEMA_VERSION}")), "names the known version: {detail}");
            assert!(detail.contains(&guard.0), "names the schema: {detail}");
        }
        other => panic!("expected Error::Invalid, got {other:?}"),
    }
    assert_eq!(version(&guard.0).await, [future], "a refused schema keeps its version");
    let runs: i64 = raw()
        .await
        .query_one(&format!("SELECT count(*) FROM \"{}\".runs", guard.0), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(runs, 1, "and its data");
}

#[tokio::test]
async fn json_values_are_kept_verbatim_and_queryable_as_jsonb() {
    let Some((builder, guard)) = fresh().await else { return };
    let store = builder.connect().await.unwrap();
    start(&store, "r").await;
    let mut paid = step("pay", 1_000);
    paid.value = Some(r#"{"status" : "paid",  "amount":12}"#.to_owned());
    store.save_step("r", &paid).await.unwrap();
    let mut odd = step("odd", 1_001);
    odd.value = Some(r#""nul \u0000 inside""#.to_owned());
    store.save_step("r", &odd).await.unwrap();
    // The engine reads back the exact text.
    let steps = store.list_steps("r").await.unwrap();
    assert_eq!(steps[0].value, paid.value);
    assert_eq!(steps[1].value, odd.value);
    // The jsonb column answers queries; it is NULL where jsonb cannot hold the value.
    let client = raw().await;
    let found: Vec<String> = client
        .query(&format!("SELECT step_id FROM \"{}\".steps WHERE value->>'status' = 'paid'", guard.0), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(found, ["pay"]);
    let null: bool = client
        .query_one(&format!("SELECT value IS NULL FROM \"{}\".steps WHERE step_id = 'odd'", guard.0), &[])
        .await
        .unwrap()
        .get(0);
    assert!(null, "a value jsonb refuses is NULL in the jsonb column");
}

#[tokio::test]
async fn bad_schema_names_and_pool_sizes_are_refused() {
    if common::try_raw().await.is_none() {
        return;
    }
    for schema in [String::new(), "x".repeat(64), "nul\0byte".to_owned()] {
        let err = PostgresStore::builder(url()).schema(&schema).connect().await.unwrap_err();
        assert!(matches!(err, Error::Invalid { what: "PostgreSQL schema name", .. }), "{schema:?}: {err:?}");
    }
    let err = PostgresStore::builder(url()).pool_size(0).connect().await.unwrap_err();
    assert!(matches!(err, Error::Invalid { what: "pool size", .. }), "{err:?}");
}

#[tokio::test]
async fn a_schema_name_with_quotes_and_spaces_works() {
    if common::try_raw().await.is_none() {
        return;
    }
    let schema = format!("{} \"q\"; x", unique("odd"));
    let guard = SchemaGuard(schema.clone());
    let store = PostgresStore::builder(url()).schema(&schema).pool_size(1).connect().await.unwrap();
    start(&store, "r").await;
    assert!(store.get_run("r").await.unwrap().is_some());
    assert_eq!(tables(&guard.0).await.len(), 10);
    // Rate limits too: their statements carry the odd name.
    let limit = durably_core::RateLimit::per(std::time::Duration::from_secs(60)).requests(1);
    let acquire = RateAcquire::new("k", "g", limit, RateCost::new(1, 0), now_ms());
    assert_eq!(store.acquire_rate(&acquire).await.unwrap(), RateDecision::Granted);
    store.settle_rate("k", "g", RateCost::new(1, 5), now_ms()).await.unwrap();
    store.block_rate("k", std::time::Duration::from_secs(1), now_ms()).await.unwrap();
    // Queues and event logs too: their statements, locks and channels carry the odd name.
    store.enqueue(&QueuedRun::new("job", "wf", None, "q", 1_000)).await.unwrap();
    let claim = Claim::new("q", "w", std::time::Duration::from_secs(60), now_ms(), 10);
    assert_eq!(store.claim_runs(&claim).await.unwrap().len(), 1);
    assert_eq!(store.append_events("job", &[NewEvent::new("text", "1", 1)], u64::MAX).await.unwrap(), 0);
}

#[tokio::test]
async fn a_refused_connection_names_host_and_port_but_not_the_password() {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let err = PostgresStore::connect("postgres://durably:hunter2@127.0.0.1:1/test").await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Store { op: "connect", .. }), "{err:?}");
    assert!(text.contains("127.0.0.1:1"), "names host and port: {text}");
    assert!(text.contains("database `test`") && text.contains("user `durably`"), "{text}");
    assert!(text.contains("refused"), "says what happened, not just `error connecting to server`: {text}");
    assert!(!text.contains("hunter2"), "never the password: {text}");
    assert!(!format!("{err:?}").contains("hunter2"), "not even in Debug: {err:?}");
}

#[tokio::test]
async fn a_malformed_url_is_invalid_and_does_not_echo_it() {
    let err = PostgresStore::connect("postgres://u:secretpw@[bad").await.unwrap_err();
    assert!(matches!(err, Error::Invalid { what: "PostgreSQL URL", .. }), "{err:?}");
    assert!(!err.to_string().contains("secretpw"), "{err}");
}

/// Schema version 1 exactly as durably-postgres created it before queues and event logs
/// (`{s}` is the quoted schema), with a few records.
const SCHEMA_V1_AS_SHIPPED: &str = r#"
CREATE SCHEMA {s};
CREATE TABLE {s}.durably_schema_version (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton), version integer NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO {s}.durably_schema_version (version) VALUES (1);
CREATE FUNCTION {s}.durably_try_jsonb(t text) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
    AS $f$ BEGIN RETURN t::jsonb; EXCEPTION WHEN others THEN RETURN NULL; END $f$;
CREATE TABLE {s}.runs (
    run_id text COLLATE "C" NOT NULL PRIMARY KEY, workflow text COLLATE "C" NOT NULL,
    status text COLLATE "C" NOT NULL, input_text text COLLATE "C", output_text text COLLATE "C",
    error text COLLATE "C", waiting_on text COLLATE "C", created_at_ms bigint NOT NULL,
    updated_at_ms bigint NOT NULL,
    input jsonb GENERATED ALWAYS AS ({s}.durably_try_jsonb(input_text)) STORED,
    output jsonb GENERATED ALWAYS AS ({s}.durably_try_jsonb(output_text)) STORED
);
CREATE INDEX runs_by_created ON {s}.runs (created_at_ms, run_id);
CREATE INDEX runs_by_status ON {s}.runs (status, created_at_ms, run_id);
CREATE INDEX runs_by_workflow ON {s}.runs (workflow, created_at_ms, run_id);
CREATE TABLE {s}.steps (
    run_id text COLLATE "C" NOT NULL, step_id text COLLATE "C" NOT NULL, name text COLLATE "C" NOT NULL,
    status text COLLATE "C" NOT NULL, value_text text COLLATE "C", error text COLLATE "C",
    attempts bigint NOT NULL, request_hash text COLLATE "C", started_at_ms bigint NOT NULL,
    finished_at_ms bigint,
    value jsonb GENERATED ALWAYS AS ({s}.durably_try_jsonb(value_text)) STORED,
    PRIMARY KEY (run_id, step_id)
);
CREATE TABLE {s}.signals (
    run_id text COLLATE "C" NOT NULL, name text COLLATE "C" NOT NULL, payload_text text COLLATE "C" NOT NULL,
    delivered_at_ms bigint NOT NULL,
    payload jsonb GENERATED ALWAYS AS ({s}.durably_try_jsonb(payload_text)) STORED,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE {s}.leases (
    run_id text COLLATE "C" NOT NULL PRIMARY KEY, owner text COLLATE "C" NOT NULL,
    expires_at_ms bigint NOT NULL
);
INSERT INTO {s}.runs (run_id, workflow, status, input_text, waiting_on, created_at_ms, updated_at_ms)
    VALUES ('old-wait', 'wf', 'waiting', '{"n":1}', 'go', 1000, 1000);
INSERT INTO {s}.steps (run_id, step_id, name, status, value_text, attempts, started_at_ms, finished_at_ms)
    VALUES ('old-wait', 'fetch', 'fetch', 'completed', '"v"', 1, 1000, 1001);
INSERT INTO {s}.signals (run_id, name, payload_text, delivered_at_ms) VALUES ('old-wait', 'other', 'true', 1002);
INSERT INTO {s}.leases VALUES ('old-lease', 'old-owner', 9000000000000);
"#;

#[tokio::test]
async fn a_version_1_schema_is_upgraded_in_place_with_queues_event_logs_and_worker_versions() {
    assert_eq!(SCHEMA_VERSION, 4, "this test upgrades version 1 to the current version 4");
    let Some((builder, guard)) = fresh().await else { return };
    let quoted = format!("\"{}\"", guard.0);
    raw().await.batch_execute(&SCHEMA_V1_AS_SHIPPED.replace("{s}", &quoted)).await.unwrap();

    let store = builder.clone().connect().await.unwrap();
    assert_eq!(version(&guard.0).await, [4], "the schema is marked as upgraded");

    // Every version 1 record is still there, read with the new columns empty.
    let run = store.get_run("old-wait").await.unwrap().expect("the v1 run survives");
    assert_eq!((run.status, run.input.as_deref()), (RunStatus::Waiting, Some(r#"{"n":1}"#)));
    assert_eq!((run.queue, run.parent_id, run.wake_at_ms), (None, None, None));
    assert_eq!((run.claimed_at_ms, run.version), (None, None));
    assert_eq!(store.list_steps("old-wait").await.unwrap().len(), 1);
    assert_eq!(store.get_signal("old-wait", "other").await.unwrap().as_deref(), Some("true"));
    assert!(matches!(
        store.acquire_lease("old-lease", "b", std::time::Duration::from_secs(60), now_ms()).await.unwrap(),
        LeaseOutcome::HeldBy(lease) if lease.owner == "old-owner"
    ));
    let ids = |runs: Vec<durably_core::RunRecord>| runs.into_iter().map(|r| r.run_id).collect::<Vec<_>>();
    assert_eq!(ids(store.recoverable_runs(now_ms(), 10).await.unwrap()), ["old-wait"]);

    // The new columns and tables work: a queue, a claim, a parked run, an event log.
    let job = QueuedRun::new("new-job", "wf", None, "q", 2_000).parent("old-wait");
    let (queued, created) = store.enqueue(&job).await.unwrap();
    assert!(created);
    assert_eq!((queued.status, queued.queue.as_deref()), (RunStatus::Enqueued, Some("q")));
    let claim = Claim::new("q", "w", std::time::Duration::from_secs(60), now_ms(), 10).version("v1");
    let claimed = store.claim_runs(&claim).await.unwrap();
    assert_eq!(claimed[0].version.as_deref(), Some("v1"), "the claim binds the run to its version");
    assert!(claimed[0].claimed_at_ms.is_some(), "the claim records its time");
    assert_eq!(ids(claimed), ["new-job"]);
    assert!(store.park_run("new-job", "w", "go", None, now_ms()).await.unwrap());
    assert_eq!(store.queue_stats("q", now_ms()).await.unwrap().parked, 1);
    assert_eq!(ids(store.list_runs(&RunFilter::new().parent("old-wait")).await.unwrap()), ["new-job"]);
    assert_eq!(
        store.append_events("old-wait", &[NewEvent::new("text", "{}", 1)], u64::MAX).await.unwrap(),
        0
    );
    drop(store);

    // Connecting again migrates nothing more and keeps what the new version wrote.
    let store = builder.connect().await.unwrap();
    assert_eq!(version(&guard.0).await, [4]);
    let job = store.get_run("new-job").await.unwrap().unwrap();
    assert_eq!((job.wake_at_ms, job.version.as_deref()), (Some(i64::MAX), Some("v1")));
    assert_eq!(store.read_events("old-wait", 0, 10).await.unwrap().len(), 1);
}

/// Schema version 2 as shipped, on top of version 1: queues and event logs, with a queued run
/// and an event.
const SCHEMA_V2_AS_SHIPPED: &str = r#"
ALTER TABLE {s}.runs
    ADD COLUMN queue text COLLATE "C", ADD COLUMN priority integer NOT NULL DEFAULT 0,
    ADD COLUMN queue_key text COLLATE "C", ADD COLUMN parent_id text COLLATE "C", ADD COLUMN wake_at_ms bigint;
CREATE INDEX runs_runnable ON {s}.runs (queue, status, priority DESC, created_at_ms, run_id)
    WHERE queue IS NOT NULL;
CREATE INDEX runs_by_parent ON {s}.runs (parent_id, created_at_ms, run_id) WHERE parent_id IS NOT NULL;
CREATE INDEX runs_by_wake ON {s}.runs (wake_at_ms) WHERE wake_at_ms IS NOT NULL;
CREATE TABLE {s}.queue_claims (
    queue text COLLATE "C" NOT NULL, claimed_at_ms bigint NOT NULL, claims bigint NOT NULL,
    PRIMARY KEY (queue, claimed_at_ms)
);
CREATE TABLE {s}.events (
    run_id text COLLATE "C" NOT NULL, event_offset bigint NOT NULL, kind text COLLATE "C" NOT NULL,
    data text COLLATE "C" NOT NULL, at_ms bigint NOT NULL, PRIMARY KEY (run_id, event_offset)
);
CREATE TABLE {s}.event_heads (run_id text COLLATE "C" NOT NULL PRIMARY KEY, next_offset bigint NOT NULL);
INSERT INTO {s}.runs (run_id, workflow, status, created_at_ms, updated_at_ms, queue)
    VALUES ('old-job', 'wf', 'enqueued', 700, 700, 'q');
INSERT INTO {s}.events VALUES ('old-wait', 0, 'text', '{}', 1003);
INSERT INTO {s}.event_heads VALUES ('old-wait', 1);
UPDATE {s}.durably_schema_version SET version = 2;
"#;

#[tokio::test]
async fn a_version_2_schema_is_upgraded_in_place_with_rate_limits() {
    assert_eq!(SCHEMA_VERSION, 4, "this test upgrades version 2 to the current version 4");
    let Some((builder, guard)) = fresh().await else { return };
    let quoted = format!("\"{}\"", guard.0);
    let client = raw().await;
    client.batch_execute(&SCHEMA_V1_AS_SHIPPED.replace("{s}", &quoted)).await.unwrap();
    client.batch_execute(&SCHEMA_V2_AS_SHIPPED.replace("{s}", &quoted)).await.unwrap();

    let store = builder.clone().connect().await.unwrap();
    assert_eq!(version(&guard.0).await, [4], "the schema is marked as upgraded");

    // The queued run and the event log of version 2 are still there.
    let claim = Claim::new("q", "w", std::time::Duration::from_secs(60), now_ms(), 10);
    let claimed: Vec<String> =
        store.claim_runs(&claim).await.unwrap().into_iter().map(|r| r.run_id).collect();
    assert_eq!(claimed, ["old-job"]);
    assert_eq!(
        store.append_events("old-wait", &[NewEvent::new("text", "{}", 2)], u64::MAX).await.unwrap(),
        1
    );

    // The new tables work: a grant, a refusal, a settle, a block.
    let limit = RateLimit::per(std::time::Duration::from_secs(60)).requests(1).tokens(100);
    let acquire = |id: &str| RateAcquire::new("model:m", id, limit, RateCost::new(1, 10), now_ms());
    assert_eq!(store.acquire_rate(&acquire("a")).await.unwrap(), RateDecision::Granted);
    assert!(matches!(store.acquire_rate(&acquire("b")).await.unwrap(), RateDecision::RetryAt { .. }));
    store.settle_rate("model:m", "a", RateCost::new(1, 20), now_ms()).await.unwrap();
    store.block_rate("model:other", std::time::Duration::from_secs(60), now_ms()).await.unwrap();
    drop(store);

    // Connecting again migrates nothing more and keeps the log and the block.
    let store = builder.connect().await.unwrap();
    assert_eq!(version(&guard.0).await, [4]);
    assert!(matches!(store.acquire_rate(&acquire("b")).await.unwrap(), RateDecision::RetryAt { .. }));
    let other = RateAcquire::new("model:other", "x", limit, RateCost::new(1, 10), now_ms());
    assert!(matches!(store.acquire_rate(&other).await.unwrap(), RateDecision::RetryAt { .. }));
}
