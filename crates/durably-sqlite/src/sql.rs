//! The schema and every statement of the store, and the decoding of rows into records.
//!
//! All functions here are synchronous and run on a connection they are handed: the writer
//! thread's for writes, a reader's for reads. Every statement goes through `prepare_cached`.
//! Rows are decoded column by column so that a malformed record (an unknown status, a negative
//! count, a value of the wrong type) becomes [`Error::Corrupt`] instead of a panic.

use std::fmt;

use durably_core::{
    Error, Lease, LeaseOutcome, NewRun, RunFilter, RunHistory, RunRecord, RunStatus, RunUpdate, SignalRecord,
    StepRecord, StepStatus, StoreErrorKind,
};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, Row, params};

/// The schema version this version of durably-sqlite writes and understands, kept in the
/// file's `PRAGMA user_version` (0 is a file durably has not set up yet). A file with a higher
/// version is refused when opened.
///
/// - 1: `runs`, `steps`, `signals`.
/// - 2: adds `leases` (one row per run executing somewhere, for several processes on one file).
pub const SCHEMA_VERSION: i64 = 2;

/// The tables of schema version 1.
///
/// `steps` and `signals` are `WITHOUT ROWID`: their primary key starts with the run id, so the
/// records of one run sit together and loading a run's history reads a few adjacent pages.
/// `runs` keeps its rowid so that its secondary indexes point at an 8-byte rowid rather than
/// at the run id text. `STRICT` makes SQLite refuse values of the wrong type.
pub(crate) const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS runs (
    run_id        TEXT NOT NULL PRIMARY KEY,
    workflow      TEXT NOT NULL,
    status        TEXT NOT NULL,
    input         TEXT,
    output        TEXT,
    error         TEXT,
    waiting_on    TEXT,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_at_ms, run_id);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, created_at_ms, run_id);
