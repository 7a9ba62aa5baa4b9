//! [`Admin`]: what operators' tools ask of a store beyond one run: listing and deleting runs.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::store::signals::unsupported;
use crate::store::{RunFilter, RunRecord};

/// Listing and deleting runs.
#[async_trait]
pub trait Admin: Send + Sync {
    /// Runs matching `filter`, newest first.
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>>;

    /// Deletes a run with all its steps, signals and its lease (retention: `Workflow::purge`).
    /// Returns `false`, deleting any stray steps or signals of that id, when the run record did
    /// not exist.
    ///
    /// The default fails with [`Error::Invalid`](crate::Error::Invalid): a store must implement
    /// it to support purge.
    async fn delete_run(&self, run_id: &str) -> Result<bool> {
        Err(unsupported("delete_run", run_id))
    }
}

#[async_trait]
impl<S: Admin + ?Sized> Admin for Arc<S> {
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        (**self).list_runs(filter).await
    }
    async fn delete_run(&self, run_id: &str) -> Result<bool> {
        (**self).delete_run(run_id).await
    }
}
