//! The versioned schema: created on first use, re-running is a no-op that keeps data,
//! concurrent first starts migrate once, a schema from a future version is refused and left
//! alone; plus what connecting refuses (bad schema names, an unreachable server).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::{SchemaGuard, fresh, raw, start, step, unique, url};
use durably_core::store::prelude::*;
use durably_core::{Error, RunFilter};
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
    assert_eq!(tables(&guard.0).await, ["durably_schema_version", "leases", "runs", "signals", "steps"]);
    assert_eq!(version(&guard.0).await, [SCHEMA_VERSION]);
    let indexes: Vec<String> = raw()
        .await
        .query("SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 ORDER BY 1", &[&guard.0])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for wanted in ["runs_by_created", "runs_by_status", "runs_by_workflow"] {
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
    assert_eq!(tables(&guard.0).await.len(), 5);
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