CREATE INDEX IF NOT EXISTS runs_by_workflow ON runs (workflow, created_at_ms, run_id);
CREATE TABLE IF NOT EXISTS steps (
    run_id         TEXT NOT NULL,
    step_id        TEXT NOT NULL,
    name           TEXT NOT NULL,
    status         TEXT NOT NULL,
    value          TEXT,
    error          TEXT,
    attempts       INTEGER NOT NULL,
    request_hash   TEXT,
    started_at_ms  INTEGER NOT NULL,
    finished_at_ms INTEGER,
    PRIMARY KEY (run_id, step_id)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS signals (
    run_id          TEXT NOT NULL,
    name            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    delivered_at_ms INTEGER NOT NULL,
    PRIMARY KEY (run_id, name)
) STRICT, WITHOUT ROWID;
";

/// What schema version 2 adds to version 1: the lease of each run being executed.
///
/// A separate table rather than columns of `runs`, because a lease may be taken before its run
/// exists (the engine leases a run id before `open_run` creates it), and because releasing a
/// lease then deletes a row instead of rewriting the run's. `expires_at_ms` is by the clock of
/// the processes sharing the file (one machine).
pub(crate) const SCHEMA_V2: &str = "
CREATE TABLE IF NOT EXISTS leases (
    run_id        TEXT NOT NULL PRIMARY KEY,
    owner         TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
";

macro_rules! run_columns {
    () => {
        "run_id, workflow, status, input, output, error, waiting_on, created_at_ms, updated_at_ms"
    };
}

const OPEN_RUN: &str = "
INSERT INTO runs (run_id, workflow, status, input, output, error, waiting_on, created_at_ms, updated_at_ms)
VALUES (?1, ?2, 'running', ?3, NULL, NULL, NULL, ?4, ?4)
ON CONFLICT (run_id) DO UPDATE SET
    status = 'running', error = NULL, waiting_on = NULL, updated_at_ms = excluded.updated_at_ms
WHERE runs.workflow = excluded.workflow AND runs.status IN ('running', 'waiting', 'failed')";

const GET_RUN: &str = concat!("SELECT ", run_columns!(), " FROM runs WHERE run_id = ?1");

const UPDATE_RUN: &str = "
UPDATE runs SET status = ?2, output = ?3, error = ?4, waiting_on = ?5, updated_at_ms = ?6
WHERE run_id = ?1";

const SAVE_STEP: &str = "
INSERT INTO steps (run_id, step_id, name, status, value, error, attempts, request_hash, started_at_ms, finished_at_ms)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
ON CONFLICT (run_id, step_id) DO UPDATE SET
    name = excluded.name, status = excluded.status, value = excluded.value, error = excluded.error,
    attempts = excluded.attempts, request_hash = excluded.request_hash,
    started_at_ms = excluded.started_at_ms, finished_at_ms = excluded.finished_at_ms";

const LIST_STEPS: &str = "
SELECT step_id, name, status, value, error, attempts, request_hash, started_at_ms, finished_at_ms
FROM steps WHERE run_id = ?1 ORDER BY started_at_ms, step_id";

const DELIVER_SIGNAL: &str = "
INSERT INTO signals (run_id, name, payload, delivered_at_ms) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (run_id, name) DO NOTHING";

const GET_SIGNAL: &str = "SELECT payload FROM signals WHERE run_id = ?1 AND name = ?2";

const LIST_SIGNALS: &str =
    "SELECT name, payload, delivered_at_ms FROM signals WHERE run_id = ?1 ORDER BY delivered_at_ms, name";

/// Takes or renews the lease: the row is written only when there is none, it is the caller's,
/// or it has expired at `?4`.
const ACQUIRE_LEASE: &str = "
INSERT INTO leases (run_id, owner, expires_at_ms) VALUES (?1, ?2, ?3)
ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner, expires_at_ms = excluded.expires_at_ms
WHERE leases.owner = excluded.owner OR leases.expires_at_ms <= ?4";

const GET_LEASE: &str = "SELECT owner, expires_at_ms FROM leases WHERE run_id = ?1";

const RELEASE_LEASE: &str = "DELETE FROM leases WHERE run_id = ?1 AND owner = ?2";

/// Extends a lease only while `owner` holds it (expired or not): a renewal never takes one.
const RENEW_LEASE: &str = "UPDATE leases SET expires_at_ms = ?3 WHERE run_id = ?1 AND owner = ?2";

/// The cancelled runs among the ids of the JSON array `?1` (through `runs_by_status`). One
/// parameter, so no list is too long for SQLite's limit on parameters.
const CANCELLED_RUNS: &str =
    "SELECT run_id FROM runs WHERE status = 'cancelled' AND run_id IN (SELECT value FROM json_each(?1))";

/// Which of the `[run_id, name]` pairs of the JSON array `?1` were delivered: one primary-key
/// lookup per pair.
const DELIVERED_AMONG: &str = "
SELECT s.run_id, s.name FROM json_each(?1) AS w
JOIN signals AS s ON s.run_id = json_extract(w.value, '$[0]') AND s.name = json_extract(w.value, '$[1]')";

/// Unfinished runs without a live lease, oldest first (through `runs_by_status`).
const RECOVERABLE_RUNS: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM runs WHERE status IN ('running', 'waiting')",
    " AND NOT EXISTS (SELECT 1 FROM leases WHERE leases.run_id = runs.run_id AND leases.expires_at_ms > ?1)",
    " ORDER BY created_at_ms, run_id LIMIT ?2"
);

/// Why a statement failed: SQLite said so, or the data or the request was wrong.
#[derive(Debug)]
pub(crate) enum Fail {
    /// An error from SQLite.
    Sql(rusqlite::Error),
    /// An error already in durably's terms (`RunNotFound`, `Corrupt`).
    Store(Error),
    /// A failure with only a description (the writer thread gave up on a locked file…).
    Message(String),
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        Fail::Sql(e)
    }
}

