//! The one error type of durably. Every variant carries the context a user needs to act on it
//! (run id, step id, type name) and keeps the underlying cause as its `source`.

use std::error::Error as StdError;
use std::fmt;

/// A boxed error, the form in which task and workflow errors travel through the engine.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in durably.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A task's body returned an error on its last allowed attempt (or a permanent one).
    #[error(
        "task `{name}` failed at step `{step_id}` of run `{run_id}` after {attempts} attempt(s): {source}"
    )]
    Task {
        /// The run the step belongs to (empty outside a run).
        run_id: String,
        /// The step id of the failed call.
        step_id: String,
        /// The task name.
        name: String,
        /// How many times the body was executed in this execution of the run.
        attempts: u32,
        /// The task's own error.
        #[source]
        source: BoxError,
    },

    /// An error marked as not worth retrying; see [`Error::permanent`].
    #[error("{0}")]
    Permanent(#[source] BoxError),

    /// The workflow body returned an error; the run is marked `failed` with its text.
    #[error("workflow run `{run_id}` failed: {source}")]
    Workflow {
        /// The failed run.
        run_id: String,
        /// The workflow's own error.
        #[source]
        source: BoxError,
    },

    /// The run failed in another execution (a concurrent call in this process, or earlier),
    /// and only its stored error text is known.
    #[error("workflow run `{run_id}` failed: {message}")]
    RunFailed {
        /// The failed run.
        run_id: String,
        /// The stored error text.
        message: String,
    },

    /// A recorded step id is now claimed by a different task, or an agent request under the same
    /// id differs from the recorded one. The recorded value is not returned.
    #[error(
        "non-determinism in run `{run_id}` at step `{step_id}`: recorded `{recorded}`, now called `{called}`"
    )]
    NonDeterminism {
        /// The run being replayed.
        run_id: String,
        /// The step whose record does not match.
        step_id: String,
        /// What the record says (task name or request hash).
        recorded: String,
        /// What the code asked for this time.
        called: String,
    },

    /// The run id is already used by a run of another workflow.
    #[error("run id `{run_id}` belongs to workflow `{recorded}`, not to `{called}`")]
    RunConflict {
        /// The contested run id.
        run_id: String,
        /// The workflow recorded for the run.
        recorded: String,
        /// The workflow that tried to execute it.
        called: String,
    },

    /// A value could not be serialized to JSON; nothing was recorded.
    #[error("cannot serialize {what} of type `{type_name}` at step `{step_id}` of run `{run_id}`: {source}")]
    Serialize {
        /// The run.
        run_id: String,
        /// The step (or `output`, `input`, `signal:<name>`).
        step_id: String,
        /// What was being serialized: a step value, a run output, a signal payload…
        what: &'static str,
        /// The Rust type.
        type_name: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },

    /// A stored value no longer fits the type the code expects. The record is left untouched.
    #[error(
        "stored {what} at step `{step_id}` of run `{run_id}` does not deserialize into `{type_name}`: {source}"
    )]
    Deserialize {
        /// The run.
        run_id: String,
        /// The step (or `output`, `signal:<name>`).
        step_id: String,
        /// What was being read.
        what: &'static str,
        /// The Rust type the code asked for.
        type_name: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },

    /// An `at_most_once` step recorded its intent but no result: its effect may or may not have
    /// happened, so it is not run again.
    #[error(
        "step `{step_id}` of run `{run_id}` is at-most-once and was started but never finished; its effect is ambiguous"
    )]
    AmbiguousEffect {
        /// The run.
        run_id: String,
        /// The ambiguous step.
        step_id: String,
    },

    /// Two calls of one execution would share a step id, and so one checkpoint: an explicit
    /// `.step_id(…)` names an id that another call holds as its generated id. Neither runs.
    #[error("step id `{step_id}` of run `{run_id}` is claimed twice: by {first} and by {second}")]
    DuplicateStepId {
        /// The run.
        run_id: String,
        /// The contested step id.
        step_id: String,
        /// The call that holds the id.
        first: String,
        /// The call that asked for it again.
        second: String,
    },

    /// The run was cancelled.
    #[error("workflow run `{run_id}` was cancelled")]
    Cancelled {
        /// The cancelled run.
        run_id: String,
    },

    /// Another executor (another engine, usually another process) holds a live lease on the run:
    /// executing it here too could run its steps twice. Retry later, or let the engine wait for
    /// the lease with `wait_for_lease(true)`.
    #[error(
        "run `{run_id}` is being executed by `{owner}` (it holds the run's lease); retry later or use \
         wait_for_lease(true) to wait for it"
    )]
    RunInProgress {
        /// The contested run.
        run_id: String,
        /// The owner id of the engine holding the lease.
        owner: String,
    },

    /// This execution lost the run's lease (another owner took it after it expired, or it
    /// could not be renewed in time). The execution stopped at a step boundary and recorded
    /// nothing more; the lease holder carries on with the run.
    #[error(
        "run `{run_id}` lost its lease{}; this execution stopped and recorded nothing more",
        fmt_holder(holder)
    )]
    LeaseLost {
        /// The run.
        run_id: String,
        /// Who holds the lease now, when known (`None`: it expired before it could be renewed).
        holder: Option<String>,
    },

    /// The execution put the run aside while it waits (a parked run: rule 25 of
    /// docs/design.md): its lease and memory are given up, and a worker resumes it by replay
    /// once `waiting_on` is delivered or its timer is due. Only executions by a queue worker
    /// park; the worker takes this as the end of its execution, not as a failure.
    #[error("run `{run_id}` is parked until `{waiting_on}` arrives or its timer is due; a worker resumes it")]
    Parked {
        /// The run.
        run_id: String,
        /// The signal it waits for (`durably.sleep` for a sleep).
        waiting_on: String,
    },

    /// A run that was asked for does not exist.
    #[error("no run with id `{run_id}`")]
    RunNotFound {
        /// The missing run.
        run_id: String,
    },

    /// A reader of a run's event log asked for events that its retention limit dropped (rule
    /// 27 of docs/design.md): the log now starts at `first_kept`.
    /// [`Workflow::events`](crate::Workflow::events) yields this once, then goes on from
    /// `first_kept`.
    #[error(
        "the events of run `{run_id}` from offset {from} to {} were dropped by the event log's \
         retention limit; its oldest event kept is at offset {first_kept}",
        first_kept.saturating_sub(1)
    )]
    EventsTrimmed {
        /// The run.
        run_id: String,
        /// The offset the reader asked for.
        from: u64,
        /// The offset of the oldest event the log keeps.
        first_kept: u64,
    },

    /// The store failed to carry out an operation.
    #[error("store error during {op}{}: {source}", fmt_run(run_id))]
    Store {
        /// What kind of failure it was, as the store classified it: see [`Error::kind`].
        kind: StoreErrorKind,
        /// The operation (`open_run`, `save_step`, …).
        op: &'static str,
        /// The run concerned, when there is one.
        run_id: Option<String>,
        /// The driver's error.
        #[source]
        source: BoxError,
    },

    /// A stored record is malformed (an unknown status, a broken column).
    #[error("corrupt record in run `{run_id}`{}: {detail}", fmt_step(step_id))]
    Corrupt {
        /// The run.
        run_id: String,
        /// The step, when the broken record is a step.
        step_id: Option<String>,
        /// What is wrong.
        detail: String,
    },

    /// A configuration or argument was invalid.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// What was invalid.
        what: &'static str,
        /// Why.
        detail: String,
    },
}

