//! The run context: which run is executing, its recorded history, and the step ids handed out
//! so far. A [`RunContext`] is handed to `wf.run(id, |ctx| …)` closures and is the documented
//! way in: [`RunContext::step`], [`RunContext::signal`], [`RunContext::sleep`],
//! [`RunContext::scope`], [`RunContext::state`]. It also travels in a tokio task-local, so that
//! `#[task]` functions, `durably::signal` and `durably::sleep` find their run without being
//! passed anything; [`spawn`] carries it into a new tokio task.
//!
//! This module sits above the store and the lease, and below the steps (tasks, signals,
//! sleeps) and the engine: it knows the store and the run's lease, never the engine.

use std::collections::{HashMap, HashSet};

/// The maps of one execution, keyed by step ids and names the workflow's code chose: hashed
/// with foldhash (randomly seeded), which costs a fraction of SipHash per step.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::env::Env;
use crate::error::{Error, Result};
use crate::lease::LeaseState;
use crate::store::{RunHistory, StepRecord, Store};
use crate::sync::lock;

tokio::task_local! {
    static CURRENT_RUN: RunContext;
    static CURRENT_STEP: StepInfo;
}

/// The counter namespace of scopes. Agents took their invocation prefixes from it before scopes
/// existed (`agent:<name>`), so a scope and an agent of one name share one numbering and never
/// hand out the same prefix; recorded runs keep their ids.
const SCOPE_COUNTER: &str = "agent:";

/// How many run contexts exist in this process: a task called outside any run while this is
/// not zero was probably meant to belong to one (see [`spawn`]).
static LIVE_CONTEXTS: AtomicUsize = AtomicUsize::new(0);

/// A handle on the run being executed, or on a [scope](Self::scope) of it. Cheap to clone.
///
/// `wf.run(id, |ctx| …)` passes it in; inside a run, [`RunContext::current`] returns it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> durably_core::Result<()> {
/// let wf = durably_core::Workflow::builder("shop").build();
/// let total: u32 = wf
///     .run("order-42", |ctx| async move {
///         let price = ctx.step("price", || async { Ok::<_, std::io::Error>(40u32) }).await?;
///         let tax = ctx.step("tax", move || async move { Ok::<_, std::io::Error>(price / 10) }).await?;
///         Ok::<_, durably_core::Error>(price + tax)
///     })
///     .await?;
/// assert_eq!(total, 44);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RunContext {
    pub(crate) inner: Arc<RunState>,
    /// The prefix of this scope's step ids (`planner`, `planner#1.critic`), `None` at the top.
    scope: Option<Arc<str>>,
}

