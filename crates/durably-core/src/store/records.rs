//! The records a store keeps and the parameters of its calls: runs, steps, signals, leases.
//!
//! Values are stored as JSON text: the engine serializes once with serde_json and a store keeps
//! the text byte for byte (so not as PostgreSQL `jsonb`, which reorders keys). Ids and names are
//! arbitrary UTF-8 without NUL characters. Times are milliseconds since the Unix epoch.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `as_str`, `Display` and `FromStr` of a status enum, from one table of its lowercase names
/// (the names stores keep and the command line takes).
macro_rules! status_names {
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// The lowercase name used in stores and on the command line.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    other => Err(Error::Invalid {
                        what: $what,
                        detail: format!("`{other}` is not one of {}", [$($name),+].join(", ")),
                    }),
                }
            }
        }
    };
}

status_names!(RunStatus, "run status", {
    Enqueued => "enqueued",
    Running => "running",
    Waiting => "waiting",
    Completed => "completed",
    Failed => "failed",
    Cancelled => "cancelled",
});

status_names!(StepStatus, "step status", {
    Started => "started",
    Completed => "completed",
    Failed => "failed",
});

/// The lifecycle state of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RunStatus {
    /// In a queue, waiting for a worker to claim it.
    Enqueued,
    /// Executing (or interrupted while executing: a crash leaves a run `running`).
    Running,
    /// Waiting on a signal, a child run or a timer; a parked run (see
    /// [`Queues::park_run`](crate::store::Queues::park_run)) holds no lease while it waits.
    Waiting,
    /// Finished; its output is stored.
    Completed,
    /// The workflow returned an error; executing it again resumes at the failed step.
    Failed,
    /// Stopped by `cancel`; executing it again returns the cancellation.
    Cancelled,
}

impl RunStatus {
    /// True for `completed` and `cancelled`: executing such a run again runs no step.
    pub fn is_final(self) -> bool {
        matches!(self, RunStatus::Completed | RunStatus::Cancelled)
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
    /// The queue the run was enqueued in; `None` for a run started in place.
    pub queue: Option<String>,
    /// The run that started this one as its child.
    pub parent_id: Option<String>,
    /// For a parked `waiting` run: when a worker may resume it (its timer, or the time its
    /// signal was delivered). `None` for every other run.
    pub wake_at_ms: Option<i64>,
    /// When a queue worker last claimed the run, by the clock the queue's rate limit counts
    /// with (the server's for PostgreSQL and Redis); `None` for a run never claimed.
    #[serde(default)]
    pub claimed_at_ms: Option<i64>,
    /// The version of the worker that first executed the run, or the one it was enqueued with
    /// (rule 26 of docs/design.md): a versioned worker resumes only runs of its version.
    #[serde(default)]
    pub version: Option<String>,
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
            queue: None,
            parent_id: None,
            wake_at_ms: None,
            claimed_at_ms: None,
            version: None,
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
    /// Only runs whose id starts with this text (byte for byte, case-sensitive).
    pub run_id_prefix: Option<String>,
    /// Only runs enqueued in this queue.
    pub queue: Option<String>,
    /// Only children of this run.
    pub parent_id: Option<String>,
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

    /// Only runs whose id starts with `prefix`: the runs of one family, such as the turns
    /// `<agent>:<session>#<n>` of a conversation, read in one call.
    pub fn run_id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.run_id_prefix = Some(prefix.into());
        self
    }

    /// Only runs enqueued in `queue`.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Only the children of run `parent_id`.
    pub fn parent(mut self, parent_id: impl Into<String>) -> Self {
        self.parent_id = Some(parent_id.into());
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
            && self.queue.as_deref().is_none_or(|q| run.queue.as_deref() == Some(q))
            && self.parent_id.as_deref().is_none_or(|p| run.parent_id.as_deref() == Some(p))
            && self.run_id_prefix.as_deref().is_none_or(|p| run.run_id.starts_with(p))
    }

    /// The run ids the prefix selects as a half-open range `[from, to)` in the order of their
    /// bytes (a code point order, since ids are UTF-8), for a store that keeps run ids in an
    /// ordered index: `to` is `None` when no id above `from` is left out (a prefix of `U+10FFFF`
    /// characters only, or the empty one). `None` without a prefix.
    pub fn run_id_range(&self) -> Option<(&str, Option<String>)> {
        let prefix = self.run_id_prefix.as_deref()?;
        let mut chars: Vec<char> = prefix.chars().collect();
        // The least id above every id starting with `prefix`: its last character that can grow,
        // grown by one code point (surrogates skipped), the characters after it dropped.
        while let Some(last) = chars.pop() {
            let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
            if let Some(next) = next {
                chars.push(next);
                return Some((prefix, Some(chars.into_iter().collect())));
            }
        }
        Some((prefix, None))
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

/// What [`Leases::acquire_lease`](crate::Leases::acquire_lease) found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseOutcome {
    /// The caller holds the lease now (taken, or renewed if it already held it).
    Acquired,
    /// Another owner holds a lease that has not expired; nothing changed.
    HeldBy(Lease),
}

/// What [`Leases::open_run_leased`](crate::Leases::open_run_leased) did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum LeasedOpen {
    /// The caller holds the lease now, and the run is open: its history as
    /// [`Journal::open_run`](crate::Journal::open_run) answers it.
    Opened(Box<RunHistory>),
    /// Another owner holds a lease that has not expired; nothing changed (the run was neither
    /// created nor opened).
    HeldBy(Lease),
}

#[cfg(test)]
mod tests {
    use super::RunFilter;

    fn range(prefix: &str) -> Option<(String, Option<String>)> {
        RunFilter::new().run_id_prefix(prefix).run_id_range().map(|(from, to)| (from.to_owned(), to))
    }

    #[test]
    fn a_prefix_is_the_range_up_to_its_successor() {
        assert_eq!(RunFilter::new().run_id_range(), None);
        assert_eq!(range("chat:conv#"), Some(("chat:conv#".into(), Some("chat:conv$".into()))));
        assert_eq!(
            range("a\u{d7ff}"),
            Some(("a\u{d7ff}".into(), Some("a\u{e000}".into()))),
            "surrogates skipped"
        );
        assert_eq!(range("a\u{10ffff}"), Some(("a\u{10ffff}".into(), Some("b".into()))));
        assert_eq!(range("\u{10ffff}"), Some(("\u{10ffff}".into(), None)));
        assert_eq!(range(""), Some((String::new(), None)));
        // Every id with the prefix is inside the range, every other one outside.
        let f = RunFilter::new().run_id_prefix("ab");
        let (from, to) = f.run_id_range().unwrap_or_default();
        let to = to.unwrap_or_default();
        for (id, inside) in [
            ("ab", true),
            ("ab#1", true),
            ("ab\u{10ffff}z", true),
            ("aa", false),
            ("ac", false),
            ("a", false),
        ] {
            assert_eq!(id >= from && id < to.as_str(), inside, "{id:?}");
        }
    }
}