/// What kind of failure a store error is, so that the engine and callers decide what to retry
/// without knowing the driver's error types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The store could not be reached or did not answer in time (connection lost, timeout,
    /// database busy): the same call may succeed later.
    Transient,
    /// The write collided with the store's state (a constraint, a version or a schema
    /// mismatch): retrying the same call will fail the same way.
    Conflict,
    /// A stored record cannot be decoded: someone must look at the data.
    Corrupt,
    /// The store refused the caller (authentication, permission, read-only): a configuration
    /// must change.
    Refused,
    /// Anything else, or not classified by the store.
    Other,
}

impl StoreErrorKind {
    /// Whether the same call may succeed if made again later.
    pub fn is_transient(self) -> bool {
        self == StoreErrorKind::Transient
    }
}

fn fmt_run(run_id: &Option<String>) -> String {
    run_id.as_ref().map(|r| format!(" of run `{r}`")).unwrap_or_default()
}

fn fmt_holder(holder: &Option<String>) -> String {
    match holder {
        Some(h) => format!(" to `{h}`"),
        None => " (it could not be renewed before it expired)".to_owned(),
    }
}

fn fmt_step(step_id: &Option<String>) -> String {
    step_id.as_ref().map(|s| format!(" at step `{s}`")).unwrap_or_default()
}

