//! Queues (rule 22 of docs/design.md): named queues defined on an engine, runs of registered
//! workflows enqueued in them from any process, and the [`RunHandle`] that waits for a run's
//! outcome from any process. Workers that claim and execute the runs are in `worker.rs`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::json::{decode, encode};
use crate::store::{QueueLimits, QueueStats, QueuedRun, Rate, RunRecord, RunStatus};
use crate::sync::lock;
use crate::workflow::Workflow;

/// The signal a queued run delivers to itself when it finishes, so that [`RunHandle::result`]
/// callers in every process wake up.
pub(crate) const DONE_SIGNAL: &str = "durably.done";

/// The longest a [`RunHandle::result`] call waits between two looks at the run.
const RESULT_POLL: Duration = Duration::from_secs(1);

/// A named queue and its limits, defined on an engine with [`Workflow::add_queue`]. Every
/// engine sharing a store must define a queue with the same limits: a claim keeps the limits
/// the claiming worker has, counted from the store's records.
///
/// ```
/// use std::time::Duration;
/// use durably_core::{Queue, Workflow};
///
/// let wf = Workflow::builder("app").build();
/// wf.add_queue(
///     Queue::new("agents")
///         .concurrency(8)            // at most 8 runs at once, over all workers
///         .per_key(2)                // at most 2 per tenant (the key given at enqueue)
///         .rate(60, Duration::from_secs(60)) // at most 60 starts a minute
///         .worker_concurrency(4),    // at most 4 at once in one worker
/// )?;
/// # Ok::<(), durably_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Queue {
    name: String,
    limits: QueueLimits,
    worker_concurrency: Option<u32>,
}

impl Queue {
    /// A queue without limits.
    pub fn new(name: impl Into<String>) -> Self {
        Queue { name: name.into(), limits: QueueLimits::default(), worker_concurrency: None }
    }

    /// At most `runs` of this queue execute at once, over every worker.
    pub fn concurrency(mut self, runs: u32) -> Self {
        self.limits.concurrency = Some(runs);
        self
    }

    /// At most `runs` of one concurrency key (see [`EnqueueOptions::key`]) execute at once.
    pub fn per_key(mut self, runs: u32) -> Self {
        self.limits.per_key = Some(runs);
        self
    }

    /// At most `starts` runs start in any window of `period`, over every worker.
    pub fn rate(mut self, starts: u32, period: Duration) -> Self {
        let period_ms = i64::try_from(period.as_millis()).unwrap_or(i64::MAX);
        self.limits.rate = Some(Rate::new(starts, period_ms));
        self
    }

    /// At most `runs` of this queue execute at once in one worker.
    pub fn worker_concurrency(mut self, runs: u32) -> Self {
        self.worker_concurrency = Some(runs);
        self
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its limits over all workers.
    pub fn limits(&self) -> QueueLimits {
        self.limits
    }

    /// Its limit per worker.
    pub fn worker_limit(&self) -> Option<u32> {
        self.worker_concurrency
    }

    fn validate(&self) -> Result<()> {
        let invalid = |detail: String| Err(Error::Invalid { what: "queue", detail });
        if self.name.is_empty() || self.name.contains('\0') {
            return invalid(format!("a queue name must be non-empty text without NUL, not {:?}", self.name));
        }
        let zero = |what: &str| format!("queue `{}`: {what} is 0, so no run could ever start", self.name);
        if self.limits.concurrency == Some(0) {
            return invalid(zero("concurrency"));
        }
        if self.limits.per_key == Some(0) {
            return invalid(zero("per_key"));
        }
        if self.worker_concurrency == Some(0) {
            return invalid(zero("worker_concurrency"));
        }
        if let Some(rate) = self.limits.rate {
            if rate.starts == 0 {
                return invalid(zero("the rate's starts per period"));
            }
            if rate.period_ms <= 0 {
                return invalid(format!("queue `{}`: the rate's period must be at least 1 ms", self.name));
            }
        }
        Ok(())
    }
}

/// The queues an engine defines, by name.
#[derive(Debug, Default)]
pub(crate) struct Queues {
    queues: Mutex<HashMap<String, Queue>>,
}

impl Queues {
    pub(crate) fn get(&self, name: &str) -> Option<Queue> {
        lock(&self.queues).get(name).cloned()
    }
}

/// How a run is enqueued, beyond its queue, workflow, id and input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct EnqueueOptions {
    pub(crate) priority: i32,
    pub(crate) key: Option<String>,
    pub(crate) parent_id: Option<String>,
    pub(crate) version: Option<String>,
}

