//! The engine's retry of store calls: a store says what kind of failure it hit
//! ([`Error::kind`](crate::Error::kind)); the engine decides what to do about it, here, the same way for every
//! store.
//!
//! A call that failed with [`StoreErrorKind::Transient`] (a connection lost, a timeout, the
//! database busy) is made again, after the engine's store backoff, when making it twice cannot
//! change its effect: reads, and writes that set a state (`save_step` replaces a record,
//! `update_run` sets fields, a lease is taken or renewed for the same owner). A delivery is not
//! retried: if the first attempt was written and only its answer lost, a second one would
//! report "already delivered" for the caller's own delivery. Every other kind (a conflict,
//! corrupt data, a refusal) fails at once: the same call would fail the same way.
//!
//! Stores do not retry on their own; they classify.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::backoff::{RetryPolicy, linear};
use crate::error::{Result, StoreErrorKind};
use crate::store::{
    Admin, Claim, EventRecord, Events, Journal, LeaseOutcome, LeasedOpen, Leases, NewEvent, NewRun,
    QueueStats, QueuedRun, Queues, RateAcquire, RateCost, RateDecision, RateLimits, RunFilter, RunHistory,
    RunRecord, RunUpdate, SignalRecord, Signals, StepRecord, Store,
};

/// The engine's default for store calls: three more attempts, 50 ms, 250 ms and 450 ms apart.
pub(crate) fn default_policy() -> RetryPolicy {
    RetryPolicy::new(3, linear(0.05, 0.2))
}

/// A store whose transient failures the engine retries, by the rules of the module docs.
pub(crate) struct RetryingStore {
    inner: Arc<dyn Store>,
    policy: RetryPolicy,
}

impl RetryingStore {
    pub(crate) fn new(inner: Arc<dyn Store>, policy: RetryPolicy) -> Self {
        RetryingStore { inner, policy }
    }

    /// Makes `call` until it succeeds, fails with anything but a transient store error, or the
    /// policy's retries are spent.
    async fn again<T, Fut>(&self, op: &'static str, call: impl Fn() -> Fut) -> Result<T>
    where
        Fut: Future<Output = Result<T>>,
    {
        let mut retry = 0;
        loop {
            match call().await {
                Err(e) if e.kind() == Some(StoreErrorKind::Transient) && retry < self.policy.retries => {
                    retry += 1;
                    let wait = self.policy.backoff.delay(retry);
                    tracing::warn!(
                        target: "durably", op, run_id = ?e.run_id(), error = %e, retry,
                        "transient store failure; trying again in {wait:?}"
                    );
                    tokio::time::sleep(wait).await;
                }
                outcome => return outcome,
            }
        }
    }
}

#[async_trait]
impl Journal for RetryingStore {
    async fn open_run(&self, run: NewRun) -> Result<RunHistory> {
        self.again("open_run", || self.inner.open_run(run.clone())).await
    }
    async fn save_step(&self, run_id: &str, step: &StepRecord) -> Result<()> {
        self.again("save_step", || self.inner.save_step(run_id, step)).await
    }
    /// Not retried as one (a second append after a lost answer would duplicate the events):
    /// after a transient failure the engine makes the two calls, `save_step` retried.
    async fn save_step_with_events(
        &self,
        run_id: &str,
        step: &StepRecord,
        events: &[NewEvent],
        keep: u64,
    ) -> Option<Result<()>> {
        match self.inner.save_step_with_events(run_id, step, events, keep).await {
            Some(Err(e)) if e.kind() == Some(StoreErrorKind::Transient) => None,
            other => other,
        }
    }
    async fn update_run(&self, run_id: &str, update: &RunUpdate) -> Result<()> {
        self.again("update_run", || self.inner.update_run(run_id, update)).await
    }
    async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        self.again("get_run", || self.inner.get_run(run_id)).await
    }
    async fn list_steps(&self, run_id: &str) -> Result<Vec<StepRecord>> {
        self.again("list_steps", || self.inner.list_steps(run_id)).await
    }
}

#[async_trait]
impl Signals for RetryingStore {
    async fn deliver_signal(&self, run_id: &str, signal: &SignalRecord) -> Result<bool> {
        // Not retried: see the module docs.
        self.inner.deliver_signal(run_id, signal).await
    }
    async fn get_signal(&self, run_id: &str, name: &str) -> Result<Option<String>> {
        self.again("get_signal", || self.inner.get_signal(run_id, name)).await
    }
    async fn list_signals(&self, run_id: &str) -> Result<Vec<SignalRecord>> {
        self.again("list_signals", || self.inner.list_signals(run_id)).await
    }
    async fn wait_for_signal(&self, run_id: &str, name: &str, max_wait: Duration) {
        self.inner.wait_for_signal(run_id, name, max_wait).await
    }
}

