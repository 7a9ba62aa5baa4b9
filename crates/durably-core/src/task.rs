//! Tasks: the checkpointed unit of work. A [`TaskCall`] is created by calling a `#[task]`
//! function or [`step`]; its step id is fixed at that moment, and awaiting it either returns the
//! recorded value or runs the body (with retries) and records the result.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::context::{RunContext, StepInfo, warn_if_lost, with_step};
use crate::error::{BoxError, Chain, Error, Result, chain_is_permanent, chain_retry_after};
use crate::json::{decode, encode};
use crate::store::{StepRecord, StepStatus, now_ms};

/// The outcome of one attempt of a task body, as the engine sees it.
#[derive(Debug)]
pub struct TaskFailure {
    pub(crate) error: BoxError,
    pub(crate) retryable: bool,
    /// The wait a [`RetryAfter`](crate::RetryAfter) in the error asks for, replacing the backoff.
    pub(crate) retry_after: Option<std::time::Duration>,
}

impl TaskFailure {
    /// A failed attempt; `retryable` is further cleared when the error is (or wraps)
    /// [`Error::Permanent`].
    pub fn new<E: Into<BoxError>>(error: E, retryable: bool) -> Self {
        let error = error.into();
        let retryable = retryable && !chain_is_permanent(error.as_ref());
        let retry_after = chain_retry_after(error.as_ref());
        TaskFailure { error, retryable, retry_after }
    }
}

/// One attempt of a task body.
pub type AttemptFuture<T> = Pin<Box<dyn Future<Output = Result<T, TaskFailure>> + Send + 'static>>;

type MakeAttempt<T> = Box<dyn FnMut() -> AttemptFuture<T> + Send + 'static>;

/// What a task declares about itself: its name and, when set, its retry policy.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TaskSpec {
    /// The task name: the base of its step ids, and what replay checks.
    pub name: String,
    /// Retries after the first attempt; `None` takes the workflow's default.
    pub retries: Option<u32>,
    /// The wait between attempts; `None` takes the workflow's default.
    pub backoff: Option<Backoff>,
    /// Record the intent before running the body, and never run it twice.
    pub at_most_once: bool,
    /// A canonical hash of what the step sends (an agent's model request); a replay whose
    /// request hashes differently fails with [`Error::NonDeterminism`].
    pub request_hash: Option<String>,
}

impl TaskSpec {
    /// A task named `name`, with the workflow's default retries.
    pub fn new(name: impl Into<String>) -> Self {
        TaskSpec { name: name.into(), retries: None, backoff: None, at_most_once: false, request_hash: None }
    }

    /// Up to `n` retries (`n + 1` attempts).
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = Some(n);
        self
    }

    /// The wait between attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// See [`TaskCall::at_most_once`].
    pub fn at_most_once(mut self, yes: bool) -> Self {
        self.at_most_once = yes;
        self
    }
}

/// A call of a task, not yet awaited. Await it (alone, in `join!`, in `try_join_all`) to get the
/// value; set options first with its builder methods.
///
/// The step id is decided when the call is created: the first call of task `name` in a run is
/// step `name`, later ones `name#1`, `name#2`…, unless [`step_id`](Self::step_id) names it.
#[must_use = "a task call does nothing until it is awaited"]
pub struct TaskCall<T> {
    state: CallState<T>,
}

enum CallState<T> {
    Ready(Box<Pending<T>>),
    Running(Pin<Box<dyn Future<Output = Result<T>> + Send>>),
    Done,
}

struct Pending<T> {
    ctx: Option<RunContext>,
    step_id: String,
    /// Why this call must not run (its explicit id is another call's), reported when awaited.
    refused: Option<Error>,
    spec: TaskSpec,
    make: MakeAttempt<T>,
}

impl<T> std::fmt::Debug for TaskCall<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.state {
            CallState::Ready(p) => f
                .debug_struct("TaskCall")
                .field("step_id", &p.step_id)
                .field("spec", &p.spec)
                .finish_non_exhaustive(),
            CallState::Running(_) => f.write_str("TaskCall(running)"),
            CallState::Done => f.write_str("TaskCall(done)"),
        }
    }
}

