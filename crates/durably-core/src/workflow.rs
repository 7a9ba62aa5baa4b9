//! The `Workflow` engine: opens runs, executes their bodies with a run context, records their
//! outcome, delivers signals and answers questions about runs.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tracing::Instrument;

use futures::future::BoxFuture;

use crate::backoff::{Backoff, RetryPolicy};
use crate::cancel::CancelWatcher;
use crate::context::{Parking, RunContext};
use crate::env::{Env, States};
use crate::error::{BoxError, Chain, Error, Result};
use crate::json::decode;
use crate::lease::{self, DEFAULT_LEASE_TTL};
use crate::signal::encode_payload;
use crate::store::{
    NewRun, RunFilter, RunHistory, RunRecord, RunStatus, RunUpdate, SignalRecord, StepRecord, Store, now_ms,
};
use crate::sync::lock;

/// Task retries when neither the task nor the builder sets them (python-durable's default).
pub const DEFAULT_RETRIES: u32 = 3;

pub(crate) struct Engine {
    /// What its runs share: app name, store, retry defaults, application state.
    pub(crate) env: Arc<Env>,
    /// This engine's lease owner id: unique per engine.
    pub(crate) owner: String,
    /// How long a lease lasts unless renewed.
    pub(crate) lease_ttl: Duration,
    /// Workflows that `recover` can resume, by name.
    pub(crate) registry: Registry,
    /// The queues defined on this engine.
    pub(crate) queues: crate::queue::Queues,
    /// The schedules defined on this engine.
    pub(crate) schedules: crate::schedule::Schedules,
    /// Runs executing in this process: a second execution of the same id waits for the first.
    active: Mutex<HashMap<String, Arc<ActiveRun>>>,
    /// Renews the leases of every run this engine executes, in one store call per period.
    pub(crate) renewer: Arc<lease::Renewer>,
    /// Asks the store whether the runs this engine executes were cancelled elsewhere.
    pub(crate) cancel_watcher: Arc<CancelWatcher>,
}

/// Executes one run of a registered workflow from its stored input; returns the output JSON.
pub(crate) type Runner =
    Arc<dyn Fn(Workflow, String, Option<String>) -> BoxFuture<'static, Result<String>> + Send + Sync>;

/// Checks that a JSON input starts a registered workflow (`run id`, input): what `enqueue`
/// asks before it stores anything.
pub(crate) type InputCheck = fn(&str, &str) -> Result<()>;

/// The registered workflows of an engine, by name.
#[derive(Default)]
pub(crate) struct Registry {
    runners: Mutex<HashMap<String, (Runner, InputCheck)>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, (Runner, InputCheck)>> {
        self.runners.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(&self, name: &str) -> Option<Runner> {
        self.lock().get(name).map(|(runner, _)| runner.clone())
    }

    pub(crate) fn insert(&self, name: String, runner: Runner, check: InputCheck) {
        self.lock().insert(name, (runner, check));
    }

    /// Fails with [`Error::Invalid`] unless `workflow` is registered and `input` starts it.
    pub(crate) fn check_input(&self, workflow: &str, run_id: &str, input: &str) -> Result<()> {
        let check = self.lock().get(workflow).map(|(_, check)| *check);
        let Some(check) = check else {
            return Err(Error::Invalid {
                what: "workflow name",
                detail: format!(
                    "no workflow is registered as `{workflow}` on this engine (to enqueue run `{run_id}`); \
                     register it first"
                ),
            });
        };
        check(run_id, input)
    }

    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.lock().keys().cloned().collect();
        names.sort();
        names
    }
}

struct ActiveRun {
    outcome: watch::Sender<Option<Outcome>>,
    ctx: Mutex<Option<RunContext>>,
}

#[derive(Clone, Debug)]
enum Outcome {
    Completed(String),
    Failed(String),
    Cancelled,
}

