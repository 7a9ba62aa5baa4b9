//! The physical floor on this machine, measured with rusqlite directly (no durably code), as in
//! `sqlite_limit.py`: one small row per committed transaction in WAL mode with `synchronous`
//! FULL and NORMAL, 100 rows per transaction, a point `SELECT` (the replay floor) and a raw
//! `fdatasync`. Plus the store-level comparison that used to be durably-sqlite's ignored
//! `overhead` test: `save_step` through `SqliteStore` against a bare one-row commit of the same
//! statement on the store's own schema and pragmas.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, anyhow, bail};
use durably::store::prelude::*;
use durably::{Durability, NewRun, SqliteStore, StepRecord, StepStatus};
use rusqlite::{Connection, params};

use crate::report::{FLOOR, Record};
use crate::stores::remove_db;

/// `sqlite_limit.py`'s table: shaped like python-durable's `steps`.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS steps (
    run_id     TEXT NOT NULL,
    step_id    TEXT NOT NULL,
    result     TEXT NOT NULL,
    attempt    INTEGER NOT NULL DEFAULT 1,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (run_id, step_id)
)";
const INSERT: &str = "INSERT INTO steps (run_id, step_id, result, attempt) VALUES (?1, ?2, ?3, ?4)";
const PAYLOAD: &str = r#"{"v": {"i": 0, "ok": true}}"#;

/// The best (lowest total) of `repeat` measurements.
pub(crate) fn best_of(
    repeat: u32,
    mut f: impl FnMut(u32) -> anyhow::Result<Record>,
) -> anyhow::Result<Record> {
    let mut best: Option<Record> = None;
    for round in 0..repeat.max(1) {
        let rec = f(round)?;
        if best.as_ref().is_none_or(|b| rec.total_ms < b.total_ms) {
            best = Some(rec);
        }
    }
    best.map(|r| r.with("repeat", repeat)).ok_or_else(|| anyhow!("no measurement"))
}

fn open_wal(path: &Path, synchronous: &str) -> anyhow::Result<Connection> {
    remove_db(path)?;
    let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        bail!("{} is in journal mode {mode}, not WAL", path.display());
    }
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// `rows` rows, `per_txn` per committed transaction, WAL with `synchronous` FULL or NORMAL.
/// Scenario `floor_wal_<full|normal>_<per_txn>`.
pub(crate) fn commits(dir: &Path, synchronous: &str, rows: u64, per_txn: u64) -> anyhow::Result<Record> {
    let name = format!("floor_wal_{}_{per_txn}", synchronous.to_ascii_lowercase());
    let path = dir.join(format!("{name}.db"));
    let conn = open_wal(&path, synchronous)?;
    let per_txn = per_txn.max(1);
    let mut lat = Vec::with_capacity((rows / per_txn) as usize);
    let started = Instant::now();
    let mut i = 0;
    while i < rows {
        let t0 = Instant::now();
        conn.prepare_cached("BEGIN")?.execute([])?;
        for _ in 0..per_txn.min(rows - i) {
            conn.prepare_cached(INSERT)?.execute(params!["run-1", format!("i-{i}"), PAYLOAD, 1])?;
            i += 1;
        }
        conn.prepare_cached("COMMIT")?.execute([])?;
        lat.push(t0.elapsed());
    }
    let elapsed = started.elapsed();
    let count: i64 = conn.query_row("SELECT count(*) FROM steps", [], |r| r.get(0))?;
    let mut rec = Record::throughput(&name, FLOOR, i, elapsed)
        .errors(u64::from(u64::try_from(count).ok() != Some(i)))
        .with("rows_per_txn", per_txn)
        .with("synchronous", synchronous)
        .with("sqlite", rusqlite::version());
    if per_txn == 1 {
        rec = rec.percentiles(&lat);
    }
    drop(conn);
    remove_db(&path)?;
    Ok(rec)
}

/// One-row commits, each after `idle` of doing nothing (the thread sleeps): what a write costs
/// when it comes after a gap, as an agent's does after each model call, rather than in a steady
/// stream. Scenario `floor_wal_<full|normal>_1_after_idle`, with `idle_ms`.
pub(crate) fn commits_after_idle(
    dir: &Path,
    synchronous: &str,
    rows: u64,
    idle: std::time::Duration,
) -> anyhow::Result<Record> {
    let name = format!("floor_wal_{}_1_after_idle", synchronous.to_ascii_lowercase());
    let path = dir.join(format!("{name}.db"));
    let conn = open_wal(&path, synchronous)?;
    let mut lat = Vec::with_capacity(rows as usize);
    let mut busy = std::time::Duration::ZERO;
    for i in 0..rows {
        std::thread::sleep(idle);
        let t0 = Instant::now();
        conn.prepare_cached("BEGIN")?.execute([])?;
        conn.prepare_cached(INSERT)?.execute(params!["run-1", format!("i-{i}"), PAYLOAD, 1])?;
        conn.prepare_cached("COMMIT")?.execute([])?;
        let d = t0.elapsed();
        busy += d;
        lat.push(d);
    }
    let count: i64 = conn.query_row("SELECT count(*) FROM steps", [], |r| r.get(0))?;
    let rec = Record::throughput(&name, FLOOR, rows, busy)
        .errors(u64::from(u64::try_from(count).ok() != Some(rows)))
        .percentiles(&lat)
        .with("idle_ms", idle.as_millis() as u64)
        .with("synchronous", synchronous);
    drop(conn);
    remove_db(&path)?;
    Ok(rec)
}