impl<T> TaskCall<T>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    pub(crate) fn new(spec: TaskSpec, make: MakeAttempt<T>) -> Self {
        Self::new_in(RunContext::current(), spec, make)
    }

    /// A call belonging to `ctx`'s run and scope (a plain function call when `None`).
    pub(crate) fn new_in(ctx: Option<RunContext>, mut spec: TaskSpec, make: MakeAttempt<T>) -> Self {
        let step_id = match &ctx {
            Some(ctx) => {
                ctx.scope_name(&mut spec.name);
                ctx.generate_step_id(&spec.name)
            }
            None => {
                warn_if_lost(&spec.name);
                spec.name.clone()
            }
        };
        TaskCall { state: CallState::Ready(Box::new(Pending { ctx, step_id, refused: None, spec, make })) }
    }

    fn pending(&mut self) -> Option<&mut Pending<T>> {
        match &mut self.state {
            CallState::Ready(p) => Some(p),
            _ => None,
        }
    }

    /// Names this call's step explicitly, e.g. `format!("item-{i}")` in a loop, so that each
    /// iteration is checkpointed on its own and keeps its id whatever else changes.
    ///
    /// An explicit id that another call of this execution holds as its generated id fails the
    /// call with [`Error::DuplicateStepId`] (the two would share one checkpoint); a generated
    /// id skips ids named explicitly before it.
    pub fn step_id(mut self, id: impl Into<String>) -> Self {
        if let Some(p) = self.pending() {
            // The id held until now: the generated one, or an earlier explicit one (whose claim
            // stays, as two calls naming one id share it on purpose).
            let held = std::mem::replace(&mut p.step_id, id.into());
            if let Some(ctx) = &p.ctx
                && let Err(e) = ctx.claim_explicit(&p.step_id, &p.spec.name, &held)
            {
                p.refused = Some(e);
            }
        }
        self
    }

    /// Up to `n` retries for this call (`n + 1` attempts).
    pub fn retries(mut self, n: u32) -> Self {
        if let Some(p) = self.pending() {
            p.spec.retries = Some(n);
        }
        self
    }

    /// The wait between this call's attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        if let Some(p) = self.pending() {
            p.spec.backoff = Some(backoff);
        }
        self
    }

    /// Records the intent durably before the body runs. If a later execution finds the intent
    /// without a result (a crash mid-body), it fails with [`Error::AmbiguousEffect`] instead of
    /// running the body a second time. Retries after a returned error still happen.
    pub fn at_most_once(mut self) -> Self {
        if let Some(p) = self.pending() {
            p.spec.at_most_once = true;
        }
        self
    }

    /// Records `hash` (a canonical hash of the request this step sends, e.g. a model request)
    /// with the step. Executing the run again with a request that hashes differently under the
    /// same step id fails with [`Error::NonDeterminism`] instead of returning the recorded value
    /// of another request.
    pub fn request_hash(mut self, hash: impl Into<String>) -> Self {
        if let Some(p) = self.pending() {
            p.spec.request_hash = Some(hash.into());
        }
        self
    }

    /// The step id this call will use (the task name outside a run).
    pub fn id(&self) -> Option<&str> {
        match &self.state {
            CallState::Ready(p) => Some(&p.step_id),
            _ => None,
        }
    }
}

impl<T> Future for TaskCall<T>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if matches!(this.state, CallState::Ready(_))
            && let CallState::Ready(p) = std::mem::replace(&mut this.state, CallState::Done)
        {
            let Pending { ctx, step_id, spec, make, refused, .. } = *p;
            if let Some(e) = refused {
                return Poll::Ready(Err(e));
            }
            if let Some(ctx) = &ctx
                && let Some(replayed) = replay_completed(ctx, &step_id, &spec)
            {
                return Poll::Ready(replayed);
            }
            this.state = CallState::Running(match ctx {
                Some(ctx) => Box::pin(run_step(ctx, step_id, spec, make)),
                None => Box::pin(run_plain(step_id, spec, make)),
            });
        }
        match &mut this.state {
            CallState::Running(fut) => {
                let out = fut.as_mut().poll(cx);
                if out.is_ready() {
                    this.state = CallState::Done;
                }
                out
            }
            CallState::Ready(_) | CallState::Done => Poll::Ready(Err(Error::Invalid {
                what: "task call",
                detail: "polled after it completed".into(),
            })),
        }
    }
}