impl EnqueueOptions {
    /// Priority 0, no key.
    pub fn new() -> Self {
        Self::default()
    }

    /// Higher runs first (default 0); equal priorities run in the order they were enqueued.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// The concurrency key the queue's [`Queue::per_key`] limit counts by: a tenant, a user.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Binds the run to workers of `version` (see [`QueueWorker::version`](crate::QueueWorker::version)):
    /// workers of another version never claim it. Without it, the first versioned worker that
    /// claims the run binds it to its version.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }
}

/// A run enqueued or started elsewhere: its id, and its outcome once it ends, from any process
/// sharing the store.
#[derive(Debug, Clone)]
pub struct RunHandle {
    wf: Workflow,
    run_id: String,
}

impl RunHandle {
    /// The run id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The run as stored now.
    pub async fn status(&self) -> Result<Option<RunRecord>> {
        self.wf.get_run(&self.run_id).await
    }

    /// Waits until the run ends and returns its output; [`Error::RunFailed`] with its error text
    /// when it failed, [`Error::Cancelled`] when it was cancelled, [`Error::RunNotFound`] when
    /// it does not exist (or was purged). Wakes up through the store's signal wake-ups (the run
    /// delivers itself a signal when it finishes), and looks at least every second.
    pub async fn result<T: DeserializeOwned>(&self) -> Result<T> {
        let store = self.wf.store();
        loop {
            let run = store
                .get_run(&self.run_id)
                .await?
                .ok_or_else(|| Error::RunNotFound { run_id: self.run_id.clone() })?;
            match run.status {
                RunStatus::Completed => {
                    let output = run.output.unwrap_or_else(|| "null".to_owned());
                    return decode(&self.run_id, "output", "run output", Some(&output));
                }
                RunStatus::Failed => {
                    return Err(Error::RunFailed {
                        run_id: self.run_id.clone(),
                        message: run.error.unwrap_or_default(),
                    });
                }
                RunStatus::Cancelled => return Err(Error::Cancelled { run_id: self.run_id.clone() }),
                _ => {}
            }
            if store.get_signal(&self.run_id, DONE_SIGNAL).await?.is_some() {
                // Finished once and executing again (its status write was lost to a crash):
                // the signal will not wake us a second time.
                tokio::time::sleep(RESULT_POLL / 10).await;
            } else {
                store.wait_for_signal(&self.run_id, DONE_SIGNAL, RESULT_POLL).await;
            }
        }
    }
}

impl Workflow {
    /// Defines a queue on this engine: [`enqueue`](Self::enqueue) puts runs in it and
    /// [`queue_worker`](Self::queue_worker) claims them. A limit of zero, a rate with a zero
    /// period or an empty name is refused with [`Error::Invalid`]. Defining a name again
    /// replaces its limits.
    pub fn add_queue(&self, queue: Queue) -> Result<&Self> {
        queue.validate()?;
        lock(&self.engine.queues.queues).insert(queue.name.clone(), queue);
        Ok(self)
    }

    /// The queues defined on this engine, by name.
    pub fn queues(&self) -> Vec<Queue> {
        let mut queues: Vec<Queue> = lock(&self.engine.queues.queues).values().cloned().collect();
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        queues
    }