impl Error {
    /// Marks an error as permanent: a task returning it is not retried.
    ///
    /// ```
    /// # async fn f() -> Result<(), durably_core::Error> {
    /// return Err(durably_core::Error::permanent(std::io::Error::other("invalid account")));
    /// # }
    /// ```
    pub fn permanent(error: impl Into<BoxError>) -> Self {
        Error::Permanent(error.into())
    }

    /// Wraps a store driver's error, naming the operation that failed; its kind is
    /// [`StoreErrorKind::Other`]. Stores that can tell use [`Error::store_kind`].
    pub fn store(op: &'static str, run_id: Option<&str>, source: impl Into<BoxError>) -> Self {
        Self::store_kind(StoreErrorKind::Other, op, run_id, source)
    }

    /// Wraps a store driver's error of a known kind, naming the operation that failed.
    pub fn store_kind(
        kind: StoreErrorKind,
        op: &'static str,
        run_id: Option<&str>,
        source: impl Into<BoxError>,
    ) -> Self {
        Error::Store { kind, op, run_id: run_id.map(str::to_owned), source: source.into() }
    }

    /// For an error of the store, what kind of failure it is: [`Error::Store`] as its store
    /// classified it, [`Error::Corrupt`] as `Corrupt`. `None` for errors that are not the
    /// store's.
    pub fn kind(&self) -> Option<StoreErrorKind> {
        match self {
            Error::Store { kind, .. } => Some(*kind),
            Error::Corrupt { .. } => Some(StoreErrorKind::Corrupt),
            _ => None,
        }
    }

    /// True for [`Error::Permanent`] (also when found in a task error's cause chain).
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Permanent(_) => true,
            Error::Task { source, .. } => chain_is_permanent(source.as_ref()),
            _ => false,
        }
    }

    /// The run id this error concerns, if it names one.
    pub fn run_id(&self) -> Option<&str> {
        match self {
            Error::Task { run_id, .. }
            | Error::Workflow { run_id, .. }
            | Error::RunFailed { run_id, .. }
            | Error::NonDeterminism { run_id, .. }
            | Error::RunConflict { run_id, .. }
            | Error::Serialize { run_id, .. }
            | Error::Deserialize { run_id, .. }
            | Error::AmbiguousEffect { run_id, .. }
            | Error::DuplicateStepId { run_id, .. }
            | Error::Cancelled { run_id }
            | Error::RunInProgress { run_id, .. }
            | Error::LeaseLost { run_id, .. }
            | Error::Parked { run_id, .. }
            | Error::EventsTrimmed { run_id, .. }
            | Error::RunNotFound { run_id }
            | Error::Corrupt { run_id, .. } => Some(run_id),
            Error::Store { run_id, .. } => run_id.as_deref(),
            Error::Permanent(_) | Error::Invalid { .. } => None,
        }
    }

    /// For a task or workflow error, the user's own error if it is of type `E`.
    pub fn downcast_source_ref<E: StdError + 'static>(&self) -> Option<&E> {
        let mut cur: Option<&(dyn StdError + 'static)> = StdError::source(self);
        while let Some(err) = cur {
            if let Some(e) = err.downcast_ref::<E>() {
                return Some(e);
            }
            cur = err.source();
        }
        None
    }
}