impl Fail {
    /// True when another connection held a lock: worth waiting and trying again.
    pub(crate) fn is_busy(&self) -> bool {
        match self {
            Fail::Sql(e) => is_busy(e),
            Fail::Store(_) | Fail::Message(_) => false,
        }
    }

    /// The public error, naming the operation and its run.
    pub(crate) fn into_error(self, op: &'static str, run_id: Option<&str>) -> Error {
        match self {
            Fail::Sql(e) => Error::store_kind(kind_of(&e), op, run_id, e),
            Fail::Store(e) => e,
            Fail::Message(m) => Error::store(op, run_id, m),
        }
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fail::Sql(e) => e.fmt(f),
            Fail::Store(e) => e.fmt(f),
            Fail::Message(m) => f.write_str(m),
        }
    }
}

/// True for `SQLITE_BUSY` (another connection holds the lock) and `SQLITE_LOCKED`.
pub(crate) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

// ---------------------------------------------------------------------------------------------
// Writes

/// Creates or resumes a run (see `Store::open_run`) and reads its whole history. Runs inside the
/// writer's transaction, so the history is consistent with the status change.
pub(crate) fn open_run(conn: &Connection, new: &NewRun) -> Result<RunHistory, Fail> {
    conn.prepare_cached(OPEN_RUN)?.execute(params![new.run_id, new.workflow, new.input, new.now_ms])?;
    let run = get_run(conn, &new.run_id)?
        .ok_or_else(|| Fail::Message("the run's row is missing right after it was written".to_owned()))?;
    let steps = list_steps(conn, &new.run_id)?;
    let signals = list_signals(conn, &new.run_id)?;
    Ok(RunHistory::new(run, steps, signals))
}

/// Inserts or replaces a step record.
pub(crate) fn save_step(conn: &Connection, run_id: &str, step: &StepRecord) -> Result<(), Fail> {
    conn.prepare_cached(SAVE_STEP)?.execute(params![
        run_id,
        step.step_id,
        step.name,
        step.status.as_str(),
        step.value,
        step.error,
        i64::from(step.attempts),
        step.request_hash,
        step.started_at_ms,
        step.finished_at_ms,
    ])?;
    Ok(())
}

/// Changes a run's status and outcome fields; `RunNotFound` when there is no such run.
pub(crate) fn update_run(conn: &Connection, run_id: &str, update: &RunUpdate) -> Result<(), Fail> {
    let changed = conn.prepare_cached(UPDATE_RUN)?.execute(params![
        run_id,
        update.status.as_str(),
        update.output,
        update.error,
        update.waiting_on,
        update.now_ms,
    ])?;
    if changed == 0 {
        return Err(Fail::Store(Error::RunNotFound { run_id: run_id.to_owned() }));
    }
    Ok(())
}

/// Records a signal unless one of that name exists; true when this call recorded it.
pub(crate) fn deliver_signal(conn: &Connection, run_id: &str, signal: &SignalRecord) -> Result<bool, Fail> {
    let inserted = conn.prepare_cached(DELIVER_SIGNAL)?.execute(params![
        run_id,
        signal.name,
        signal.payload,
        signal.delivered_at_ms
    ])?;
    Ok(inserted == 1)
}

/// Takes the lease on `run_id` for `owner` until `now_ms + ttl_ms`, or reports the live lease
/// of another owner. Runs in the writer's `BEGIN IMMEDIATE` transaction, which holds the file's
/// write lock: of two processes racing, the second sees the first one's row.
pub(crate) fn acquire_lease(
    conn: &Connection,
    run_id: &str,
    owner: &str,
    ttl_ms: i64,
    now_ms: i64,
) -> Result<LeaseOutcome, Fail> {
    let expires_at_ms = now_ms.saturating_add(ttl_ms);
    let written =
        conn.prepare_cached(ACQUIRE_LEASE)?.execute(params![run_id, owner, expires_at_ms, now_ms])?;
    if written == 1 {
        return Ok(LeaseOutcome::Acquired);
    }
    let mut stmt = conn.prepare_cached(GET_LEASE)?;
    let mut rows = stmt.query([run_id])?;
    let row = rows
        .next()?
        .ok_or_else(|| Fail::Message("the lease row vanished inside the write transaction".to_owned()))?;
    let bad = |detail: String| corrupt(run_id, None, format!("lease: {detail}"));
    let holder = text(row, 0, "owner").map_err(bad)?;
    let expires = int(row, 1, "expires_at_ms").map_err(bad)?;
    Ok(LeaseOutcome::HeldBy(Lease::new(holder, expires)))
}