    /// Enqueues run `run_id` of the registered workflow `workflow` with `input` in `queue`, for
    /// a worker of any process sharing the store to execute. Enqueuing a run id that exists
    /// changes nothing and returns its handle (deduplication). Fails with [`Error::Invalid`],
    /// enqueuing nothing, for a queue not defined on this engine, a workflow not registered on
    /// it, or an input the workflow cannot be started with.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> durably_core::Result<()> {
    /// use durably_core::{Queue, Workflow};
    ///
    /// let wf = Workflow::builder("app").build();
    /// wf.add_queue(Queue::new("jobs"))?;
    /// wf.register_fn("double", |_ctx, n: u32| async move { Ok::<_, durably_core::Error>(n * 2) });
    /// let handle = wf.enqueue("jobs", "double", "double-21", &21u32).await?;
    /// let worker = wf.queue_worker(["jobs"]).start()?;
    /// assert_eq!(handle.result::<u32>().await?, 42);
    /// worker.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn enqueue<I: Serialize + ?Sized>(
        &self,
        queue: &str,
        workflow: &str,
        run_id: &str,
        input: &I,
    ) -> Result<RunHandle> {
        self.enqueue_with(queue, workflow, run_id, input, EnqueueOptions::new()).await
    }

    /// [`enqueue`](Self::enqueue) with a priority and a concurrency key.
    pub async fn enqueue_with<I: Serialize + ?Sized>(
        &self,
        queue: &str,
        workflow: &str,
        run_id: &str,
        input: &I,
        options: EnqueueOptions,
    ) -> Result<RunHandle> {
        let input = encode(run_id, "input", "workflow input", input)?;
        self.enqueue_json(queue, workflow, run_id, input, options).await
    }

    /// [`enqueue_with`](Self::enqueue_with) with the input as JSON text: for callers that do
    /// not link the workflow's types (an HTTP API).
    pub async fn enqueue_json(
        &self,
        queue: &str,
        workflow: &str,
        run_id: &str,
        input: String,
        options: EnqueueOptions,
    ) -> Result<RunHandle> {
        if run_id.is_empty() || run_id.contains('\0') {
            return Err(Error::Invalid {
                what: "run id",
                detail: format!(
                    "a run id must be non-empty text without NUL, not {run_id:?} (in queue `{queue}`)"
                ),
            });
        }
        if self.engine.queues.get(queue).is_none() {
            return Err(Error::Invalid {
                what: "queue",
                detail: format!(
                    "no queue `{queue}` is defined on this engine (to enqueue run `{run_id}`); call add_queue first"
                ),
            });
        }
        self.engine.registry.check_input(workflow, run_id, &input)?;
        let store = self.store();
        let mut run =
            QueuedRun::new(run_id, workflow, Some(input), queue, store.now_ms()).priority(options.priority);
        run.key = options.key;
        run.parent_id = options.parent_id;
        run.version = options.version;
        let (stored, created) = store.enqueue(&run).await?;
        if !created && stored.workflow != workflow {
            return Err(Error::RunConflict {
                run_id: run_id.to_owned(),
                recorded: stored.workflow,
                called: workflow.to_owned(),
            });
        }
        tracing::debug!(target: "durably", run_id, queue, workflow, created, "run enqueued");
        Ok(self.handle(run_id))
    }

    /// A handle on run `run_id`, wherever it executes.
    pub fn handle(&self, run_id: impl Into<String>) -> RunHandle {
        RunHandle { wf: self.clone(), run_id: run_id.into() }
    }

    /// The counts of queue `queue` (any queue in the store, defined here or not).
    pub async fn queue_stats(&self, queue: &str) -> Result<QueueStats> {
        let store = self.store();
        store.queue_stats(queue, store.now_ms()).await
    }

    /// The names of the store's queues that hold at least one run (any status, any process's),
    /// each once, in byte order; read from the store's queue index, not by listing its runs.
    pub async fn queue_names(&self) -> Result<Vec<String>> {
        self.store().queue_names().await
    }
}
