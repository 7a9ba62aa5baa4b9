//! [`Journal`]: a store's runs and their step records, the checkpoints replay reads.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::store::{NewEvent, NewRun, RunHistory, RunRecord, RunUpdate, StepRecord};

/// Runs and their steps: what an execution writes and a replay reads.
#[async_trait]
pub trait Journal: Send + Sync {
    /// Opens a run for execution, creating it (status `running`, with `input`) if absent, and
    /// returns it with its whole history in one round trip.
    ///
    /// An existing run of the *same* workflow whose status is `running`, `waiting` or `failed`
    /// is set to `running` (its error and `waiting_on` cleared); a `completed` or `cancelled` run
    /// is returned unchanged. A run of a *different* workflow is returned unchanged, and the
    /// engine reports the conflict.
    async fn open_run(&self, run: NewRun) -> Result<RunHistory>;

    /// Inserts or replaces the record of `step.step_id` in `run_id`.
    async fn save_step(&self, run_id: &str, step: &StepRecord) -> Result<()>;

    /// Saves `step` as [`save_step`](Self::save_step) does and appends `events` to the run's
    /// log as [`Events::append_events`](crate::store::Events::append_events) does (keeping its
    /// newest `keep`), in one atomic write: both or neither. The engine sends a checkpoint's
    /// events with it this way, so that the two cost one commit.
    ///
    /// `None` means the store did neither: it cannot write the two together (the default), or
    /// could not this time without risk. The engine then makes the two calls itself, at once.
    async fn save_step_with_events(
        &self,
        run_id: &str,
        step: &StepRecord,
        events: &[NewEvent],
        keep: u64,
    ) -> Option<Result<()>> {
        let _ = (run_id, step, events, keep);
        None
    }

    /// Changes a run's status and sets its output, error and `waiting_on` from `update` (each
    /// field replaced, `None` clears). Fails with [`Error::RunNotFound`](crate::Error::RunNotFound)
    /// for an unknown run.
    async fn update_run(&self, run_id: &str, update: &RunUpdate) -> Result<()>;

    /// One run.
    async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>>;

    /// A run's steps, in the order they started (then by step id).
    async fn list_steps(&self, run_id: &str) -> Result<Vec<StepRecord>>;
}

#[async_trait]
impl<S: Journal + ?Sized> Journal for Arc<S> {
    async fn open_run(&self, run: NewRun) -> Result<RunHistory> {
        (**self).open_run(run).await
    }
    async fn save_step(&self, run_id: &str, step: &StepRecord) -> Result<()> {
        (**self).save_step(run_id, step).await
    }
    async fn save_step_with_events(
        &self,
        run_id: &str,
        step: &StepRecord,
        events: &[NewEvent],
        keep: u64,
    ) -> Option<Result<()>> {
        (**self).save_step_with_events(run_id, step, events, keep).await
    }
    async fn update_run(&self, run_id: &str, update: &RunUpdate) -> Result<()> {
        (**self).update_run(run_id, update).await
    }
    async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        (**self).get_run(run_id).await
    }
    async fn list_steps(&self, run_id: &str) -> Result<Vec<StepRecord>> {
        (**self).list_steps(run_id).await
    }
}