/// A step from a closure, for code that does not use `#[task]`:
///
/// ```no_run
/// # async fn fetch(url: String) -> Result<String, std::io::Error> { Ok(url) }
/// # async fn demo() -> durably_core::Result<()> {
/// let url = "https://example.com".to_string();
/// let body: String = durably_core::step("fetch", move || fetch(url.clone()))
///     .retries(3)
///     .backoff(durably_core::backoff::exponential(2.0, 60.0))
///     .await?;
/// # Ok(()) }
/// ```
///
/// The closure is called once per attempt. Errors are retried unless they are (or wrap)
/// [`Error::Permanent`].
pub fn step<F, Fut, T, E>(name: impl Into<String>, f: F) -> TaskCall<T>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Serialize + DeserializeOwned + Send + 'static,
    E: Into<BoxError> + 'static,
{
    step_in(RunContext::current(), name.into(), f)
}

impl RunContext {
    /// A step of this run (and scope) from a closure: [`step`](crate::step) without the
    /// task-local, so it belongs to this context wherever it is created. The closure is called
    /// once per attempt; set retries, backoff or an explicit id on the returned call.
    pub fn step<F, Fut, T, E>(&self, name: impl Into<String>, f: F) -> TaskCall<T>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Serialize + DeserializeOwned + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        step_in(Some(self.clone()), name.into(), f)
    }
}

/// [`step`] in `ctx`'s run and scope: what [`RunContext::step`] calls.
pub(crate) fn step_in<F, Fut, T, E>(ctx: Option<RunContext>, name: String, mut f: F) -> TaskCall<T>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Serialize + DeserializeOwned + Send + 'static,
    E: Into<BoxError> + 'static,
{
    TaskCall::new_in(
        ctx,
        TaskSpec::new(name),
        Box::new(move || {
            let fut = f();
            Box::pin(async move { fut.await.map_err(|e| TaskFailure::new(e, true)) })
        }),
    )
}

/// Outside a run a task is a plain async function: one attempt, no store.
async fn run_plain<T>(step_id: String, spec: TaskSpec, mut make: MakeAttempt<T>) -> Result<T> {
    make().await.map_err(|f| Error::Task {
        run_id: String::new(),
        step_id,
        name: spec.name,
        attempts: 1,
        source: f.error,
    })
}

/// The fast path of replay: the value of a step recorded as completed by the same task (and,
/// when both have one, the same request hash), decoded straight from the history without
/// starting the step's future. `None` sends the call down the whole path of
/// [`execute_step`], which also reports every mismatch.
fn replay_completed<T: DeserializeOwned>(
    ctx: &RunContext,
    step_id: &str,
    spec: &TaskSpec,
) -> Option<Result<T>> {
    if let Err(e) = ctx.check_cancelled() {
        return Some(Err(e));
    }
    ctx.with_recorded_step(step_id, |rec| {
        let rec = rec?;
        let same_request = match (&rec.request_hash, &spec.request_hash) {
            (Some(recorded), Some(called)) => recorded == called,
            _ => true,
        };
        if rec.status != StepStatus::Completed || rec.name != spec.name || !same_request {
            return None;
        }
        let span = tracing::info_span!(
            "durably.step",
            durably.run_id = %ctx.run_id(),
            durably.step_id = %step_id,
            durably.task = %spec.name,
            durably.replayed = true,
        );
        let _entered = span.enter();
        tracing::debug!(target: "durably", "step replayed");
        Some(decode(ctx.run_id(), step_id, "step value", rec.value.as_deref()))
    })
}

async fn run_step<T>(ctx: RunContext, step_id: String, spec: TaskSpec, make: MakeAttempt<T>) -> Result<T>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    let span = tracing::info_span!(
        "durably.step",
        durably.run_id = %ctx.run_id(),
        durably.step_id = %step_id,
        durably.task = %spec.name,
        durably.replayed = tracing::field::Empty,
        durably.attempt = tracing::field::Empty,
    );
    execute_step(ctx, step_id, spec, make).instrument(span).await
}

