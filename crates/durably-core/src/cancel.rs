//! Cancellation across processes (DESIGN rule 13). `Workflow::cancel` writes `cancelled` to the
//! store; the engine executing the run may live in another process, so it learns of it from
//! the store.
//!
//! The trade-off: no store round trip per step. A watcher task reads the run's status every
//! [`CANCEL_POLL`] while the run executes and, on `cancelled`, sets the run's in-memory flag
//! and wakes its waits; the flag is what each step boundary, signal wait and sleep checks. So a
//! step in flight finishes (its record is saved), and the run stops at its next boundary, wait
//! or sleep within one poll interval. Each status change the engine makes for an executing run
//! (`waiting`, back to `running`, `completed`, `failed`) goes through
//! [`Store::update_run_unless_cancelled`](crate::Store::update_run_unless_cancelled), so a
//! cancellation that lands between two polls is never overwritten: the run stops there.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::context::RunContext;
use crate::error::{Error, Result};
use crate::store::{RunStatus, RunUpdate};

/// How often an executing run reads its status to notice a cancellation from another process:
/// one `get_run` per executing run per interval.
pub const CANCEL_POLL: Duration = Duration::from_millis(500);

/// Stops the watcher when the execution ends, however it ends.
pub(crate) struct CancelWatch(JoinHandle<()>);

impl Drop for CancelWatch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts watching the stored status of `ctx`'s run.
pub(crate) fn watch(ctx: RunContext) -> CancelWatch {
    CancelWatch(tokio::spawn(async move {
        let store = ctx.inner.engine.store.clone();
        loop {
            tokio::time::sleep(CANCEL_POLL).await;
            if ctx.is_cancelled() {
                return;
            }
            match store.get_run(ctx.run_id()).await {
                Ok(Some(run)) if run.status == RunStatus::Cancelled => {
                    tracing::info!(target: "durably", run_id = %ctx.run_id(), "run cancelled elsewhere; stopping");
                    ctx.cancel();
                    return;
                }
                Ok(_) => {}
                // A read that fails is tried again at the next tick; the status writes are
                // guarded anyway.
                Err(e) => {
                    tracing::debug!(target: "durably", run_id = %ctx.run_id(), error = %e, "could not read the run status");
                }
            }
        }
    }))
}

/// Changes the status of the executing run unless it was cancelled in the store; a
/// cancellation found there cancels the run in memory too and is returned as
/// [`Error::Cancelled`].
pub(crate) async fn update_unless_cancelled(ctx: &RunContext, update: &RunUpdate) -> Result<()> {
    let store = &ctx.inner.engine.store;
    if store.update_run_unless_cancelled(ctx.run_id(), update).await? {
        Ok(())
    } else {
        ctx.cancel();
        Err(Error::Cancelled { run_id: ctx.run_id().to_owned() })
    }
}
