//! Waiting inside a run: signals (human approval, webhooks) and durable sleep. Both record what
//! they need to be deterministic on replay: a signal's payload is first-write-wins in the store,
//! a timeout's outcome and a sleep's wake time are step records.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::RunContext;
use crate::error::{Error, Result};
use crate::json::{decode, encode};
use crate::store::{RunStatus, RunUpdate, StepRecord, StepStatus, now_ms};

/// How long one wait on the store lasts before the engine looks again (also bounds how late a
/// cancellation from another process could be noticed, once stores report it).
const MAX_STORE_WAIT: Duration = Duration::from_secs(60);

/// What a parked sleep waits for: a signal nobody delivers, so only its timer wakes it.
pub(crate) const SLEEP_WAIT: &str = "durably.sleep";

/// The prefix of the signals the engine delivers to itself: `durably.done` (a queued run
/// ended, for [`RunHandle::result`](crate::RunHandle::result)), `durably.child:<id>` (a child
/// run's outcome, for its parent), and the wait `durably.sleep`.
pub const INTERNAL_SIGNAL_PREFIX: &str = "durably.";

/// True for a signal name the engine keeps for itself (it starts with
/// [`INTERNAL_SIGNAL_PREFIX`]): [`Workflow::complete`](crate::Workflow::complete) refuses to
/// deliver one, and the HTTP API and the CLI do not list them among a run's signals.
///
/// ```
/// assert!(durably_core::is_internal_signal("durably.child:order-1/ship"));
/// assert!(!durably_core::is_internal_signal("approve:transfer"));
/// ```
pub fn is_internal_signal(name: &str) -> bool {
    name.starts_with(INTERNAL_SIGNAL_PREFIX)
}

fn outside(what: &str) -> Error {
    Error::Invalid { what: "call", detail: format!("`{what}` can only be awaited inside a workflow run") }
}

/// Waits for the signal `name` and returns its payload.
///
/// If it was delivered already (before the wait began, or in an earlier execution of the run),
/// it returns at once; otherwise the run is marked `waiting` until
/// `Workflow::complete(run_id, name, payload)` delivers it, from this process (woken at once) or
/// another one (noticed by the store's wake-up mechanism).
pub async fn signal<T: DeserializeOwned>(name: &str) -> Result<T> {
    let ctx = RunContext::current().ok_or_else(|| outside("durably::signal"))?;
    ctx.signal(name).await
}

/// Like [`signal`], but gives up after `timeout` and returns `None`.
///
/// The deadline is recorded when the wait first begins, so a restarted run waits only for what
/// is left of it; a timeout, once it happened, is recorded too, so every replay returns `None`
/// even if the signal arrives later.
pub async fn signal_timeout<T: DeserializeOwned>(name: &str, timeout: Duration) -> Result<Option<T>> {
    let ctx = RunContext::current().ok_or_else(|| outside("durably::signal_timeout"))?;
    ctx.signal_timeout(name, timeout).await
}

/// Sleeps for `duration`, durably: the wake time is recorded the first time, so a run restarted
/// after a crash waits only for what is left.
pub async fn sleep(duration: Duration) -> Result<()> {
    let ctx = RunContext::current().ok_or_else(|| outside("durably::sleep"))?;
    ctx.sleep(duration).await
}

impl RunContext {
    /// Waits for the signal `name` delivered to this run and returns its payload: see
    /// [`signal`](crate::signal).
    pub async fn signal<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        match wait_signal(self, name, None).await? {
            Some(payload) => decode(self.run_id(), &signal_step(name), "signal payload", Some(&payload)),
            None => Err(Error::Invalid { what: "signal", detail: "wait ended without a payload".into() }),
        }
    }

    /// Like [`signal`](Self::signal), but gives up after `timeout` and returns `None`: see
    /// [`signal_timeout`](crate::signal_timeout).
    pub async fn signal_timeout<T: DeserializeOwned>(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<Option<T>> {
        signal_timeout_in(self, name, timeout).await
    }

    /// Sleeps for `duration`, durably: see [`sleep`](crate::sleep).
    pub async fn sleep(&self, duration: Duration) -> Result<()> {
        sleep_in(self, duration).await
    }
}

async fn signal_timeout_in<T: DeserializeOwned>(
    ctx: &RunContext,
    name: &str,
    timeout: Duration,
) -> Result<Option<T>> {
    let step_name = ctx.scoped(&signal_step(name));
    let step_id = ctx.generate_step_id(&step_name);
    let deadline_ms = match ctx.replay_step(&step_id, &step_name)? {
        Some(rec) if rec.status == StepStatus::Completed => return Ok(None),
        Some(rec) => decode::<i64>(ctx.run_id(), &step_id, "signal deadline", rec.value.as_deref())?,
        None => {
            let deadline = now_ms().saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX));
            let mut rec = StepRecord::new(&step_id, &step_name, StepStatus::Started, now_ms());
            rec.value = Some(deadline.to_string());
            ctx.save_step(rec).await?;
            deadline
        }
    };
    match wait_signal(ctx, name, Some(deadline_ms)).await? {
        Some(payload) => decode(ctx.run_id(), &step_id, "signal payload", Some(&payload)).map(Some),
        None => {
            let mut rec = StepRecord::new(&step_id, &step_name, StepStatus::Completed, now_ms());
            rec.value = Some("null".into());
            ctx.save_step(rec).await?;
            Ok(None)
        }
    }
}