async fn execute_step<T>(
    ctx: RunContext,
    step_id: String,
    spec: TaskSpec,
    mut make: MakeAttempt<T>,
) -> Result<T>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    ctx.check_cancelled()?;
    let run_id = ctx.run_id().to_owned();
    if let Some(rec) = ctx.replay_step(&step_id, &spec.name)? {
        if let (Some(recorded), Some(called)) = (&rec.request_hash, &spec.request_hash)
            && recorded != called
            && rec.status == StepStatus::Completed
        {
            tracing::warn!(target: "durably", "recorded request differs from the one sent now");
            return Err(Error::NonDeterminism {
                run_id,
                step_id,
                recorded: format!("{} with request {recorded}", rec.name),
                called: format!("{} with request {called}", spec.name),
            });
        }
        match rec.status {
            StepStatus::Completed => {
                let value = decode(&run_id, &step_id, "step value", rec.value.as_deref())?;
                tracing::Span::current().record("durably.replayed", true);
                tracing::debug!(target: "durably", "step replayed");
                return Ok(value);
            }
            StepStatus::Started if spec.at_most_once => {
                tracing::warn!(target: "durably", "at-most-once step found started without a result");
                return Err(Error::AmbiguousEffect { run_id, step_id });
            }
            // A failed step is not cached; a started record of a task that is no longer
            // at-most-once carries no promise: run the body.
            _ => {}
        }
    }
    tracing::Span::current().record("durably.replayed", false);

    let defaults = ctx.inner.env.retry;
    let retries = spec.retries.unwrap_or(defaults.retries);
    let backoff = spec.backoff.unwrap_or(defaults.backoff);
    let started = now_ms();
    if spec.at_most_once {
        let mut intent = StepRecord::new(&step_id, &spec.name, StepStatus::Started, started);
        intent.attempts = 0;
        intent.request_hash.clone_from(&spec.request_hash);
        ctx.save_step(intent).await?;
    }

    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        tracing::Span::current().record("durably.attempt", attempt);
        let info = StepInfo { run_id: run_id.clone(), step_id: step_id.clone(), attempt };
        match with_step(info, make()).await {
            Ok(value) => {
                let json = encode(&run_id, &step_id, "step value", &value)?;
                let mut rec = StepRecord::new(&step_id, &spec.name, StepStatus::Completed, now_ms());
                rec.value = Some(json);
                rec.attempts = attempt;
                rec.request_hash.clone_from(&spec.request_hash);
                rec.started_at_ms = started;
                ctx.save_step(rec).await?;
                tracing::debug!(target: "durably", attempts = attempt, "step executed");
                return Ok(value);
            }
            Err(failure) => {
                let last = !failure.retryable || attempt > retries;
                if last {
                    let text = Chain(failure.error.as_ref()).to_string();
                    tracing::warn!(target: "durably", attempts = attempt, error = %text, "step failed");
                    let mut rec = StepRecord::new(&step_id, &spec.name, StepStatus::Failed, now_ms());
                    rec.error = Some(text);
                    rec.attempts = attempt;
                    rec.request_hash.clone_from(&spec.request_hash);
                    rec.started_at_ms = started;
                    // An at-most-once step that returned an error has no ambiguous effect; record
                    // the failure so that the next execution may run it again.
                    if let Err(store_err) = ctx.save_step(rec).await {
                        tracing::warn!(target: "durably", error = %store_err, "could not record the step failure");
                    }
                    return Err(Error::Task {
                        run_id,
                        step_id,
                        name: spec.name,
                        attempts: attempt,
                        source: failure.error,
                    });
                }
                // A provider's `retry-after` replaces the backoff (rule 4 of docs/design.md).
                let wait = failure.retry_after.unwrap_or_else(|| backoff.delay(attempt));
                tracing::info!(
                    target: "durably",
                    attempt,
                    wait_ms = wait.as_millis() as u64,
                    error = %Chain(failure.error.as_ref()),
                    "step attempt failed; retrying"
                );
                ctx.sleep_or_cancel(wait).await?;
            }
        }
    }
}
