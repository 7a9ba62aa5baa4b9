//! `MemoryStore`: everything in a map, gone with the process. For tests, and for workflows that
//! want retries and step structure without persistence.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::store::{
    Admin, Claim, EventRecord, Events, Journal, Lease, LeaseOutcome, Leases, NewEvent, NewRun, QueueStats,
    QueuedRun, Queues, RateAcquire, RateCost, RateDecision, RateLimits, RunFilter, RunHistory, RunRecord,
    RunStatus, RunUpdate, SignalRecord, Signals, StepRecord, WaitRegistry,
};
use crate::store::{LoggedGrant, decide, duration_ms};

/// A store in memory. Cloning it is not supported; share it through `Arc`.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    /// The `wait_for_signal` callers of every engine sharing this store, by run.
    waits: WaitRegistry<String>,
    /// The `wait_for_work` callers, by queue.
    work: WaitRegistry<String>,
    /// The `wait_for_events` callers, by run.
    readers: WaitRegistry<String>,
}

#[derive(Debug, Default)]
struct Inner {
    runs: HashMap<String, RunRecord>,
    /// Steps per run, in insertion order, with an index by step id.
    steps: HashMap<String, (Vec<StepRecord>, HashMap<String, usize>)>,
    signals: HashMap<String, Vec<SignalRecord>>,
    leases: HashMap<String, Lease>,
    /// Priority and concurrency key of each enqueued run.
    queued: HashMap<String, (i32, Option<String>)>,
    /// The claim times of each queue within its rate window, oldest first.
    claims: HashMap<String, VecDeque<i64>>,
    events: HashMap<String, EventLog>,
    /// The rate limits' logs, by key.
    rates: HashMap<String, RateLog>,
}

/// One key's grants (by id, oldest first) and the end of its block.
#[derive(Debug, Default)]
struct RateLog {
    grants: Vec<(String, LoggedGrant)>,
    blocked_until_ms: i64,
}

/// One run's event log: the events kept, and the offset the next one gets.
#[derive(Debug, Default)]
struct EventLog {
    kept: VecDeque<EventRecord>,
    next: u64,
}

impl Inner {
    fn lease_is_live(&self, run_id: &str, now_ms: i64) -> bool {
        self.leases.get(run_id).is_some_and(|l| l.expires_at_ms > now_ms)
    }

    /// Runnable by the rule of [`Queues::claim_runs`].
    fn runnable(&self, run: &RunRecord, now_ms: i64) -> bool {
        let ready = match run.status {
            RunStatus::Enqueued | RunStatus::Running => true,
            RunStatus::Waiting => run.wake_at_ms.is_none_or(|at| at <= now_ms),
            _ => false,
        };
        ready && !self.lease_is_live(&run.run_id, now_ms)
    }

    /// Executing by the rule of [`QueueLimits`](crate::store::QueueLimits): unfinished, under a
    /// live lease.
    fn executing(&self, run: &RunRecord, now_ms: i64) -> bool {
        !run.status.is_final() && run.status != RunStatus::Failed && self.lease_is_live(&run.run_id, now_ms)
    }
}

