//! [`Queues`]: runs that wait in named queues until a worker claims them under the queue's
//! limits, and runs parked while they wait, which hold no lease and no memory until something
//! makes them runnable again.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;
use crate::store::RunRecord;
use crate::store::signals::{unsupported, unsupported_for};

/// A run to put in a queue: the parameter of [`Queues::enqueue`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueuedRun {
    /// The run id; enqueuing an id that exists changes nothing.
    pub run_id: String,
    /// The workflow a worker executes it with.
    pub workflow: String,
    /// The workflow's input as JSON.
    pub input: Option<String>,
    /// The queue.
    pub queue: String,
    /// Higher runs first; equal priorities run in the order they were enqueued.
    pub priority: i32,
    /// The concurrency key (a tenant, a user): [`QueueLimits::per_key`] counts runs by it.
    pub key: Option<String>,
    /// The run that started this one as its child.
    pub parent_id: Option<String>,
    /// The version the run is bound to from the start: only workers of this version (and
    /// unversioned ones) claim it. `None`: the version of the first worker that claims it, if it
    /// has one.
    pub version: Option<String>,
    /// The current time.
    pub now_ms: i64,
}

impl QueuedRun {
    /// A run of `workflow` with `input`, for `queue`, at priority 0 without a key or parent.
    pub fn new(
        run_id: impl Into<String>,
        workflow: impl Into<String>,
        input: Option<String>,
        queue: impl Into<String>,
        now_ms: i64,
    ) -> Self {
        QueuedRun {
            run_id: run_id.into(),
            workflow: workflow.into(),
            input,
            queue: queue.into(),
            priority: 0,
            key: None,
            parent_id: None,
            version: None,
            now_ms,
        }
    }

    /// Sets the priority (higher first).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the concurrency key.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the parent run.
    pub fn parent(mut self, parent_id: impl Into<String>) -> Self {
        self.parent_id = Some(parent_id.into());
        self
    }

    /// Binds the run to a worker version.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }
}

/// At most `starts` claims of a queue's runs in any window of `period_ms` milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rate {
    /// Claims allowed per window.
    pub starts: u32,
    /// The window, in milliseconds.
    pub period_ms: i64,
}

impl Rate {
    /// `starts` claims per `period_ms` milliseconds.
    pub fn new(starts: u32, period_ms: i64) -> Self {
        Rate { starts, period_ms }
    }
}

/// The limits a claim keeps, counted from the store's own records (never from a worker's
/// memory), so that they hold across every worker sharing the store.
///
/// A run *executes* while it is in the queue and a live lease covers it: a run whose worker
/// died stops counting when its lease lapses, and a parked run holds no lease.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueLimits {
    /// At most this many runs of the queue execute at once.
    pub concurrency: Option<u32>,
    /// At most this many runs of one concurrency key execute at once.
    pub per_key: Option<u32>,
    /// At most this many claims per window: the claim times of the queue's runs are kept.
    pub rate: Option<Rate>,
}

/// The parameter of [`Queues::claim_runs`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Claim {
    /// The queue to claim from.
    pub queue: String,
    /// The lease owner claiming (the worker's engine).
    pub owner: String,
    /// How long the claimed runs' leases last unless renewed.
    pub ttl: Duration,
    /// The current time, by the store's clock.
    pub now_ms: i64,
    /// At most this many runs.
    pub max: usize,
    /// The queue's limits.
    pub limits: QueueLimits,
    /// The claiming worker's version: it claims only runs never claimed and not bound to
    /// another version, and runs of this version (rule 26 of docs/design.md). `None` claims
    /// runs of any version.
    pub version: Option<String>,
}

impl Claim {
    /// A claim of at most `max` runs of `queue` for `owner`, without limits.
    pub fn new(
        queue: impl Into<String>,
        owner: impl Into<String>,
        ttl: Duration,
        now_ms: i64,
        max: usize,
    ) -> Self {
        Claim {
            queue: queue.into(),
            owner: owner.into(),
            ttl,
            now_ms,
            max,
            limits: QueueLimits::default(),
            version: None,
        }
    }

    /// Sets the limits.
    pub fn limits(mut self, limits: QueueLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Claims as a worker of `version`.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }
}

/// What [`Queues::queue_stats`] counts of one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStats {
    /// Runs `enqueued`, not yet claimed.
    pub enqueued: u64,
    /// Runs that execute now (a live lease covers them).
    pub executing: u64,
    /// Parked runs: waiting, without a lease.
    pub parked: u64,
    /// When the oldest `enqueued` run was enqueued.
    pub oldest_enqueued_at_ms: Option<i64>,
}

