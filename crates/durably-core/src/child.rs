//! Child runs (rule 23 of docs/design.md): a run starts another run of a registered workflow
//! through a queue, durably, and awaits its outcome.
//!
//! Starting is a step: the child's id is recorded, so a replayed parent never starts it twice
//! (the id is also deterministic, `<parent>/<step id>`, and enqueuing is deduplicated by id).
//! The child tells its parent how it ended with a signal, `durably.child:<child id>`, delivered
//! before its own final status is written; the parent waits for that signal like any other, so
//! a parent executed by a queue worker parks while its children work. Cancelling a parent
//! cancels its unfinished children.

use std::future::{Future, IntoFuture};
use std::pin::Pin;

use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::RunContext;
use crate::error::{Error, Result};
use crate::json::{decode, encode};
use crate::store::{QueuedRun, StepRecord, StepStatus};

/// The signal a child run delivers to its parent when it ends.
pub(crate) fn child_signal(child_id: &str) -> String {
    format!("durably.child:{child_id}")
}

/// Starts a child run of the registered workflow `workflow` with `input`, from inside a run;
/// awaiting it returns the child's output (or its failure as [`Error::RunFailed`], its
/// cancellation as [`Error::Cancelled`]). The child goes to the parent's queue unless
/// [`queue`](Child::queue) names another; a worker of any process executes it.
///
/// The step id is taken when `child` is called (rule 2), so children started together keep
/// their ids whatever order they finish in. For a fan-out, [`start`](Child::start) them all,
/// then [`join`](ChildHandle::join) each:
///
/// ```no_run
/// # async fn body() -> durably_core::Result<u64> {
/// let handles =
///     futures::future::try_join_all((0..100u64).map(|i| durably_core::child("square", &i).start())).await?;
/// let mut total = 0;
/// for handle in handles {
///     total += handle.join::<u64>().await?;
/// }
/// # Ok(total) }
/// ```
pub fn child<I: Serialize + ?Sized>(workflow: &str, input: &I) -> Child {
    let ctx = RunContext::current();
    let step = ctx.as_ref().map(|ctx| {
        let name = ctx.scoped(&format!("child:{workflow}"));
        let id = ctx.generate_step_id(&name);
        (name, id)
    });
    let input = match &ctx {
        Some(ctx) => encode(ctx.run_id(), "input", "child run input", input),
        None => Err(outside()),
    };
    Child {
        ctx,
        step,
        workflow: workflow.to_owned(),
        input,
        queue: None,
        run_id: None,
        priority: 0,
        key: None,
    }
}

fn outside() -> Error {
    Error::Invalid {
        what: "call",
        detail: "`durably::child` can only be awaited inside a workflow run".into(),
    }
}

/// A child run about to start: see [`child`]. Await it for the child's output, or
/// [`start`](Self::start) it to await it later.
#[must_use = "a child run starts only when awaited or started"]
pub struct Child {
    ctx: Option<RunContext>,
    step: Option<(String, String)>,
    workflow: String,
    input: Result<String>,
    queue: Option<String>,
    run_id: Option<String>,
    priority: i32,
    key: Option<String>,
}

impl std::fmt::Debug for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Child")
            .field("workflow", &self.workflow)
            .field("step", &self.step)
            .field("queue", &self.queue)
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

impl Child {
    /// Enqueues the child in `queue` instead of the parent's queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// The child's run id (default `<parent run id>/<step id>`).
    pub fn id(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }

