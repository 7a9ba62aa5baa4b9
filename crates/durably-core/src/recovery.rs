//! Recovery (rule 12 of docs/design.md): workflows registered with an engine can be resumed by name from
//! their stored input, with no caller involved. `recover` lists the unfinished runs that no live
//! lease covers (their executor died, or never renewed) and executes each one of a registered
//! workflow in a task of its own; `run_worker` keeps doing so until shut down.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use crate::context::RunContext;
use crate::error::{BoxError, Error, Result};
use crate::json::decode;
use crate::workflow::{Runner, Workflow};

/// How many recoverable runs one `recover` call asks the store for.
const RECOVER_BATCH: usize = 256;

/// The future [`DurableWorkflow::execute_stored`] returns: the run's output as JSON.
pub type StoredRun = std::pin::Pin<Box<dyn Future<Output = Result<String>> + Send + 'static>>;

/// A workflow an engine can execute by name from its stored input, so that
/// [`Workflow::recover`] can resume its runs. `#[durably::workflow]` implements it for the
/// struct it generates next to the function; register one with
/// `wf.register::<run_pipeline>()`.
pub trait DurableWorkflow: 'static {
    /// The workflow name recorded with its runs.
    const NAME: &'static str;

    /// Checks that `input` (a JSON object of the workflow's arguments) can start a run, without
    /// starting one: [`Workflow::enqueue`] refuses what would fail only in a worker. The
    /// default accepts everything; `#[durably::workflow]` decodes every argument.
    fn check_input(run_id: &str, input: &str) -> Result<()> {
        let _ = (run_id, input);
        Ok(())
    }

    /// Executes run `run_id` with `input`, the JSON object of the workflow's arguments as the
    /// run stored it, and returns the run's output as JSON.
    fn execute_stored(wf: Workflow, run_id: String, input: Option<String>) -> StoredRun;
}

/// What one [`Workflow::recover`] call did.
///
/// The resumed runs execute in tasks of their own; dropping the report leaves them running,
/// and [`join`](Self::join) waits for them.
#[non_exhaustive]
pub struct RecoveryReport {
    /// Runs resumed by this call, oldest first.
    pub resumed: Vec<String>,
    /// Runs left alone because no workflow of their name is registered: `(run id, workflow)`.
    pub unregistered: Vec<(String, String)>,
    /// Runs left alone because they were already executing in this engine.
    pub already_running: Vec<String>,
    tasks: Vec<(String, JoinHandle<Result<String>>)>,
}

impl std::fmt::Debug for RecoveryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveryReport")
            .field("resumed", &self.resumed)
            .field("unregistered", &self.unregistered)
            .field("already_running", &self.already_running)
            .finish_non_exhaustive()
    }
}

impl RecoveryReport {
    /// Waits until every resumed run has ended, and returns each one's result: its output
    /// JSON, or why it stopped (a workflow error, [`Error::RunInProgress`] when another engine
    /// took the run first, a cancellation…). A run that waits on a signal keeps this waiting.
    pub async fn join(self) -> Vec<(String, Result<String>)> {
        let mut results = Vec::with_capacity(self.tasks.len());
        for (run_id, task) in self.tasks {
            let result = match task.await {
                Ok(result) => result,
                Err(e) => Err(Error::Invalid {
                    what: "recovered run",
                    detail: format!("the task executing run `{run_id}` ended abnormally: {e}"),
                }),
            };
            results.push((run_id, result));
        }
        results
    }
}

/// A worker started by [`Workflow::worker`] (recovers runs in the background) or by
/// [`QueueWorker::start`](crate::QueueWorker::start) (claims queued runs), until shut down.
#[derive(Debug)]
#[must_use = "dropping the handle stops the worker at once"]
pub struct WorkerHandle {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl WorkerHandle {
    pub(crate) fn new(stop: tokio::sync::oneshot::Sender<()>, task: JoinHandle<()>) -> Self {
        WorkerHandle { stop: Some(stop), task }
    }