/// Whether a worker of `version` may claim `run` (see [`Queues::claim_runs`]): any run without
/// a version of its own, a run of its version, or one never executed.
fn version_allows(version: Option<&str>, run: &RunRecord) -> bool {
    match (version, run.version.as_deref()) {
        (None, _) => true,
        (Some(mine), Some(theirs)) => mine == theirs,
        (Some(_), None) => run.status == RunStatus::Enqueued,
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-operation; every operation
        // here leaves the maps consistent, so keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Journal for MemoryStore {
    async fn open_run(&self, new: NewRun) -> Result<RunHistory> {
        let mut inner = self.lock();
        let run = match inner.runs.get_mut(&new.run_id) {
            Some(run) => {
                if run.workflow == new.workflow
                    && matches!(
                        run.status,
                        RunStatus::Enqueued | RunStatus::Running | RunStatus::Waiting | RunStatus::Failed
                    )
                {
                    run.status = RunStatus::Running;
                    run.error = None;
                    run.waiting_on = None;
                    run.wake_at_ms = None;
                    run.updated_at_ms = new.now_ms;
                }
                run.clone()
            }
            None => {
                let run = RunRecord::new(&new.run_id, &new.workflow, new.input, new.now_ms);
                inner.runs.insert(new.run_id.clone(), run.clone());
                run
            }
        };
        let steps = inner.steps.get(&new.run_id).map(|(v, _)| v.clone()).unwrap_or_default();
        let signals = inner.signals.get(&new.run_id).cloned().unwrap_or_default();
        Ok(RunHistory::new(run, steps, signals))
    }
    async fn save_step(&self, run_id: &str, step: &StepRecord) -> Result<()> {
        let mut inner = self.lock();
        let (list, index) = inner.steps.entry(run_id.to_owned()).or_default();
        match index.get(&step.step_id) {
            Some(&i) => list[i] = step.clone(),
            None => {
                index.insert(step.step_id.clone(), list.len());
                list.push(step.clone());
            }
        }
        Ok(())
    }
    async fn update_run(&self, run_id: &str, update: &RunUpdate) -> Result<()> {
        let mut inner = self.lock();
        let run =
            inner.runs.get_mut(run_id).ok_or_else(|| Error::RunNotFound { run_id: run_id.to_owned() })?;
        run.status = update.status;
        run.output.clone_from(&update.output);
        run.error.clone_from(&update.error);
        run.waiting_on.clone_from(&update.waiting_on);
        run.wake_at_ms = None;
        run.updated_at_ms = update.now_ms;
        Ok(())
    }
    async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        Ok(self.lock().runs.get(run_id).cloned())
    }
    async fn list_steps(&self, run_id: &str) -> Result<Vec<StepRecord>> {
        let inner = self.lock();
        let mut steps = inner.steps.get(run_id).map(|(v, _)| v.clone()).unwrap_or_default();
        steps.sort_by(|a, b| a.started_at_ms.cmp(&b.started_at_ms).then_with(|| a.step_id.cmp(&b.step_id)));
        Ok(steps)
    }
}

#[async_trait]
impl Signals for MemoryStore {
    async fn deliver_signal(&self, run_id: &str, signal: &SignalRecord) -> Result<bool> {
        let mut inner = self.lock();
        let list = inner.signals.entry(run_id.to_owned()).or_default();
        if list.iter().any(|s| s.name == signal.name) {
            return Ok(false);
        }
        list.push(signal.clone());
        let mut unparked = None;
        if let Some(run) = inner.runs.get_mut(run_id)
            && run.status == RunStatus::Waiting
            && run.waiting_on.as_deref() == Some(signal.name.as_str())
            && let Some(at) = run.wake_at_ms
        {
            run.wake_at_ms = Some(at.min(signal.delivered_at_ms));
            unparked = run.queue.clone();
        }
        drop(inner);
        self.waits.wake(run_id);
        if let Some(queue) = unparked {
            self.work.wake(&queue);
        }
        Ok(true)
    }
    async fn get_signal(&self, run_id: &str, name: &str) -> Result<Option<String>> {
        let inner = self.lock();
        Ok(inner
            .signals
            .get(run_id)
            .and_then(|list| list.iter().find(|s| s.name == name))
            .map(|s| s.payload.clone()))
    }
    async fn list_signals(&self, run_id: &str) -> Result<Vec<SignalRecord>> {
        let mut signals = self.lock().signals.get(run_id).cloned().unwrap_or_default();
        signals.sort_by(|a, b| a.delivered_at_ms.cmp(&b.delivered_at_ms).then_with(|| a.name.cmp(&b.name)));
        Ok(signals)
    }
    async fn wait_for_signal(&self, run_id: &str, name: &str, max_wait: Duration) {
        let waiting = self.waits.register(run_id.to_owned());
        // Delivered between the engine's last look and now: return at once.
        let look =
            async { self.lock().signals.get(run_id).is_some_and(|list| list.iter().any(|s| s.name == name)) };
        waiting.wait_unless(look, max_wait).await;
    }
}