impl std::fmt::Debug for RunContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunContext")
            .field("run_id", &self.inner.run_id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

pub(crate) struct RunState {
    pub(crate) run_id: String,
    pub(crate) env: Arc<Env>,
    steps: Mutex<Map<String, StepRecord>>,
    signals: Mutex<Map<String, String>>,
    ids: Mutex<StepIds>,
    cancelled: AtomicBool,
    /// The lease this execution holds, when the engine took one.
    lease: Option<Arc<LeaseState>>,
    /// Wakes signal waits and sleeps of this run (a delivered signal, a cancellation, a lost
    /// lease).
    pub(crate) wake: Arc<Notify>,
    /// A status write started without waiting for it (the run going back to `running` after a
    /// signal): the next status write awaits it first, so status writes stay in order.
    pub(crate) pending_status: Mutex<Option<tokio::task::JoinHandle<Result<bool>>>>,
    /// The queue the run was enqueued in: its children go there unless told otherwise.
    pub(crate) queue: Option<String>,
    /// For an execution by a queue worker: when and as whom a wait parks the run.
    park: Option<Parking>,
    /// Set once this execution parked the run; the engine then drops the run's body.
    parked: AtomicBool,
    parked_notify: Notify,
    /// The events this execution has not appended yet.
    pub(crate) events: crate::events::RunEvents,
}

/// When a wait parks its run (rule 25 of docs/design.md): only executions by a queue worker
/// park, and only waits expected to outlast `after`.
#[derive(Debug, Clone)]
pub(crate) struct Parking {
    /// A wait for a signal parks once it has waited this long in memory; a sleep or a deadline
    /// further away than this parks at once.
    pub(crate) after: Duration,
    /// The lease owner executing the run, whose lease the park releases.
    pub(crate) owner: String,
}

impl Drop for RunState {
    fn drop(&mut self) {
        LIVE_CONTEXTS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The step ids of one execution: the next number of each name, and every id claimed so far
/// with the call that claimed it.
#[derive(Default)]
struct StepIds {
    /// Per (scoped) task name: the next number, and the name shared by the claims of its calls.
    counters: Map<String, (u32, Arc<str>)>,
    claims: Map<String, Claim>,
}

/// Who holds a step id in this execution.
struct Claim {
    /// The task name of the call.
    task: Arc<str>,
    /// Named with `.step_id(…)`, rather than generated from the task name.
    explicit: bool,
}

impl StepIds {
    /// `base`, then `base#1`, `base#2`…, skipping any id another call of this execution
    /// already holds: a generated id never lands on an explicit one (or on a generated id of a
    /// task whose name looks like `base#n`). The claim is in the name of `base`, the (scoped)
    /// task name of the call.
    fn generate(&mut self, base: &str) -> String {
        if !self.counters.contains_key(base) {
            self.counters.insert(base.to_owned(), (0, Arc::from(base)));
        }
        let Some((n, task)) = self.counters.get_mut(base) else { return base.to_owned() };
        loop {
            let id = if *n == 0 { base.to_owned() } else { format!("{base}#{n}") };
            *n += 1;
            if !self.claims.contains_key(&id) {
                self.claims.insert(id.clone(), Claim { task: Arc::clone(task), explicit: false });
                return id;
            }
        }
    }

    /// The shared name of `task`'s claims (its calls were handed ids before), or a new one.
    fn task_name(&self, task: &str) -> Arc<str> {
        self.counters.get(task).map_or_else(|| Arc::from(task), |(_, name)| Arc::clone(name))
    }
}

impl RunContext {
    pub(crate) fn new(
        env: Arc<Env>,
        history: RunHistory,
        lease: Option<Arc<LeaseState>>,
        park: Option<Parking>,
    ) -> Self {
        let steps = history.steps.into_iter().map(|s| (s.step_id.clone(), s)).collect();
        let signals = history.signals.into_iter().map(|s| (s.name, s.payload)).collect();
        let queue = history.run.queue;
        LIVE_CONTEXTS.fetch_add(1, Ordering::Relaxed);
        RunContext {
            inner: Arc::new(RunState {
                run_id: history.run.run_id,
                env,
                steps: Mutex::new(steps),
                signals: Mutex::new(signals),
                ids: Mutex::new(StepIds::default()),
                cancelled: AtomicBool::new(false),
                lease,
                wake: Arc::new(Notify::new()),
                pending_status: Mutex::new(None),
                queue,
                park,
                parked: AtomicBool::new(false),
                parked_notify: Notify::new(),
                events: crate::events::RunEvents::default(),
            }),
            scope: None,
        }
    }

    /// How long a wait may last in memory before it parks the run; `None` when this execution
    /// never parks.
    pub(crate) fn park_after(&self) -> Option<Duration> {
        self.inner.park.as_ref().map(|p| p.after)
    }

    /// True when every step recorded before this execution has been claimed by it: the run
    /// executes code past what it recorded (not replaying an older run's steps).
    pub(crate) fn at_frontier(&self) -> bool {
        let steps = lock(&self.inner.steps);
        let ids = lock(&self.inner.ids);
        steps.keys().all(|step_id| ids.claims.contains_key(step_id))
    }

    /// True once this execution parked the run.
    pub(crate) fn is_parked(&self) -> bool {
        self.inner.parked.load(Ordering::SeqCst)
    }

    /// Resolves once this execution parked the run.
    pub(crate) async fn until_parked(&self) {
        loop {
            let notified = self.inner.parked_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_parked() {
                return;
            }
            notified.await;
        }
    }

    /// Parks the run while it waits for `waiting_on` or until `wake_at_ms`: the store releases
    /// its lease, and the engine drops the body at this await point, as a crash would, so a
    /// worker resumes it by replay. Never returns `Ok`: the future stays pending once the run
    /// is parked; a cancelled run fails with [`Error::Cancelled`].
    pub(crate) async fn park(&self, waiting_on: &str, wake_at_ms: Option<i64>) -> Result<()> {
        let Some(parking) = &self.inner.park else {
            return Err(Error::Invalid {
                what: "park",
                detail: format!(
                    "run `{}` is not executed by a queue worker, so it cannot park",
                    self.run_id()
                ),
            });
        };
        // A status write still in flight (`running` after an earlier wait) must not land on
        // the parked run.
        crate::cancel::settle_pending(self).await?;
        self.check_cancelled()?;
        let store = self.store();
        let parked =
            store.park_run(self.run_id(), &parking.owner, waiting_on, wake_at_ms, store.now_ms()).await?;
        if !parked {
            self.cancel();
            return Err(Error::Cancelled { run_id: self.run_id().to_owned() });
        }
        tracing::info!(target: "durably", run_id = %self.run_id(), waiting_on, ?wake_at_ms, "run parked");
        self.inner.parked.store(true, Ordering::SeqCst);
        self.inner.parked_notify.notify_waiters();
        std::future::pending::<()>().await;
        Ok(())
    }

    /// The context of the run executing the current task, if any.
    pub fn current() -> Option<RunContext> {
        CURRENT_RUN.try_with(Clone::clone).ok()
    }

    /// The run id.
    pub fn run_id(&self) -> &str {
        &self.inner.run_id
    }

    /// The app name of the workflow engine executing the run.
    pub fn app(&self) -> &str {
        &self.inner.env.app
    }

    /// The store the run is recorded in.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.env.store
    }

    /// The application state of type `S` registered on the [`Workflow`](crate::Workflow) with
    /// [`WorkflowBuilder::state`](crate::WorkflowBuilder::state): a database pool, an HTTP or
    /// model client. Recovered runs see the same state as runs started by a caller. Fails with
    /// [`Error::Invalid`] naming the type when none is registered.
    pub fn state<S: Send + Sync + 'static>(&self) -> Result<Arc<S>> {
        self.inner.env.state::<S>()
    }

    /// A scope of this run named `name`: its steps are named `<prefix>.<name>` and counted on
    /// their own, so that a component (an agent, a sub-pipeline) can number its steps without
    /// knowing what else the run calls. The prefix is `name` for the first scope of that name
    /// in the run, then `name#1`, `name#2`… in the order the scopes are opened, as step ids are.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> durably_core::Result<()> {
    /// let wf = durably_core::Workflow::builder("app").build();
    /// wf.run("run-1", |ctx| async move {
    ///     let planner = ctx.scope("planner");
    ///     assert_eq!(planner.next_step_id("model"), "planner.model");
    ///     assert_eq!(planner.next_step_id("model"), "planner.model#1");
    ///     assert_eq!(ctx.scope("planner").next_step_id("model"), "planner#1.model");
    ///     Ok::<_, durably_core::Error>(())
    /// })
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub fn scope(&self, name: &str) -> RunContext {
        let key = format!("{SCOPE_COUNTER}{}", self.scoped(name));
        let id = lock(&self.inner.ids).generate(&key);
        let prefix = id.strip_prefix(SCOPE_COUNTER).unwrap_or(&id);
        RunContext { inner: self.inner.clone(), scope: Some(Arc::from(prefix)) }
    }

    /// The prefix of this scope's step ids, `None` for the run itself.
    pub fn scope_prefix(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// Prefixes `name` with this context's scope in place; without a scope it stays as it is.
    pub(crate) fn scope_name(&self, name: &mut String) {
        if self.scope.is_some() {
            *name = self.scoped(name);
        }
    }

    /// `name` as this scope names it: `<prefix>.<name>`, or `name` for the run itself.
    pub fn scoped(&self, name: &str) -> String {
        match &self.scope {
            Some(prefix) => format!("{prefix}.{name}"),
            None => name.to_owned(),
        }
    }

    /// Hands out the next step id for `name` in this scope: `name`, then `name#1`, `name#2`…
    /// Called when a step is created, so ids follow the order of calls, not of completion. An
    /// id that another call of this execution holds (an explicit `.step_id(…)`) is skipped, so
    /// two calls never share a checkpoint by accident.
    pub fn next_step_id(&self, name: &str) -> String {
        let base = self.scoped(name);
        lock(&self.inner.ids).generate(&base)
    }

    /// The id for a call of task `task` (already scoped).
    pub(crate) fn generate_step_id(&self, task: &str) -> String {
        lock(&self.inner.ids).generate(task)
    }

    /// Claims `id`, named explicitly by a call of `task` that had been handed `generated`.
    /// Fails with [`Error::DuplicateStepId`] when a call of this execution holds `id` as its
    /// generated id: the two would share one checkpoint. Two calls naming one id explicitly
    /// share it on purpose.
    pub(crate) fn claim_explicit(&self, id: &str, task: &str, generated: &str) -> Result<()> {
        let mut ids = lock(&self.inner.ids);
        if id != generated && ids.claims.get(generated).is_some_and(|c| !c.explicit) {
            ids.claims.remove(generated);
        }
        match ids.claims.get(id) {
            Some(claim) if !claim.explicit && id != generated => Err(Error::DuplicateStepId {
                run_id: self.inner.run_id.clone(),
                step_id: id.to_owned(),
                first: format!("task `{}` (generated id)", claim.task),
                second: format!("task `{task}` (explicit `.step_id(\"{id}\")`)"),
            }),
            _ => {
                let task = ids.task_name(task);
                ids.claims.insert(id.to_owned(), Claim { task, explicit: true });
                Ok(())
            }
        }
    }

    /// The record of `step_id`, from the history loaded at start or written since.
    pub fn recorded_step(&self, step_id: &str) -> Option<StepRecord> {
        lock(&self.inner.steps).get(step_id).cloned()
    }

    /// Calls `f` with the record of `step_id`, without copying it (the history stays locked
    /// meanwhile: `f` must not call back into this context).
    pub(crate) fn with_recorded_step<R>(&self, step_id: &str, f: impl FnOnce(Option<&StepRecord>) -> R) -> R {
        f(lock(&self.inner.steps).get(step_id))
    }

    /// The record of `step_id`, checked against the task `name` that now claims it: a record
    /// written by another task is [`Error::NonDeterminism`], never a value to return.
    pub fn replay_step(&self, step_id: &str, name: &str) -> Result<Option<StepRecord>> {
        match self.recorded_step(step_id) {
            Some(rec) if rec.name != name => Err(Error::NonDeterminism {
                run_id: self.inner.run_id.clone(),
                step_id: step_id.to_owned(),
                recorded: rec.name,
                called: name.to_owned(),
            }),
            other => Ok(other),
        }
    }

    /// Saves a step record to the store and to the in-memory history. Fails with
    /// [`Error::LeaseLost`], saving nothing, once this execution has lost the run's lease.
    pub async fn save_step(&self, record: StepRecord) -> Result<()> {
        self.check_lease()?;
        // The buffered events travel with the checkpoint instead of after it: see `events`.
        crate::events::step_event(self, &record);
        crate::events::save_step_with_events(self, &record).await?;
        lock(&self.inner.steps).insert(record.step_id.clone(), record);
        Ok(())
    }

    pub(crate) fn known_signal(&self, name: &str) -> Option<String> {
        lock(&self.inner.signals).get(name).cloned()
    }

    pub(crate) fn remember_signal(&self, name: &str, payload: String) {
        lock(&self.inner.signals).entry(name.to_owned()).or_insert(payload);
        self.inner.wake.notify_waiters();
    }

    pub(crate) fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        self.inner.wake.notify_waiters();
    }

    /// True once the run was cancelled in this process.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// Fails with [`Error::Cancelled`] once the run was cancelled, and with
    /// [`Error::LeaseLost`] once this execution lost the run's lease: called at each step
    /// boundary and each wake-up of a wait.
    pub fn check_cancelled(&self) -> Result<()> {
        if self.is_cancelled() {
            return Err(Error::Cancelled { run_id: self.inner.run_id.clone() });
        }
        self.check_lease()
    }

    /// The lease this execution holds, when the engine took one.
    pub(crate) fn lease_state(&self) -> Option<&Arc<LeaseState>> {
        self.inner.lease.as_ref()
    }

    /// True once this execution lost the run's lease (another owner took it, or it went
    /// unrenewed for a whole TTL): it must record nothing more.
    pub fn lease_lost(&self) -> bool {
        self.inner.lease.as_ref().is_some_and(|l| l.is_lost())
    }

    fn check_lease(&self) -> Result<()> {
        match &self.inner.lease {
            Some(lease) if lease.is_lost() => Err(lease.error(&self.inner.run_id)),
            _ => Ok(()),
        }
    }

    /// True when both are the context of one execution.
    pub(crate) fn same_run(&self, other: &RunContext) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Sleeps, waking early with [`Error::Cancelled`] (or [`Error::LeaseLost`]) if the run is
    /// cancelled or loses its lease meanwhile.
    pub(crate) async fn sleep_or_cancel(&self, duration: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + duration;
        loop {
            let notified = self.inner.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.check_cancelled()?;
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return Ok(()),
                _ = &mut notified => {}
            }
        }
    }

    /// Calls `f` with this context as the current run (task calls created in it belong to it).
    pub(crate) fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        CURRENT_RUN.sync_scope(self.clone(), f)
    }

    /// Runs `fut` with this context as the current run: `#[task]` calls, `durably::signal` and
    /// `durably::sleep` inside it belong to this run (and to this scope). [`spawn`] uses it.
    pub async fn within<F: Future>(&self, fut: F) -> F::Output {
        CURRENT_RUN.scope(self.clone(), fut).await
    }
}

