//! The engine renews the leases of its runs in batches: a release waits for a batch in flight,
//! so a renewal sent before the release never lands after it and takes the lease back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use durably_core::store::prelude::*;
use durably_core::{
    LeaseOutcome, MemoryStore, NewRun, Result, RunFilter, RunHistory, RunRecord, RunUpdate, SignalRecord,
    StepRecord, Workflow,
};
use tokio::sync::Semaphore;

/// A `MemoryStore` whose first lease renewal waits at a gate. Its `renew_leases` is one
/// `acquire_lease` per lease, which takes a free lease again, as a careless store might: only
/// the engine's ordering keeps a late renewal from undoing a release.
struct GatedRenewal {
    inner: MemoryStore,
    acquires: AtomicU32,
    renewals_done: AtomicU32,
    gate: Semaphore,
}

impl GatedRenewal {
    fn new() -> Self {
        GatedRenewal {
            inner: MemoryStore::new(),
            acquires: AtomicU32::new(0),
            renewals_done: AtomicU32::new(0),
            gate: Semaphore::new(0),
        }
    }
}

#[async_trait]
impl Journal for GatedRenewal {
    async fn open_run(&self, run: NewRun) -> Result<RunHistory> {
        self.inner.open_run(run).await
    }
    async fn save_step(&self, run_id: &str, step: &StepRecord) -> Result<()> {
        self.inner.save_step(run_id, step).await
    }
    async fn update_run(&self, run_id: &str, update: &RunUpdate) -> Result<()> {
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
impl Signals for GatedRenewal {
    async fn deliver_signal(&self, run_id: &str, signal: &SignalRecord) -> Result<bool> {
        self.inner.deliver_signal(run_id, signal).await
    }
    async fn get_signal(&self, run_id: &str, name: &str) -> Result<Option<String>> {
        self.inner.get_signal(run_id, name).await
    }
    async fn wait_for_signal(&self, run_id: &str, name: &str, max_wait: Duration) {
        self.inner.wait_for_signal(run_id, name, max_wait).await
    }
}

#[async_trait]
impl Leases for GatedRenewal {
    async fn acquire_lease(
        &self,
        run_id: &str,
        owner: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<LeaseOutcome> {
        // Call 1 takes the lease; call 2 is the first renewal.
        let call = self.acquires.fetch_add(1, Ordering::SeqCst) + 1;
        if call == 2 {
            drop(self.gate.acquire().await.unwrap());
        }
        let outcome = self.inner.acquire_lease(run_id, owner, ttl, now_ms).await;
        if call >= 2 {
            self.renewals_done.fetch_add(1, Ordering::SeqCst);
        }
        outcome
    }
    async fn release_lease(&self, run_id: &str, owner: &str) -> Result<()> {
        self.inner.release_lease(run_id, owner).await
    }
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
    async fn cancelled_runs(&self, run_ids: &[String]) -> Result<Vec<String>> {
        self.inner.cancelled_runs(run_ids).await
    }
    async fn recoverable_runs(&self, now_ms: i64, limit: usize) -> Result<Vec<RunRecord>> {
        self.inner.recoverable_runs(now_ms, limit).await
    }
    async fn update_run_unless_cancelled(&self, run_id: &str, update: &RunUpdate) -> Result<bool> {
        self.inner.update_run_unless_cancelled(run_id, update).await
    }
}

#[async_trait]
impl Admin for GatedRenewal {
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        self.inner.list_runs(filter).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_in_flight_at_the_release_never_takes_the_lease_back() {
    let store = Arc::new(GatedRenewal::new());
    let wf =
        Workflow::builder("renewals").shared_store(store.clone()).lease_ttl(Duration::from_secs(3)).build();
    let run = tokio::spawn({
        let wf = wf.clone();
        async move { wf.run("r", |_| durably_core::signal::<u32>("go")).await }
    });
    // The first renewal (after a third of the TTL) is now held in the store call.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while store.acquires.load(Ordering::SeqCst) < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no renewal was sent");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The run ends and releases its lease while the renewal is in flight.
    assert!(wf.complete("r", "go", &7u32).await.unwrap());
    tokio::time::sleep(Duration::from_millis(100)).await;
    store.gate.add_permits(1);
    assert_eq!(tokio::time::timeout(Duration::from_secs(20), run).await.unwrap().unwrap().unwrap(), 7);
    while store.renewals_done.load(Ordering::SeqCst) < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The renewal landed before the release, which freed the lease for anyone.
    let other =
        store.inner.acquire_lease("r", "another-owner", Duration::from_secs(60), durably_core::now_ms());
    assert_eq!(other.await.unwrap(), LeaseOutcome::Acquired, "a renewal took the released lease back");
}

impl durably_core::store::Queues for GatedRenewal {}
impl durably_core::store::Events for GatedRenewal {}
impl durably_core::store::RateLimits for GatedRenewal {}
