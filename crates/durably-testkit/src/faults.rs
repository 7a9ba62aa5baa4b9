//! Fault injection: a [`Store`] wrapper that fails or delays chosen calls of the store it wraps.
//!
//! ```ignore
//! let store = FaultStore::new(MemoryStore::new());
//! store.inject(Op::SaveStep, 3, Fault::Fail);          // the 3rd save_step fails
//! store.inject(Op::OpenRun, 1, Fault::Delay(ms(200)));  // the 1st open_run is slow
//! store.inject(Op::SaveStep, 5, Fault::FailAfterWrite); // written, but the reply is lost
//! store.inject(Op::GetRun, 1, Fault::Transient);        // a connection lost: retried by the engine
//! ```
//!
//! An injected failure is an [`Error::Store`] naming the operation and the run, with the source
//! [`InjectedFault`], exactly as a driver error would reach the engine.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use durably_core::store::prelude::*;
use durably_core::{
    Claim, Error, EventRecord, LeaseOutcome, NewEvent, NewRun, QueueStats, QueuedRun, RateAcquire, RateCost,
    RateDecision, Result, RunFilter, RunHistory, RunRecord, RunUpdate, SignalRecord, StepRecord,
};

/// A `Store` operation, for choosing where a fault lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// [`Store::open_run`](durably_core::store::Journal::open_run)
    OpenRun,
    /// [`Store::save_step`](durably_core::store::Journal::save_step)
    SaveStep,
    /// [`Store::update_run`](durably_core::store::Journal::update_run)
    UpdateRun,
    /// [`Store::deliver_signal`](durably_core::store::Signals::deliver_signal)
    DeliverSignal,
    /// [`Store::get_signal`](durably_core::store::Signals::get_signal)
    GetSignal,
    /// [`Store::get_run`](durably_core::store::Journal::get_run), and [`Store::cancelled_runs`](durably_core::store::Leases::cancelled_runs)
    GetRun,
    /// [`Store::list_runs`](durably_core::store::Admin::list_runs)
    ListRuns,
    /// [`Store::list_steps`](durably_core::store::Journal::list_steps)
    ListSteps,
    /// [`Store::acquire_lease`](durably_core::store::Leases::acquire_lease), and [`Store::renew_leases`](durably_core::store::Leases::renew_leases)
    AcquireLease,
    /// [`Store::release_lease`](durably_core::store::Leases::release_lease)
    ReleaseLease,
    /// [`Store::recoverable_runs`](durably_core::store::Leases::recoverable_runs)
    RecoverableRuns,
    /// [`Store::list_signals`](durably_core::store::Signals::list_signals)
    ListSignals,
    /// [`Store::delete_run`](durably_core::store::Admin::delete_run)
    DeleteRun,
    /// [`Store::enqueue`](durably_core::store::Queues::enqueue)
    Enqueue,
    /// [`Store::claim_runs`](durably_core::store::Queues::claim_runs)
    ClaimRuns,
    /// [`Store::park_run`](durably_core::store::Queues::park_run)
    ParkRun,
    /// [`Store::queue_stats`](durably_core::store::Queues::queue_stats)
    QueueStats,
    /// [`Store::queue_names`](durably_core::store::Queues::queue_names)
    QueueNames,
    /// [`Store::append_events`](durably_core::store::Events::append_events)
    AppendEvents,
    /// [`Store::read_events`](durably_core::store::Events::read_events)
    ReadEvents,
    /// [`Store::acquire_rate`](durably_core::store::RateLimits::acquire_rate)
    AcquireRate,
    /// [`Store::settle_rate`](durably_core::store::RateLimits::settle_rate)
    SettleRate,
    /// [`Store::block_rate`](durably_core::store::RateLimits::block_rate)
    BlockRate,
}

impl Op {
    /// The operation's name, as it appears in [`Error::Store`].
    pub fn name(self) -> &'static str {
        match self {
            Op::OpenRun => "open_run",
            Op::SaveStep => "save_step",
            Op::UpdateRun => "update_run",
            Op::DeliverSignal => "deliver_signal",
            Op::GetSignal => "get_signal",
            Op::GetRun => "get_run",
            Op::ListRuns => "list_runs",
            Op::ListSteps => "list_steps",
            Op::AcquireLease => "acquire_lease",
            Op::ReleaseLease => "release_lease",
            Op::RecoverableRuns => "recoverable_runs",
            Op::ListSignals => "list_signals",
            Op::DeleteRun => "delete_run",
            Op::Enqueue => "enqueue",
            Op::ClaimRuns => "claim_runs",
            Op::ParkRun => "park_run",
            Op::QueueStats => "queue_stats",
            Op::QueueNames => "queue_names",
            Op::AppendEvents => "append_events",
            Op::ReadEvents => "read_events",
            Op::AcquireRate => "acquire_rate",
            Op::SettleRate => "settle_rate",
            Op::BlockRate => "block_rate",
        }
    }
}