    /// Stops the worker: no more recovery passes, and the runs it resumed that are still
    /// executing stop at their next await point and release their leases (another worker
    /// resumes them from their checkpoints). Returns once the worker has stopped.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Workflow {
    /// Registers a `#[durably::workflow]` function, so that [`recover`](Self::recover) resumes
    /// its unfinished runs: `wf.register::<run_pipeline>()`. Registering a name again replaces
    /// the earlier registration.
    pub fn register<W: DurableWorkflow>(&self) -> &Self {
        self.engine.registry.insert(W::NAME.to_owned(), Arc::new(W::execute_stored), W::check_input);
        self
    }

    /// Registers a closure workflow under `name`: `body` gets the run context and the run's
    /// input. Start runs of it with [`start`](Self::start), which stores the input;
    /// [`recover`](Self::recover) resumes them with that stored input.
    ///
    /// ```no_run
    /// # async fn demo(wf: durably_core::Workflow) -> durably_core::Result<()> {
    /// wf.register_fn("double", |_ctx, n: u32| async move {
    ///     let doubled = durably_core::step("double", move || async move { Ok::<_, std::io::Error>(n * 2) }).await?;
    ///     Ok::<_, durably_core::Error>(doubled)
    /// });
    /// let out: u32 = wf.start("double", "double-21", &21u32).await?;
    /// # Ok(()) }
    /// ```
    pub fn register_fn<F, Fut, I, O, E>(&self, name: impl Into<String>, body: F) -> &Self
    where
        F: Fn(RunContext, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, E>> + Send + 'static,
        I: DeserializeOwned + Send + 'static,
        O: Serialize + DeserializeOwned + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let name = name.into();
        let body = Arc::new(body);
        let workflow = name.clone();
        let runner: Runner = Arc::new(move |wf: Workflow, run_id: String, input: Option<String>| {
            let (body, workflow) = (body.clone(), workflow.clone());
            Box::pin(async move {
                let arg: I = decode(&run_id, "input", "workflow input", input.as_deref())?;
                let out: O = wf
                    .execute(workflow, run_id.clone(), Ok(input), move |ctx| {
                        let fut = body(ctx, arg);
                        async move { fut.await.map_err(Into::into) }
                    })
                    .await?;
                output_json(&run_id, &out)
            })
        });
        self.engine.registry.insert(name, runner, |run_id, input| {
            decode::<I>(run_id, "input", "workflow input", Some(input)).map(drop)
        });
        self
    }

    /// Executes run `run_id` of the closure workflow registered as `name`, storing `input`
    /// with the run (when it is created) for [`recover`](Self::recover). Like
    /// [`run`](Self::run): a completed run returns its stored output; otherwise the body runs
    /// and finished steps replay.
    pub async fn start<I, O>(&self, name: &str, run_id: impl Into<String>, input: &I) -> Result<O>
    where
        I: Serialize + ?Sized,
        O: DeserializeOwned,
    {
        let run_id = run_id.into();
        let runner = self.engine.registry.get(name).ok_or_else(|| Error::Invalid {
            what: "workflow name",
            detail: format!(
                "no workflow is registered as `{name}` (to start run `{run_id}`); call register_fn first"
            ),
        })?;
        let json = serde_json::to_string(input).map_err(|source| Error::Serialize {
            run_id: run_id.clone(),
            step_id: "input".into(),
            what: "workflow input",
            type_name: std::any::type_name::<I>(),
            source,
        })?;
        let output = runner(self.clone(), run_id.clone(), Some(json)).await?;
        decode(&run_id, "output", "run output", Some(&output))
    }

    /// The names of the registered workflows, sorted.
    pub fn registered(&self) -> Vec<String> {
        self.engine.registry.names()
    }

