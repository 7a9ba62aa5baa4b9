//! The `Store` trait every backend implements, and the records it keeps.
//!
//! Values are stored as JSON text: the engine serializes once with serde_json and a store keeps
//! the text byte for byte (so not as PostgreSQL `jsonb`, which reorders keys). Ids and names are
//! arbitrary UTF-8 without NUL characters. Times are milliseconds since the Unix epoch.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The lifecycle state of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RunStatus {
    /// Executing (or interrupted while executing: a crash leaves a run `running`).
    Running,
    /// Waiting on a signal.
    Waiting,
    /// Finished; its output is stored.
    Completed,
    /// The workflow returned an error; executing it again resumes at the failed step.
    Failed,
    /// Stopped by `cancel`; executing it again returns the cancellation.
    Cancelled,
}

impl RunStatus {
    /// The lowercase name used in stores and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Waiting => "waiting",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// True for `completed` and `cancelled`: executing such a run again runs no step.
    pub fn is_final(self) -> bool {
        matches!(self, RunStatus::Completed | RunStatus::Cancelled)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "running" => RunStatus::Running,
            "waiting" => RunStatus::Waiting,
            "completed" => RunStatus::Completed,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            other => {
                return Err(Error::Invalid {
                    what: "run status",
                    detail: format!("`{other}` is not one of running, waiting, completed, failed, cancelled"),
                });
            }
        })
    }
}

/// The state of one step record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum StepStatus {
    /// An `at_most_once` step whose intent was recorded before its body ran.
    Started,
    /// Finished with a value: replays return it.
    Completed,
    /// Failed on its last attempt: not cached, a new execution runs it again.
    Failed,
}

impl StepStatus {
    /// The lowercase name used in stores.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Started => "started",
            StepStatus::Completed => "completed",
            StepStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StepStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "started" => StepStatus::Started,
            "completed" => StepStatus::Completed,
            "failed" => StepStatus::Failed,
            other => {
                return Err(Error::Invalid {
                    what: "step status",
                    detail: format!("`{other}` is not one of started, completed, failed"),
                });
            }
        })
    }
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunRecord {
    /// The run id.
    pub run_id: String,
    /// The workflow that owns the run.
    pub workflow: String,
    /// Where the run is in its lifecycle.
    pub status: RunStatus,
    /// The workflow's arguments as a JSON object, kept for recovery.
    pub input: Option<String>,
    /// The JSON output of a completed run.
    pub output: Option<String>,
    /// The error text of a failed run.
    pub error: Option<String>,
    /// The signal a `waiting` run waits for.
    pub waiting_on: Option<String>,
    /// When the run was first started.
    pub created_at_ms: i64,
    /// When the run last changed.
    pub updated_at_ms: i64,
}

impl RunRecord {
    /// A new `running` record, as `open_run` creates it.
    pub fn new(
        run_id: impl Into<String>,
        workflow: impl Into<String>,
        input: Option<String>,
        now_ms: i64,
    ) -> Self {
        RunRecord {
            run_id: run_id.into(),
            workflow: workflow.into(),
            status: RunStatus::Running,
            input,
            output: None,
            error: None,
            waiting_on: None,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        }
    }
}

/// One checkpoint: the outcome of one task call (or signal, or sleep) in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StepRecord {
    /// The step id, unique within the run (`fetch`, `fetch#1`, `item-3`).
    pub step_id: String,
    /// The task name that produced it; replay checks it.
    pub name: String,
    /// Completed, failed, or started (at-most-once intent).
    pub status: StepStatus,
    /// The JSON value of a completed step.
    pub value: Option<String>,
    /// The error text of a failed step.
    pub error: Option<String>,
    /// How many times the body ran in the execution that wrote this record.
    pub attempts: u32,
    /// A canonical hash of the request, for agent steps; replay checks it.
    pub request_hash: Option<String>,
    /// When the step's first attempt started.
    pub started_at_ms: i64,
    /// When it completed or failed.
    pub finished_at_ms: Option<i64>,
}

