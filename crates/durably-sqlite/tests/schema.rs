//! The schema version and malformed records: a file from a newer durably is refused with a clear
//! error, and a corrupt row is `Error::Corrupt`, never a panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{raw, start, step, temp_db};
use durably_core::{Error, NewRun, RunFilter, Store};
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