#[async_trait]
impl Leases for MemoryStore {
    async fn acquire_lease(
        &self,
        run_id: &str,
        owner: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<LeaseOutcome> {
        let mut inner = self.lock();
        if let Some(lease) = inner.leases.get(run_id)
            && lease.owner != owner
            && lease.expires_at_ms > now_ms
        {
            return Ok(LeaseOutcome::HeldBy(lease.clone()));
        }
        let expires_at_ms = now_ms.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        inner.leases.insert(run_id.to_owned(), Lease::new(owner, expires_at_ms));
        Ok(LeaseOutcome::Acquired)
    }
    async fn release_lease(&self, run_id: &str, owner: &str) -> Result<()> {
        let mut inner = self.lock();
        if inner.leases.get(run_id).is_some_and(|l| l.owner == owner) {
            inner.leases.remove(run_id);
        }
        Ok(())
    }
    /// Extends only leases `owner` still holds (expired or not), under one lock.
    async fn renew_leases(
        &self,
        run_ids: &[String],
        owner: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<Vec<(String, Option<String>)>> {
        let expires_at_ms = now_ms.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let mut inner = self.lock();
        let mut lost = Vec::new();
        for run_id in run_ids {
            match inner.leases.get_mut(run_id) {
                Some(lease) if lease.owner == owner => lease.expires_at_ms = expires_at_ms,
                Some(lease) if lease.expires_at_ms > now_ms => {
                    lost.push((run_id.clone(), Some(lease.owner.clone())));
                }
                _ => lost.push((run_id.clone(), None)),
            }
        }
        Ok(lost)
    }
    async fn cancelled_runs(&self, run_ids: &[String]) -> Result<Vec<String>> {
        let inner = self.lock();
        Ok(run_ids
            .iter()
            .filter(|id| inner.runs.get(*id).is_some_and(|run| run.status == RunStatus::Cancelled))
            .cloned()
            .collect())
    }
    async fn recoverable_runs(&self, now_ms: i64, limit: usize) -> Result<Vec<RunRecord>> {
        let inner = self.lock();
        let mut runs: Vec<RunRecord> = inner
            .runs
            .values()
            .filter(|r| matches!(r.status, RunStatus::Running | RunStatus::Waiting))
            .filter(|r| r.wake_at_ms.is_none() && r.queue.is_none())
            .filter(|r| !inner.lease_is_live(&r.run_id, now_ms))
            .cloned()
            .collect();
        runs.sort_by(|a, b| a.created_at_ms.cmp(&b.created_at_ms).then_with(|| a.run_id.cmp(&b.run_id)));
        runs.truncate(limit);
        Ok(runs)
    }
    async fn update_run_unless_cancelled(&self, run_id: &str, update: &RunUpdate) -> Result<bool> {
        let mut inner = self.lock();
        let run =
            inner.runs.get_mut(run_id).ok_or_else(|| Error::RunNotFound { run_id: run_id.to_owned() })?;
        if run.status == RunStatus::Cancelled {
            return Ok(false);
        }
        run.status = update.status;
        run.output.clone_from(&update.output);
        run.error.clone_from(&update.error);
        run.waiting_on.clone_from(&update.waiting_on);
        run.wake_at_ms = None;
        run.updated_at_ms = update.now_ms;
        Ok(true)
    }
}

#[async_trait]
impl Admin for MemoryStore {
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let inner = self.lock();
        let mut runs: Vec<RunRecord> = inner.runs.values().filter(|r| filter.matches(r)).cloned().collect();
        runs.sort_by(|a, b| b.created_at_ms.cmp(&a.created_at_ms).then_with(|| b.run_id.cmp(&a.run_id)));
        if let Some(limit) = filter.limit {
            runs.truncate(limit);
        }
        Ok(runs)
    }
    async fn delete_run(&self, run_id: &str) -> Result<bool> {
        let mut inner = self.lock();
        inner.steps.remove(run_id);
        inner.signals.remove(run_id);
        inner.leases.remove(run_id);
        inner.queued.remove(run_id);
        inner.events.remove(run_id);
        Ok(inner.runs.remove(run_id).is_some())
    }
}

#[async_trait]
impl Queues for MemoryStore {
    async fn enqueue(&self, new: &QueuedRun) -> Result<(RunRecord, bool)> {
        let mut inner = self.lock();
        if let Some(run) = inner.runs.get(&new.run_id) {
            return Ok((run.clone(), false));
        }
        let mut run = RunRecord::new(&new.run_id, &new.workflow, new.input.clone(), new.now_ms);
        run.status = RunStatus::Enqueued;
        run.queue = Some(new.queue.clone());
        run.parent_id.clone_from(&new.parent_id);
        run.version.clone_from(&new.version);
        inner.runs.insert(new.run_id.clone(), run.clone());
        inner.queued.insert(new.run_id.clone(), (new.priority, new.key.clone()));
        drop(inner);
        self.work.wake(&new.queue);
        Ok((run, true))
    }