/// Deletes `owner`'s lease on `run_id`, if it holds it.
pub(crate) fn release_lease(conn: &Connection, run_id: &str, owner: &str) -> Result<(), Fail> {
    conn.prepare_cached(RELEASE_LEASE)?.execute([run_id, owner])?;
    Ok(())
}

/// Extends `owner`'s leases on `run_ids` until `now_ms + ttl_ms`; returns the ids it does not
/// hold, each with the owner of a live lease on it, if any. Runs in the writer's transaction.
pub(crate) fn renew_leases(
    conn: &Connection,
    run_ids: &[String],
    owner: &str,
    ttl_ms: i64,
    now_ms: i64,
) -> Result<Vec<(String, Option<String>)>, Fail> {
    let expires_at_ms = now_ms.saturating_add(ttl_ms);
    let mut renew = conn.prepare_cached(RENEW_LEASE)?;
    let mut lost = Vec::new();
    for run_id in run_ids {
        if renew.execute(params![run_id, owner, expires_at_ms])? == 1 {
            continue;
        }
        let mut stmt = conn.prepare_cached(GET_LEASE)?;
        let mut rows = stmt.query([run_id])?;
        // Only to name the holder: a malformed row is a lease lost to nobody known, not a
        // failure of every renewal in the batch.
        let holder = match rows.next()? {
            Some(row) => match (text(row, 0, "owner"), int(row, 1, "expires_at_ms")) {
                (Ok(holder), Ok(expires)) if expires > now_ms => Some(holder),
                _ => None,
            },
            None => None,
        };
        lost.push((run_id.clone(), holder));
    }
    Ok(lost)
}

// ---------------------------------------------------------------------------------------------
// Reads

/// The cancelled runs among `run_ids_json`, a JSON array of run ids.
pub(crate) fn cancelled_runs(conn: &Connection, run_ids_json: &str) -> Result<Vec<String>, Fail> {
    let mut stmt = conn.prepare_cached(CANCELLED_RUNS)?;
    let rows = stmt.query([run_ids_json])?;
    collect(rows, |row| text(row, 0, "run_id").map_err(|d| corrupt(&lossy(row, 0), None, d)))
}

/// The delivered signals among `pairs_json`, a JSON array of `[run_id, name]` pairs.
pub(crate) fn delivered_among(conn: &Connection, pairs_json: &str) -> Result<Vec<(String, String)>, Fail> {
    let mut stmt = conn.prepare_cached(DELIVERED_AMONG)?;
    let rows = stmt.query([pairs_json])?;
    collect(rows, |row| {
        let run_id = text(row, 0, "run_id").map_err(|d| corrupt(&lossy(row, 0), None, d))?;
        let name = text(row, 1, "name").map_err(|d| corrupt(&run_id, None, format!("a signal: {d}")))?;
        Ok((run_id, name))
    })
}

/// Unfinished runs that no live lease covers at `now_ms`, oldest first, at most `limit`.
pub(crate) fn recoverable_runs(conn: &Connection, now_ms: i64, limit: usize) -> Result<Vec<RunRecord>, Fail> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(RECOVERABLE_RUNS)?;
    let rows = stmt.query(params![now_ms, limit])?;
    collect(rows, decode_run)
}

