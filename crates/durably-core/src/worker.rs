//! Queue workers (rule 22 of docs/design.md): claim runnable runs of some queues under the
//! queues' limits, execute them with their registered workflows, park the ones that wait long
//! (rule 25), and hand back what they hold on shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::queue::Queue;
use crate::recovery::WorkerHandle;
use crate::store::{Claim, RunRecord};
use crate::workflow::Workflow;

/// Runs one worker executes at once unless told otherwise.
pub const DEFAULT_WORKER_CONCURRENCY: usize = 16;
/// How long a wait stays in memory before its run is parked, unless told otherwise.
pub const DEFAULT_PARK_AFTER: Duration = Duration::from_secs(5);
/// The first pause after a wake-up that brought no run the worker could take.
const MIN_BACKOFF: Duration = Duration::from_millis(5);
/// How often a worker reports its queues' depth (a `durably.queue.depth` event per queue,
/// which the OpenTelemetry layer turns into a gauge).
const DEPTH_REPORT: Duration = Duration::from_secs(10);
/// At most this many runs per claim.
const CLAIM_BATCH: usize = 64;

/// A worker of some queues, configured by [`Workflow::queue_worker`]; [`start`](Self::start)
/// or [`run`](Self::run) it.
#[derive(Debug, Clone)]
#[must_use = "a queue worker does nothing until started or run"]
pub struct QueueWorker {
    wf: Workflow,
    queues: Vec<String>,
    concurrency: usize,
    poll: Duration,
    park_after: Duration,
    grace: Duration,
    version: Option<String>,
}

impl Workflow {
    /// A worker that claims runs of `queues` (each defined with [`add_queue`](Self::add_queue))
    /// and executes them with the workflows registered on this engine, from any process
    /// sharing the store:
    ///
    /// ```no_run
    /// # async fn demo(wf: durably_core::Workflow) -> durably_core::Result<()> {
    /// let worker = wf.queue_worker(["agents", "emails"]).concurrency(8).start()?;
    /// // … until the process is told to stop:
    /// worker.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn queue_worker<Q: Into<String>>(&self, queues: impl IntoIterator<Item = Q>) -> QueueWorker {
        QueueWorker {
            wf: self.clone(),
            queues: queues.into_iter().map(Into::into).collect(),
            concurrency: DEFAULT_WORKER_CONCURRENCY,
            poll: Duration::from_secs(1),
            park_after: DEFAULT_PARK_AFTER,
            grace: Duration::from_secs(30),
            version: None,
        }
    }
}

impl QueueWorker {
    /// At most `runs` executions at once in this worker, over all its queues (default 16); a
    /// queue's [`Queue::worker_concurrency`] bounds its own share. 0 is taken as 1.
    pub fn concurrency(mut self, runs: usize) -> Self {
        self.concurrency = runs.max(1);
        self
    }