    async fn claim_runs(&self, claim: &Claim) -> Result<Vec<RunRecord>> {
        let now = claim.now_ms;
        let limits = claim.limits;
        let mut inner = self.lock();
        let inner = &mut *inner;
        let in_queue = |run: &&RunRecord| run.queue.as_deref() == Some(claim.queue.as_str());
        let key_of = |inner: &Inner, run_id: &str| inner.queued.get(run_id).and_then(|(_, key)| key.clone());

        let mut executing = 0u32;
        let mut per_key: HashMap<String, u32> = HashMap::new();
        let mut candidates = Vec::new();
        for run in inner.runs.values().filter(in_queue) {
            if inner.executing(run, now) {
                executing += 1;
                if let Some(key) = key_of(inner, &run.run_id) {
                    *per_key.entry(key).or_default() += 1;
                }
            } else if inner.runnable(run, now) && version_allows(claim.version.as_deref(), run) {
                let priority = inner.queued.get(&run.run_id).map_or(0, |(p, _)| *p);
                candidates.push((-i64::from(priority), run.created_at_ms, run.run_id.clone()));
            }
        }
        candidates.sort();

        let window = inner.claims.entry(claim.queue.clone()).or_default();
        if let Some(rate) = limits.rate {
            while window.front().is_some_and(|&at| at <= now - rate.period_ms) {
                window.pop_front();
            }
        }
        let mut claimed = Vec::new();
        for (_, _, run_id) in candidates {
            let full = claimed.len() >= claim.max
                || limits.concurrency.is_some_and(|max| executing >= max)
                || limits.rate.is_some_and(|rate| window.len() >= rate.starts as usize);
            if full {
                break;
            }
            // Not `key_of`: `window` borrows `inner.claims` mutably, so only fields apart from it.
            let key = inner.queued.get(&run_id).and_then(|(_, key)| key.clone());
            if let (Some(key), Some(max)) = (&key, limits.per_key)
                && per_key.get(key).copied().unwrap_or(0) >= max
            {
                continue;
            }
            let Some(run) = inner.runs.get_mut(&run_id) else { continue };
            run.status = RunStatus::Running;
            run.waiting_on = None;
            run.wake_at_ms = None;
            run.updated_at_ms = now;
            run.claimed_at_ms = Some(now);
            if run.version.is_none() {
                run.version.clone_from(&claim.version);
            }
            claimed.push(run.clone());
            let expires_at_ms = now.saturating_add(i64::try_from(claim.ttl.as_millis()).unwrap_or(i64::MAX));
            inner.leases.insert(run_id, Lease::new(&claim.owner, expires_at_ms));
            executing += 1;
            if let Some(key) = key {
                *per_key.entry(key).or_default() += 1;
            }
            window.push_back(now);
        }
        if limits.rate.is_none() {
            window.clear();
        }
        Ok(claimed)
    }

    async fn park_run(
        &self,
        run_id: &str,
        owner: &str,
        waiting_on: &str,
        wake_at_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<bool> {
        let mut inner = self.lock();
        let delivered =
            inner.signals.get(run_id).is_some_and(|list| list.iter().any(|s| s.name == waiting_on));
        let run =
            inner.runs.get_mut(run_id).ok_or_else(|| Error::RunNotFound { run_id: run_id.to_owned() })?;
        if run.status == RunStatus::Cancelled {
            return Ok(false);
        }
        run.status = RunStatus::Waiting;
        run.waiting_on = Some(waiting_on.to_owned());
        run.wake_at_ms = Some(if delivered { now_ms } else { wake_at_ms.unwrap_or(i64::MAX) });
        run.updated_at_ms = now_ms;
        let queue = run.queue.clone();
        if inner.leases.get(run_id).is_some_and(|l| l.owner == owner) {
            inner.leases.remove(run_id);
        }
        drop(inner);
        if let (true, Some(queue)) = (delivered, queue) {
            self.work.wake(&queue);
        }
        Ok(true)
    }

    async fn queue_stats(&self, queue: &str, now_ms: i64) -> Result<QueueStats> {
        let inner = self.lock();
        let mut stats = QueueStats::default();
        for run in inner.runs.values().filter(|r| r.queue.as_deref() == Some(queue)) {
            if inner.executing(run, now_ms) {
                stats.executing += 1;
            } else if run.status == RunStatus::Enqueued {
                stats.enqueued += 1;
                stats.oldest_enqueued_at_ms =
                    Some(stats.oldest_enqueued_at_ms.map_or(run.created_at_ms, |t| t.min(run.created_at_ms)));
            } else if run.status == RunStatus::Waiting && run.wake_at_ms.is_some() {
                stats.parked += 1;
            }
        }
        Ok(stats)
    }

    async fn queue_names(&self) -> Result<Vec<String>> {
        let inner = self.lock();
        let names: std::collections::BTreeSet<&str> =
            inner.runs.values().filter_map(|r| r.queue.as_deref()).collect();
        Ok(names.into_iter().map(str::to_owned).collect())
    }

    async fn wait_for_work(&self, queues: &[String], max_wait: Duration) {
        let waiting: Vec<_> = queues.iter().map(|q| self.work.register(q.clone())).collect();
        let look = async {
            let inner = self.lock();
            let now = crate::store::now_ms();
            inner
                .runs
                .values()
                .any(|r| r.queue.as_ref().is_some_and(|q| queues.contains(q)) && inner.runnable(r, now))
        };
        if look.await {
            return;
        }
        let waits = waiting.iter().map(|w| Box::pin(w.wait_unless(async { false }, max_wait)));
        if waiting.is_empty() {
            tokio::time::sleep(max_wait).await;
        } else {
            futures::future::select_all(waits).await;
        }
    }
}

#[async_trait]
impl Events for MemoryStore {
    async fn append_events(&self, run_id: &str, events: &[NewEvent], keep: u64) -> Result<u64> {
        let mut inner = self.lock();
        let log = inner.events.entry(run_id.to_owned()).or_default();
        let first = log.next;
        for event in events {
            log.kept.push_back(EventRecord::new(log.next, event.clone()));
            log.next += 1;
        }
        let keep = usize::try_from(keep.max(1)).unwrap_or(usize::MAX);
        let dropped = log.kept.len().saturating_sub(keep);
        log.kept.drain(..dropped);
        drop(inner);
        self.readers.wake(run_id);
        Ok(first)
    }

