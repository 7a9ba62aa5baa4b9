//! [`Leases`]: what keeps processes that share a store from stepping on each other: the lease
//! on each executing run, cancellations written by another process, and which runs recovery
//! may resume.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;
use crate::store::{LeaseOutcome, LeasedOpen, NewEvent, NewRun, RunRecord, RunUpdate};

/// Coordination between the processes sharing a store. Every method must be atomic across
/// processes; a store only one process uses gets all of them from
/// [`SingleProcess`](crate::store::SingleProcess).
#[async_trait]
pub trait Leases: Send + Sync {
    /// The store's clock, in milliseconds since the Unix epoch: the engine reads lease times
    /// from it, so that processes sharing the store agree on when a lease lapses. The default
    /// is this machine's clock.
    fn now_ms(&self) -> i64 {
        crate::store::now_ms()
    }

    /// Takes the lease on `run_id` for `owner` until `now_ms + ttl` (or renews it, if `owner`
    /// already holds it). Succeeds when the run has no lease, its lease expired, or `owner`
    /// holds it; otherwise returns the other owner's lease and changes nothing. The run need not
    /// exist. Atomic: of two owners racing for a free lease, exactly one gets it.
    async fn acquire_lease(
        &self,
        run_id: &str,
        owner: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<LeaseOutcome>;

    /// Gives up `owner`'s lease on `run_id`; does nothing when another owner holds it.
    async fn release_lease(&self, run_id: &str, owner: &str) -> Result<()>;

    /// Renews `owner`'s leases on `run_ids` until `now_ms + ttl`, all in one call: the engine
    /// renews every lease it holds this way, every third of the TTL. Returns the ids whose lease
    /// `owner` no longer holds, each with the owner that holds it now when known (`None`: it was
    /// released, or lapsed and nobody took it); those leases are left as they are. Never takes
    /// a lease `owner` does not hold, free or not. `run_ids` holds no id twice.
    async fn renew_leases(
        &self,
        run_ids: &[String],
        owner: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<Vec<(String, Option<String>)>>;

    /// Which of `run_ids` are `cancelled`, in one call: the engine asks this every
    /// [`CANCEL_POLL`](crate::CANCEL_POLL) about every run it executes, to notice a
    /// cancellation written by another process. Ids of runs that do not exist are not
    /// cancelled. `run_ids` holds no id twice; the order of the answer does not matter.
    async fn cancelled_runs(&self, run_ids: &[String]) -> Result<Vec<String>>;

    /// Unfinished runs (status `running` or `waiting`) that no live lease covers at `now_ms`,
    /// are not parked (`wake_at_ms` unset) and are in no queue, oldest first, at most `limit`:
    /// the runs [`recover`](crate::Workflow) may resume. A queued run whose worker died is left
    /// to the queue's workers, which claim it back within the queue's limits and versions.
    async fn recoverable_runs(&self, now_ms: i64, limit: usize) -> Result<Vec<RunRecord>>;

    /// Like [`update_run`](crate::Journal::update_run), but changes nothing and returns `false`
    /// when the run is `cancelled`, in one atomic step: the engine uses it for every status
    /// change of an executing run, so that a cancellation written by another process is never
    /// overwritten. Returns `true` when the update was applied; fails with
    /// [`Error::RunNotFound`](crate::Error::RunNotFound) for an unknown run.
    async fn update_run_unless_cancelled(&self, run_id: &str, update: &RunUpdate) -> Result<bool>;

    /// Appends `events` to the run's log as [`Events::append_events`](crate::store::Events::append_events)
    /// does (keeping its newest `keep`), then applies
    /// [`update_run_unless_cancelled`](Self::update_run_unless_cancelled), in one atomic write:
    /// the events are appended whether or not the update applies, as the two calls would be,
    /// and the update never lands without them. An unknown run is
    /// [`Error::RunNotFound`](crate::Error::RunNotFound), with nothing written. The engine writes a run's final status with
    /// its last events this way, so that the two cost one commit.
    ///
    /// `None` means the store did neither: it cannot write the two together (the default), or
    /// could not this time without risk. The engine then makes the two calls itself, in order.
    async fn update_run_unless_cancelled_with_events(
        &self,
        run_id: &str,
        update: &RunUpdate,
        events: &[NewEvent],
        keep: u64,
    ) -> Option<Result<bool>> {
        let _ = (run_id, update, events, keep);
        None
    }

    /// Ends an execution: appends `events` to the run's log as
    /// [`update_run_unless_cancelled_with_events`](Self::update_run_unless_cancelled_with_events)
    /// does and applies its update, then releases `owner`'s lease on the run as
    /// [`release_lease`](Self::release_lease) does, whether or not the update applied: the
    /// update and the release in one atomic write, the events in it or committed before it
    /// (never after, and the update never lands without them). The engine writes a run's final
    /// status this way, so that the end of a run and the release of its lease cost one commit.
    /// Returns whether the update applied; an unknown run is
    /// [`Error::RunNotFound`](crate::Error::RunNotFound), with nothing written.
    ///
    /// `None` means the store did neither (the default): the engine writes the events and the
    /// status as `update_run_unless_cancelled_with_events` describes, then releases the lease.
    async fn end_run(
        &self,
        run_id: &str,
        update: &RunUpdate,
        events: &[NewEvent],
        keep: u64,
        owner: &str,
    ) -> Option<Result<bool>> {
        let _ = (run_id, update, events, keep, owner);
        None
    }

    /// Takes the lease on `new.run_id` for `owner` as [`acquire_lease`](Self::acquire_lease)
    /// does and, only when it was taken, opens the run as
    /// [`Journal::open_run`](crate::Journal::open_run) does, in one atomic write: the engine
    /// starts every execution this way, so that the two cost one commit. When another owner
    /// holds a live lease, returns it and changes nothing.
    ///
    /// `None` means the store did not open the run: it cannot write the two together (the
    /// default), or could not this time. The engine then takes the lease and opens the run in
    /// two calls, in that order (a lease the store took for `owner` on the way is simply taken
    /// again by the same owner).
    async fn open_run_leased(
        &self,
        new: &NewRun,
        owner: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Option<Result<LeasedOpen>> {
        let _ = (new, owner, ttl, now_ms);
        None
    }
}

#[async_trait]
impl<S: Leases + ?Sized> Leases for Arc<S> {
    fn now_ms(&self) -> i64 {
        (**self).now_ms()
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
    async fn update_run_unless_cancelled(&self, run_id: &str, update: &RunUpdate) -> Result<bool> {
        (**self).update_run_unless_cancelled(run_id, update).await
    }
    async fn update_run_unless_cancelled_with_events(
        &self,
        run_id: &str,
        update: &RunUpdate,
        events: &[NewEvent],
        keep: u64,
    ) -> Option<Result<bool>> {
        (**self).update_run_unless_cancelled_with_events(run_id, update, events, keep).await
    }
    async fn open_run_leased(
        &self,
        new: &NewRun,
        owner: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Option<Result<LeasedOpen>> {
        (**self).open_run_leased(new, owner, ttl, now_ms).await
    }
    async fn end_run(
        &self,
        run_id: &str,
        update: &RunUpdate,
        events: &[NewEvent],
        keep: u64,
        owner: &str,
    ) -> Option<Result<bool>> {
        (**self).end_run(run_id, update, events, keep, owner).await
    }
}