/// What happens to the chosen call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The call fails before reaching the store: nothing is written.
    Fail,
    /// The call reaches the store and succeeds there, but the caller gets an error (a reply lost
    /// with the connection).
    FailAfterWrite,
    /// The call waits this long, then proceeds.
    Delay(Duration),
    /// The call fails before reaching the store, with an error of kind
    /// [`StoreErrorKind::Transient`](durably_core::StoreErrorKind::Transient) (a connection
    /// lost): the engine may make it again.
    Transient,
}

/// The source of an injected [`Error::Store`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("injected fault: call {call} of {op}")]
pub struct InjectedFault {
    /// The operation that failed.
    pub op: &'static str,
    /// Which call of it (1 for the first).
    pub call: u32,
}

#[derive(Debug, Default)]
struct Plan {
    /// (op, nth call) → fault.
    faults: HashMap<(Op, u32), Fault>,
    /// Every call of op fails from this call on (a dropped connection).
    down_from: HashMap<Op, u32>,
    calls: HashMap<Op, u32>,
}

/// A store that fails or delays chosen calls of the store it wraps. See the [module docs](self).
#[derive(Debug)]
pub struct FaultStore<S> {
    inner: S,
    plan: Mutex<Plan>,
}

impl<S: Store> FaultStore<S> {
    /// Wraps `inner`; no fault is planned yet.
    pub fn new(inner: S) -> Self {
        FaultStore { inner, plan: Mutex::new(Plan::default()) }
    }

    fn plan(&self) -> MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Plans `fault` for the `nth` call (1-based, counted from the wrapper's creation) of `op`.
    pub fn inject(&self, op: Op, nth: u32, fault: Fault) {
        self.plan().faults.insert((op, nth), fault);
    }

    /// Every call of `op` from its `nth` on fails (a connection that stays down).
    pub fn fail_from(&self, op: Op, nth: u32) {
        self.plan().down_from.insert(op, nth);
    }

    /// Removes every planned fault: the "connection" is back.
    pub fn heal(&self) {
        let mut plan = self.plan();
        plan.faults.clear();
        plan.down_from.clear();
    }

    /// How many calls of `op` were made.
    pub fn calls(&self, op: Op) -> u32 {
        self.plan().calls.get(&op).copied().unwrap_or(0)
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Counts the call and returns the fault planned for it.
    fn next(&self, op: Op) -> (u32, Option<Fault>) {
        let mut plan = self.plan();
        let n = plan.calls.entry(op).or_insert(0);
        *n += 1;
        let call = *n;
        let fault = match plan.faults.get(&(op, call)) {
            Some(f) => Some(*f),
            None if plan.down_from.get(&op).is_some_and(|&from| call >= from) => Some(Fault::Fail),
            None => None,
        };
        (call, fault)
    }

    async fn call<T, F>(&self, op: Op, run_id: Option<&str>, f: F) -> Result<T>
    where
        F: Future<Output = Result<T>> + Send,
        T: Send,
    {
        let (call, fault) = self.next(op);
        let injected = || Error::store(op.name(), run_id, InjectedFault { op: op.name(), call });
        match fault {
            None => f.await,
            Some(Fault::Fail) => Err(injected()),
            Some(Fault::Transient) => Err(Error::store_kind(
                durably_core::StoreErrorKind::Transient,
                op.name(),
                run_id,
                InjectedFault { op: op.name(), call },
            )),
            Some(Fault::FailAfterWrite) => {
                f.await?;
                Err(injected())
            }
            Some(Fault::Delay(d)) => {
                tokio::time::sleep(d).await;
                f.await
            }
        }
    }
}

#[async_trait]
impl<S: Store> Journal for FaultStore<S> {
    async fn open_run(&self, run: NewRun) -> Result<RunHistory> {
        let run_id = run.run_id.clone();
        self.call(Op::OpenRun, Some(&run_id), self.inner.open_run(run)).await
    }
    async fn save_step(&self, run_id: &str, step: &StepRecord) -> Result<()> {
        self.call(Op::SaveStep, Some(run_id), self.inner.save_step(run_id, step)).await
    }
    async fn update_run(&self, run_id: &str, update: &RunUpdate) -> Result<()> {
        self.call(Op::UpdateRun, Some(run_id), self.inner.update_run(run_id, update)).await
    }
    async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        self.call(Op::GetRun, Some(run_id), self.inner.get_run(run_id)).await
    }
    async fn list_steps(&self, run_id: &str) -> Result<Vec<StepRecord>> {
        self.call(Op::ListSteps, Some(run_id), self.inner.list_steps(run_id)).await
    }
}

#[async_trait]
impl<S: Store> Signals for FaultStore<S> {
    async fn deliver_signal(&self, run_id: &str, signal: &SignalRecord) -> Result<bool> {
        self.call(Op::DeliverSignal, Some(run_id), self.inner.deliver_signal(run_id, signal)).await
    }
    async fn get_signal(&self, run_id: &str, name: &str) -> Result<Option<String>> {
        self.call(Op::GetSignal, Some(run_id), self.inner.get_signal(run_id, name)).await
    }
    async fn list_signals(&self, run_id: &str) -> Result<Vec<SignalRecord>> {
        self.call(Op::ListSignals, Some(run_id), self.inner.list_signals(run_id)).await
    }
    async fn wait_for_signal(&self, run_id: &str, name: &str, max_wait: Duration) {
        self.inner.wait_for_signal(run_id, name, max_wait).await
    }
}

#[async_trait]
impl<S: Store> Leases for FaultStore<S> {
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
        self.call(Op::AcquireLease, Some(run_id), self.inner.acquire_lease(run_id, owner, ttl, now_ms)).await
    }
    async fn release_lease(&self, run_id: &str, owner: &str) -> Result<()> {
        self.call(Op::ReleaseLease, Some(run_id), self.inner.release_lease(run_id, owner)).await
    }
    /// Counted and faulted as [`Op::AcquireLease`]: a renewal is the holder acquiring again,
    /// and a store cut off from its leases fails both.
    async fn renew_leases(
        &self,
        run_ids: &[String],
        owner: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<Vec<(String, Option<String>)>> {
        self.call(Op::AcquireLease, None, self.inner.renew_leases(run_ids, owner, ttl, now_ms)).await
    }
    /// Counted and faulted as [`Op::GetRun`]: to a caller both read runs' status.
    async fn cancelled_runs(&self, run_ids: &[String]) -> Result<Vec<String>> {
        self.call(Op::GetRun, None, self.inner.cancelled_runs(run_ids)).await
    }
    async fn recoverable_runs(&self, now_ms: i64, limit: usize) -> Result<Vec<RunRecord>> {
        self.call(Op::RecoverableRuns, None, self.inner.recoverable_runs(now_ms, limit)).await
    }
    /// Counted and faulted as [`Op::UpdateRun`]: to a caller both are "the run's status write".
    async fn update_run_unless_cancelled(&self, run_id: &str, update: &RunUpdate) -> Result<bool> {
        self.call(Op::UpdateRun, Some(run_id), self.inner.update_run_unless_cancelled(run_id, update)).await
    }
}

#[async_trait]
impl<S: Store> Admin for FaultStore<S> {
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        self.call(Op::ListRuns, None, self.inner.list_runs(filter)).await
    }
    async fn delete_run(&self, run_id: &str) -> Result<bool> {
        self.call(Op::DeleteRun, Some(run_id), self.inner.delete_run(run_id)).await
    }
}