/// Queues of runs and parked runs: what workers claim work from.
///
/// Every method must be atomic across the processes sharing the store. The defaults fail with
/// [`Error::Invalid`](crate::Error::Invalid) (and `wait_for_work` sleeps): a store without
/// queues still runs workflows in place.
#[async_trait]
pub trait Queues: Send + Sync {
    /// Creates run `run.run_id` with status `enqueued` in `run.queue`, unless a run of that id
    /// exists: then nothing changes. Returns the run as stored and whether this call created it
    /// (deduplication by run id: enqueuing an id twice runs it once). Wakes
    /// [`wait_for_work`](Self::wait_for_work) callers of the queue.
    async fn enqueue(&self, run: &QueuedRun) -> Result<(RunRecord, bool)> {
        Err(unsupported("enqueue", &run.run_id))
    }

    /// Claims at most `claim.max` runnable runs of `claim.queue` for `claim.owner`, in one
    /// atomic step: each claimed run gets status `running`, a lease for the owner until
    /// `now_ms + ttl`, and its claim time (`now_ms`, or the server's clock for a store that
    /// keeps leases on it), which the rate limit counts and `claimed_at_ms` records; its
    /// `wake_at_ms` is cleared. Returns the claimed runs as stored after the claim.
    ///
    /// Runnable: in the queue, no live lease, and `enqueued`, or `running` (its worker died),
    /// or `waiting` with `wake_at_ms` unset (its worker died mid-wait) or due (`<= now_ms`).
    /// Taken by priority (highest first), then oldest first (`created_at_ms`, then run id),
    /// skipping runs whose key is at its limit, and never beyond `claim.limits`. Of the parked
    /// runs that are due, a store may consider only the `claim.max` that fell due first (by
    /// `wake_at_ms`), so that a claim never sorts every run that fell due at once; the rest
    /// are taken by later claims.
    ///
    /// With `claim.version` set, only runs whose `version` is that one, or which have none and
    /// are still `enqueued` (never executed), are runnable; a claimed run without a version
    /// gets the claim's. Without it, any version is runnable and none is written.
    async fn claim_runs(&self, claim: &Claim) -> Result<Vec<RunRecord>> {
        Err(unsupported_for("claim_runs", &format!("queue `{}`", claim.queue)))
    }

    /// Parks run `run_id` while it waits for signal `waiting_on` (a child's completion is a
    /// signal too) or until `wake_at_ms`: in one atomic step, unless the run is `cancelled`
    /// (then it changes nothing and returns `false`), sets status `waiting`, `waiting_on`, and
    /// `wake_at_ms` (`i64::MAX` without a timer; `now_ms` when that signal was already
    /// delivered), and releases `owner`'s lease. [`deliver_signal`](crate::Signals::deliver_signal)
    /// of the awaited signal to a parked run sets its `wake_at_ms` to the delivery time and
    /// wakes the queue's [`wait_for_work`](Self::wait_for_work) callers.
    async fn park_run(
        &self,
        run_id: &str,
        owner: &str,
        waiting_on: &str,
        wake_at_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<bool> {
        let _ = (owner, waiting_on, wake_at_ms, now_ms);
        Err(unsupported("park_run", run_id))
    }

    /// Counts of one queue at `now_ms`.
    async fn queue_stats(&self, queue: &str, now_ms: i64) -> Result<QueueStats> {
        let _ = now_ms;
        Err(unsupported_for("queue_stats", &format!("queue `{queue}`")))
    }

    /// The names of the queues that hold at least one run kept by the store (in any status),
    /// each once, in byte order. Read from the store's queue index, not by listing runs. The
    /// default, for a store without queues, has none.
    async fn queue_names(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// Resolves when work *may* have become runnable in one of `queues` (a run enqueued, a
    /// parked run's signal delivered), or after at most `max_wait`. Workers claim after it
    /// returns; due timers are found by claiming at least every `max_wait`. The default sleeps.
    async fn wait_for_work(&self, queues: &[String], max_wait: Duration) {
        let _ = queues;
        tokio::time::sleep(max_wait).await;
    }
}

#[async_trait]
impl<S: Queues + ?Sized> Queues for Arc<S> {
    async fn enqueue(&self, run: &QueuedRun) -> Result<(RunRecord, bool)> {
        (**self).enqueue(run).await
    }
    async fn claim_runs(&self, claim: &Claim) -> Result<Vec<RunRecord>> {
        (**self).claim_runs(claim).await
    }
    async fn park_run(
        &self,
        run_id: &str,
        owner: &str,
        waiting_on: &str,
        wake_at_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<bool> {
        (**self).park_run(run_id, owner, waiting_on, wake_at_ms, now_ms).await
    }
    async fn queue_stats(&self, queue: &str, now_ms: i64) -> Result<QueueStats> {
        (**self).queue_stats(queue, now_ms).await
    }
    async fn queue_names(&self) -> Result<Vec<String>> {
        (**self).queue_names().await
    }
    async fn wait_for_work(&self, queues: &[String], max_wait: Duration) {
        (**self).wait_for_work(queues, max_wait).await
    }
}
