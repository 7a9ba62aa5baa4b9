//! The schema and every statement of the store, and the decoding of rows into records.
//!
//! All functions here are synchronous and run on a connection they are handed: the writer
//! thread's for writes, a reader's for reads. Every statement goes through `prepare_cached`.
//! Rows are decoded column by column so that a malformed record (an unknown status, a negative
//! count, a value of the wrong type) becomes [`Error::Corrupt`] instead of a panic.

use std::fmt;

use durably_core::store::{LoggedGrant, decide};
use durably_core::{
    Claim, Error, EventRecord, Lease, LeaseOutcome, NewEvent, NewRun, QueueStats, QueuedRun, RateAcquire,
    RateCost, RateDecision, RunFilter, RunHistory, RunRecord, RunStatus, RunUpdate, SignalRecord, StepRecord,
    StepStatus, StoreErrorKind,
};
use rusqlite::types::{ToSql, ValueRef};
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, params, params_from_iter};

/// The schema version this version of durably-sqlite writes and understands, kept in the
/// file's `PRAGMA user_version` (0 is a file durably has not set up yet). A file with a higher
/// version is refused when opened.
///
/// - 1: `runs`, `steps`, `signals`.
/// - 2: adds `leases` (one row per run executing somewhere, for several processes on one file).
/// - 3: adds queues (the queue columns of `runs`, `queue_claims`) and event logs (`events`).
/// - 4: adds each run's claim time and worker version (columns of `runs`), and the index
///   claims walk in claim order.
/// - 5: adds rate limits (`rate_grants`, `rate_blocks`).
pub const SCHEMA_VERSION: i64 = 5;

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

/// What schema version 3 adds to version 2: queues and event logs.
///
/// A queued run keeps its queue, priority, concurrency key and parent in its row; `wake_at_ms`
/// is set only while it is parked. `runs_runnable` serves claims (the runs of one queue by
/// status, in the order claims take them), `runs_by_parent` the listing of children, and
/// `runs_by_wake` finding due timers. `queue_claims` counts the claims of each queue per
/// millisecond, for the rate limit; claims prune what fell out of the window. `events` holds
/// each run's log, its key the run id and the dense offset.
pub(crate) const SCHEMA_V3: &str = "
ALTER TABLE runs ADD COLUMN queue TEXT;
ALTER TABLE runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN queue_key TEXT;
ALTER TABLE runs ADD COLUMN parent_id TEXT;
ALTER TABLE runs ADD COLUMN wake_at_ms INTEGER;
CREATE INDEX IF NOT EXISTS runs_runnable ON runs (queue, status, priority DESC, created_at_ms, run_id)
    WHERE queue IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_by_parent ON runs (parent_id, created_at_ms, run_id) WHERE parent_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_by_wake ON runs (wake_at_ms) WHERE wake_at_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS queue_claims (
    queue         TEXT NOT NULL,
    claimed_at_ms INTEGER NOT NULL,
    claims        INTEGER NOT NULL,
    PRIMARY KEY (queue, claimed_at_ms)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    run_id       TEXT NOT NULL,
    event_offset INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    data         TEXT NOT NULL,
    at_ms        INTEGER NOT NULL,
    PRIMARY KEY (run_id, event_offset)
) STRICT, WITHOUT ROWID;
";

/// What schema version 4 adds to version 3: when a worker last claimed each run (what the
/// rate limit counted), the version of the worker the run is bound to (rule 26 of
/// docs/design.md), and `runs_claim_order`: the runs of each queue that are runnable whatever
/// the time (parked runs excepted), in the order claims take them, so a claim without a per-key
/// limit reads its few runs off the index instead of sorting the queue's backlog, and no claim
/// walks the parked runs (due ones come from `runs_by_wake`).
pub(crate) const SCHEMA_V4: &str = "
ALTER TABLE runs ADD COLUMN claimed_at_ms INTEGER;
ALTER TABLE runs ADD COLUMN version TEXT;
CREATE INDEX IF NOT EXISTS runs_claim_order ON runs (queue, priority DESC, created_at_ms, run_id)
    WHERE queue IS NOT NULL AND (status IN ('enqueued', 'running') OR (status = 'waiting' AND wake_at_ms IS NULL));
";

