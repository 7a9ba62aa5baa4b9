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
//! cancellation that lands between two polls is never overwritten: the run stops there. The
//! write back to `running` after a signal is started without being awaited (so a resumed run
//! waits for one durable commit, not two); the run's next status write awaits it first, and a
//! cancellation it finds stops the run then, or the watcher's next poll does.

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
    settle_pending(ctx).await?;
    let store = &ctx.inner.engine.store;
    let applied = store.update_run_unless_cancelled(ctx.run_id(), update).await?;
    applied_or_cancelled(ctx, applied)
}

/// Starts a status write without waiting for it: for the run going back to `running` after a
/// signal, so that the resumed run does not wait for a second durable commit after the
/// delivery's. The next status write of the run ([`update_unless_cancelled`]) awaits it first
/// and reports its outcome, so status writes keep their order on every store. If the process
/// dies before it lands, the run stays `waiting`, which recovery resumes like `running`.
pub(crate) async fn update_unless_cancelled_later(ctx: &RunContext, update: RunUpdate) -> Result<()> {
    settle_pending(ctx).await?;
    let store = ctx.inner.engine.store.clone();
    let run_id = ctx.run_id().to_owned();
    let write = tokio::spawn(async move { store.update_run_unless_cancelled(&run_id, &update).await });
    *ctx.inner.pending_status.lock().unwrap_or_else(|e| e.into_inner()) = Some(write);
    Ok(())
}

/// Awaits the status write started by [`update_unless_cancelled_later`], if any.
pub(crate) async fn settle_pending(ctx: &RunContext) -> Result<()> {
    let pending = ctx.inner.pending_status.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some(write) = pending else { return Ok(()) };
    let applied = write.await.map_err(|e| Error::store("update_run", Some(ctx.run_id()), e))??;
    applied_or_cancelled(ctx, applied)
}

fn applied_or_cancelled(ctx: &RunContext, applied: bool) -> Result<()> {
    if applied {
        Ok(())
    } else {
        ctx.cancel();
        Err(Error::Cancelled { run_id: ctx.run_id().to_owned() })
    }
}