/// Spawns `fut` on the tokio runtime carrying the current run, so that the tasks it calls are
/// steps of that run, as if awaited in place. A plain `tokio::spawn` inside a run loses the
/// run: tasks called there run as plain functions, with no checkpoint (the engine logs a
/// warning when it sees one). Outside a run this is `tokio::spawn`.
///
/// Step ids are handed out when a call is created, so spawn in a deterministic order (or name
/// the steps with `.step_id(…)`) for replays to find them.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> durably_core::Result<()> {
/// let wf = durably_core::Workflow::builder("app").build();
/// let n: u32 = wf
///     .run("run-1", |_ctx| async move {
///         let handle = durably_core::spawn(async {
///             durably_core::step("fetch", || async { Ok::<_, std::io::Error>(7u32) }).await
///         });
///         let n = handle.await.map_err(durably_core::Error::permanent)??;
///         Ok::<_, durably_core::Error>(n)
///     })
///     .await?;
/// assert_eq!(wf.list_steps("run-1").await?.len(), 1, "the spawned task was checkpointed");
/// # assert_eq!(n, 7);
/// # Ok(()) }
/// ```
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match RunContext::current() {
        Some(ctx) => tokio::spawn(async move { ctx.within(fut).await }),
        None => tokio::spawn(fut),
    }
}

