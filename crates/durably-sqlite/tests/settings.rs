//! What opening a file sets up: WAL, the durability's `synchronous`, the busy timeout, an
//! owner-only file, the schema version, and the signal poll interval.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{raw, temp_db};
use durably_core::store::prelude::*;
use durably_sqlite::{Durability, SCHEMA_VERSION, SqliteOptions, SqliteStore};

#[tokio::test]
async fn the_file_is_in_wal_mode_as_seen_from_another_connection() {
    let db = temp_db();
    let _store = SqliteStore::open(&db.path).await.unwrap();
    let mode: String = raw(&db.path).pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn full_durability_sets_synchronous_full_and_is_the_default() {
    let db = temp_db();
    let store = SqliteStore::open(&db.path).await.unwrap();
    assert_eq!(store.options().durability, Durability::Full);
    // `synchronous` is a per-connection setting: it can only be read on the writing connection.
    assert_eq!(store.writer_pragma("synchronous").await.unwrap(), "2", "2 is FULL");
}

#[tokio::test]
async fn normal_durability_sets_synchronous_normal() {
    let db = temp_db();
    let store = SqliteStore::builder(&db.path).durability(Durability::Normal).open().await.unwrap();
    assert_eq!(store.writer_pragma("synchronous").await.unwrap(), "1", "1 is NORMAL");
    let mode: String = raw(&db.path).pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal", "Normal durability still uses WAL");
}

#[tokio::test]
async fn busy_timeout_is_set_on_the_writing_connection() {
    let db = temp_db();
    let store = SqliteStore::open(&db.path).await.unwrap();
    assert_eq!(store.writer_pragma("busy_timeout").await.unwrap(), "5000", "default 5 s");
    let db2 = temp_db();
    let options = SqliteOptions::default().busy_timeout(Duration::from_millis(1234));
    let store = SqliteStore::builder(&db2.path).options(options).open().await.unwrap();
    assert_eq!(store.writer_pragma("busy_timeout").await.unwrap(), "1234");
}

#[cfg(unix)]
#[tokio::test]
async fn a_new_database_file_is_readable_and_writable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let db = temp_db();
    let store = SqliteStore::open(&db.path).await.unwrap();
    common::start(&store, "r").await;
    for file in [db.path.clone(), db.path.with_extension("db-wal"), db.path.with_extension("db-shm")] {
        let mode = std::fs::metadata(&file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{} has mode {:o}", file.display(), mode & 0o777);
    }
}

#[cfg(unix)]
#[tokio::test]
async fn an_existing_file_keeps_its_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let db = temp_db();
    std::fs::write(&db.path, b"").unwrap();
    std::fs::set_permissions(&db.path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let _store = SqliteStore::open(&db.path).await.unwrap();
    let mode = std::fs::metadata(&db.path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640, "the owner chose these permissions");
}

#[tokio::test]
async fn a_new_file_gets_the_current_schema_version() {
    let db = temp_db();
    let _store = SqliteStore::open(&db.path).await.unwrap();
    let version: i64 = raw(&db.path).pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let tables: Vec<String> = raw(&db.path)
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        tables,
        ["events", "leases", "queue_claims", "rate_blocks", "rate_grants", "runs", "signals", "steps"]
    );
}

#[tokio::test]
async fn a_missing_directory_is_a_clear_error_naming_the_file() {
    let db = temp_db();
    let path = db.dir.path().join("no-such-dir").join("durably.db");
    let err = SqliteStore::open(&path).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, durably_core::Error::Store { op: "open", .. }), "{err:?}");
    assert!(text.contains("no-such-dir"), "the error must name the file: {text}");
}

/// Without a delivery a wait lasts `max_wait`, not one poll interval: the store's poller looks
/// for every wait at once and wakes only those whose signal came.
#[tokio::test]
async fn wait_for_signal_without_a_delivery_lasts_max_wait() {
    let db = temp_db();
    let store = SqliteStore::builder(&db.path).poll_interval(Duration::from_millis(50)).open().await.unwrap();
    let started = Instant::now();
    store.wait_for_signal("r", "s", Duration::from_millis(400)).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(400) && waited < Duration::from_secs(30), "waited {waited:?}");
    // A poll of an hour: returning at all (the timeout only guards a hang) means max_wait won.
    let slow = SqliteStore::builder(&db.path).poll_interval(Duration::from_secs(3600)).open().await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), slow.wait_for_signal("r", "s", Duration::from_millis(5)))
        .await
        .expect("max_wait 5 ms is shorter than the poll, but the wait took the poll interval");
}

#[tokio::test]
async fn in_memory_store_has_no_path_and_works() {
    let store = SqliteStore::in_memory().await.unwrap();
    assert_eq!(store.path(), None);
    common::start(&store, "r").await;
    assert!(store.get_run("r").await.unwrap().is_some());
}