impl Outcome {
    /// `{"status": "completed", "output": …}`, `{"status": "failed", "error": "…"}` or
    /// `{"status": "cancelled"}`: the payload of the signals that announce a run's end.
    fn to_json(&self) -> String {
        match self {
            // The output is JSON text the engine serialized: it goes in as it is, not parsed again.
            Outcome::Completed(json) => format!(r#"{{"status":"completed","output":{json}}}"#),
            Outcome::Failed(error) => serde_json::json!({ "status": "failed", "error": error }).to_string(),
            Outcome::Cancelled => r#"{"status":"cancelled"}"#.to_owned(),
        }
    }
}

/// A durable workflow engine: an app name, a store and task defaults. Cheap to clone; clones
/// share everything.
///
/// Open one with `Workflow::open("my-app")` (the facade's SQLite default) or
/// [`Workflow::builder`].
#[derive(Clone)]
pub struct Workflow {
    pub(crate) engine: Arc<Engine>,
    /// Wait for a lease held elsewhere instead of failing with `RunInProgress`.
    wait_for_lease: bool,
    /// Set on the handle a queue worker executes runs with: waits of queued runs longer than
    /// this park the run.
    park_after: Option<Duration>,
}

impl std::fmt::Debug for Workflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workflow")
            .field("app", &self.engine.env.app)
            .field("default_retries", &self.engine.env.retry.retries)
            .field("default_backoff", &self.engine.env.retry.backoff)
            .field("states", &self.engine.env.state_count())
            .field("owner", &self.engine.owner)
            .field("lease_ttl", &self.engine.lease_ttl)
            .field("wait_for_lease", &self.wait_for_lease)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Workflow`].
#[must_use]
pub struct WorkflowBuilder {
    app: String,
    store: Option<Arc<dyn Store>>,
    retry: RetryPolicy,
    store_retry: RetryPolicy,
    states: States,
    lease_ttl: Duration,
    wait_for_lease: bool,
    owner: Option<String>,
    max_events_per_run: u64,
}

impl std::fmt::Debug for WorkflowBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowBuilder").field("app", &self.app).finish_non_exhaustive()
    }
}

impl WorkflowBuilder {
    /// The store to use (default: a [`MemoryStore`](crate::MemoryStore)).
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// A store already shared elsewhere.
    pub fn shared_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Retries for tasks that do not set their own (default [`DEFAULT_RETRIES`]).
    pub fn default_retries(mut self, retries: u32) -> Self {
        self.retry.retries = retries;
        self
    }

    /// Backoff for tasks that do not set their own (default `exponential(2.0, 60.0)`).
    pub fn default_backoff(mut self, backoff: Backoff) -> Self {
        self.retry.backoff = backoff;
        self
    }

    /// Retries and backoff for tasks that set none, as one policy.
    pub fn default_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// How the engine retries a store call that failed with a transient error (a connection
    /// lost, a timeout, the database busy), when making it again cannot change its effect
    /// (default: 3 retries, 50 ms, 250 ms and 450 ms apart). Stores only classify their
    /// failures ([`Error::kind`](crate::Error::kind)); this is the one place they are retried.
    /// `RetryPolicy::new(0, ..)` turns it off.
    pub fn store_retry(mut self, policy: RetryPolicy) -> Self {
        self.store_retry = policy;
        self
    }

    /// Registers application state that every run of this engine can read, by type, with
    /// [`RunContext::state`] or `durably::state::<S>()`: a database pool, an HTTP or model
    /// client, configuration. Workflows need no `static` for it, and runs resumed by
    /// [`Workflow::recover`] see the same state. A second value of one type replaces the first.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> durably_core::Result<()> {
    /// struct Prices { tax_percent: u32 }
    ///
    /// let wf = durably_core::Workflow::builder("shop").state(Prices { tax_percent: 10 }).build();
    /// let tax: u32 = wf
    ///     .run("order-1", |ctx| async move {
    ///         let prices = ctx.state::<Prices>()?;
    ///         Ok::<_, durably_core::Error>(200 * prices.tax_percent / 100)
    ///     })
    ///     .await?;
    /// assert_eq!(tax, 20);
    /// # Ok(()) }
    /// ```
    pub fn state<S: Send + Sync + 'static>(mut self, value: S) -> Self {
        self.states.insert(Arc::new(value));
        self
    }

    /// Like [`state`](Self::state), for a value already shared elsewhere.
    pub fn shared_state<S: Send + Sync + 'static>(mut self, value: Arc<S>) -> Self {
        self.states.insert(value);
        self
    }

    /// How long the lease on an executing run lasts unless renewed (default 30 s). The engine
    /// renews it every third of this while the run executes, so a run whose process died
    /// becomes recoverable by another process this long after its last renewal. Keep it well
    /// above the longest stretch a task may block its thread (a blocked runtime cannot renew).
    /// A zero TTL is raised to 1 ms.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl.max(Duration::from_millis(1));
        self
    }

    /// When a run is being executed by another engine (its lease is live): `false` (the
    /// default) fails at once with [`Error::RunInProgress`]; `true` waits until the lease is
    /// released or expires, then executes the run, replaying what the other executor recorded
    /// (a completed run returns its output). [`Workflow::waiting_for_lease`] sets it per handle.
    pub fn wait_for_lease(mut self, wait: bool) -> Self {
        self.wait_for_lease = wait;
        self
    }

    /// The lease owner id of this engine (default `<hostname>-<pid>-<random>`). It must be
    /// unique among the engines sharing a store: two engines with one owner id would both
    /// execute a run.
    pub fn owner_id(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// How many events each run's log keeps (default
    /// [`DEFAULT_MAX_EVENTS_PER_RUN`](crate::DEFAULT_MAX_EVENTS_PER_RUN); at least 1): each
    /// append of a run this engine executes drops the oldest events beyond it, in the same
    /// store operation (rule 27 of docs/design.md). Offsets do not change and are never given
    /// twice; a reader asking for a dropped offset gets
    /// [`Error::EventsTrimmed`](crate::Error::EventsTrimmed), then the events kept. A finished
    /// run's whole log goes with the run when it is purged ([`Workflow::purge`]).
    pub fn max_events_per_run(mut self, max: u64) -> Self {
        self.max_events_per_run = max;
        self
    }

    /// The engine.
    pub fn build(self) -> Workflow {
        let store = self.store.unwrap_or_else(|| Arc::new(crate::MemoryStore::new()));
        let store: Arc<dyn Store> = if self.store_retry.retries == 0 {
            store
        } else {
            Arc::new(crate::store_retry::RetryingStore::new(store, self.store_retry))
        };
        let owner = self.owner.unwrap_or_else(lease::new_owner_id);
        lease::register_owner(&owner);
        let renewer = Arc::new(lease::Renewer::new(store.clone(), owner.clone(), self.lease_ttl));
        let cancel_watcher = Arc::new(CancelWatcher::new(store.clone()));
        Workflow {
            engine: Arc::new(Engine {
                env: Arc::new(Env {
                    app: self.app,
                    store,
                    retry: self.retry,
                    max_events_per_run: self.max_events_per_run.max(1),
                    states: self.states.into(),
                    rate_limits: Default::default(),
                }),
                renewer,
                cancel_watcher,
                owner,
                lease_ttl: self.lease_ttl,
                registry: Registry::default(),
                queues: crate::queue::Queues::default(),
                schedules: crate::schedule::Schedules::default(),
                active: Mutex::new(HashMap::new()),
            }),
            wait_for_lease: self.wait_for_lease,
            park_after: None,
        }
    }
}