/// One run.
pub(crate) fn get_run(conn: &Connection, run_id: &str) -> Result<Option<RunRecord>, Fail> {
    let mut stmt = conn.prepare_cached(GET_RUN)?;
    let mut rows = stmt.query([run_id])?;
    match rows.next()? {
        Some(row) => decode_run(row).map(Some),
        None => Ok(None),
    }
}

/// Runs matching a filter, newest first. A run id prefix is a range of the primary key, so
/// reading the runs of one family (a session's turns) costs what they are, not the table.
pub(crate) fn list_runs(conn: &Connection, filter: &RunFilter) -> Result<Vec<RunRecord>, Fail> {
    // SQLite reads a negative LIMIT as "no limit".
    let limit = filter.limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
    let mut clauses: Vec<&str> = Vec::new();
    let mut values: Vec<rusqlite::types::Value> = vec![limit.into()];
    let mut bind = |clause: &'static str, value: String| {
        clauses.push(clause);
        values.push(value.into());
    };
    if let Some(status) = filter.status {
        bind("status = ?", status.as_str().to_owned());
    }
    if let Some(workflow) = &filter.workflow {
        bind("workflow = ?", workflow.clone());
    }
    if let Some((from, to)) = filter.run_id_range() {
        bind("run_id >= ?", from.to_owned());
        if let Some(to) = to {
            bind("run_id < ?", to);
        }
    }
    let mut sql = format!("SELECT {} FROM runs", run_columns!());
    for (i, clause) in clauses.iter().enumerate() {
        sql.push_str(if i == 0 { " WHERE " } else { " AND " });
        // `?` numbered from 2: the limit is ?1.
        sql.push_str(&clause.replace('?', &format!("?{}", i + 2)));
    }
    sql.push_str(" ORDER BY created_at_ms DESC, run_id DESC LIMIT ?1");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query(rusqlite::params_from_iter(values))?;
    collect(rows, decode_run)
}

/// A run's steps in the order they started, then by step id.
pub(crate) fn list_steps(conn: &Connection, run_id: &str) -> Result<Vec<StepRecord>, Fail> {
    let mut stmt = conn.prepare_cached(LIST_STEPS)?;
    let rows = stmt.query([run_id])?;
    collect(rows, |row| decode_step(run_id, row))
}

/// A run's signals, in delivery order.
pub(crate) fn list_signals(conn: &Connection, run_id: &str) -> Result<Vec<SignalRecord>, Fail> {
    let mut stmt = conn.prepare_cached(LIST_SIGNALS)?;
    let rows = stmt.query([run_id])?;
    collect(rows, |row| decode_signal(run_id, row))
}