    /// The child's priority in its queue.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// The child's concurrency key in its queue.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Starts the child (once: a replay finds it started) and returns its handle without
    /// waiting for it.
    pub async fn start(self) -> Result<ChildHandle> {
        let (Some(ctx), Some((name, step_id))) = (self.ctx, self.step) else { return Err(outside()) };
        ctx.check_cancelled()?;
        if let Some(recorded) = ctx.replay_step(&step_id, &name)? {
            let child_id: String = decode(ctx.run_id(), &step_id, "child run id", recorded.value.as_deref())?;
            return Ok(ChildHandle { ctx, child_id });
        }
        let input = self.input?;
        let child_id = self.run_id.unwrap_or_else(|| format!("{}/{step_id}", ctx.run_id()));
        let Some(queue) = self.queue.or_else(|| ctx.inner.queue.clone()) else {
            return Err(Error::Invalid {
                what: "child run",
                detail: format!(
                    "run `{}` was not enqueued, so its child `{child_id}` of workflow `{}` has no queue to go to; \
                     name one with `.queue(..)`",
                    ctx.run_id(),
                    self.workflow
                ),
            });
        };
        let store = ctx.store();
        let mut run = QueuedRun::new(&child_id, &self.workflow, Some(input), queue, store.now_ms())
            .priority(self.priority)
            .parent(ctx.run_id());
        run.key = self.key;
        let (stored, _) = store.enqueue(&run).await?;
        if stored.workflow != self.workflow || stored.parent_id.as_deref() != Some(ctx.run_id()) {
            return Err(Error::RunConflict {
                run_id: child_id,
                recorded: stored.workflow,
                called: format!("{} (as a child of `{}`)", self.workflow, ctx.run_id()),
            });
        }
        let mut record = StepRecord::new(&step_id, &name, StepStatus::Completed, crate::store::now_ms());
        record.value = Some(encode(ctx.run_id(), &step_id, "child run id", &child_id)?);
        record.attempts = 1;
        ctx.save_step(record).await?;
        tracing::info!(target: "durably", run_id = %ctx.run_id(), child = %child_id, "child run started");
        Ok(ChildHandle { ctx, child_id })
    }

    /// Starts the child and waits for its output as a `T` (see [`ChildHandle::join`]).
    pub async fn result<T: DeserializeOwned>(self) -> Result<T> {
        self.start().await?.join().await
    }
}

impl IntoFuture for Child {
    type Output = Result<serde_json::Value>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    /// Starts the child and waits for its output, as JSON; [`ChildHandle::join`] gives a type.
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.start().await?.join().await })
    }
}

/// A started child run: await its outcome with [`join`](Self::join).
#[derive(Clone)]
pub struct ChildHandle {
    ctx: RunContext,
    child_id: String,
}

impl std::fmt::Debug for ChildHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildHandle").field("child_id", &self.child_id).finish_non_exhaustive()
    }
}

/// How a child ended, as its signal carries it.
#[derive(Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
enum ChildOutcome {
    Completed { output: serde_json::Value },
    Failed { error: String },
    Cancelled,
}

impl ChildHandle {
    /// The child's run id.
    pub fn run_id(&self) -> &str {
        &self.child_id
    }

    /// Waits for the child to end and returns its output as a `T`: [`Error::RunFailed`] when
    /// it failed, [`Error::Cancelled`] (naming the child) when it was cancelled. The outcome
    /// is the child's signal to this run, so a replay returns it at once.
    pub async fn join<T: DeserializeOwned>(self) -> Result<T> {
        let ctx = &self.ctx;
        let signal = child_signal(&self.child_id);
        let payload =
            crate::signal::wait_signal(ctx, &signal, None).await?.ok_or_else(|| Error::Invalid {
                what: "child run",
                detail: format!("the wait for child `{}` ended without its outcome", self.child_id),
            })?;
        let outcome: ChildOutcome = decode(ctx.run_id(), &signal, "child run outcome", Some(&payload))?;
        match outcome {
            ChildOutcome::Completed { output } => {
                serde_json::from_value(output).map_err(|source| Error::Deserialize {
                    run_id: ctx.run_id().to_owned(),
                    step_id: signal.clone(),
                    what: "child run output",
                    type_name: std::any::type_name::<T>(),
                    source,
                })
            }
            ChildOutcome::Failed { error } => Err(Error::RunFailed { run_id: self.child_id, message: error }),
            ChildOutcome::Cancelled => Err(Error::Cancelled { run_id: self.child_id }),
        }
    }
}