/// Removes a run from the active table when its execution ends, however it ends (an error, a
/// panic, the caller dropping the future), so that a waiting caller can take over.
struct ActiveGuard {
    engine: Arc<Engine>,
    run_id: String,
    slot: Arc<ActiveRun>,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let mut active = lock(&self.engine.active);
        if active.get(&self.run_id).is_some_and(|s| Arc::ptr_eq(s, &self.slot)) {
            active.remove(&self.run_id);
        }
    }
}

enum Slot {
    Mine(ActiveGuard),
    Theirs(watch::Receiver<Option<Outcome>>),
}

impl Workflow {
    /// A builder for an engine named `app`.
    pub fn builder(app: impl Into<String>) -> WorkflowBuilder {
        WorkflowBuilder {
            app: app.into(),
            store: None,
            retry: RetryPolicy::new(DEFAULT_RETRIES, Backoff::default()),
            store_retry: crate::store_retry::default_policy(),
            states: States::default(),
            lease_ttl: DEFAULT_LEASE_TTL,
            wait_for_lease: false,
            owner: None,
            max_events_per_run: crate::events::DEFAULT_MAX_EVENTS_PER_RUN,
        }
    }

    /// The application state of type `S` registered with [`WorkflowBuilder::state`].
    pub fn state<S: Send + Sync + 'static>(&self) -> Result<Arc<S>> {
        self.engine.env.state::<S>()
    }

    /// Registers application state after the engine is built, for values that need the
    /// `Workflow` themselves (agents hold one). Runs read it like state given to
    /// [`WorkflowBuilder::state`]; a second value of one type replaces the first.
    pub fn set_state<S: Send + Sync + 'static>(&self, value: S) {
        self.engine.env.set_state(Arc::new(value));
    }

    /// This engine's lease owner id (`<hostname>-<pid>-<random>` unless the builder set one):
    /// what [`Error::RunInProgress`] names in other engines while this one executes a run.
    pub fn owner_id(&self) -> &str {
        &self.engine.owner
    }

    /// The lease TTL (see [`WorkflowBuilder::lease_ttl`]).
    pub fn lease_ttl(&self) -> Duration {
        self.engine.lease_ttl
    }

    /// A handle on the same engine whose executions wait for a run's lease held by another
    /// engine (`true`) or fail with [`Error::RunInProgress`] (`false`), whatever the builder
    /// said. For one call: `run_pipeline(&wf.waiting_for_lease(true), args)`.
    pub fn waiting_for_lease(&self, wait: bool) -> Workflow {
        Workflow { wait_for_lease: wait, ..self.clone() }
    }

    /// The handle a queue worker executes runs with: waits of queued runs longer than `after`
    /// park the run.
    pub(crate) fn parking(&self, after: Duration) -> Workflow {
        Workflow { park_after: Some(after), ..self.clone() }
    }

    /// The app name.
    pub fn app(&self) -> &str {
        &self.engine.env.app
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.engine.env.store
    }

    /// Executes `body` as run `run_id` (the closure form of `#[workflow]`).
    ///
    /// If the run completed before, its stored output is returned without calling `body`; if it
    /// failed or crashed, `body` runs again and finished tasks replay from their checkpoints.
    /// The run is recorded under the app name as its workflow name.
    ///
    /// ```no_run
    /// # async fn demo(wf: durably_core::Workflow) -> durably_core::Result<()> {
    /// let total: u32 = wf
    ///     .run("order-42", |_ctx| async move {
    ///         let a = durably_core::step("a", || async { Ok::<_, std::io::Error>(1u32) }).await?;
    ///         let b = durably_core::step("b", || async { Ok::<_, std::io::Error>(2u32) }).await?;
    ///         Ok::<_, durably_core::Error>(a + b)
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn run<F, Fut, T, E>(&self, run_id: impl Into<String>, body: F) -> Result<T>
    where
        F: FnOnce(RunContext) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        T: Serialize + DeserializeOwned + Send + 'static,
        E: Into<BoxError>,
    {
        let workflow = self.engine.env.app.clone();
        self.execute(workflow, run_id.into(), Ok(None), |ctx| {
            let fut = body(ctx);
            async move { fut.await.map_err(Into::into) }
        })
        .await
    }

    /// The engine behind `run` and `#[workflow]`.
    pub(crate) async fn execute<F, Fut, T>(
        &self,
        workflow: String,
        run_id: String,
        input: Result<Option<String>>,
        body: F,
    ) -> Result<T>
    where
        F: FnOnce(RunContext) -> Fut,
        Fut: Future<Output = Result<T, BoxError>>,
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        // `durably.app` with the run id names the run's trace; `durably.status` is how it ended.
        let span = tracing::info_span!("durably.run", durably.app = %self.engine.env.app, durably.run_id = %run_id,
            durably.workflow = %workflow, durably.status = tracing::field::Empty);
        async move {
            let input = input?;
            loop {
                match self.claim(&run_id) {
                    Slot::Mine(guard) => return self.execute_claimed(guard, workflow, input, body).await,
                    Slot::Theirs(rx) => {
                        if let Some(result) = wait_for_other(&run_id, rx).await {
                            return result;
                        }
                        // The other execution ended without an outcome (its caller dropped it):
                        // take over.
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    fn claim(&self, run_id: &str) -> Slot {
        let mut active = lock(&self.engine.active);
        if let Some(slot) = active.get(run_id) {
            return Slot::Theirs(slot.outcome.subscribe());
        }
        let (tx, _) = watch::channel(None);
        let slot = Arc::new(ActiveRun { outcome: tx, ctx: Mutex::new(None) });
        active.insert(run_id.to_owned(), slot.clone());
        Slot::Mine(ActiveGuard { engine: self.engine.clone(), run_id: run_id.to_owned(), slot })
    }

    async fn execute_claimed<F, Fut, T>(
        &self,
        guard: ActiveGuard,
        workflow: String,
        input: Option<String>,
        body: F,
    ) -> Result<T>
    where
        F: FnOnce(RunContext) -> Fut,
        Fut: Future<Output = Result<T, BoxError>>,
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        let engine = &self.engine;
        // The lease comes before `open_run`, which changes the run's status (or with it, in one
        // write, where the store can).
        let new = NewRun::new(&guard.run_id, &workflow, input, now_ms());
        let (mut lease, history) = lease::acquire_and_open(
            &engine.env.store,
            &new,
            &engine.owner,
            engine.lease_ttl,
            self.wait_for_lease,
        )
        .await?;
        let result = self.execute_leased(&guard, &mut lease, new, history, body).await;
        lease.release().await;
        result
    }

    async fn execute_leased<F, Fut, T>(
        &self,
        guard: &ActiveGuard,
        lease: &mut lease::LeaseHold,
        new: NewRun,
        opened: Option<RunHistory>,
        body: F,
    ) -> Result<T>
    where
        F: FnOnce(RunContext) -> Fut,
        Fut: Future<Output = Result<T, BoxError>>,
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        let run_id = guard.run_id.clone();
        let workflow = new.workflow.clone();
        let history = match opened {
            Some(history) => history,
            None => self.engine.env.store.open_run(new).await?,
        };
        if history.run.workflow != workflow {
            return Err(Error::RunConflict { run_id, recorded: history.run.workflow, called: workflow });
        }
        match history.run.status {
            RunStatus::Completed => {
                tracing::debug!(target: "durably", "run already completed; returning its stored output");
                let output = history.run.output.unwrap_or_else(|| "null".into());
                let _ = guard.slot.outcome.send(Some(Outcome::Completed(output.clone())));
                return decode(&run_id, "output", "run output", Some(&output));
            }
            RunStatus::Cancelled => {
                let _ = guard.slot.outcome.send(Some(Outcome::Cancelled));
                return Err(Error::Cancelled { run_id });
            }
            _ => {}
        }
        let replayable = history.steps.len();
        let (queue, parent_id) = (history.run.queue.clone(), history.run.parent_id.clone());
        let park = match (self.park_after, &queue) {
            (Some(after), Some(_)) => Some(Parking { after, owner: self.engine.owner.clone() }),
            _ => None,
        };
        let ctx = RunContext::new(self.engine.env.clone(), history, Some(lease.state.clone()), park);
        lease.start_renewal(&self.engine.renewer, ctx.inner.wake.clone());
        let _cancel_watch = self.engine.cancel_watcher.watch(ctx.clone());
        *lock(&guard.slot.ctx) = Some(ctx.clone());
        tracing::info!(target: "durably", recorded_steps = replayable, "run started");
        crate::events::run_started(&ctx, replayable);

        // The body is created inside the run's scope too: a closure that returns a task call
        // directly creates it (and takes its step id) right there.
        let fut = ctx.enter(|| body(ctx.clone()));
        let result = tokio::select! {
            result = ctx.within(fut) => Some(result),
            () = ctx.until_parked() => None,
        };
        let Some(result) = result else {
            // The body was dropped at its wait; the store keeps the run until it is runnable.
            let waiting_on = self.get_run(&run_id).await.ok().flatten().and_then(|r| r.waiting_on);
            return Err(Error::Parked { run_id, waiting_on: waiting_on.unwrap_or_default() });
        };
        if ctx.lease_lost() {
            // Another executor owns the run now: record nothing, and let callers waiting in this
            // process try again (they will find its lease).
            let err = lease.state.error(&run_id);
            tracing::warn!(target: "durably", error = %err, "execution stopped: lease lost");
            return Err(err);
        }
        // The final status may release the lease in the same write: no renewal may follow it.
        lease.stop_renewal().await;
        let (outcome, result) = self.finish(&ctx, parent_id.as_deref(), result, &self.engine.owner).await;
        if let Outcome::Cancelled = outcome {
            crate::events::cancelled(&ctx).await;
        }
        let status = match outcome {
            Outcome::Completed(_) => "completed",
            Outcome::Failed(_) => "failed",
            Outcome::Cancelled => "cancelled",
        };
        tracing::Span::current().record("durably.status", status);
        if queue.is_some() {
            self.announce_done(&run_id, &outcome).await;
        }
        let _ = guard.slot.outcome.send(Some(outcome));
        result
    }

    /// Tells [`RunHandle::result`](crate::RunHandle::result) callers in every process that a
    /// queued run ended, through the run's own done signal. A failure is logged: they look at
    /// the run's record again on their own, at least every second.
    async fn announce_done(&self, run_id: &str, outcome: &Outcome) {
        let done = SignalRecord::new(crate::queue::DONE_SIGNAL, outcome.to_json(), now_ms());
        if let Err(e) = self.engine.env.store.deliver_signal(run_id, &done).await {
            tracing::warn!(target: "durably", run_id, error = %e, "could not announce the end of the run");
        }
    }

    /// Delivers a child run's outcome to its parent, *before* the child's final status is
    /// written: a crash in between leaves the child unfinished, so it executes again and
    /// delivers again (first write wins), and the parent is never left waiting for a child that
    /// ended. The delivery also makes a parked parent runnable.
    async fn announce_to_parent(
        &self,
        ctx: &RunContext,
        parent: Option<&str>,
        outcome: &Outcome,
    ) -> Result<()> {
        let Some(parent) = parent else { return Ok(()) };
        let signal = SignalRecord::new(crate::child::child_signal(ctx.run_id()), outcome.to_json(), now_ms());
        self.engine.env.store.deliver_signal(parent, &signal).await.map(drop)
    }

    /// Records a run's outcome and turns it into the caller's result; the store may release
    /// `owner`'s lease with the final status.
    async fn finish<T: Serialize>(
        &self,
        ctx: &RunContext,
        parent: Option<&str>,
        result: Result<T, BoxError>,
        owner: &str,
    ) -> (Outcome, Result<T>) {
        let run_id = ctx.run_id().to_owned();
        let error = match result {
            Ok(value) => match serde_json::to_string(&value) {
                Ok(json) => {
                    let outcome = Outcome::Completed(json.clone());
                    if let Err(e) = self.announce_to_parent(ctx, parent, &outcome).await {
                        return (Outcome::Failed(e.to_string()), Err(e));
                    }
                    let update = RunUpdate::new(RunStatus::Completed, now_ms()).output(json.clone());
                    return match crate::cancel::end_unless_cancelled(ctx, &update, Some(owner)).await {
                        Ok(()) => {
                            tracing::info!(target: "durably", "run completed");
                            (Outcome::Completed(json), Ok(value))
                        }
                        Err(e @ Error::Cancelled { .. }) => (Outcome::Cancelled, Err(e)),
                        Err(e) => (Outcome::Failed(e.to_string()), Err(e)),
                    };
                }
                Err(source) => Error::Serialize {
                    run_id: run_id.clone(),
                    step_id: "output".into(),
                    what: "run output",
                    type_name: std::any::type_name::<T>(),
                    source,
                },
            },
            Err(boxed) => match boxed.downcast::<Error>() {
                Ok(own) => *own,
                Err(other) => Error::Workflow { run_id: run_id.clone(), source: other },
            },
        };
        if ctx.is_cancelled() || matches!(error, Error::Cancelled { .. }) {
            tracing::info!(target: "durably", "run cancelled");
            if let Err(e) = self.announce_to_parent(ctx, parent, &Outcome::Cancelled).await {
                tracing::warn!(target: "durably", error = %e, "could not tell the parent run that this child was cancelled");
            }
            return (Outcome::Cancelled, Err(Error::Cancelled { run_id }));
        }
        let text = match &error {
            Error::Workflow { source, .. } => Chain(source.as_ref()).to_string(),
            other => Chain(other).to_string(),
        };
        tracing::warn!(target: "durably", error = %text, "run failed");
        if let Err(e) = self.announce_to_parent(ctx, parent, &Outcome::Failed(text.clone())).await {
            tracing::warn!(target: "durably", error = %e, "could not tell the parent run that this child failed");
        }
        let update = RunUpdate::new(RunStatus::Failed, now_ms()).error(&text);
        if let Err(store_err) = crate::cancel::end_unless_cancelled(ctx, &update, Some(owner)).await {
            if let Error::Cancelled { .. } = store_err {
                return (Outcome::Cancelled, Err(store_err));
            }
            tracing::warn!(target: "durably", error = %store_err, "could not record the run failure");
        }
        (Outcome::Failed(text), Err(error))
    }

    /// Delivers signal `name` with `payload` to run `run_id`: first write wins. Returns `false`
    /// when the signal had been delivered already (the earlier payload stays). The run need not
    /// have started; a waiting run in this process wakes at once. A name the engine keeps for
    /// itself ([`is_internal_signal`](crate::is_internal_signal): a child's outcome, a queued
    /// run's end) is refused with [`Error::Invalid`]: delivering one would forge what the
    /// engine reports.
    pub async fn complete<T: Serialize + ?Sized>(
        &self,
        run_id: &str,
        name: &str,
        payload: &T,
    ) -> Result<bool> {
        if crate::signal::is_internal_signal(name) {
            return Err(Error::Invalid {
                what: "signal name",
                detail: format!(
                    "signal `{name}` for run `{run_id}`: names starting with `{}` are the engine's own",
                    crate::signal::INTERNAL_SIGNAL_PREFIX
                ),
            });
        }
        let json = encode_payload(run_id, name, payload)?;
        let delivered = self
            .engine
            .env
            .store
            .deliver_signal(run_id, &SignalRecord::new(name, json.clone(), now_ms()))
            .await?;
        if delivered {
            tracing::info!(target: "durably", run_id = %run_id, signal = name, "signal delivered");
            if let Some(ctx) = self.active_context(run_id) {
                ctx.remember_signal(name, json);
            }
        }
        Ok(delivered)
    }

    /// Cancels a run: it is marked `cancelled`, and if it executes in this process it stops at
    /// its next step boundary, signal wait or sleep. Executing it again returns
    /// [`Error::Cancelled`]. Returns `false` if the run had already completed or was cancelled.
    pub async fn cancel(&self, run_id: &str) -> Result<bool> {
        let run =
            self.get_run(run_id).await?.ok_or_else(|| Error::RunNotFound { run_id: run_id.to_owned() })?;
        if run.status.is_final() {
            return Ok(false);
        }
        self.mark_cancelled(run_id, None).await?;
        // Then its unfinished children, and theirs (rule 23 of docs/design.md).
        let mut parents = vec![run_id.to_owned()];
        while let Some(parent) = parents.pop() {
            for child in self.list_runs(&RunFilter::new().parent(&parent)).await? {
                if !child.status.is_final() {
                    self.mark_cancelled(&child.run_id, Some(&parent)).await?;
                    parents.push(child.run_id);
                }
            }
        }
        Ok(true)
    }

    /// Records run `run_id` as cancelled and stops its execution in this process, if any.
    async fn mark_cancelled(&self, run_id: &str, parent: Option<&str>) -> Result<()> {
        self.engine.env.store.update_run(run_id, &RunUpdate::new(RunStatus::Cancelled, now_ms())).await?;
        if let Some(ctx) = self.active_context(run_id) {
            ctx.cancel();
        }
        tracing::info!(target: "durably", run_id = %run_id, ?parent, "run cancelled");
        Ok(())
    }

    /// True while run `run_id` is executing in this engine.
    pub(crate) fn is_active(&self, run_id: &str) -> bool {
        lock(&self.engine.active).contains_key(run_id)
    }

    fn active_context(&self, run_id: &str) -> Option<RunContext> {
        let active = lock(&self.engine.active);
        active.get(run_id).and_then(|slot| lock(&slot.ctx).clone())
    }

    /// One run, if it exists.
    pub async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        self.engine.env.store.get_run(run_id).await
    }

    /// Runs matching `filter`, newest first.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        self.engine.env.store.list_runs(filter).await
    }

    /// A run's steps with their status, attempts, timestamps and values.
    pub async fn list_steps(&self, run_id: &str) -> Result<Vec<StepRecord>> {
        self.engine.env.store.list_steps(run_id).await
    }

    /// The stored output of a completed run, deserialized.
    pub async fn output<T: DeserializeOwned>(&self, run_id: &str) -> Result<Option<T>> {
        let Some(run) = self.get_run(run_id).await? else {
            return Err(Error::RunNotFound { run_id: run_id.to_owned() });
        };
        match (run.status, run.output) {
            (RunStatus::Completed, output) => {
                decode(run_id, "output", "run output", Some(output.as_deref().unwrap_or("null"))).map(Some)
            }
            _ => Ok(None),
        }
    }
}

/// Waits for the execution that holds the run in this process; `None` if it ended without
/// an outcome.
async fn wait_for_other<T: DeserializeOwned>(
    run_id: &str,
    mut rx: watch::Receiver<Option<Outcome>>,
) -> Option<Result<T>> {
    tracing::debug!(target: "durably", "run is executing in this process; waiting for it");
    let outcome = match rx.wait_for(Option::is_some).await {
        Ok(seen) => seen.clone(),
        Err(_) => return None,
    }?;
    Some(match outcome {
        Outcome::Completed(json) => decode(run_id, "output", "run output", Some(&json)),
        Outcome::Failed(message) => Err(Error::RunFailed { run_id: run_id.to_owned(), message }),
        Outcome::Cancelled => Err(Error::Cancelled { run_id: run_id.to_owned() }),
    })
}