/// Walks an error's cause chain looking for [`Error::Permanent`].
pub(crate) fn chain_is_permanent(err: &(dyn StdError + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(Error::Permanent(_)) = e.downcast_ref::<Error>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// An attempt's error that says when to try again: the next attempt waits [`after`](Self::after)
/// instead of the task's backoff delay (a provider's `retry-after`). Its text is the wrapped
/// error's, so what is recorded does not change; it may sit anywhere in an error's cause chain.
///
/// ```
/// use std::time::Duration;
/// let e = durably_core::RetryAfter::new(Duration::from_secs(2), std::io::Error::other("rate limited"));
/// assert_eq!(e.to_string(), "rate limited");
/// assert_eq!(e.after(), Duration::from_secs(2));
/// ```
#[derive(Debug)]
pub struct RetryAfter {
    after: std::time::Duration,
    source: BoxError,
}

impl RetryAfter {
    /// `error`, to be attempted again after `after`.
    pub fn new(after: std::time::Duration, error: impl Into<BoxError>) -> Self {
        RetryAfter { after, source: error.into() }
    }

    /// The wait before the next attempt.
    pub fn after(&self) -> std::time::Duration {
        self.after
    }
}

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

impl StdError for RetryAfter {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(self.source.as_ref())
    }
}

/// The wait a [`RetryAfter`] in an error's cause chain asks for.
pub(crate) fn chain_retry_after(err: &(dyn StdError + 'static)) -> Option<std::time::Duration> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(hint) = e.downcast_ref::<RetryAfter>() {
            return Some(hint.after);
        }
        cur = e.source();
    }
    None
}

/// Whether an error is worth another attempt. Implement it for your task's error type to let
/// the `#[task]` macro stop retrying on errors that cannot succeed later (a 400, a bad input).
///
/// Errors whose type does not implement it are retried unless they are (or wrap)
/// [`Error::Permanent`].
pub trait Retryable {
    /// `false` stops retries at once.
    fn is_retryable(&self) -> bool;
}

impl Retryable for Error {
    fn is_retryable(&self) -> bool {
        !self.is_permanent()
    }
}

/// `anyhow::Error` hides the type of what it wraps from `Box<dyn Error>` downcasts, so it gets
/// its own rule: not retryable when any error in its chain is [`Error::Permanent`] or a
/// non-retryable durably error.
impl Retryable for anyhow::Error {
    fn is_retryable(&self) -> bool {
        !self.chain().any(|e| e.downcast_ref::<Error>().is_some_and(Error::is_permanent))
    }
}

/// A text that displays an error with its whole cause chain (`outer: inner: root`).
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn StdError + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.0.to_string();
        let mut cur = self.0.source();
        while let Some(e) = cur {
            let part = e.to_string();
            // Many errors repeat their source in their own message: say each part once.
            if !part.is_empty() && !text.contains(&part) {
                text.push_str(": ");
                text.push_str(&part);
            }
            cur = e.source();
        }
        f.write_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_after_is_found_in_the_chain_and_keeps_the_text() {
        let inner = RetryAfter::new(std::time::Duration::from_millis(1500), "slow down");
        let outer = Error::Workflow { run_id: "r".into(), source: Box::new(inner) };
        assert_eq!(chain_retry_after(&outer), Some(std::time::Duration::from_millis(1500)));
        assert_eq!(Chain(&outer).to_string(), "workflow run `r` failed: slow down");
        assert_eq!(chain_retry_after(&Error::permanent("no")), None);
    }

    #[test]
    fn kind_names_the_stores_classification_and_nothing_for_other_errors() {
        let transient =
            Error::store_kind(StoreErrorKind::Transient, "save_step", Some("r"), "connection reset");
        assert_eq!(transient.kind(), Some(StoreErrorKind::Transient));
        assert!(transient.kind().is_some_and(StoreErrorKind::is_transient));
        assert_eq!(Error::store("get_run", None, "?").kind(), Some(StoreErrorKind::Other));
        let corrupt = Error::Corrupt { run_id: "r".into(), step_id: None, detail: "bad status".into() };
        assert_eq!(corrupt.kind(), Some(StoreErrorKind::Corrupt));
        assert_eq!(Error::RunNotFound { run_id: "r".into() }.kind(), None);
    }
}