#[async_trait]
impl<S: Store> Queues for FaultStore<S> {
    async fn enqueue(&self, run: &QueuedRun) -> Result<(RunRecord, bool)> {
        self.call(Op::Enqueue, Some(&run.run_id), self.inner.enqueue(run)).await
    }
    async fn claim_runs(&self, claim: &Claim) -> Result<Vec<RunRecord>> {
        self.call(Op::ClaimRuns, None, self.inner.claim_runs(claim)).await
    }
    async fn park_run(
        &self,
        run_id: &str,
        owner: &str,
        waiting_on: &str,
        wake_at_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<bool> {
        let park = self.inner.park_run(run_id, owner, waiting_on, wake_at_ms, now_ms);
        self.call(Op::ParkRun, Some(run_id), park).await
    }
    async fn queue_stats(&self, queue: &str, now_ms: i64) -> Result<QueueStats> {
        self.call(Op::QueueStats, None, self.inner.queue_stats(queue, now_ms)).await
    }
    async fn queue_names(&self) -> Result<Vec<String>> {
        self.call(Op::QueueNames, None, self.inner.queue_names()).await
    }
    async fn wait_for_work(&self, queues: &[String], max_wait: Duration) {
        self.inner.wait_for_work(queues, max_wait).await
    }
}

#[async_trait]
impl<S: Store> RateLimits for FaultStore<S> {
    async fn acquire_rate(&self, acquire: &RateAcquire) -> Result<RateDecision> {
        self.call(Op::AcquireRate, None, self.inner.acquire_rate(acquire)).await
    }
    async fn settle_rate(&self, key: &str, grant_id: &str, actual: RateCost, now_ms: i64) -> Result<()> {
        self.call(Op::SettleRate, None, self.inner.settle_rate(key, grant_id, actual, now_ms)).await
    }
    async fn block_rate(&self, key: &str, duration: Duration, now_ms: i64) -> Result<()> {
        self.call(Op::BlockRate, None, self.inner.block_rate(key, duration, now_ms)).await
    }
}

#[async_trait]
impl<S: Store> Events for FaultStore<S> {
    async fn append_events(&self, run_id: &str, events: &[NewEvent], keep: u64) -> Result<u64> {
        self.call(Op::AppendEvents, Some(run_id), self.inner.append_events(run_id, events, keep)).await
    }
    async fn read_events(&self, run_id: &str, from: u64, limit: usize) -> Result<Vec<EventRecord>> {
        self.call(Op::ReadEvents, Some(run_id), self.inner.read_events(run_id, from, limit)).await
    }
    async fn wait_for_events(&self, run_id: &str, from: u64, max_wait: Duration) {
        self.inner.wait_for_events(run_id, from, max_wait).await
    }
}