#[async_trait]
impl Leases for RetryingStore {
    fn now_ms(&self) -> i64 {
        self.inner.now_ms()
    }
    async fn acquire_lease(
        &self,
        run_id: &str,
        owner: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<LeaseOutcome> {
        self.again("acquire_lease", || self.inner.acquire_lease(run_id, owner, ttl, now_ms)).await
    }
    async fn release_lease(&self, run_id: &str, owner: &str) -> Result<()> {
        self.again("release_lease", || self.inner.release_lease(run_id, owner)).await
    }
    async fn renew_leases(
        &self,
        run_ids: &[String],
        owner: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<Vec<(String, Option<String>)>> {
        self.again("renew_leases", || self.inner.renew_leases(run_ids, owner, ttl, now_ms)).await
    }
    async fn cancelled_runs(&self, run_ids: &[String]) -> Result<Vec<String>> {
        self.again("cancelled_runs", || self.inner.cancelled_runs(run_ids)).await
    }
    async fn recoverable_runs(&self, now_ms: i64, limit: usize) -> Result<Vec<RunRecord>> {
        self.again("recoverable_runs", || self.inner.recoverable_runs(now_ms, limit)).await
    }
    async fn update_run_unless_cancelled(&self, run_id: &str, update: &RunUpdate) -> Result<bool> {
        self.again("update_run_unless_cancelled", || self.inner.update_run_unless_cancelled(run_id, update))
            .await
    }
    async fn update_run_unless_cancelled_with_events(
        &self,
        run_id: &str,
        update: &RunUpdate,
        events: &[NewEvent],
        keep: u64,
    ) -> Option<Result<bool>> {
        // A transient failure wrote nothing: the engine makes the two calls, each retried.
        match self.inner.update_run_unless_cancelled_with_events(run_id, update, events, keep).await {
            Some(Err(e)) if e.kind() == Some(StoreErrorKind::Transient) => None,
            other => other,
        }
    }
    async fn end_run(
        &self,
        run_id: &str,
        update: &RunUpdate,
        events: &[NewEvent],
        keep: u64,
        owner: &str,
    ) -> Option<Result<bool>> {
        // As for `update_run_unless_cancelled_with_events`: the engine makes the calls itself.
        match self.inner.end_run(run_id, update, events, keep, owner).await {
            Some(Err(e)) if e.kind() == Some(StoreErrorKind::Transient) => None,
            other => other,
        }
    }
    async fn open_run_leased(
        &self,
        new: &NewRun,
        owner: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Option<Result<LeasedOpen>> {
        // A transient failure: the engine takes the lease and opens the run in two calls, each
        // retried (both are safe to make again, whether or not the first attempt was written).
        match self.inner.open_run_leased(new, owner, ttl, now_ms).await {
            Some(Err(e)) if e.kind() == Some(StoreErrorKind::Transient) => None,
            other => other,
        }
    }
}

#[async_trait]
impl Admin for RetryingStore {
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        self.again("list_runs", || self.inner.list_runs(filter)).await
    }
    async fn delete_run(&self, run_id: &str) -> Result<bool> {
        // Not retried: a second attempt after a lost answer would report the run absent.
        self.inner.delete_run(run_id).await
    }
}

#[async_trait]
impl Queues for RetryingStore {
    async fn enqueue(&self, run: &QueuedRun) -> Result<(RunRecord, bool)> {
        // Not retried: after a lost answer a second attempt would report the run as existing.
        self.inner.enqueue(run).await
    }
    async fn claim_runs(&self, claim: &Claim) -> Result<Vec<RunRecord>> {
        // Not retried: runs claimed by a first attempt whose answer was lost would not be
        // returned by a second; the worker claims again on its next round, and those runs
        // come back when their unrenewed leases lapse.
        self.inner.claim_runs(claim).await
    }
    async fn park_run(
        &self,
        run_id: &str,
        owner: &str,
        waiting_on: &str,
        wake_at_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<bool> {
        self.again("park_run", || self.inner.park_run(run_id, owner, waiting_on, wake_at_ms, now_ms)).await
    }
    async fn queue_stats(&self, queue: &str, now_ms: i64) -> Result<QueueStats> {
        self.again("queue_stats", || self.inner.queue_stats(queue, now_ms)).await
    }
    async fn queue_names(&self) -> Result<Vec<String>> {
        self.again("queue_names", || self.inner.queue_names()).await
    }
    async fn wait_for_work(&self, queues: &[String], max_wait: Duration) {
        self.inner.wait_for_work(queues, max_wait).await
    }
}

/// Every call is retried: a grant id already recorded is granted again without counting
/// twice, a settle sets what it sets, and a block keeps the later end.
#[async_trait]
impl RateLimits for RetryingStore {
    async fn acquire_rate(&self, acquire: &RateAcquire) -> Result<RateDecision> {
        self.again("acquire_rate", || self.inner.acquire_rate(acquire)).await
    }
    async fn settle_rate(&self, key: &str, grant_id: &str, actual: RateCost, now_ms: i64) -> Result<()> {
        self.again("settle_rate", || self.inner.settle_rate(key, grant_id, actual, now_ms)).await
    }
    async fn block_rate(&self, key: &str, duration: Duration, now_ms: i64) -> Result<()> {
        self.again("block_rate", || self.inner.block_rate(key, duration, now_ms)).await
    }
}

#[async_trait]
impl Events for RetryingStore {
    async fn append_events(&self, run_id: &str, events: &[NewEvent], keep: u64) -> Result<u64> {
        // Not retried: a second attempt after a lost answer would append the events twice.
        self.inner.append_events(run_id, events, keep).await
    }
    async fn read_events(&self, run_id: &str, from: u64, limit: usize) -> Result<Vec<EventRecord>> {
        self.again("read_events", || self.inner.read_events(run_id, from, limit)).await
    }
    async fn wait_for_events(&self, run_id: &str, from: u64, max_wait: Duration) {
        self.inner.wait_for_events(run_id, from, max_wait).await
    }
}