/// What schema version 5 adds to version 4: rate limits.
///
/// `rate_grants` is each key's log of grants, found by id (a settle) and read in time order
/// (an acquire, which first prunes what fell out of its window); `rate_blocks` the end of each
/// key's block (a provider's 429). Times are by the clock of the machine sharing the file.
pub(crate) const SCHEMA_V5: &str = "
CREATE TABLE IF NOT EXISTS rate_grants (
    rate_key TEXT NOT NULL,
    grant_id TEXT NOT NULL,
    at_ms    INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    tokens   INTEGER NOT NULL,
    PRIMARY KEY (rate_key, grant_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rate_grants_by_time ON rate_grants (rate_key, at_ms);
CREATE TABLE IF NOT EXISTS rate_blocks (
    rate_key         TEXT NOT NULL PRIMARY KEY,
    blocked_until_ms INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
";

macro_rules! run_columns {
    () => {
        "run_id, workflow, status, input, output, error, waiting_on, created_at_ms, updated_at_ms, \
         queue, parent_id, wake_at_ms, claimed_at_ms, version"
    };
}

/// A live lease covers `runs.run_id` at the time in parameter `$now`.
macro_rules! live_lease {
    ($now:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM leases WHERE leases.run_id = runs.run_id AND leases.expires_at_ms > ",
            $now,
            ")"
        )
    };
}

/// Runnable whatever the time (the lease aside): enqueued, running (its worker died) or waiting
/// without being parked. Written as the predicate of `runs_claim_order`, so that SQLite may use
/// that index.
macro_rules! unparked {
    () => {
        "(runs.status IN ('enqueued', 'running') OR (runs.status = 'waiting' AND runs.wake_at_ms IS NULL))"
    };
}

/// Parked in queue `$queue` and due at `$now`. Only the timer's condition may use an index
/// (the others are written `+column`, which SQLite never looks up by index), so the planner
/// walks `runs_by_wake` over the due runs (it holds only parked runs, due ones first): with
/// the queue and status conditions plain, it walked every parked run of the queue through
/// `runs_runnable` instead, on every claim.
macro_rules! parked_due {
    ($queue:literal, $now:literal) => {
        concat!("(runs.wake_at_ms <= ", $now, " AND +runs.queue = ", $queue, " AND +runs.status = 'waiting')")
    };
}

/// A worker of version `$v` (NULL: unversioned) may claim the run: its version, or none and
/// never executed (rule 26 of docs/design.md).
macro_rules! version_allows {
    ($v:literal) => {
        concat!(
            "(",
            $v,
            " IS NULL OR runs.version = ",
            $v,
            " OR (runs.version IS NULL AND runs.status = 'enqueued'))"
        )
    };
}

/// The runs of queue `?1` that execute at `?2` (unfinished, under a live lease), found from
/// the live leases, which are few, rather than from the queue's runs, which may be many.
macro_rules! executing_runs {
    () => {
        "leases CROSS JOIN runs ON runs.run_id = leases.run_id
         WHERE leases.expires_at_ms > ?2 AND runs.queue = ?1
           AND runs.status IN ('enqueued', 'running', 'waiting')"
    };
}

const OPEN_RUN: &str = "
INSERT INTO runs (run_id, workflow, status, input, output, error, waiting_on, created_at_ms, updated_at_ms)
VALUES (?1, ?2, 'running', ?3, NULL, NULL, NULL, ?4, ?4)
ON CONFLICT (run_id) DO UPDATE SET
    status = 'running', error = NULL, waiting_on = NULL, wake_at_ms = NULL,
    updated_at_ms = excluded.updated_at_ms
WHERE runs.workflow = excluded.workflow AND runs.status IN ('enqueued', 'running', 'waiting', 'failed')";

const GET_RUN: &str = concat!("SELECT ", run_columns!(), " FROM runs WHERE run_id = ?1");

const UPDATE_RUN: &str = "
UPDATE runs SET status = ?2, output = ?3, error = ?4, waiting_on = ?5, wake_at_ms = NULL, updated_at_ms = ?6
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
FROM steps WHERE run_id = CAST(?1 AS TEXT) ORDER BY started_at_ms, step_id";

const DELIVER_SIGNAL: &str = "
INSERT INTO signals (run_id, name, payload, delivered_at_ms) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (run_id, name) DO NOTHING";

const GET_SIGNAL: &str = "SELECT payload FROM signals WHERE run_id = ?1 AND name = ?2";

const LIST_SIGNALS: &str = "SELECT name, payload, delivered_at_ms FROM signals WHERE run_id = CAST(?1 AS TEXT) ORDER BY delivered_at_ms, name";

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

/// Unfinished runs without a live lease, oldest first (through `runs_by_status`); parked runs
/// (`wake_at_ms` set) are not recovered but claimed.
const RECOVERABLE_RUNS: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM runs WHERE status IN ('running', 'waiting') AND wake_at_ms IS NULL AND queue IS NULL",
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

/// What `deliver_signal` did: whether it recorded the signal, and the queue of the parked run
/// it made runnable, if any.
pub(crate) struct Delivery {
    pub(crate) delivered: bool,
    pub(crate) unparked: Option<String>,
}

/// Records a signal unless one of that name exists, and moves the wake time of a run parked on
/// it to the delivery (in the writer's transaction, so no park can slip in between).
pub(crate) fn deliver_signal(
    conn: &Connection,
    run_id: &str,
    signal: &SignalRecord,
) -> Result<Delivery, Fail> {
    let inserted = conn.prepare_cached(DELIVER_SIGNAL)?.execute(params![
        run_id,
        signal.name,
        signal.payload,
        signal.delivered_at_ms
    ])?;
    if inserted != 1 {
        return Ok(Delivery { delivered: false, unparked: None });
    }
    let mut stmt = conn.prepare_cached(UNPARK)?;
    let mut rows = stmt.query(params![run_id, signal.name, signal.delivered_at_ms])?;
    let unparked = match rows.next()? {
        Some(row) => opt_text(row, 0, "queue").map_err(|d| corrupt(run_id, None, d))?,
        None => None,
    };
    Ok(Delivery { delivered: true, unparked })
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

/// Runs matching a filter, newest first.
pub(crate) fn list_runs(conn: &Connection, filter: &RunFilter) -> Result<Vec<RunRecord>, Fail> {
    // SQLite reads a negative LIMIT as "no limit".
    let limit = filter.limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
    let status = filter.status.map(RunStatus::as_str);
    // One statement per combination of filters (at most 16, each cached), so that each uses
    // the index of its most selective column.
    let range = filter.run_id_range();
    let mut args: Vec<&dyn ToSql> = vec![&limit];
    let mut conditions = Vec::new();
    let wanted: [(&str, Option<&str>); 4] = [
        ("status", status),
        ("workflow", filter.workflow.as_deref()),
        ("queue", filter.queue.as_deref()),
        ("parent_id", filter.parent_id.as_deref()),
    ];
    for (column, value) in &wanted {
        if let Some(value) = value {
            args.push(value);
            conditions.push(format!("{column} = ?{}", args.len()));
        }
    }
    // A run id prefix is a range of the primary key: reading the runs of one family (a
    // session's turns) costs what they are, not the table.
    if let Some((from, to)) = &range {
        args.push(from);
        conditions.push(format!("run_id >= ?{}", args.len()));
        if let Some(to) = to {
            args.push(to);
            conditions.push(format!("run_id < ?{}", args.len()));
        }
    }
    let mut sql = concat!("SELECT ", run_columns!(), " FROM runs").to_owned();
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    sql.push_str(" ORDER BY created_at_ms DESC, run_id DESC LIMIT ?1");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query(params_from_iter(args))?;
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
    run.queue = opt_text(row, 9, "queue").map_err(bad)?;
    run.parent_id = opt_text(row, 10, "parent_id").map_err(bad)?;
    run.wake_at_ms = opt_int(row, 11, "wake_at_ms").map_err(bad)?;
    run.claimed_at_ms = opt_int(row, 12, "claimed_at_ms").map_err(bad)?;
    run.version = opt_text(row, 13, "version").map_err(bad)?;
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
const DELETE_RUN_EVENTS: &str = "DELETE FROM events WHERE run_id = ?1";
const DELETE_RUN: &str = "DELETE FROM runs WHERE run_id = ?1";

const UPDATE_RUN_UNLESS_CANCELLED: &str = "
UPDATE runs SET status = ?2, output = ?3, error = ?4, waiting_on = ?5, wake_at_ms = NULL, updated_at_ms = ?6
WHERE run_id = ?1 AND status <> 'cancelled'";

const RUN_EXISTS: &str = "SELECT 1 FROM runs WHERE run_id = ?1";

/// Deletes a run with its steps, signals, lease and events (one transaction); true when the
/// run row existed. A queue's claim times belong to the queue, not to the run.
pub(crate) fn delete_run(conn: &Connection, run_id: &str) -> Result<bool, Fail> {
    for sql in [DELETE_RUN_STEPS, DELETE_RUN_SIGNALS, DELETE_RUN_LEASE, DELETE_RUN_EVENTS] {
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

// ---------------------------------------------------------------------------------------------
// Queues

/// Moves a parked run's wake time to the delivery of the signal it waits for.
const UNPARK: &str = "
UPDATE runs SET wake_at_ms = MIN(wake_at_ms, ?3)
WHERE run_id = ?1 AND status = 'waiting' AND waiting_on = ?2 AND wake_at_ms IS NOT NULL
RETURNING queue";

const ENQUEUE: &str = "
INSERT INTO runs (run_id, workflow, status, input, created_at_ms, updated_at_ms, queue, priority, queue_key, parent_id,
                  version)
VALUES (?1, ?2, 'enqueued', ?3, ?4, ?4, ?5, ?6, ?7, ?8, ?9)
ON CONFLICT (run_id) DO NOTHING";

const PRUNE_CLAIMS: &str = "DELETE FROM queue_claims WHERE queue = ?1 AND claimed_at_ms <= ?2";
const CLEAR_CLAIMS: &str = "DELETE FROM queue_claims WHERE queue = ?1";
const COUNT_CLAIMS: &str = "SELECT COALESCE(SUM(claims), 0) FROM queue_claims WHERE queue = ?1";
const RECORD_CLAIMS: &str = "
INSERT INTO queue_claims (queue, claimed_at_ms, claims) VALUES (?1, ?2, ?3)
ON CONFLICT (queue, claimed_at_ms) DO UPDATE SET claims = claims + excluded.claims";

/// The runs of queue `?1` that execute at `?2`: unfinished, under a live lease.
const COUNT_EXECUTING: &str = concat!("SELECT COUNT(*) FROM ", executing_runs!());

/// The runs a claim of queue `?1` at `?2` takes, at most `?4`, in claim order: runnable, and,
/// under a per-key limit `?3`, only as many of each key as its executing runs leave room for
/// (each key's candidates are numbered in claim order).
const CLAIM_CANDIDATES: &str = concat!(
    "WITH executing AS (
        SELECT runs.queue_key, COUNT(*) AS n FROM ",
    executing_runs!(),
    " AND runs.queue_key IS NOT NULL GROUP BY runs.queue_key
     ), runnable AS (
        SELECT run_id, queue_key, priority, created_at_ms FROM runs WHERE queue = ?1 AND ",
    unparked!(),
    " AND NOT ",
    live_lease!("?2"),
    " AND ",
    version_allows!("?5"),
    " UNION ALL
        SELECT run_id, queue_key, priority, created_at_ms FROM runs WHERE ",
    parked_due!("?1", "?2"),
    " AND NOT ",
    live_lease!("?2"),
    " AND ",
    version_allows!("?5"),
    " ), candidates AS (
        SELECT run_id, queue_key, priority, created_at_ms,
               ROW_NUMBER() OVER (PARTITION BY queue_key ORDER BY priority DESC, created_at_ms, run_id) AS nth
        FROM runnable
     )
     SELECT c.run_id FROM candidates c LEFT JOIN executing e ON e.queue_key = c.queue_key
     WHERE ?3 IS NULL OR c.queue_key IS NULL OR c.nth + COALESCE(e.n, 0) <= ?3
     ORDER BY c.priority DESC, c.created_at_ms, c.run_id
     LIMIT ?4"
);

/// `CLAIM_CANDIDATES` without a per-key limit (`?3` is NULL): the first `?4` unparked runs off
/// `runs_claim_order`, merged with the first `?4` parked runs to fall due off `runs_by_wake`,
/// then cut to `?4`; neither the queue's backlog nor the runs that fell due at once are sorted.
const CLAIM_CANDIDATES_IN_ORDER: &str = concat!(
    "SELECT run_id FROM (
        SELECT * FROM (
            SELECT run_id, priority, created_at_ms FROM runs WHERE queue = ?1 AND ",
    unparked!(),
    " AND NOT ",
    live_lease!("?2"),
    " AND ",
    version_allows!("?5"),
    " ORDER BY priority DESC, created_at_ms, run_id LIMIT ?4)
        UNION ALL
        SELECT * FROM (
            SELECT run_id, priority, created_at_ms FROM runs WHERE ",
    parked_due!("?1", "?2"),
    " AND NOT ",
    live_lease!("?2"),
    " AND ",
    version_allows!("?5"),
    " AND ?3 IS NULL ORDER BY wake_at_ms LIMIT ?4)
     ) ORDER BY priority DESC, created_at_ms, run_id LIMIT ?4"
);

/// Claims a run at `?2` for a worker of version `?3` (NULL: unversioned), recording the claim
/// time and binding a run without a version to the worker's.
const CLAIM_RUN: &str = "
UPDATE runs SET status = 'running', waiting_on = NULL, wake_at_ms = NULL, updated_at_ms = ?2,
    claimed_at_ms = ?2, version = COALESCE(version, ?3)
WHERE run_id = ?1";

/// The claimer's lease: the candidates had no live lease, and the write lock keeps it so.
const CLAIM_LEASE: &str = "
INSERT INTO leases (run_id, owner, expires_at_ms) VALUES (?1, ?2, ?3)
ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner, expires_at_ms = excluded.expires_at_ms";

const PARK_SIGNAL_DELIVERED: &str = "SELECT 1 FROM signals WHERE run_id = ?1 AND name = ?2";

const PARK_RUN: &str = "
UPDATE runs SET status = 'waiting', waiting_on = ?2, wake_at_ms = ?3, updated_at_ms = ?4
WHERE run_id = ?1 AND status <> 'cancelled'
RETURNING queue";

/// Executing, enqueued and parked runs of queue `?1` at `?2`, and the oldest enqueued (each
/// through `runs_runnable`, or the leases).
const QUEUE_STATS: &str = concat!(
    "SELECT (SELECT COUNT(*) FROM ",
    executing_runs!(),
    "), enqueued.n, parked.n, enqueued.oldest
     FROM (SELECT COUNT(*) AS n, MIN(created_at_ms) AS oldest FROM runs
           WHERE queue = ?1 AND status = 'enqueued' AND NOT ",
    live_lease!("?2"),
    ") AS enqueued,
          (SELECT COUNT(*) AS n FROM runs
           WHERE queue = ?1 AND status = 'waiting' AND wake_at_ms IS NOT NULL AND NOT ",
    live_lease!("?2"),
    ") AS parked"
);

/// The queues holding a run, by a skip scan of `runs_runnable` (whose first column is the
/// queue): one index seek per queue, however many runs each holds.
const QUEUE_NAMES: &str = "WITH RECURSIVE q(name) AS (
         SELECT MIN(queue) FROM runs WHERE queue IS NOT NULL
         UNION ALL
         SELECT (SELECT MIN(queue) FROM runs WHERE queue > q.name) FROM q WHERE q.name IS NOT NULL
     )
     SELECT name FROM q WHERE name IS NOT NULL";

/// Which of the queues of the JSON array `?1` have a runnable run at `?2` (one is enough): an
/// unparked one through `runs_claim_order`, or a due parked one through `runs_by_wake`.
const RUNNABLE_QUEUES: &str = concat!(
    "SELECT w.value FROM json_each(?1) AS w WHERE EXISTS (SELECT 1 FROM runs WHERE runs.queue = w.value AND ",
    unparked!(),
    " AND NOT ",
    live_lease!("?2"),
    ") OR EXISTS (SELECT 1 FROM runs WHERE ",
    parked_due!("w.value", "?2"),
    " AND NOT ",
    live_lease!("?2"),
    ")"
);

/// Creates an enqueued run unless its id exists; the run as stored, and whether this call
/// created it.
pub(crate) fn enqueue(conn: &Connection, run: &QueuedRun) -> Result<(RunRecord, bool), Fail> {
    let created = conn.prepare_cached(ENQUEUE)?.execute(params![
        run.run_id,
        run.workflow,
        run.input,
        run.now_ms,
        run.queue,
        run.priority,
        run.key,
        run.parent_id,
        run.version,
    ])? == 1;
    let stored = get_run(conn, &run.run_id)?
        .ok_or_else(|| Fail::Message("the run's row is missing right after it was written".to_owned()))?;
    Ok((stored, created))
}

/// Claims runs of `claim.queue` under its limits (see `Queues::claim_runs`). Runs in the
/// writer's `BEGIN IMMEDIATE` transaction: the file's write lock makes the counts, the choice
/// and the writes one atomic step against every other store and process on the file.
///
/// The claim's time is read here, under the write lock (or is the caller's, when later): claim
/// times then grow in commit order across processes, so the rate window each claim counts
/// (`queue_claims`, `claimed_at_ms`) holds exactly, not only up to how long a claim waited for
/// the lock.
pub(crate) fn claim_runs(conn: &Connection, claim: &Claim) -> Result<Vec<RunRecord>, Fail> {
    let now = claim.now_ms.max(durably_core::now_ms());
    let limits = claim.limits;
    let queue = claim.queue.as_str();
    let mut allowed = i64::try_from(claim.max).unwrap_or(i64::MAX);
    match limits.rate {
        Some(rate) => {
            conn.prepare_cached(PRUNE_CLAIMS)?.execute(params![queue, now.saturating_sub(rate.period_ms)])?;
            let recent: i64 = conn.prepare_cached(COUNT_CLAIMS)?.query_row([queue], |row| row.get(0))?;
            allowed = allowed.min(i64::from(rate.starts).saturating_sub(recent));
        }
        None => {
            conn.prepare_cached(CLEAR_CLAIMS)?.execute([queue])?;
        }
    }
    if let Some(concurrency) = limits.concurrency {
        let executing: i64 =
            conn.prepare_cached(COUNT_EXECUTING)?.query_row(params![queue, now], |row| row.get(0))?;
        allowed = allowed.min(i64::from(concurrency).saturating_sub(executing));
    }
    if allowed <= 0 {
        return Ok(Vec::new());
    }
    let per_key = limits.per_key.map(i64::from);
    let chosen: Vec<String> = {
        let sql = if per_key.is_some() { CLAIM_CANDIDATES } else { CLAIM_CANDIDATES_IN_ORDER };
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt.query(params![queue, now, per_key, allowed, claim.version])?;
        collect(rows, |row| text(row, 0, "run_id").map_err(|d| corrupt(&lossy(row, 0), None, d)))?
    };
    let expires_at_ms = now.saturating_add(i64::try_from(claim.ttl.as_millis()).unwrap_or(i64::MAX));
    let mut claimed = Vec::with_capacity(chosen.len());
    for run_id in &chosen {
        conn.prepare_cached(CLAIM_RUN)?.execute(params![run_id, now, claim.version])?;
        conn.prepare_cached(CLAIM_LEASE)?.execute(params![run_id, claim.owner, expires_at_ms])?;
        let run = get_run(conn, run_id)?.ok_or_else(|| {
            Fail::Message(format!("claimed run `{run_id}` vanished inside the transaction"))
        })?;
        claimed.push(run);
    }
    if limits.rate.is_some() && !claimed.is_empty() {
        let count = i64::try_from(claimed.len()).unwrap_or(i64::MAX);
        conn.prepare_cached(RECORD_CLAIMS)?.execute(params![queue, now, count])?;
    }
    Ok(claimed)
}

/// What `park_run` did: whether it parked the run, and the run's queue when the awaited signal
/// was already delivered (the run is runnable at once).
pub(crate) struct Parked {
    pub(crate) parked: bool,
    pub(crate) runnable_in: Option<String>,
}

/// Parks a run unless it is cancelled (see `Queues::park_run`), releasing `owner`'s lease.
pub(crate) fn park_run(
    conn: &Connection,
    run_id: &str,
    owner: &str,
    waiting_on: &str,
    wake_at_ms: Option<i64>,
    now_ms: i64,
) -> Result<Parked, Fail> {
    let delivered = conn.prepare_cached(PARK_SIGNAL_DELIVERED)?.exists([run_id, waiting_on])?;
    let wake_at = if delivered { now_ms } else { wake_at_ms.unwrap_or(i64::MAX) };
    let mut stmt = conn.prepare_cached(PARK_RUN)?;
    let mut rows = stmt.query(params![run_id, waiting_on, wake_at, now_ms])?;
    let queue = match rows.next()? {
        Some(row) => opt_text(row, 0, "queue").map_err(|d| corrupt(run_id, None, d))?,
        None => {
            drop(rows);
            return if conn.prepare_cached(RUN_EXISTS)?.exists([run_id])? {
                Ok(Parked { parked: false, runnable_in: None })
            } else {
                Err(Fail::Store(Error::RunNotFound { run_id: run_id.to_owned() }))
            };
        }
    };
    drop(rows);
    conn.prepare_cached(RELEASE_LEASE)?.execute([run_id, owner])?;
    Ok(Parked { parked: true, runnable_in: queue.filter(|_| delivered) })
}

/// The counts of one queue at `now_ms`.
pub(crate) fn queue_stats(conn: &Connection, queue: &str, now_ms: i64) -> Result<QueueStats, Fail> {
    let mut stmt = conn.prepare_cached(QUEUE_STATS)?;
    let mut rows = stmt.query(params![queue, now_ms])?;
    let row = rows.next()?.ok_or_else(|| Fail::Message("an aggregate returned no row".to_owned()))?;
    let bad = |detail: String| corrupt(&format!("(queue `{queue}`)"), None, detail);
    let count = |idx: usize, column: &str| -> Result<u64, Fail> {
        let n = int(row, idx, column).map_err(bad)?;
        u64::try_from(n).map_err(|_| bad(format!("{column} is {n}")))
    };
    let mut stats = QueueStats::default();
    stats.executing = count(0, "executing")?;
    stats.enqueued = count(1, "enqueued")?;
    stats.parked = count(2, "parked")?;
    stats.oldest_enqueued_at_ms = opt_int(row, 3, "oldest enqueued").map_err(bad)?;
    Ok(stats)
}

/// The names of the queues holding a run, in byte order.
pub(crate) fn queue_names(conn: &Connection) -> Result<Vec<String>, Fail> {
    let mut stmt = conn.prepare_cached(QUEUE_NAMES)?;
    let rows = stmt.query([])?;
    let mut names = collect(rows, |row| text(row, 0, "queue").map_err(|d| corrupt("(a queue)", None, d)))?;
    names.sort_unstable();
    Ok(names)
}

/// The queues among `queues_json` (a JSON array) with a runnable run at `now_ms`.
pub(crate) fn runnable_queues(
    conn: &Connection,
    queues_json: &str,
    now_ms: i64,
) -> Result<Vec<String>, Fail> {
    let mut stmt = conn.prepare_cached(RUNNABLE_QUEUES)?;
    let rows = stmt.query(params![queues_json, now_ms])?;
    collect(rows, |row| text(row, 0, "queue").map_err(|d| corrupt("(a queue)", None, d)))
}

// ---------------------------------------------------------------------------------------------
// Events

/// `CAST(?1 AS TEXT)` rather than `?1`, here and in [`READ_EVENTS`]: with a plain parameter
/// compared to the first column of the key whose second column orders the result, SQLite marks
/// the plan as depending on the parameter's value and prepares the statement again at every
/// execution, which cost more than the append itself.
const NEXT_OFFSET: &str = "SELECT MAX(event_offset) + 1 FROM events WHERE run_id = CAST(?1 AS TEXT)";

const APPEND_EVENT: &str =
    "INSERT INTO events (run_id, event_offset, kind, data, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)";

/// The events of a log older than the ones it keeps.
const DROP_EVENTS: &str = "DELETE FROM events WHERE run_id = CAST(?1 AS TEXT) AND event_offset < ?2";

const READ_EVENTS: &str = "
SELECT event_offset, kind, data, at_ms FROM events
WHERE run_id = CAST(?1 AS TEXT) AND event_offset >= ?2 ORDER BY event_offset LIMIT CAST(?3 AS INTEGER)";

/// Which of the `[run_id, from]` pairs of the JSON array `?1` have an event at `from` or later.
const EVENTS_AMONG: &str = "
SELECT json_extract(w.value, '$[0]'), json_extract(w.value, '$[1]') FROM json_each(?1) AS w
WHERE EXISTS (SELECT 1 FROM events AS e
              WHERE e.run_id = json_extract(w.value, '$[0]') AND e.event_offset >= json_extract(w.value, '$[1]'))";

/// Appends `events` at the next offsets of `run_id`'s log and drops the events older than the
/// newest `keep` (the events of a batch longer than that are not written). In the writer's
/// transaction, which holds the file's write lock: no other append can take the same offsets.
/// The newest event always stays, so the next offset (one past the greatest) never goes back.
pub(crate) fn append_events(
    conn: &Connection,
    run_id: &str,
    events: &[NewEvent],
    keep: u64,
) -> Result<u64, Fail> {
    let first: Option<i64> = conn.prepare_cached(NEXT_OFFSET)?.query_row([run_id], |row| row.get(0))?;
    let first = first.unwrap_or(0);
    let end = first.saturating_add(i64::try_from(events.len()).unwrap_or(i64::MAX));
    let oldest = end.saturating_sub(i64::try_from(keep.max(1)).unwrap_or(i64::MAX));
    let mut insert = conn.prepare_cached(APPEND_EVENT)?;
    for (i, event) in (first..).zip(events).filter(|(i, _)| *i >= oldest) {
        insert.execute(params![run_id, i, event.kind, event.data, event.at_ms])?;
    }
    if oldest > 0 {
        conn.prepare_cached(DROP_EVENTS)?.execute(params![run_id, oldest])?;
    }
    u64::try_from(first).map_err(|_| corrupt(run_id, None, format!("event offset {first} is negative")))
}

/// At most `limit` events of `run_id` from offset `from`.
pub(crate) fn read_events(
    conn: &Connection,
    run_id: &str,
    from: u64,
    limit: usize,
) -> Result<Vec<EventRecord>, Fail> {
    // Offsets are stored as SQLite integers: none is beyond `i64::MAX`.
    let Ok(from) = i64::try_from(from) else { return Ok(Vec::new()) };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(READ_EVENTS)?;
    let rows = stmt.query(params![run_id, from, limit])?;
    collect(rows, |row| {
        let bad = |detail: String| corrupt(run_id, None, format!("an event: {detail}"));
        let offset = int(row, 0, "event_offset").map_err(bad)?;
        let offset = u64::try_from(offset).map_err(|_| bad(format!("offset {offset} is negative")))?;
        let event = NewEvent::new(
            text(row, 1, "kind").map_err(bad)?,
            text(row, 2, "data").map_err(bad)?,
            int(row, 3, "at_ms").map_err(bad)?,
        );
        Ok(EventRecord::new(offset, event))
    })
}

/// The `(run_id, from)` pairs among `pairs_json` whose log has an event at `from` or later.
pub(crate) fn events_among(conn: &Connection, pairs_json: &str) -> Result<Vec<(String, u64)>, Fail> {
    let mut stmt = conn.prepare_cached(EVENTS_AMONG)?;
    let rows = stmt.query([pairs_json])?;
    collect(rows, |row| {
        let run_id = text(row, 0, "run_id").map_err(|d| corrupt(&lossy(row, 0), None, d))?;
        let from = int(row, 1, "from").map_err(|d| corrupt(&run_id, None, d))?;
        Ok((run_id, u64::try_from(from).unwrap_or(0)))
    })
}

const GRANT_EXISTS: &str = "SELECT 1 FROM rate_grants WHERE rate_key = ?1 AND grant_id = ?2";
const PRUNE_GRANTS: &str = "DELETE FROM rate_grants WHERE rate_key = ?1 AND at_ms <= ?2";
const RATE_LOG: &str =
    "SELECT at_ms, requests, tokens FROM rate_grants WHERE rate_key = ?1 ORDER BY at_ms, grant_id";
const RATE_BLOCK: &str = "SELECT blocked_until_ms FROM rate_blocks WHERE rate_key = ?1";
const PUT_GRANT: &str = "
INSERT INTO rate_grants (rate_key, grant_id, at_ms, requests, tokens) VALUES (?1, ?2, ?3, ?4, ?5)
ON CONFLICT (rate_key, grant_id) DO UPDATE
SET at_ms = excluded.at_ms, requests = excluded.requests, tokens = excluded.tokens";
const BLOCK_RATE: &str = "
INSERT INTO rate_blocks (rate_key, blocked_until_ms) VALUES (?1, ?2)
ON CONFLICT (rate_key) DO UPDATE SET blocked_until_ms = max(blocked_until_ms, excluded.blocked_until_ms)";

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The acquire of `RateLimits::acquire_rate`, in the writer's transaction (which holds the
/// file's write lock): the log read and the grant written are one step for every process.
pub(crate) fn acquire_rate(conn: &Connection, acquire: &RateAcquire) -> Result<RateDecision, Fail> {
    let key = acquire.key.as_str();
    if conn.prepare_cached(GRANT_EXISTS)?.exists([key, acquire.grant_id.as_str()])? {
        return Ok(RateDecision::Granted);
    }
    let now = acquire.now_ms;
    conn.prepare_cached(PRUNE_GRANTS)?.execute(params![key, now.saturating_sub(acquire.limit.period_ms)])?;
    let blocked: i64 =
        conn.prepare_cached(RATE_BLOCK)?.query_row([key], |row| row.get(0)).optional()?.unwrap_or(0);
    let log = {
        let mut stmt = conn.prepare_cached(RATE_LOG)?;
        let rows = stmt.query([key])?;
        collect(rows, |row| {
            let number = |i, what| int(row, i, what).map_err(|d| corrupt(key, None, d));
            Ok(LoggedGrant {
                at_ms: number(0, "at_ms")?,
                requests: u64::try_from(number(1, "requests")?).unwrap_or(0),
                tokens: u64::try_from(number(2, "tokens")?).unwrap_or(0),
            })
        })?
    };
    let decision = decide(&acquire.limit, acquire.cost, &log, blocked, now);
    if decision == RateDecision::Granted {
        let cost = acquire.cost;
        conn.prepare_cached(PUT_GRANT)?.execute(params![
            key,
            acquire.grant_id,
            now,
            i64::from(cost.requests),
            clamp(cost.tokens)
        ])?;
    }
    Ok(decision)
}

/// `RateLimits::settle_rate`: the grant counts `actual` from the end of `now_ms`.
pub(crate) fn settle_rate(
    conn: &Connection,
    key: &str,
    grant_id: &str,
    actual: RateCost,
    now_ms: i64,
) -> Result<(), Fail> {
    conn.prepare_cached(PUT_GRANT)?.execute(params![
        key,
        grant_id,
        now_ms.saturating_add(1),
        i64::from(actual.requests),
        clamp(actual.tokens)
    ])?;
    Ok(())
}

/// `RateLimits::block_rate`: the later of the block in place and `until_ms`.
pub(crate) fn block_rate(conn: &Connection, key: &str, until_ms: i64) -> Result<(), Fail> {
    conn.prepare_cached(BLOCK_RATE)?.execute(params![key, until_ms])?;
    Ok(())
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rusqlite::{Connection, StatementStatus};

    use super::*;

    /// The statements of every step, append and read are prepared once: a plan that SQLite
    /// ties to the parameters' values would be prepared again at each execution.
    #[test]
    fn hot_statements_are_not_prepared_again_per_execution() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA_V1).unwrap();
        conn.execute_batch(SCHEMA_V2).unwrap();
        conn.execute_batch(SCHEMA_V3).unwrap();
        let statements: [(&str, &str, &[&dyn ToSql]); 5] = [
            ("NEXT_OFFSET", NEXT_OFFSET, &[&"r"]),
            ("READ_EVENTS", READ_EVENTS, &[&"r", &0, &10]),
            ("LIST_STEPS", LIST_STEPS, &[&"r"]),
            ("GET_SIGNAL", GET_SIGNAL, &[&"r", &"go"]),
            ("LIST_SIGNALS", LIST_SIGNALS, &[&"r"]),
        ];
        for (name, sql, params) in statements {
            for i in 0..5 {
                conn.execute(APPEND_EVENT, params!["r", i, "k", "{}", 0]).ok();
                let mut stmt = conn.prepare_cached(sql).unwrap();
                let mut rows = stmt.query(params).unwrap();
                while rows.next().unwrap().is_some() {}
            }
            let stmt = conn.prepare_cached(sql).unwrap();
            assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0, "{name} was prepared again");
        }
    }

    /// A claim, the count of a queue's executing runs and a worker's look for work read the
    /// few rows they need, never every parked run of the queue: each statement's virtual
    /// machine steps stay below one per parked run (walking the parked runs takes several each).
    #[test]
    fn claims_never_walk_the_parked_runs() {
        const PARKED: i64 = 20_000;
        let conn = Connection::open_in_memory().unwrap();
        for schema in [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5] {
            conn.execute_batch(schema).unwrap();
        }
        conn.execute_batch(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {PARKED})
             INSERT INTO runs (run_id, workflow, status, input, created_at_ms, updated_at_ms, queue, waiting_on, wake_at_ms)
             SELECT 'parked-' || i, 'wf', 'waiting', '1', i, i, 'q', 'go', 9223372036854775807 FROM n;
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)
             INSERT INTO runs (run_id, workflow, status, input, created_at_ms, updated_at_ms, queue)
             SELECT 'enqueued-' || i, 'wf', 'enqueued', '1', {PARKED} + i, {PARKED} + i, 'q' FROM n;
             INSERT INTO runs (run_id, workflow, status, input, created_at_ms, updated_at_ms, queue, waiting_on, wake_at_ms)
             VALUES ('due-1', 'wf', 'waiting', '1', 0, 0, 'q', 'go', 5);"
        ))
        .unwrap();
        let now = 2_000_000i64;
        let none: Option<i64> = None;
        let no_version: Option<String> = None;
        let statements: [(&str, &str, &[&dyn ToSql]); 4] = [
            ("CLAIM_CANDIDATES_IN_ORDER", CLAIM_CANDIDATES_IN_ORDER, &[&"q", &now, &none, &64, &no_version]),
            ("CLAIM_CANDIDATES", CLAIM_CANDIDATES, &[&"q", &now, &1, &64, &no_version]),
            ("COUNT_EXECUTING", COUNT_EXECUTING, &[&"q", &now]),
            ("RUNNABLE_QUEUES", RUNNABLE_QUEUES, &[&"[\"q\"]", &now]),
        ];
        for (name, sql, params) in statements {
            let mut stmt = conn.prepare(sql).unwrap();
            let mut rows = stmt.query(params).unwrap();
            let mut found = 0;
            while rows.next().unwrap().is_some() {
                found += 1;
            }
            drop(rows);
            assert!(found > 0, "{name} found nothing");
            let steps = stmt.get_status(StatementStatus::VmStep);
            assert!(i64::from(steps) < PARKED, "{name} took {steps} steps with {PARKED} parked runs");
        }
    }
}
