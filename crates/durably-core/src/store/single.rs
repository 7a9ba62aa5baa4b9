//! [`SingleProcess`]: the [`Leases`] of a store only one process uses, so that such a store
//! implements only [`Journal`], [`Signals`] and [`Admin`].

use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::store::{
    Admin, Events, Journal, LeaseOutcome, Leases, NewRun, Queues, RateLimits, RunFilter, RunHistory,
    RunRecord, RunStatus, RunUpdate, SignalRecord, Signals, StepRecord,
};

/// Wraps a store that only one process uses and gives it [`Leases`]: every lease is granted
/// (the engine already keeps one executor per run inside a process), renewals never find a
/// lease lost, every unfinished run is recoverable (after a restart no execution is live), and
/// `update_run_unless_cancelled` is made atomic by serializing the store's status writes.
///
/// Do not share the wrapped store between processes: two of them would both execute a run.
///
/// ```
/// use async_trait::async_trait;
/// use durably_core::store::{Admin, Journal, Signals, SingleProcess};
/// use durably_core::{MemoryStore, NewRun, Result, RunFilter, RunHistory, RunRecord, RunUpdate};
/// use durably_core::{SignalRecord, StepRecord, Workflow, step};
///
/// /// A store of your own; here it keeps its records in a `MemoryStore`.
/// struct Notebook(MemoryStore);
///
/// #[async_trait]
/// impl Journal for Notebook {
///     async fn open_run(&self, run: NewRun) -> Result<RunHistory> { self.0.open_run(run).await }
///     async fn save_step(&self, run_id: &str, step: &StepRecord) -> Result<()> {
///         self.0.save_step(run_id, step).await
///     }
///     async fn update_run(&self, run_id: &str, update: &RunUpdate) -> Result<()> {
///         self.0.update_run(run_id, update).await
///     }
///     async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>> { self.0.get_run(run_id).await }
///     async fn list_steps(&self, run_id: &str) -> Result<Vec<StepRecord>> {
///         self.0.list_steps(run_id).await
///     }
/// }
///
/// #[async_trait]
/// impl Signals for Notebook {
///     async fn deliver_signal(&self, run_id: &str, signal: &SignalRecord) -> Result<bool> {
///         self.0.deliver_signal(run_id, signal).await
///     }
///     async fn get_signal(&self, run_id: &str, name: &str) -> Result<Option<String>> {
///         self.0.get_signal(run_id, name).await
///     }
/// }
///
/// #[async_trait]
/// impl Admin for Notebook {
///     async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
///         self.0.list_runs(filter).await
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<()> {
/// let wf = Workflow::builder("app").store(SingleProcess::new(Notebook(MemoryStore::new()))).build();
/// let n: u32 = wf
///     .run("run-1", |_ctx| async move {
///         let n = step("one", || async { Ok::<_, std::io::Error>(1u32) }).await?;
///         Ok::<_, durably_core::Error>(n)
///     })
///     .await?;
/// assert_eq!(n, 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct SingleProcess<S> {
    inner: S,
    /// Held around every status write: what makes `update_run_unless_cancelled`'s read and write
    /// one step, since a cancellation is an `update_run`. An async mutex, since it must be held
    /// across the store's own calls; nothing else is locked under it.
    status_writes: tokio::sync::Mutex<()>,
}

impl<S> SingleProcess<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        SingleProcess { inner, status_writes: tokio::sync::Mutex::new(()) }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Unwraps the store.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

#[async_trait]
impl<S: Journal> Journal for SingleProcess<S> {
    async fn open_run(&self, run: NewRun) -> Result<RunHistory> {
        self.inner.open_run(run).await
    }
    async fn save_step(&self, run_id: &str, step: &StepRecord) -> Result<()> {
        self.inner.save_step(run_id, step).await
    }
    async fn update_run(&self, run_id: &str, update: &RunUpdate) -> Result<()> {
        let _serial = self.status_writes.lock().await;
        self.inner.update_run(run_id, update).await
    }
    async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        self.inner.get_run(run_id).await
    }
    async fn list_steps(&self, run_id: &str) -> Result<Vec<StepRecord>> {
        self.inner.list_steps(run_id).await
    }
}

#[async_trait]
impl<S: Signals> Signals for SingleProcess<S> {
    async fn deliver_signal(&self, run_id: &str, signal: &SignalRecord) -> Result<bool> {
        self.inner.deliver_signal(run_id, signal).await
    }
    async fn get_signal(&self, run_id: &str, name: &str) -> Result<Option<String>> {
        self.inner.get_signal(run_id, name).await
    }
    async fn list_signals(&self, run_id: &str) -> Result<Vec<SignalRecord>> {
        self.inner.list_signals(run_id).await
    }
    async fn wait_for_signal(&self, run_id: &str, name: &str, max_wait: Duration) {
        self.inner.wait_for_signal(run_id, name, max_wait).await
    }
}

#[async_trait]
impl<S: Admin> Admin for SingleProcess<S> {
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        self.inner.list_runs(filter).await
    }
    async fn delete_run(&self, run_id: &str) -> Result<bool> {
        self.inner.delete_run(run_id).await
    }
}