    /// Resumes every unfinished run (`running` or `waiting`) that no live lease covers — its
    /// executor died, or stopped renewing — and whose workflow is registered, from its
    /// checkpoints, with its stored input. Runs of a queue are left to the queue's workers,
    /// which claim them back within the queue's limits and versions; parked runs likewise. Each resumed run executes in a task of its own
    /// under this engine's lease; the report lists them (and [`RecoveryReport::join`] waits
    /// for them). Runs of unregistered workflows are skipped and listed, not errors. A run
    /// another engine takes first ends with [`Error::RunInProgress`] and is not executed twice.
    ///
    /// Needs a Tokio runtime (it spawns the runs).
    pub async fn recover(&self) -> Result<RecoveryReport> {
        let store = &self.engine.env.store;
        let runs = store.recoverable_runs(store.now_ms(), RECOVER_BATCH).await?;
        let mut report = RecoveryReport {
            resumed: Vec::new(),
            unregistered: Vec::new(),
            already_running: Vec::new(),
            tasks: Vec::new(),
        };
        for run in runs {
            if self.is_active(&run.run_id) {
                report.already_running.push(run.run_id);
                continue;
            }
            let Some(runner) = self.engine.registry.get(&run.workflow) else {
                tracing::debug!(
                    target: "durably", run_id = %run.run_id, workflow = %run.workflow,
                    "recover: no workflow registered under this name; skipped"
                );
                report.unregistered.push((run.run_id, run.workflow));
                continue;
            };
            tracing::info!(target: "durably", run_id = %run.run_id, workflow = %run.workflow, "recover: resuming run");
            let (wf, run_id) = (self.clone(), run.run_id.clone());
            let task = tokio::spawn(async move {
                let result = runner(wf, run_id.clone(), run.input).await;
                match &result {
                    Ok(_) => tracing::info!(target: "durably", run_id = %run_id, "recovered run completed"),
                    Err(Error::RunInProgress { owner, .. }) => {
                        tracing::debug!(target: "durably", run_id = %run_id, %owner, "recovered run taken by another engine")
                    }
                    Err(e) => {
                        tracing::warn!(target: "durably", run_id = %run_id, error = %e, "recovered run ended with an error")
                    }
                }
                result
            });
            report.resumed.push(run.run_id.clone());
            report.tasks.push((run.run_id, task));
        }
        Ok(report)
    }

    /// Recovers runs (see [`recover`](Self::recover)) now and then every `interval` until
    /// `shutdown` resolves. A store error in one pass is logged and the next pass tries again.
    /// On shutdown the runs it resumed that are still executing are stopped at their next
    /// await point and release their leases, so another worker can resume them at once (a
    /// step body cut short runs again there: at-least-once).
    pub async fn run_worker(&self, interval: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut running: Vec<(String, JoinHandle<Result<String>>)> = Vec::new();
        loop {
            running.retain(|(_, task)| !task.is_finished());
            match self.recover().await {
                Ok(report) => {
                    if !report.unregistered.is_empty() {
                        tracing::debug!(target: "durably", skipped = report.unregistered.len(), "worker: runs of unregistered workflows skipped");
                    }
                    running.extend(report.tasks);
                }
                Err(e) => {
                    tracing::warn!(target: "durably", error = %e, "worker: recovery pass failed; trying again")
                }
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(interval) => {}
            }
        }
        tracing::info!(target: "durably", in_flight = running.len(), "worker shutting down");
        for (_, task) in &running {
            task.abort();
        }
        for (_, task) in running {
            let _ = task.await;
        }
    }

    /// Starts [`run_worker`](Self::run_worker) in a background task; stop it with
    /// [`WorkerHandle::shutdown`] (dropping the handle stops it too, without waiting).
    pub fn worker(&self, interval: Duration) -> WorkerHandle {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let wf = self.clone();
        let task = tokio::spawn(async move {
            wf.run_worker(interval, async move {
                let _ = stopped.await;
            })
            .await;
        });
        WorkerHandle { stop: Some(stop), task }
    }
}

/// Serializes a run's output, naming the run on failure.
pub fn output_json<T: Serialize>(run_id: &str, value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|source| Error::Serialize {
        run_id: run_id.to_owned(),
        step_id: "output".into(),
        what: "run output",
        type_name: std::any::type_name::<T>(),
        source,
    })
}
