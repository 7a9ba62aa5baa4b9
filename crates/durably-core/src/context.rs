//! The run context: which run the current task belongs to, its recorded history, and the step
//! ids handed out so far. It travels in a tokio task-local, so tasks find their run without
//! being passed anything.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::error::{Error, Result};
use crate::lease::LeaseState;
use crate::store::{RunHistory, StepRecord};
use crate::sync::lock;
use crate::workflow::Engine;

tokio::task_local! {
    static CURRENT_RUN: RunContext;
    static CURRENT_STEP: StepInfo;
}

/// A handle on the run being executed. Cheap to clone.
///
/// Inside a workflow, [`RunContext::current`] returns it; `wf.run(id, |ctx| …)` passes it in.
#[derive(Clone)]
pub struct RunContext {
    pub(crate) inner: Arc<RunState>,
}

impl std::fmt::Debug for RunContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunContext").field("run_id", &self.inner.run_id).finish_non_exhaustive()
    }
}

pub(crate) struct RunState {
    pub(crate) run_id: String,
    pub(crate) engine: Arc<Engine>,
    steps: Mutex<HashMap<String, StepRecord>>,
    signals: Mutex<HashMap<String, String>>,
    counters: Mutex<HashMap<String, u32>>,
    cancelled: AtomicBool,
    /// The lease this execution holds, when the engine took one.
    lease: Option<Arc<LeaseState>>,
    /// Wakes signal waits and sleeps of this run (a delivered signal, a cancellation, a lost
    /// lease).
    pub(crate) wake: Notify,
    /// A status write started without waiting for it (the run going back to `running` after a
    /// signal): the next status write awaits it first, so status writes stay in order.
    pub(crate) pending_status: Mutex<Option<tokio::task::JoinHandle<Result<bool>>>>,
}

impl RunContext {
    pub(crate) fn new(engine: Arc<Engine>, history: RunHistory, lease: Option<Arc<LeaseState>>) -> Self {
        let steps = history.steps.into_iter().map(|s| (s.step_id.clone(), s)).collect();
        let signals = history.signals.into_iter().map(|s| (s.name, s.payload)).collect();
        RunContext {
            inner: Arc::new(RunState {
                run_id: history.run.run_id,
                engine,
                steps: Mutex::new(steps),
                signals: Mutex::new(signals),
                counters: Mutex::new(HashMap::new()),
                cancelled: AtomicBool::new(false),
                lease,
                wake: Notify::new(),
                pending_status: Mutex::new(None),
            }),
        }
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
        &self.inner.engine.app
    }

    /// Hands out the next step id for `name`: `name`, then `name#1`, `name#2`… Called when a
    /// task call is created, so ids follow the order of calls, not of completion.
    pub fn next_step_id(&self, name: &str) -> String {
        let mut counters = lock(&self.inner.counters);
        let n = counters.entry(name.to_owned()).or_insert(0);
        let id = if *n == 0 { name.to_owned() } else { format!("{name}#{n}") };
        *n += 1;
        id
    }

    /// The record of `step_id`, from the history loaded at start or written since.
    pub fn recorded_step(&self, step_id: &str) -> Option<StepRecord> {
        lock(&self.inner.steps).get(step_id).cloned()
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
        self.inner.engine.store.save_step(&self.inner.run_id, &record).await?;
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

    /// Wakes the run's waits so that they look at their conditions again.
    pub(crate) fn wake(&self) {
        self.inner.wake.notify_waiters();
    }

    /// Calls `f` with this context as the current run (task calls created in it belong to it).
    pub(crate) fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        CURRENT_RUN.sync_scope(self.clone(), f)
    }

    /// Runs `fut` with this context as the current run.
    pub(crate) async fn scope<F: std::future::Future>(self, fut: F) -> F::Output {
        CURRENT_RUN.scope(self, fut).await
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
