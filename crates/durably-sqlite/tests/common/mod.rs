//! Helpers shared by the SQLite store's tests: temporary database files, a raw connection to
//! poke at them, and records to write.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use durably_core::store::prelude::*;
use durably_core::{NewRun, StepRecord, StepStatus};
use durably_sqlite::SqliteStore;
use tempfile::TempDir;

/// A temporary directory and the database path inside it.
pub struct TempDb {
    pub dir: TempDir,
    pub path: PathBuf,
}

pub fn temp_db() -> TempDb {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("durably.db");
    TempDb { dir, path }
}

/// A plain rusqlite connection to the file, as another process would have.
pub fn raw(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("raw connection");
    conn.busy_timeout(Duration::from_secs(10)).expect("busy timeout");
    conn
}

pub fn new_run(run_id: &str) -> NewRun {
    NewRun::new(run_id, "wf", Some("{}".to_owned()), 1_000)
}

pub fn step(step_id: &str, at_ms: i64) -> StepRecord {
    let mut step = StepRecord::new(step_id, "task", StepStatus::Completed, at_ms);
    step.value = Some(format!("\"{step_id}\""));
    step.attempts = 1;
    step
}

pub async fn open(path: &Path) -> Arc<SqliteStore> {
    Arc::new(SqliteStore::open(path).await.expect("open store"))
}

/// Opens the run `run_id` in `store`.
pub async fn start(store: &impl Store, run_id: &str) {
    store.open_run(new_run(run_id)).await.expect("open_run");
}

/// Holds the database's write lock from another connection until dropped, like a second
/// process in the middle of a transaction.
pub struct WriteLock(rusqlite::Connection);

impl WriteLock {
    pub fn take(path: &Path) -> WriteLock {
        let conn = raw(path);
        conn.execute_batch("BEGIN IMMEDIATE").expect("take the write lock");
        WriteLock(conn)
    }

    pub fn release(self) {
        self.0.execute_batch("ROLLBACK").expect("release the write lock");
    }
}

/// A store on a fresh database file with `durability`, the file's directory kept until the
/// store is dropped.
pub async fn file_store(durability: durably_sqlite::Durability) -> durably_testkit::Fixture<SqliteStore> {
    let TempDb { dir, path } = temp_db();
    let store =
        SqliteStore::builder(path).durability(durability).open().await.expect("open the SQLite store");
    durably_testkit::Fixture::new(store).guard(dir)
}