    async fn read_events(&self, run_id: &str, from: u64, limit: usize) -> Result<Vec<EventRecord>> {
        let inner = self.lock();
        let Some(log) = inner.events.get(run_id) else { return Ok(Vec::new()) };
        let oldest = log.kept.front().map_or(log.next, |e| e.offset);
        let start = usize::try_from(from.saturating_sub(oldest)).unwrap_or(usize::MAX).min(log.kept.len());
        Ok(log.kept.range(start..).take(limit).cloned().collect())
    }

    async fn wait_for_events(&self, run_id: &str, from: u64, max_wait: Duration) {
        let waiting = self.readers.register(run_id.to_owned());
        let look = async { self.lock().events.get(run_id).is_some_and(|log| log.next > from) };
        waiting.wait_unless(look, max_wait).await;
    }
}

#[async_trait]
impl RateLimits for MemoryStore {
    async fn acquire_rate(&self, acquire: &RateAcquire) -> Result<RateDecision> {
        acquire.limit.check(&acquire.key, acquire.cost)?;
        let now = acquire.now_ms;
        let mut inner = self.lock();
        let log = inner.rates.entry(acquire.key.clone()).or_default();
        if log.grants.iter().any(|(id, _)| *id == acquire.grant_id) {
            return Ok(RateDecision::Granted);
        }
        let since = now.saturating_sub(acquire.limit.period_ms);
        log.grants.retain(|(_, g)| g.at_ms > since);
        log.grants.sort_by_key(|(_, g)| g.at_ms);
        let window: Vec<LoggedGrant> = log.grants.iter().map(|(_, g)| *g).collect();
        let decision = decide(&acquire.limit, acquire.cost, &window, log.blocked_until_ms, now);
        if decision == RateDecision::Granted {
            let grant = LoggedGrant {
                at_ms: now,
                requests: u64::from(acquire.cost.requests),
                tokens: acquire.cost.tokens,
            };
            log.grants.push((acquire.grant_id.clone(), grant));
        }
        Ok(decision)
    }

    async fn settle_rate(&self, key: &str, grant_id: &str, actual: RateCost, now_ms: i64) -> Result<()> {
        let mut inner = self.lock();
        let log = inner.rates.entry(key.to_owned()).or_default();
        log.grants.retain(|(id, _)| id != grant_id);
        let at_ms = now_ms.saturating_add(1);
        let grant = LoggedGrant { at_ms, requests: u64::from(actual.requests), tokens: actual.tokens };
        log.grants.push((grant_id.to_owned(), grant));
        Ok(())
    }

    async fn block_rate(&self, key: &str, duration: Duration, now_ms: i64) -> Result<()> {
        let mut inner = self.lock();
        let log = inner.rates.entry(key.to_owned()).or_default();
        log.blocked_until_ms = log.blocked_until_ms.max(now_ms.saturating_add(duration_ms(duration)));
        Ok(())
    }
}