    /// How often the worker claims without being woken (default 1 s): it finds due timers and
    /// runs whose worker died this way. Enqueues and deliveries wake it at once.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll = interval.max(Duration::from_millis(1));
        self
    }

    /// How long a run may wait for a signal or a child in memory before it is parked (default
    /// 5 s); a sleep or deadline further away than this parks at once. A parked run holds no
    /// lease and no memory; a worker resumes it by replay when it is runnable again.
    pub fn park_after(mut self, after: Duration) -> Self {
        self.park_after = after;
        self
    }

    /// How long [`WorkerHandle::shutdown`] lets executing runs finish (default 30 s) before it
    /// stops them at their next await point; their leases are released, so another worker
    /// resumes them from their checkpoints at once.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The version of the code this worker executes (rule 26 of docs/design.md): it claims
    /// only runs that never executed (and were not enqueued for another version) and runs that
    /// first executed under this version, so a deploy that changes a workflow's steps leaves
    /// the runs in flight to workers of their own version. A run it claims first records the
    /// version. Without one (the default) a worker claims runs of every version.
    ///
    /// ```no_run
    /// # async fn demo(wf: durably_core::Workflow) -> durably_core::Result<()> {
    /// let worker = wf.queue_worker(["orders"]).version("2026-12-03").start()?;
    /// # worker.shutdown().await; Ok(()) }
    /// ```
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Starts the worker in a background task. Fails with [`Error::Invalid`] when a queue is
    /// not defined on the engine or no queue was named. Needs a Tokio runtime.
    pub fn start(self) -> Result<WorkerHandle> {
        let queues = self.resolve()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            self.serve(queues, async move {
                let _ = stopped.await;
            })
            .await;
        });
        Ok(WorkerHandle::new(stop, task))
    }

    /// Runs the worker until `shutdown` resolves, then lets executing runs finish within the
    /// grace period and stops the rest. Fails at once with [`Error::Invalid`] when a queue is
    /// not defined on the engine.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let queues = self.resolve()?;
        self.serve(queues, shutdown).await;
        Ok(())
    }

    fn resolve(&self) -> Result<Vec<Queue>> {
        if self.queues.is_empty() {
            return Err(Error::Invalid { what: "queue worker", detail: "no queue was named".into() });
        }
        self.queues
            .iter()
            .map(|name| {
                self.wf.engine.queues.get(name).ok_or_else(|| Error::Invalid {
                    what: "queue",
                    detail: format!(
                        "no queue `{name}` is defined on this engine; call add_queue before starting a worker"
                    ),
                })
            })
            .collect()
    }

    async fn serve(self, queues: Vec<Queue>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let wf = self.wf.parking(self.park_after);
        let store = wf.store().clone();
        let names: Vec<String> = queues.iter().map(|q| q.name().to_owned()).collect();
        let mut running: JoinSet<String> = JoinSet::new();
        let mut per_queue: HashMap<String, usize> = HashMap::new();
        let mut backoff = MIN_BACKOFF;
        let mut next_report = tokio::time::Instant::now();
        // Ticks the schedules of these queues (rule 24 of docs/design.md).
        let mut ticker = crate::schedule::Ticker::new(&wf, &names);
        tracing::info!(target: "durably", queues = ?names, concurrency = self.concurrency, "queue worker started");
        loop {
            ticker.tick().await;
            while let Some(done) = running.try_join_next() {
                ended(&mut per_queue, done);
            }
            if tokio::time::Instant::now() >= next_report {
                next_report += DEPTH_REPORT;
                report_depths(&*store, &queues).await;
            }
            let mut claimed_full_batch = false;
            let mut claimed_any = false;
            for queue in &queues {
                let free = self.concurrency.saturating_sub(running.len());
                let mine = per_queue.get(queue.name()).copied().unwrap_or(0);
                let queue_free =
                    queue.worker_limit().map_or(usize::MAX, |limit| (limit as usize).saturating_sub(mine));
                let max = free.min(queue_free).min(CLAIM_BATCH);
                if max == 0 {
                    continue;
                }
                let mut claim = Claim::new(queue.name(), wf.owner_id(), wf.lease_ttl(), store.now_ms(), max)
                    .limits(queue.limits());
                claim.version.clone_from(&self.version);
                let runs = match store.claim_runs(&claim).await {
                    Ok(runs) => runs,
                    Err(e) => {
                        tracing::warn!(target: "durably", queue = queue.name(), error = %e, "claim failed; trying again");
                        continue;
                    }
                };
                claimed_full_batch |= runs.len() == max;
                claimed_any |= !runs.is_empty();
                for run in runs {
                    *per_queue.entry(queue.name().to_owned()).or_default() += 1;
                    let (wf, queue) = (wf.clone(), queue.name().to_owned());
                    running.spawn(async move {
                        execute_claimed(wf, run).await;
                        queue
                    });
                }
            }
            if claimed_full_batch && running.len() < self.concurrency {
                continue;
            }
            if claimed_any {
                backoff = MIN_BACKOFF;
            }
            let full = running.len() >= self.concurrency;
            // A store may wake the worker for runs it cannot take (its limits are reached): a
            // wake-up that came at once and brought nothing is followed by a growing pause.
            let tick_in = ticker.next_in();
            let poll = tick_in.map_or(self.poll, |tick_in| tick_in.min(self.poll));
            let (pause, store, names) = (backoff, &store, &names);
            let wait = async move {
                let started = tokio::time::Instant::now();
                store.wait_for_work(names, poll).await;
                if !claimed_any && started.elapsed() < MIN_BACKOFF {
                    tokio::time::sleep(pause).await;
                }
            };
            tokio::select! {
                () = &mut shutdown => break,
                Some(done) = running.join_next(), if !running.is_empty() => ended(&mut per_queue, done),
                () = tokio::time::sleep(tick_in.unwrap_or_default()), if full && tick_in.is_some() => {}
                () = wait, if !full => {
                    if !claimed_any {
                        backoff = (backoff * 2).min(self.poll);
                    }
                }
            }
        }
        tracing::info!(target: "durably", in_flight = running.len(), "queue worker shutting down");
        let drained =
            tokio::time::timeout(self.grace, async { while running.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::info!(target: "durably", left = running.len(), "grace period over; stopping the runs still executing");
            running.shutdown().await;
        }
    }
}

/// Counts the end of an execution of a run of `queue` (the task's output) out of its queue's share.
fn ended(per_queue: &mut HashMap<String, usize>, done: Result<String, tokio::task::JoinError>) {
    if let Ok(queue) = done {
        per_queue.entry(queue).and_modify(|n| *n = n.saturating_sub(1));
    }
}

/// One `durably.queue.depth` event per queue: its enqueued runs.
async fn report_depths(store: &dyn crate::store::Store, queues: &[Queue]) {
    for queue in queues {
        match store.queue_stats(queue.name(), store.now_ms()).await {
            Ok(stats) => tracing::event!(
                target: "durably",
                tracing::Level::DEBUG,
                durably.queue = %queue.name(),
                durably.queue.depth = stats.enqueued,
                durably.queue.executing = stats.executing,
                durably.queue.parked = stats.parked,
                "queue depth"
            ),
            Err(e) => {
                tracing::debug!(target: "durably", queue = queue.name(), error = %e, "could not read the queue's counts")
            }
        }
    }
}

/// Executes one claimed run with its registered workflow. The claim gave this engine the run's
/// lease; the execution takes it over (the same owner renews it) and releases it at the end.
async fn execute_claimed(wf: Workflow, run: RunRecord) {
    let run_id = run.run_id.clone();
    let Some(runner) = wf.engine.registry.get(&run.workflow) else {
        // Kept claimed, not renewed: its lease lapses and a worker that knows the workflow
        // (or this one, once it is registered) claims it again.
        tracing::warn!(
            target: "durably", run_id = %run_id, workflow = %run.workflow,
            "claimed a run of a workflow not registered on this worker; it will be claimed again when its lease lapses"
        );
        return;
    };
    match runner(wf, run_id.clone(), run.input).await {
        Ok(_) => tracing::debug!(target: "durably", run_id = %run_id, "queued run completed"),
        Err(Error::Parked { waiting_on, .. }) => {
            tracing::debug!(target: "durably", run_id = %run_id, %waiting_on, "queued run parked")
        }
        Err(Error::RunInProgress { owner, .. }) => {
            tracing::debug!(target: "durably", run_id = %run_id, %owner, "queued run taken by another engine")
        }
        Err(e) => {
            tracing::info!(target: "durably", run_id = %run_id, error = %e, "queued run ended with an error")
        }
    }
}