/// Point `SELECT`s by primary key on one open connection: what replaying a step would cost if
/// it were one query. Scenario `floor_select`.
pub(crate) fn select(dir: &Path, rows: u64) -> anyhow::Result<Record> {
    let path = dir.join("floor_select.db");
    let conn = open_wal(&path, "NORMAL")?;
    conn.execute_batch("BEGIN")?;
    for i in 0..rows {
        conn.prepare_cached(INSERT)?.execute(params!["run-1", format!("i-{i}"), PAYLOAD, 1])?;
    }
    conn.execute_batch("COMMIT")?;
    let started = Instant::now();
    let mut found = 0;
    for i in 0..rows {
        let mut stmt = conn.prepare_cached("SELECT result FROM steps WHERE run_id = ?1 AND step_id = ?2")?;
        let v: String = stmt.query_row(params!["run-1", format!("i-{i}")], |r| r.get(0))?;
        found += u64::from(!v.is_empty());
    }
    let elapsed = started.elapsed();
    drop(conn);
    remove_db(&path)?;
    Ok(Record::throughput("floor_select", FLOOR, rows, elapsed).errors(rows - found))
}

/// 4 KiB written at offset 0 then `fdatasync`, repeated. Scenario `floor_fdatasync`.
pub(crate) fn fdatasync(dir: &Path, n: u64) -> anyhow::Result<Record> {
    use std::os::unix::fs::FileExt as _;
    let path = dir.join("floor_fdatasync.bin");
    let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let buf = [b'x'; 4096];
    file.write_all_at(&buf, 0)?;
    file.sync_data()?;
    let mut lat = Vec::with_capacity(n as usize);
    let started = Instant::now();
    for _ in 0..n {
        let t0 = Instant::now();
        file.write_all_at(&buf, 0)?;
        file.sync_data()?;
        lat.push(t0.elapsed());
    }
    let elapsed = started.elapsed();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(Record::throughput("floor_fdatasync", FLOOR, n, elapsed).percentiles(&lat))
}

/// The store's own upsert of a step (see durably-sqlite's `sql.rs`).
const SAVE_STEP: &str = "INSERT INTO steps (run_id, step_id, name, status, value, error, attempts, request_hash, \
     started_at_ms, finished_at_ms) VALUES (?1, ?2, 'task', 'completed', ?3, NULL, 1, NULL, ?4, ?4) \
     ON CONFLICT (run_id, step_id) DO UPDATE SET value = excluded.value";

fn sqlite_label(durability: Durability) -> &'static str {
    match durability {
        Durability::Normal => "normal",
        _ => "full",
    }
}

/// `n` one-row commits on a plain connection with the store's schema and pragmas (the store
/// creates the file, then is closed). Scenario `floor_store_schema_<full|normal>_1`.
pub(crate) async fn store_schema_commits(
    path: PathBuf,
    durability: Durability,
    n: u64,
) -> anyhow::Result<Record> {
    remove_db(&path)?;
    drop(SqliteStore::open(&path).await.context("creating the store's schema")?);
    let name = format!("floor_store_schema_{}_1", sqlite_label(durability));
    tokio::task::spawn_blocking(move || -> anyhow::Result<Record> {
        let conn = Connection::open(&path)?;
        conn.pragma_update(None, "synchronous", durability.synchronous())?;
        let mut lat = Vec::with_capacity(n as usize);
        let started = Instant::now();
        for i in 0..n {
            let t0 = Instant::now();
            conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
            conn.prepare_cached(SAVE_STEP)?.execute(params!["r", format!("s{i}"), "\"v\"", 1])?;
            conn.prepare_cached("COMMIT")?.execute([])?;
            lat.push(t0.elapsed());
        }
        let elapsed = started.elapsed();
        drop(conn);
        remove_db(&path)?;
        Ok(Record::throughput(&name, FLOOR, n, elapsed).percentiles(&lat))
    })
    .await?
}

/// `n` sequential `Store::save_step` calls on a `SqliteStore`, without the engine around them.
/// Scenario `store_save_step`.
pub(crate) async fn store_saves(path: PathBuf, durability: Durability, n: u64) -> anyhow::Result<Record> {
    remove_db(&path)?;
    let store = SqliteStore::builder(&path).durability(durability).open().await?;
    store.open_run(NewRun::new("r", "wf", Some("{}".to_owned()), 1_000)).await?;
    let mut lat = Vec::with_capacity(n as usize);
    let started = Instant::now();
    for i in 0..n {
        let t0 = Instant::now();
        let mut step = StepRecord::new(format!("s{i}"), "task", StepStatus::Completed, 1);
        step.value = Some("\"v\"".to_owned());
        step.attempts = 1;
        store.save_step("r", &step).await.with_context(|| format!("save_step s{i}"))?;
        lat.push(t0.elapsed());
    }
    let elapsed = started.elapsed();
    let stats = store.stats();
    drop(store);
    remove_db(&path)?;
    let label = format!("sqlite-{}", sqlite_label(durability));
    Ok(Record::throughput("store_save_step", &label, n, elapsed)
        .percentiles(&lat)
        .with("commits", stats.commits)
        .with("writes", stats.writes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn commit_floor_writes_every_row_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let rec = commits(dir.path(), "NORMAL", 250, 100).unwrap();
        assert_eq!(rec.scenario, "floor_wal_normal_100");
        assert_eq!(rec.n, 250, "the last batch is short, but every row is written");
        assert_eq!(rec.errors, 0);
        assert!(rec.p50_us.is_none(), "batched floors have no per-commit latency");
        let one = commits(dir.path(), "FULL", 20, 1).unwrap();
        assert_eq!((one.n, one.errors), (20, 0));
        assert!(one.p99_us.is_some());
    }

    #[test]
    fn select_floor_finds_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let rec = select(dir.path(), 100).unwrap();
        assert_eq!((rec.n, rec.errors), (100, 0));
    }
}