impl StepRecord {
    /// A step record with the given outcome; `finished_at_ms` is `now_ms` unless `status` is
    /// `Started`.
    pub fn new(step_id: impl Into<String>, name: impl Into<String>, status: StepStatus, now_ms: i64) -> Self {
        StepRecord {
            step_id: step_id.into(),
            name: name.into(),
            status,
            value: None,
            error: None,
            attempts: 0,
            request_hash: None,
            started_at_ms: now_ms,
            finished_at_ms: (status != StepStatus::Started).then_some(now_ms),
        }
    }
}

/// A delivered signal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SignalRecord {
    /// The signal name.
    pub name: String,
    /// Its JSON payload.
    pub payload: String,
    /// When it was delivered.
    pub delivered_at_ms: i64,
}

impl SignalRecord {
    /// A delivered signal.
    pub fn new(name: impl Into<String>, payload: impl Into<String>, delivered_at_ms: i64) -> Self {
        SignalRecord { name: name.into(), payload: payload.into(), delivered_at_ms }
    }
}

/// What `open_run` returns: the run and everything recorded for it, read in one round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunHistory {
    /// The run, after `open_run`'s status change.
    pub run: RunRecord,
    /// Every step record of the run.
    pub steps: Vec<StepRecord>,
    /// Every signal delivered to the run.
    pub signals: Vec<SignalRecord>,
}

impl RunHistory {
    /// Assembles a history.
    pub fn new(run: RunRecord, steps: Vec<StepRecord>, signals: Vec<SignalRecord>) -> Self {
        RunHistory { run, steps, signals }
    }
}

/// A change of a run's status, with what goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunUpdate {
    /// The new status.
    pub status: RunStatus,
    /// The output, for `Completed`.
    pub output: Option<String>,
    /// The error text, for `Failed`.
    pub error: Option<String>,
    /// The awaited signal, for `Waiting`.
    pub waiting_on: Option<String>,
    /// The time of the change.
    pub now_ms: i64,
}

impl RunUpdate {
    /// A bare status change; output, error and `waiting_on` are cleared.
    pub fn new(status: RunStatus, now_ms: i64) -> Self {
        RunUpdate { status, output: None, error: None, waiting_on: None, now_ms }
    }

    /// Sets the output.
    pub fn output(mut self, output: impl Into<String>) -> Self {
        self.output = Some(output.into());
        self
    }

    /// Sets the error text.
    pub fn error(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into());
        self
    }

    /// Sets the awaited signal.
    pub fn waiting_on(mut self, name: impl Into<String>) -> Self {
        self.waiting_on = Some(name.into());
        self
    }
}

/// Which runs `list_runs` returns. Runs come newest first: by `created_at_ms` descending, then
/// by run id descending.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunFilter {
    /// Only runs in this status.
    pub status: Option<RunStatus>,
    /// Only runs of this workflow.
    pub workflow: Option<String>,
    /// At most this many runs.
    pub limit: Option<usize>,
}

impl RunFilter {
    /// Every run.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only runs in `status`.
    pub fn status(mut self, status: RunStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Only runs of `workflow`.
    pub fn workflow(mut self, workflow: impl Into<String>) -> Self {
        self.workflow = Some(workflow.into());
        self
    }

    /// At most `limit` runs.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Whether `run` passes the filter (the limit aside).
    pub fn matches(&self, run: &RunRecord) -> bool {
        self.status.is_none_or(|s| s == run.status)
            && self.workflow.as_deref().is_none_or(|w| w == run.workflow)
    }
}

/// A parameter of `open_run`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewRun {
    /// The run id.
    pub run_id: String,
    /// The workflow name.
    pub workflow: String,
    /// The workflow's arguments as JSON, stored only when the run is created.
    pub input: Option<String>,
    /// The current time.
    pub now_ms: i64,
}