/// The payload of one delivered signal.
pub(crate) fn get_signal(conn: &Connection, run_id: &str, name: &str) -> Result<Option<String>, Fail> {
    let mut stmt = conn.prepare_cached(GET_SIGNAL)?;
    let mut rows = stmt.query([run_id, name])?;
    match rows.next()? {
        Some(row) => {
            let payload = text(row, 0, "payload")
                .map_err(|d| corrupt(run_id, None, format!("signal `{name}`: {d}")))?;
            Ok(Some(payload))
        }
        None => Ok(None),
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

fn corrupt(run_id: &str, step_id: Option<&str>, detail: String) -> Fail {
    Fail::Store(Error::Corrupt { run_id: run_id.to_owned(), step_id: step_id.map(str::to_owned), detail })
}

/// Decodes every row of `rows` with `decode`.
fn collect<T>(
    mut rows: rusqlite::Rows<'_>,
    mut decode: impl FnMut(&Row<'_>) -> Result<T, Fail>,
) -> Result<Vec<T>, Fail> {
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode(row)?);
    }
    Ok(out)
}

fn decode_run(row: &Row<'_>) -> Result<RunRecord, Fail> {
    let run_id = match text(row, 0, "run_id") {
        Ok(id) => id,
        Err(detail) => return Err(corrupt(&lossy(row, 0), None, detail)),
    };
    let bad = |detail: String| corrupt(&run_id, None, detail);
    let workflow = text(row, 1, "workflow").map_err(bad)?;
    let status_text = text(row, 2, "status").map_err(bad)?;
    let status =
        status_text.parse::<RunStatus>().map_err(|_| bad(format!("unknown run status `{status_text}`")))?;
    let input = opt_text(row, 3, "input").map_err(bad)?;
    let created_at_ms = int(row, 7, "created_at_ms").map_err(bad)?;
    let mut run = RunRecord::new(run_id.clone(), workflow, input, created_at_ms);
    run.status = status;
    run.output = opt_text(row, 4, "output").map_err(bad)?;
    run.error = opt_text(row, 5, "error").map_err(bad)?;
    run.waiting_on = opt_text(row, 6, "waiting_on").map_err(bad)?;
    run.updated_at_ms = int(row, 8, "updated_at_ms").map_err(bad)?;
    Ok(run)
}

fn decode_step(run_id: &str, row: &Row<'_>) -> Result<StepRecord, Fail> {
    let step_id = match text(row, 0, "step_id") {
        Ok(id) => id,
        Err(detail) => return Err(corrupt(run_id, Some(&lossy(row, 0)), detail)),
    };
    let bad = |detail: String| corrupt(run_id, Some(&step_id), detail);
    let name = text(row, 1, "name").map_err(bad)?;
    let status_text = text(row, 2, "status").map_err(bad)?;
    let status =
        status_text.parse::<StepStatus>().map_err(|_| bad(format!("unknown step status `{status_text}`")))?;
    let started_at_ms = int(row, 7, "started_at_ms").map_err(bad)?;
    let attempts = int(row, 5, "attempts").map_err(bad)?;
    let attempts =
        u32::try_from(attempts).map_err(|_| bad(format!("attempts is {attempts}, not a count")))?;
    let mut step = StepRecord::new(step_id.clone(), name, status, started_at_ms);
    step.value = opt_text(row, 3, "value").map_err(bad)?;
    step.error = opt_text(row, 4, "error").map_err(bad)?;
    step.attempts = attempts;
    step.request_hash = opt_text(row, 6, "request_hash").map_err(bad)?;
    step.finished_at_ms = opt_int(row, 8, "finished_at_ms").map_err(bad)?;
    Ok(step)
}

fn decode_signal(run_id: &str, row: &Row<'_>) -> Result<SignalRecord, Fail> {
    let name = text(row, 0, "name").map_err(|d| corrupt(run_id, None, format!("a signal: {d}")))?;
    let bad = |detail: String| corrupt(run_id, None, format!("signal `{name}`: {detail}"));
    let payload = text(row, 1, "payload").map_err(bad)?;
    let delivered_at_ms = int(row, 2, "delivered_at_ms").map_err(bad)?;
    Ok(SignalRecord::new(name.clone(), payload, delivered_at_ms))
}

/// A column read as text, lossily, for naming a record whose key is itself broken.
fn lossy(row: &Row<'_>, idx: usize) -> String {
    match row.get_ref(idx) {
        Ok(ValueRef::Text(b) | ValueRef::Blob(b)) => String::from_utf8_lossy(b).into_owned(),
        Ok(ValueRef::Integer(i)) => i.to_string(),
        Ok(ValueRef::Real(r)) => r.to_string(),
        Ok(ValueRef::Null) | Err(_) => String::new(),
    }
}

fn kind(value: ValueRef<'_>) -> &'static str {
    match value {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "an integer",
        ValueRef::Real(_) => "a real",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "a blob",
    }
}

fn opt_text(row: &Row<'_>, idx: usize, column: &str) -> Result<Option<String>, String> {
    match row.get_ref(idx).map_err(|e| format!("column `{column}`: {e}"))? {
        ValueRef::Null => Ok(None),
        ValueRef::Text(bytes) => String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| format!("column `{column}` is not valid UTF-8")),
        other => Err(format!("column `{column}` holds {} where text was expected", kind(other))),
    }
}

fn text(row: &Row<'_>, idx: usize, column: &str) -> Result<String, String> {
    opt_text(row, idx, column)?.ok_or_else(|| format!("column `{column}` is NULL"))
}

fn opt_int(row: &Row<'_>, idx: usize, column: &str) -> Result<Option<i64>, String> {
    match row.get_ref(idx).map_err(|e| format!("column `{column}`: {e}"))? {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(i) => Ok(Some(i)),
        other => Err(format!("column `{column}` holds {} where an integer was expected", kind(other))),
    }
}

fn int(row: &Row<'_>, idx: usize, column: &str) -> Result<i64, String> {
    opt_int(row, idx, column)?.ok_or_else(|| format!("column `{column}` is NULL"))
}

// ---------------------------------------------------------------------------------------------
// Operating: retention and guarded status changes

const DELETE_RUN_STEPS: &str = "DELETE FROM steps WHERE run_id = ?1";
const DELETE_RUN_SIGNALS: &str = "DELETE FROM signals WHERE run_id = ?1";
const DELETE_RUN_LEASE: &str = "DELETE FROM leases WHERE run_id = ?1";
const DELETE_RUN: &str = "DELETE FROM runs WHERE run_id = ?1";

const UPDATE_RUN_UNLESS_CANCELLED: &str = "
UPDATE runs SET status = ?2, output = ?3, error = ?4, waiting_on = ?5, updated_at_ms = ?6
WHERE run_id = ?1 AND status <> 'cancelled'";

const RUN_EXISTS: &str = "SELECT 1 FROM runs WHERE run_id = ?1";

/// Deletes a run with its steps, signals and lease (one transaction); true when the run row
/// existed.
pub(crate) fn delete_run(conn: &Connection, run_id: &str) -> Result<bool, Fail> {
    for sql in [DELETE_RUN_STEPS, DELETE_RUN_SIGNALS, DELETE_RUN_LEASE] {
        conn.prepare_cached(sql)?.execute([run_id])?;
    }
    Ok(conn.prepare_cached(DELETE_RUN)?.execute([run_id])? == 1)
}

/// `update_run` unless the run is cancelled (false then), in one transaction.
pub(crate) fn update_run_unless_cancelled(
    conn: &Connection,
    run_id: &str,
    update: &RunUpdate,
) -> Result<bool, Fail> {
    let changed = conn.prepare_cached(UPDATE_RUN_UNLESS_CANCELLED)?.execute(params![
        run_id,
        update.status.as_str(),
        update.output,
        update.error,
        update.waiting_on,
        update.now_ms,
    ])?;
    if changed == 1 {
        return Ok(true);
    }
    if conn.prepare_cached(RUN_EXISTS)?.exists([run_id])? {
        Ok(false)
    } else {
        Err(Fail::Store(Error::RunNotFound { run_id: run_id.to_owned() }))
    }
}

/// How an SQLite error is classified for the engine.
pub(crate) fn kind_of(e: &rusqlite::Error) -> StoreErrorKind {
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(C::DatabaseBusy | C::DatabaseLocked | C::SystemIoFailure | C::DiskFull) => {
            StoreErrorKind::Transient
        }
        Some(C::ConstraintViolation | C::SchemaChanged) => StoreErrorKind::Conflict,
        Some(C::DatabaseCorrupt | C::NotADatabase) => StoreErrorKind::Corrupt,
        Some(C::PermissionDenied | C::ReadOnly | C::AuthorizationForStatementDenied | C::CannotOpen) => {
            StoreErrorKind::Refused
        }
        _ => match e {
            rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => {
                StoreErrorKind::Corrupt
            }
            _ => StoreErrorKind::Other,
        },
    }
}
