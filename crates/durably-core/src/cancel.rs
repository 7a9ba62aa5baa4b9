//! Cancellation across processes (rule 13 of docs/design.md). `Workflow::cancel` writes `cancelled` to the
//! store; the engine executing the run may live in another process, so it learns of it from
//! the store.
//!
//! The trade-off: no store round trip per step, and none per run either. Each engine has one
//! watcher task that asks the store, every [`CANCEL_POLL`], which of the runs it executes are
//! `cancelled`, in one call ([`Store::cancelled_runs`](crate::store::Leases::cancelled_runs)), so the
//! cost of watching does not grow with the number of runs waiting on signals or sleeping. For
//! each one found it sets the run's in-memory flag and wakes its waits; the flag is what each
//! step boundary, signal wait and sleep checks. So a step in flight finishes (its record is
//! saved), and the run stops at its next boundary, wait or sleep within about one poll
//! interval. The task starts with the engine's first execution and stops when none is left.
//! Each status change the engine makes for an executing run
//! (`waiting`, back to `running`, `completed`, `failed`) goes through
//! [`Store::update_run_unless_cancelled`](crate::store::Leases::update_run_unless_cancelled), so a
//! cancellation that lands between two polls is never overwritten: the run stops there. The
//! write back to `running` after a signal is started without being awaited (so a resumed run
//! waits for one durable commit, not two); the run's next status write awaits it first, and a
//! cancellation it finds stops the run then, or the watcher's next poll does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::context::RunContext;
use crate::error::{Error, Result};
use crate::store::{RunUpdate, Store};
use crate::sync::{TaskSlot, lock};

/// How often an engine asks the store whether the runs it executes were cancelled by another
/// process: one [`Store::cancelled_runs`](crate::store::Leases::cancelled_runs) call per engine per interval, whatever the number of
/// runs.
pub const CANCEL_POLL: Duration = Duration::from_millis(500);

/// The runs one engine executes, watched for a cancellation by its watcher task.
pub(crate) struct CancelWatcher {
    store: Arc<dyn Store>,
    state: Mutex<Watched>,
}

#[derive(Default)]
struct Watched {
    runs: HashMap<String, RunContext>,
    /// The watcher task, if one runs.
    task: TaskSlot,
}

/// Stops watching a run when its execution ends, however it ends.
pub(crate) struct CancelWatch {
    watcher: Arc<CancelWatcher>,
    ctx: RunContext,
}

impl Drop for CancelWatch {
    fn drop(&mut self) {
        let mut state = lock(&self.watcher.state);
        if state.runs.get(self.ctx.run_id()).is_some_and(|c| c.same_run(&self.ctx)) {
            state.runs.remove(self.ctx.run_id());
        }
    }
}

impl CancelWatcher {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        CancelWatcher { store, state: Mutex::default() }
    }

    /// Starts watching the stored status of `ctx`'s run, and the watcher task if it is not
    /// running.
    pub(crate) fn watch(self: &Arc<Self>, ctx: RunContext) -> CancelWatch {
        let start = {
            let mut state = lock(&self.state);
            state.runs.insert(ctx.run_id().to_owned(), ctx.clone());
            state.task.claim()
        };
        if let Some(task) = start {
            tokio::spawn(poll(self.clone(), self.store.clone(), task));
        }
        CancelWatch { watcher: self.clone(), ctx }
    }
}

/// Marks the watcher task `task` as ended when it is dropped: it returned, or its runtime shut
/// down (the next execution then starts a new one).
struct TaskEnd {
    watcher: Arc<CancelWatcher>,
    task: u64,
}

impl Drop for TaskEnd {
    fn drop(&mut self) {
        lock(&self.watcher.state).task.free(self.task);
    }
}

/// The watcher task: one store call per [`CANCEL_POLL`] for every run of the engine, until no
/// run is left.
async fn poll(watcher: Arc<CancelWatcher>, store: Arc<dyn Store>, task: u64) {
    let _end = TaskEnd { watcher: watcher.clone(), task };
    loop {
        tokio::time::sleep(CANCEL_POLL).await;
        let run_ids: Vec<String> = {
            let mut state = lock(&watcher.state);
            if state.runs.is_empty() {
                state.task.free(task);
                return;
            }
            state.runs.iter().filter(|(_, ctx)| !ctx.is_cancelled()).map(|(id, _)| id.clone()).collect()
        };
        if run_ids.is_empty() {
            continue;
        }
        match store.cancelled_runs(&run_ids).await {
            Ok(cancelled) => {
                for run_id in cancelled {
                    let ctx = lock(&watcher.state).runs.get(&run_id).cloned();
                    if let Some(ctx) = ctx.filter(|c| !c.is_cancelled()) {
                        tracing::info!(target: "durably", run_id = %run_id, "run cancelled elsewhere; stopping");
                        ctx.cancel();
                    }
                }
            }
            // A read that fails is tried again at the next tick; the status writes are guarded
            // anyway.
            Err(e) => {
                tracing::debug!(target: "durably", runs = run_ids.len(), error = %e, "could not read whether runs were cancelled");
            }
        }
    }
}

/// Changes the status of the executing run unless it was cancelled in the store; a
/// cancellation found there cancels the run in memory too and is returned as
/// [`Error::Cancelled`].
pub(crate) async fn update_unless_cancelled(ctx: &RunContext, update: &RunUpdate) -> Result<()> {
    end_unless_cancelled(ctx, update, None).await
}

/// [`update_unless_cancelled`] for a final status, which may release the lease of `release`
/// (its owner) in the same store write (see `events::update_status`).
pub(crate) async fn end_unless_cancelled(
    ctx: &RunContext,
    update: &RunUpdate,
    release: Option<&str>,
) -> Result<()> {
    settle_pending(ctx).await?;
    let applied = crate::events::update_status(ctx, update, release).await?;
    applied_or_cancelled(ctx, applied)
}

/// Starts a status write without waiting for it: for the run going back to `running` after a
/// signal, so that the resumed run does not wait for a second durable commit after the
/// delivery's. The next status write of the run ([`update_unless_cancelled`]) awaits it first
/// and reports its outcome, so status writes keep their order on every store. If the process
/// dies before it lands, the run stays `waiting`, which recovery resumes like `running`.
pub(crate) async fn update_unless_cancelled_later(ctx: &RunContext, update: RunUpdate) -> Result<()> {
    settle_pending(ctx).await?;
    let store = ctx.store().clone();
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
