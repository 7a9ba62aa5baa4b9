//! `MemoryStore`: everything in a map, gone with the process. For tests, and for workflows that
//! want retries and step structure without persistence.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::store::{
    Admin, Journal, Lease, LeaseOutcome, Leases, NewRun, RunFilter, RunHistory, RunRecord, RunStatus,
    RunUpdate, SignalRecord, Signals, StepRecord, WaitRegistry,
};

/// A store in memory. Cloning it is not supported; share it through `Arc`.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    /// The `wait_for_signal` callers of every engine sharing this store, by run.
    waits: WaitRegistry<String>,
}

#[derive(Debug, Default)]
struct Inner {
    runs: HashMap<String, RunRecord>,
    /// Steps per run, in insertion order, with an index by step id.
    steps: HashMap<String, (Vec<StepRecord>, HashMap<String, usize>)>,
    signals: HashMap<String, Vec<SignalRecord>>,
    leases: HashMap<String, Lease>,
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
                    && matches!(run.status, RunStatus::Running | RunStatus::Waiting | RunStatus::Failed)
                {
                    run.status = RunStatus::Running;
                    run.error = None;
                    run.waiting_on = None;
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
        drop(inner);
        self.waits.wake(run_id);
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
            .filter(|r| inner.leases.get(&r.run_id).is_none_or(|l| l.expires_at_ms <= now_ms))
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
        Ok(inner.runs.remove(run_id).is_some())
    }
}