/// The application state of type `S` of the current run's engine: see [`RunContext::state`].
/// Fails with [`Error::Invalid`] outside a run, or when no state of that type is registered.
pub fn state<S: Send + Sync + 'static>() -> Result<Arc<S>> {
    match RunContext::current() {
        Some(ctx) => ctx.state::<S>(),
        None => Err(Error::Invalid {
            what: "workflow state",
            detail: format!(
                "`durably::state::<{}>()` was called outside a workflow run; outside a run, use                  `Workflow::state`",
                std::any::type_name::<S>()
            ),
        }),
    }
}

/// Logs, once per task name, a task called outside any run while runs execute in this process:
/// most likely a `tokio::spawn` inside a run, which loses the run.
pub(crate) fn warn_if_lost(task: &str) {
    static WARNED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    if LIVE_CONTEXTS.load(Ordering::Relaxed) == 0 {
        return;
    }
    if lock(&WARNED).get_or_insert_with(HashSet::new).insert(task.to_owned()) {
        tracing::warn!(
            target: "durably",
            task,
            "task called outside any run while runs execute in this process: it runs without a \
             checkpoint. If it belongs to a run, spawn it with `durably::spawn` (a plain \
             `tokio::spawn` does not carry the run) or call it through `ctx.step`"
        );
    }
}

/// What a task body can learn about the step it executes: see [`current_step`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StepInfo {
    /// The run id.
    pub run_id: String,
    /// The step id.
    pub step_id: String,
    /// The attempt number, from 1.
    pub attempt: u32,
}

impl StepInfo {
    /// A key that is the same on every attempt and every replay of this step, and differs for
    /// every other step: `<run_id>/<step_id>`. Send it as the idempotency key of an external
    /// call (a payment, an email) so that a retried attempt does not repeat the effect.
    pub fn idempotency_key(&self) -> String {
        format!("{}/{}", self.run_id, self.step_id)
    }
}

/// The step the current task body is executing, when it runs as a step of a run.
pub fn current_step() -> Option<StepInfo> {
    CURRENT_STEP.try_with(Clone::clone).ok()
}

/// The idempotency key of the step being executed (see [`StepInfo::idempotency_key`]).
pub fn idempotency_key() -> Option<String> {
    CURRENT_STEP.try_with(StepInfo::idempotency_key).ok()
}

pub(crate) async fn with_step<F: std::future::Future>(info: StepInfo, fut: F) -> F::Output {
    CURRENT_STEP.scope(info, fut).await
}