#[async_trait]
impl<S: Journal + Admin> Leases for SingleProcess<S> {
    async fn acquire_lease(
        &self,
        _run_id: &str,
        _owner: &str,
        _ttl: Duration,
        _now_ms: i64,
    ) -> Result<LeaseOutcome> {
        Ok(LeaseOutcome::Acquired)
    }

    async fn release_lease(&self, _run_id: &str, _owner: &str) -> Result<()> {
        Ok(())
    }

    /// Nothing is ever lost: no other process takes leases.
    async fn renew_leases(
        &self,
        _run_ids: &[String],
        _owner: &str,
        _ttl: Duration,
        _now_ms: i64,
    ) -> Result<Vec<(String, Option<String>)>> {
        Ok(Vec::new())
    }

    async fn cancelled_runs(&self, run_ids: &[String]) -> Result<Vec<String>> {
        let mut cancelled = Vec::new();
        for run_id in run_ids {
            if self.inner.get_run(run_id).await?.is_some_and(|run| run.status == RunStatus::Cancelled) {
                cancelled.push(run_id.clone());
            }
        }
        Ok(cancelled)
    }

    /// Every unfinished run: after a restart no execution of this process is live.
    async fn recoverable_runs(&self, _now_ms: i64, limit: usize) -> Result<Vec<RunRecord>> {
        let mut runs = Vec::new();
        for status in [RunStatus::Running, RunStatus::Waiting] {
            runs.extend(self.inner.list_runs(&RunFilter::new().status(status)).await?);
        }
        runs.sort_by(|a, b| a.created_at_ms.cmp(&b.created_at_ms).then_with(|| a.run_id.cmp(&b.run_id)));
        runs.truncate(limit);
        Ok(runs)
    }

    async fn update_run_unless_cancelled(&self, run_id: &str, update: &RunUpdate) -> Result<bool> {
        let _serial = self.status_writes.lock().await;
        match self.inner.get_run(run_id).await? {
            None => Err(Error::RunNotFound { run_id: run_id.to_owned() }),
            Some(run) if run.status == RunStatus::Cancelled => Ok(false),
            Some(_) => self.inner.update_run(run_id, update).await.map(|()| true),
        }
    }
}

/// No queues: a store only one process uses runs its workflows in place.
impl<S: Send + Sync> Queues for SingleProcess<S> {}

/// No event log.
impl<S: Send + Sync> Events for SingleProcess<S> {}

/// No shared rate limits.
impl<S: Send + Sync> RateLimits for SingleProcess<S> {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::MemoryStore;

    fn open(id: &str) -> NewRun {
        NewRun::new(id, "wf", None, 1)
    }

    #[tokio::test]
    async fn every_lease_is_granted_and_no_renewal_is_lost() {
        let store = SingleProcess::new(MemoryStore::new());
        let ttl = Duration::from_secs(10);
        assert_eq!(store.acquire_lease("r", "a", ttl, 1).await.unwrap(), LeaseOutcome::Acquired);
        // A second owner is granted it too: inside one process the engine keeps one executor.
        assert_eq!(store.acquire_lease("r", "b", ttl, 1).await.unwrap(), LeaseOutcome::Acquired);
        let ids = vec!["r".to_owned(), "free".to_owned()];
        assert!(store.renew_leases(&ids, "a", ttl, 2).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_cancelled_run_is_not_overwritten() {
        let store = SingleProcess::new(MemoryStore::new());
        store.open_run(open("r")).await.unwrap();
        store.update_run("r", &RunUpdate::new(RunStatus::Cancelled, 2)).await.unwrap();
        let applied = store.update_run_unless_cancelled("r", &RunUpdate::new(RunStatus::Failed, 3)).await;
        assert!(!applied.unwrap());
        assert_eq!(store.get_run("r").await.unwrap().unwrap().status, RunStatus::Cancelled);
        assert_eq!(store.cancelled_runs(&["r".to_owned(), "x".to_owned()]).await.unwrap(), vec!["r"]);
        assert!(matches!(
            store.update_run_unless_cancelled("x", &RunUpdate::new(RunStatus::Failed, 3)).await,
            Err(Error::RunNotFound { .. })
        ));
    }

    #[tokio::test]
    async fn every_unfinished_run_is_recoverable_oldest_first() {
        let store = SingleProcess::new(MemoryStore::new());
        store.open_run(NewRun::new("new", "wf", None, 5)).await.unwrap();
        store.open_run(NewRun::new("old", "wf", None, 1)).await.unwrap();
        store.open_run(NewRun::new("done", "wf", None, 0)).await.unwrap();
        store.update_run("done", &RunUpdate::new(RunStatus::Completed, 6)).await.unwrap();
        // A lease taken in the wrapped store does not hide a run: only this process uses it.
        store.inner().acquire_lease("new", "a", Duration::from_secs(60), 6).await.unwrap();
        let runs = store.recoverable_runs(6, 10).await.unwrap();
        let ids: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
        assert_eq!(ids, ["old", "new"]);
        assert_eq!(store.recoverable_runs(6, 1).await.unwrap().len(), 1);
    }
}