fn signal_step(name: &str) -> String {
    format!("signal:{name}")
}

fn until(deadline_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(deadline_ms.saturating_sub(now_ms())).unwrap_or(0))
}

/// Waits for a delivered payload, or `None` at the deadline.
pub(crate) async fn wait_signal(
    ctx: &RunContext,
    name: &str,
    deadline_ms: Option<i64>,
) -> Result<Option<String>> {
    let run_id = ctx.run_id().to_owned();
    let store = ctx.store().clone();
    let mut marked_waiting = false;
    let mut waiting_since: Option<tokio::time::Instant> = None;
    let result = loop {
        // Register for wake-ups before looking, so a delivery in between is not missed.
        let notified = ctx.inner.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Err(e) = ctx.check_cancelled() {
            break Err(e);
        }
        if let Some(payload) = ctx.known_signal(name) {
            break Ok(Some(payload));
        }
        match store.get_signal(&run_id, name).await {
            Ok(Some(payload)) => {
                ctx.remember_signal(name, payload.clone());
                break Ok(Some(payload));
            }
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        let left = match deadline_ms {
            Some(d) => {
                let left = until(d);
                if left.is_zero() {
                    break Ok(None);
                }
                left
            }
            None => MAX_STORE_WAIT,
        };
        // An execution by a queue worker parks a wait that outlasts its threshold: at once for
        // a deadline further away than that, after that long in memory for an open wait.
        let since = *waiting_since.get_or_insert_with(tokio::time::Instant::now);
        let park_in = ctx.park_after().map(|after| match deadline_ms {
            Some(_) if left > after => Duration::ZERO,
            Some(_) => Duration::MAX,
            None => after.saturating_sub(since.elapsed()),
        });
        if park_in == Some(Duration::ZERO) {
            crate::events::waiting(ctx, name).await;
            break ctx.park(name, deadline_ms).await.map(|()| None);
        }
        if !marked_waiting {
            if let Err(e) = ctx.check_cancelled() {
                break Err(e);
            }
            let update = RunUpdate::new(RunStatus::Waiting, now_ms()).waiting_on(name);
            if let Err(e) = crate::cancel::update_unless_cancelled(ctx, &update).await {
                break Err(e);
            }
            marked_waiting = true;
            crate::events::waiting(ctx, name).await;
            tracing::info!(target: "durably", run_id = %run_id, signal = name, "run waiting on signal");
        }
        let wait = left.min(MAX_STORE_WAIT).min(park_in.unwrap_or(Duration::MAX));
        tokio::select! {
            _ = &mut notified => {}
            _ = store.wait_for_signal(&run_id, name, wait) => {}
        }
    };
    if let Ok(Some(payload)) = &result
        && (marked_waiting || ctx.at_frontier())
    {
        crate::events::signal_received(ctx, name, payload);
    }
    if marked_waiting && !ctx.is_cancelled() && !ctx.lease_lost() {
        // Not awaited: the resumed run goes on after one durable commit (the delivery's), and
        // the next status write of the run waits for this one first.
        crate::cancel::update_unless_cancelled_later(ctx, RunUpdate::new(RunStatus::Running, now_ms()))
            .await?;
    }
    result
}

async fn sleep_in(ctx: &RunContext, duration: Duration) -> Result<()> {
    ctx.check_cancelled()?;
    let step_name = ctx.scoped("sleep");
    let step_id = ctx.generate_step_id(&step_name);
    let wake_ms = match ctx.replay_step(&step_id, &step_name)? {
        Some(rec) => decode::<i64>(ctx.run_id(), &step_id, "sleep wake time", rec.value.as_deref())?,
        None => {
            let wake = now_ms().saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX));
            let mut rec = StepRecord::new(&step_id, &step_name, StepStatus::Completed, now_ms());
            rec.value = Some(wake.to_string());
            ctx.save_step(rec).await?;
            wake
        }
    };
    if ctx.park_after().is_some_and(|after| until(wake_ms) > after) {
        ctx.park(SLEEP_WAIT, Some(wake_ms)).await?;
    }
    ctx.sleep_or_cancel(until(wake_ms)).await
}

/// Serializes a signal payload, naming the run and signal on failure.
pub(crate) fn encode_payload<T: Serialize + ?Sized>(run_id: &str, name: &str, payload: &T) -> Result<String> {
    encode(run_id, &signal_step(name), "signal payload", payload)
}