impl NewRun {
    /// A run to open.
    pub fn new(
        run_id: impl Into<String>,
        workflow: impl Into<String>,
        input: Option<String>,
        now_ms: i64,
    ) -> Self {
        NewRun { run_id: run_id.into(), workflow: workflow.into(), input, now_ms }
    }
}

/// The lease one process holds on a run while it executes it (rule 9 across processes).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// Who holds it: an id unique to one engine in one process.
    pub owner: String,
    /// When it lapses unless renewed, in milliseconds since the Unix epoch (by the store's
    /// clock, which for Redis and PostgreSQL is the server's).
    pub expires_at_ms: i64,
}

impl Lease {
    /// A lease held by `owner` until `expires_at_ms`.
    pub fn new(owner: impl Into<String>, expires_at_ms: i64) -> Self {
        Lease { owner: owner.into(), expires_at_ms }
    }
}

/// What [`Store::acquire_lease`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseOutcome {
    /// The caller holds the lease now (taken, or renewed if it already held it).
    Acquired,
    /// Another owner holds a lease that has not expired; nothing changed.
    HeldBy(Lease),
}

/// Where durably keeps runs, steps and signals.
///
/// Implementations must be safe to share between tasks and threads (`Arc<dyn Store>`), and every
/// method that writes must have made its write durable (to the store's own standard) before it
/// returns. The conformance suite in `durably-testkit` checks each behaviour below.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Opens a run for execution, creating it (status `running`, with `input`) if absent, and
    /// returns it with its whole history in one round trip.
    ///
    /// An existing run of the *same* workflow whose status is `running`, `waiting` or `failed`
    /// is set to `running` (its error and `waiting_on` cleared); a `completed` or `cancelled` run
    /// is returned unchanged. A run of a *different* workflow is returned unchanged, and the
    /// engine reports the conflict.
    async fn open_run(&self, run: NewRun) -> Result<RunHistory>;

    /// Inserts or replaces the record of `step.step_id` in `run_id`.
    async fn save_step(&self, run_id: &str, step: &StepRecord) -> Result<()>;

    /// Changes a run's status and sets its output, error and `waiting_on` from `update` (each
    /// field replaced, `None` clears). Fails with [`Error::RunNotFound`] for an unknown run.
    async fn update_run(&self, run_id: &str, update: &RunUpdate) -> Result<()>;

    /// Records a signal unless one of that name was already delivered to the run: first write
    /// wins. Returns `true` when this call delivered it. The run need not exist yet.
    async fn deliver_signal(&self, run_id: &str, signal: &SignalRecord) -> Result<bool>;

    /// The payload of a delivered signal.
    async fn get_signal(&self, run_id: &str, name: &str) -> Result<Option<String>>;

    /// One run.
    async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>>;

    /// Runs matching `filter`, newest first.
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>>;

    /// A run's steps, in the order they started (then by step id).
    async fn list_steps(&self, run_id: &str) -> Result<Vec<StepRecord>>;

    /// Resolves when a signal *may* have been delivered to `run_id` by another process, or after
    /// at most `max_wait`. The engine checks `get_signal` after it returns, and wakes waiters of
    /// its own process without it. The default sleeps for `max_wait`: right for a store only one
    /// process uses. Stores shared between processes shorten the wait (a poll interval) or
    /// listen for a notification.
    async fn wait_for_signal(&self, run_id: &str, name: &str, max_wait: Duration) {
        let _ = (run_id, name);
        tokio::time::sleep(max_wait).await;
    }

    /// Takes the lease on `run_id` for `owner` until `now_ms + ttl` (or renews it, if `owner`
    /// already holds it). Succeeds when the run has no lease, its lease expired, or `owner`
    /// holds it; otherwise returns the other owner's lease and changes nothing. The run need not
    /// exist. Atomic: of two owners racing for a free lease, exactly one gets it.
    ///
    /// The default always grants it: right for a store only one process uses, since the engine
    /// already keeps one executor per run inside a process. Stores shared between processes
    /// override it.
    async fn acquire_lease(
        &self,
        run_id: &str,
        owner: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<LeaseOutcome> {
        let _ = (run_id, owner, ttl, now_ms);
        Ok(LeaseOutcome::Acquired)
    }

    /// Gives up `owner`'s lease on `run_id`; does nothing when another owner holds it.
    async fn release_lease(&self, run_id: &str, owner: &str) -> Result<()> {
        let _ = (run_id, owner);
        Ok(())
    }

    /// Renews `owner`'s leases on `run_ids` until `now_ms + ttl`, all in one call: the engine
    /// renews every lease it holds this way, every third of the TTL. Returns the ids whose lease
    /// `owner` no longer holds, each with the owner that holds it now when known (`None`: it was
    /// released, or lapsed and nobody took it); those leases are left as they are. Never takes
    /// a live lease of another owner. `run_ids` holds no id twice.
    ///
    /// The default calls [`acquire_lease`](Store::acquire_lease) for each id, so a lease that
    /// was released, or lapsed without being taken, is taken again rather than reported. Stores
    /// shared between processes override it with one statement that only extends `owner`'s
    /// rows; the conformance suite's `renew_leases_names_free_leases_without_taking_them` holds
    /// a store to that (list it in `expected_failures` for a store that keeps the default).
    async fn renew_leases(
        &self,
        run_ids: &[String],
        owner: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<Vec<(String, Option<String>)>> {
        let mut lost = Vec::new();
        for run_id in run_ids {
            if let LeaseOutcome::HeldBy(lease) = self.acquire_lease(run_id, owner, ttl, now_ms).await? {
                lost.push((run_id.clone(), Some(lease.owner)));
            }
        }
        Ok(lost)
    }

    /// Which of `run_ids` are `cancelled`, in one call: the engine asks this every
    /// [`CANCEL_POLL`](crate::CANCEL_POLL) about every run it executes, to notice a
    /// cancellation written by another process. Ids of runs that do not exist are not
    /// cancelled. `run_ids` holds no id twice; the order of the answer does not matter.
    ///
    /// The default calls [`get_run`](Store::get_run) for each id. Stores override it with one
    /// query.
    async fn cancelled_runs(&self, run_ids: &[String]) -> Result<Vec<String>> {
        let mut cancelled = Vec::new();
        for run_id in run_ids {
            if self.get_run(run_id).await?.is_some_and(|run| run.status == RunStatus::Cancelled) {
                cancelled.push(run_id.clone());
            }
        }
        Ok(cancelled)
    }

    /// Unfinished runs (status `running` or `waiting`) that no live lease covers at `now_ms`,
    /// oldest first, at most `limit`: the runs [`recover`](crate::Workflow) may resume.
    ///
    /// The default lists every unfinished run (a single-process store has no live leases after
    /// a restart).
    async fn recoverable_runs(&self, now_ms: i64, limit: usize) -> Result<Vec<RunRecord>> {
        let _ = now_ms;
        let mut runs = Vec::new();
        for status in [RunStatus::Running, RunStatus::Waiting] {
            runs.extend(self.list_runs(&RunFilter::new().status(status)).await?);
        }
        runs.sort_by(|a, b| a.created_at_ms.cmp(&b.created_at_ms).then_with(|| a.run_id.cmp(&b.run_id)));
        runs.truncate(limit);
        Ok(runs)
    }

    /// Every signal delivered to `run_id` (also before the run existed), oldest first, then by
    /// name. Read-only, unlike `open_run`: for exports and operators' tools.
    ///
    /// The default fails with [`Error::Invalid`]: a store must implement it to support export.
    async fn list_signals(&self, run_id: &str) -> Result<Vec<SignalRecord>> {
        Err(unsupported("list_signals", run_id))
    }

    /// Deletes a run with all its steps, signals and its lease (retention: `Workflow::purge`).
    /// Returns `false`, deleting any stray steps or signals of that id, when the run record did
    /// not exist.
    ///
    /// The default fails with [`Error::Invalid`]: a store must implement it to support purge.
    async fn delete_run(&self, run_id: &str) -> Result<bool> {
        Err(unsupported("delete_run", run_id))
    }

    /// Like [`update_run`](Store::update_run), but changes nothing and returns `false` when the
    /// run is `cancelled`: the engine uses it for every status change of an executing run, so
    /// that a cancellation written by another process is never overwritten. Returns `true` when
    /// the update was applied; fails with [`Error::RunNotFound`] for an unknown run.
    ///
    /// The default reads the status, then updates: a cancellation landing between the two is
    /// lost. Stores shared between processes override it with one atomic statement.
    async fn update_run_unless_cancelled(&self, run_id: &str, update: &RunUpdate) -> Result<bool> {
        match self.get_run(run_id).await? {
            None => Err(Error::RunNotFound { run_id: run_id.to_owned() }),
            Some(run) if run.status == RunStatus::Cancelled => Ok(false),
            Some(_) => self.update_run(run_id, update).await.map(|()| true),
        }
    }
}

fn unsupported(op: &str, run_id: &str) -> Error {
    Error::Invalid {
        what: "store operation",
        detail: format!("this store does not implement `{op}` (asked for run `{run_id}`)"),
    }
}

#[async_trait]
impl<S: Store + ?Sized> Store for Arc<S> {
    async fn open_run(&self, run: NewRun) -> Result<RunHistory> {
        (**self).open_run(run).await
    }
    async fn save_step(&self, run_id: &str, step: &StepRecord) -> Result<()> {
        (**self).save_step(run_id, step).await
    }
    async fn update_run(&self, run_id: &str, update: &RunUpdate) -> Result<()> {
        (**self).update_run(run_id, update).await
    }
    async fn deliver_signal(&self, run_id: &str, signal: &SignalRecord) -> Result<bool> {
        (**self).deliver_signal(run_id, signal).await
    }
    async fn get_signal(&self, run_id: &str, name: &str) -> Result<Option<String>> {
        (**self).get_signal(run_id, name).await
    }
    async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        (**self).get_run(run_id).await
    }
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        (**self).list_runs(filter).await
    }
    async fn list_steps(&self, run_id: &str) -> Result<Vec<StepRecord>> {
        (**self).list_steps(run_id).await
    }
    async fn wait_for_signal(&self, run_id: &str, name: &str, max_wait: Duration) {
        (**self).wait_for_signal(run_id, name, max_wait).await
    }
    async fn acquire_lease(
        &self,
        run_id: &str,
        owner: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<LeaseOutcome> {
        (**self).acquire_lease(run_id, owner, ttl, now_ms).await
    }
    async fn release_lease(&self, run_id: &str, owner: &str) -> Result<()> {
        (**self).release_lease(run_id, owner).await
    }
    async fn renew_leases(
        &self,
        run_ids: &[String],
        owner: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<Vec<(String, Option<String>)>> {
        (**self).renew_leases(run_ids, owner, ttl, now_ms).await
    }
    async fn cancelled_runs(&self, run_ids: &[String]) -> Result<Vec<String>> {
        (**self).cancelled_runs(run_ids).await
    }
    async fn recoverable_runs(&self, now_ms: i64, limit: usize) -> Result<Vec<RunRecord>> {
        (**self).recoverable_runs(now_ms, limit).await
    }
    async fn list_signals(&self, run_id: &str) -> Result<Vec<SignalRecord>> {
        (**self).list_signals(run_id).await
    }
    async fn delete_run(&self, run_id: &str) -> Result<bool> {
        (**self).delete_run(run_id).await
    }
    async fn update_run_unless_cancelled(&self, run_id: &str, update: &RunUpdate) -> Result<bool> {
        (**self).update_run_unless_cancelled(run_id, update).await
    }
}

/// The current time in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
