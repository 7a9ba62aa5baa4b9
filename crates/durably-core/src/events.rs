//! What a run writes to its store's event log ([`Events`](crate::Events)), and how clients
//! follow it ([`Workflow::events`]).
//!
//! The executor of a run keeps a buffer of events. A step's checkpoint takes the buffer, with
//! the step's own event, to the store in the same write where the store can
//! ([`Journal::save_step_with_events`](crate::store::Journal::save_step_with_events): SQLite
//! and PostgreSQL write both, or neither, in one commit), and as a second request in flight
//! beside it elsewhere, so events cost no extra round trip per step. On a store of the second
//! kind, a process that dies between the two may leave a step without its event, or (when
//! the step then executes again) with two. A wait for a
//! signal flushes the buffer before it waits, and the run's final status is written only after
//! its event landed; events in between (an agent's text chunks) are flushed after
//! [`FLUSH_AFTER`] or once [`FLUSH_AT`] of them are buffered, so a streamed answer costs a few
//! appends, not one per chunk. Replayed steps emit nothing. A store that refuses events (the
//! default of [`Events`](crate::Events)) is logged once and the run goes on without them.
//!
//! Each append keeps the newest
//! [`max_events_per_run`](crate::WorkflowBuilder::max_events_per_run) events of the log (rule
//! 27 of docs/design.md); a follower behind the oldest one kept gets [`Error::EventsTrimmed`]
//! once, then the rest.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::BoxStream;
use serde_json::{Value, json};

use crate::context::RunContext;
use crate::error::{Error, Result};
use crate::store::{EventRecord, NewEvent, RunStatus, RunUpdate, StepRecord, StepStatus, Store, now_ms};
use crate::sync::lock;
use crate::workflow::Workflow;

/// How long an event waits in the buffer at most before it is appended.
pub const FLUSH_AFTER: Duration = Duration::from_millis(20);
/// How many buffered events are appended at once without waiting for [`FLUSH_AFTER`].
pub const FLUSH_AT: usize = 64;
/// How many events each run's log keeps unless
/// [`WorkflowBuilder::max_events_per_run`](crate::WorkflowBuilder::max_events_per_run) says
/// otherwise: enough for a long agent run's streamed text, bounded so that one run cannot fill
/// the store.
pub const DEFAULT_MAX_EVENTS_PER_RUN: u64 = 10_000;
/// How many events a follower reads from the store at once: its memory bound.
pub const EVENT_PAGE: usize = 256;
/// How long a follower waits for new events before it looks at the run's status again.
const FOLLOW_WAIT: Duration = Duration::from_secs(5);
/// How long a follower that read a final event waits before it looks for its status again.
const FINAL_STATUS_WAIT: Duration = Duration::from_millis(20);
/// Events an executor keeps while its store fails transiently; older ones are dropped.
const MAX_BUFFERED: usize = 10_000;

/// The event kinds that end a run's log (until the run is executed again).
pub const FINAL_KINDS: [&str; 3] = ["completed", "failed", "cancelled"];

/// Set once a store refused events: logged once per process.
static REFUSED_LOGGED: AtomicBool = AtomicBool::new(false);

/// The event buffer of one execution of a run.
#[derive(Default)]
pub(crate) struct RunEvents {
    buffer: Mutex<Vec<NewEvent>>,
    /// Held from taking the buffer until its append answered, so batches land in order.
    flushing: tokio::sync::Mutex<()>,
    /// A timed flush is scheduled.
    armed: AtomicBool,
    /// The store refused an append: this execution writes no events.
    off: AtomicBool,
}

/// Buffers an event of this run; appended with the next checkpoint, or within
/// [`FLUSH_AFTER`], or at once when [`FLUSH_AT`] are buffered.
pub(crate) fn push(ctx: &RunContext, kind: &str, data: Value) {
    let Some(len) = buffer(ctx, kind, data.to_string()) else { return };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    let events = &ctx.inner.events;
    if len >= FLUSH_AT {
        let ctx = ctx.clone();
        runtime.spawn(async move { flush(&ctx).await });
    } else if !events.armed.swap(true, Ordering::SeqCst) {
        let ctx = ctx.clone();
        runtime.spawn(async move {
            tokio::time::sleep(FLUSH_AFTER).await;
            ctx.inner.events.armed.store(false, Ordering::SeqCst);
            flush(&ctx).await;
        });
    }
}

/// Adds an event (its data already JSON text) to the buffer without scheduling a flush;
/// returns how many are buffered, or `None` when this execution writes no events.
fn buffer(ctx: &RunContext, kind: &str, data: String) -> Option<usize> {
    let events = &ctx.inner.events;
    if events.off.load(Ordering::Relaxed) {
        return None;
    }
    let mut buffer = lock(&events.buffer);
    if buffer.len() >= MAX_BUFFERED {
        buffer.remove(0);
    }
    buffer.push(NewEvent::new(kind, data, now_ms()));
    Some(buffer.len())
}

/// Appends the buffered events of this run. A failure is logged; the events stay buffered for
/// the next flush unless the store refuses events altogether. An execution that lost its lease
/// writes nothing more.
pub(crate) async fn flush(ctx: &RunContext) {
    let events = &ctx.inner.events;
    let _order = events.flushing.lock().await;
    if events.off.load(Ordering::Relaxed) || ctx.lease_lost() {
        return;
    }
    let batch = std::mem::take(&mut *lock(&events.buffer));
    if batch.is_empty() {
        return;
    }
    let keep = ctx.inner.env.max_events_per_run;
    match ctx.store().append_events(ctx.run_id(), &batch, keep).await {
        Ok(_) => {}
        Err(e @ Error::Invalid { .. }) => {
            events.off.store(true, Ordering::Relaxed);
            if !REFUSED_LOGGED.swap(true, Ordering::Relaxed) {
                tracing::info!(target: "durably", error = %e, "the store keeps no event log; runs go on without events");
            }
        }
        Err(e) => {
            tracing::warn!(target: "durably", run_id = %ctx.run_id(), error = %e, "could not append the run's events; trying again with the next ones");
            restore(events, batch);
        }
    }
}

/// Puts a batch that was not appended back in front of what was buffered since.
fn restore(events: &RunEvents, batch: Vec<NewEvent>) {
    let mut buffer = lock(&events.buffer);
    let later = std::mem::replace(&mut *buffer, batch);
    buffer.extend(later);
}

/// Saves the checkpoint `step` with the buffered events (its own event among them): in one
/// store write where the store can ([`Journal::save_step_with_events`]), else the two calls
/// at once. A failure is the checkpoint's; its events stay buffered.
///
/// [`Journal::save_step_with_events`]: crate::store::Journal::save_step_with_events
pub(crate) async fn save_step_with_events(ctx: &RunContext, step: &StepRecord) -> Result<()> {
    let store = &ctx.inner.env.store;
    let written = with_buffered(ctx, false, async |batch, keep| {
        store.save_step_with_events(ctx.run_id(), step, batch, keep).await
    })
    .await;
    if let Some(result) = written {
        return result;
    }
    let (saved, ()) = tokio::join!(store.save_step(ctx.run_id(), step), flush(ctx));
    saved
}

/// Hands the buffered events and the engine's retention to `write`, a store call that writes
/// them with something else in one atomic write, holding the buffer's order meanwhile. `None`
/// when events are off or none is buffered (unless `even_without`: then `write` gets no
/// events), or the store wrote neither; the events stay buffered unless the write succeeded.
async fn with_buffered<T>(
    ctx: &RunContext,
    even_without: bool,
    write: impl AsyncFnOnce(&[NewEvent], u64) -> Option<Result<T>>,
) -> Option<Result<T>> {
    let events = &ctx.inner.events;
    if events.off.load(Ordering::Relaxed) {
        return if even_without { write(&[], ctx.inner.env.max_events_per_run).await } else { None };
    }
    let _order = events.flushing.lock().await;
    let batch = std::mem::take(&mut *lock(&events.buffer));
    if batch.is_empty() && !even_without {
        return None;
    }
    let together = write(&batch, ctx.inner.env.max_events_per_run).await;
    if !together.as_ref().is_some_and(Result::is_ok) {
        restore(events, batch);
    }
    together
}

/// `started` or `resumed` (with how many steps were recorded before), when an execution begins.
pub(crate) fn run_started(ctx: &RunContext, recorded_steps: usize) {
    if recorded_steps == 0 {
        push(ctx, "started", json!({ "run_id": ctx.run_id() }));
    } else {
        push(ctx, "resumed", json!({ "run_id": ctx.run_id(), "recorded_steps": recorded_steps }));
    }
}

/// The data of a `step` event, serialized straight from the record (keys in the order a JSON
/// object of `serde_json` would have them).
#[derive(serde::Serialize)]
struct StepEvent<'a> {
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    name: &'a str,
    status: &'static str,
    step_id: &'a str,
}

/// Buffers the event of a checkpoint about to be written (a completed or failed step; an
/// intent has none); [`RunContext::save_step`] appends the buffer alongside the checkpoint.
pub(crate) fn step_event(ctx: &RunContext, record: &StepRecord) {
    let status = match record.status {
        StepStatus::Completed => "completed",
        StepStatus::Failed => "failed",
        _ => return,
    };
    if ctx.inner.events.off.load(Ordering::Relaxed) {
        return;
    }
    let data = StepEvent {
        attempts: record.attempts,
        error: record.error.as_deref(),
        name: &record.name,
        status,
        step_id: &record.step_id,
    };
    match serde_json::to_string(&data) {
        Ok(data) => {
            buffer(ctx, "step", data);
        }
        Err(e) => {
            tracing::warn!(target: "durably", run_id = %ctx.run_id(), error = %e, "could not encode a step event")
        }
    }
}

/// The run waits for signal `name`: flushed before the wait.
pub(crate) async fn waiting(ctx: &RunContext, name: &str) {
    push(ctx, "waiting", json!({ "signal": name }));
    flush(ctx).await;
}

/// Signal `name` was received by the run.
pub(crate) fn signal_received(ctx: &RunContext, name: &str, payload: &str) {
    let payload = serde_json::from_str::<Value>(payload).unwrap_or(Value::Null);
    push(ctx, "signal", json!({ "signal": name, "payload": payload }));
}

/// Writes the status `update` unless the run was cancelled, after every buffered event (a
/// final status, `completed` or `failed`, gets its event first): in one store write where the
/// store can ([`Leases::update_run_unless_cancelled_with_events`]), else the events, then the
/// status. Whether the update applied.
///
/// With `release` (the owner of the execution's lease, for a final status), the store may
/// release the lease in the same write ([`Leases::end_run`]); the run's lease state then says
/// so, and the engine does not release it again.
///
/// [`Leases::update_run_unless_cancelled_with_events`]: crate::store::Leases::update_run_unless_cancelled_with_events
/// [`Leases::end_run`]: crate::store::Leases::end_run
pub(crate) async fn update_status(
    ctx: &RunContext,
    update: &RunUpdate,
    release: Option<&str>,
) -> Result<bool> {
    let json_or_null = |text: &Option<String>| {
        text.as_deref().and_then(|t| serde_json::from_str::<Value>(t).ok()).unwrap_or(Value::Null)
    };
    match update.status {
        RunStatus::Completed => push(ctx, "completed", json!({ "output": json_or_null(&update.output) })),
        RunStatus::Failed => push(ctx, "failed", json!({ "error": update.error })),
        _ => {}
    }
    let store = &ctx.inner.env.store;
    if let Some(owner) = release
        && !ctx.lease_lost()
    {
        let written = with_buffered(ctx, true, async |batch, keep| {
            store.end_run(ctx.run_id(), update, batch, keep, owner).await
        })
        .await;
        if let Some(result) = written {
            if let Some(lease) = ctx.lease_state() {
                lease.mark_released();
            }
            return result;
        }
    }
    if !ctx.lease_lost() {
        let written = with_buffered(ctx, false, async |batch, keep| {
            store.update_run_unless_cancelled_with_events(ctx.run_id(), update, batch, keep).await
        })
        .await;
        if let Some(result) = written {
            return result;
        }
    }
    flush(ctx).await;
    store.update_run_unless_cancelled(ctx.run_id(), update).await
}

/// The run was cancelled (its status was written by whoever cancelled it).
pub(crate) async fn cancelled(ctx: &RunContext) {
    push(ctx, "cancelled", json!({}));
    flush(ctx).await;
}

/// The event log of one run, from an offset: see [`Workflow::events`].
#[derive(Clone)]
#[must_use]
pub struct EventFeed {
    store: Arc<dyn Store>,
    run_id: String,
}

impl std::fmt::Debug for EventFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventFeed").field("run_id", &self.run_id).finish_non_exhaustive()
    }
}

impl Workflow {
    /// The event log of run `run_id`: `wf.events(id).from(0)` is a stream of its stored events,
    /// then of new ones as they are appended, ending after the run's final event.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> durably_core::Result<()> {
    /// use futures::TryStreamExt;
    /// let wf = durably_core::Workflow::builder("app").build();
    /// wf.run("run-1", |ctx| async move { ctx.step("greet", || async { Ok::<_, std::io::Error>(1) }).await }).await?;
    /// let kinds: Vec<String> = wf.events("run-1").from(0).map_ok(|e| e.kind).try_collect().await?;
    /// assert_eq!(kinds, ["started", "step", "completed"]);
    /// # Ok(()) }
    /// ```
    pub fn events(&self, run_id: &str) -> EventFeed {
        EventFeed { store: self.store().clone(), run_id: run_id.to_owned() }
    }
}

struct Follow {
    feed: EventFeed,
    next: u64,
    page: VecDeque<EventRecord>,
    last_kind: Option<String>,
    waited_for_last: bool,
    done: bool,
}

impl EventFeed {
    /// The run's events from `offset` on (0 is the first): the stored ones, read
    /// [`EVENT_PAGE`] at a time as the stream is polled, then new ones as they are appended.
    /// The stream ends once the run is completed, failed or cancelled and every event before
    /// that status was read; a run executed again later appends after it, readable from the
    /// next offset. An offset past the end waits for events to reach it. A run that does not
    /// exist yields [`Error::RunNotFound`], and a store failure its error, each as the last
    /// item.
    ///
    /// Events the log's retention limit dropped
    /// ([`WorkflowBuilder::max_events_per_run`](crate::WorkflowBuilder::max_events_per_run))
    /// are not skipped in silence: the stream yields [`Error::EventsTrimmed`] (the run, the
    /// offset asked for, the oldest offset kept) and then goes on from the oldest event kept,
    /// as a lagging `tokio::sync::broadcast` receiver does.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> durably_core::Result<()> {
    /// use futures::StreamExt;
    /// let wf = durably_core::Workflow::builder("app").max_events_per_run(2).build();
    /// wf.run("run-1", |ctx| async move { ctx.step("greet", || async { Ok::<_, std::io::Error>(1) }).await }).await?;
    /// let items: Vec<_> = wf.events("run-1").from(0).collect().await;
    /// assert!(matches!(items[0], Err(durably_core::Error::EventsTrimmed { first_kept: 1, .. })));
    /// let kinds: Vec<&str> = items[1..].iter().flatten().map(|e| e.kind.as_str()).collect();
    /// assert_eq!(kinds, ["step", "completed"]);
    /// # Ok(()) }
    /// ```
    pub fn from(self, offset: u64) -> BoxStream<'static, Result<EventRecord>> {
        let state = Follow {
            feed: self,
            next: offset,
            page: VecDeque::new(),
            last_kind: None,
            waited_for_last: false,
            done: false,
        };
        Box::pin(futures::stream::unfold(state, |mut s| async move {
            if s.done {
                return None;
            }
            match s.advance().await {
                Ok(Some(event)) => Some((Ok(event), s)),
                Ok(None) => None,
                // A gap is told, then the stream goes on from the oldest event kept.
                Err(e @ Error::EventsTrimmed { .. }) => Some((Err(e), s)),
                Err(e) => {
                    s.done = true;
                    Some((Err(e), s))
                }
            }
        }))
    }
}

impl Follow {
    async fn read(&mut self) -> Result<bool> {
        let store = &self.feed.store;
        let page = store.read_events(&self.feed.run_id, self.next, EVENT_PAGE).await?;
        self.page.extend(page);
        Ok(!self.page.is_empty())
    }

    async fn advance(&mut self) -> Result<Option<EventRecord>> {
        loop {
            if let Some(event) = self.page.pop_front() {
                if event.offset > self.next {
                    // The store reads from the oldest event it keeps: the ones between were
                    // dropped by the log's retention limit.
                    let gap = Error::EventsTrimmed {
                        run_id: self.feed.run_id.clone(),
                        from: self.next,
                        first_kept: event.offset,
                    };
                    self.next = event.offset;
                    self.page.push_front(event);
                    return Err(gap);
                }
                self.next = event.offset + 1;
                self.last_kind = Some(event.kind.clone());
                return Ok(Some(event));
            }
            if self.read().await? {
                continue;
            }
            // Events are appended before the final status is written: a final status read
            // before an empty page means the log is complete.
            let run_id = self.feed.run_id.clone();
            let Some(run) = self.feed.store.get_run(&run_id).await? else {
                return Err(Error::RunNotFound { run_id });
            };
            let ended = matches!(run.status, RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled);
            if ended && self.read().await? {
                continue;
            }
            let final_seen = self.last_kind.as_deref().is_some_and(|k| FINAL_KINDS.contains(&k));
            if ended && (final_seen || self.waited_for_last || run.status != RunStatus::Cancelled) {
                return Ok(None);
            }
            if ended {
                // A run cancelled from elsewhere gets its event from its executor after the
                // status: give that one a moment.
                self.waited_for_last = true;
                self.feed.store.wait_for_events(&run_id, self.next, crate::cancel::CANCEL_POLL).await;
            } else {
                // After a final event its status follows at once: look again soon.
                let wait = if final_seen { FINAL_STATUS_WAIT } else { FOLLOW_WAIT };
                self.feed.store.wait_for_events(&run_id, self.next, wait).await;
            }
        }
    }
}

impl RunContext {
    /// Adds an event of `kind` with JSON `data` to this run's log (see
    /// [`Workflow::events`]): buffered, and appended with the next checkpoint or within
    /// [`FLUSH_AFTER`]. For integrations (an agent's text chunks, tool calls): emit only what
    /// this execution does, not what it replays, so that a resumed run does not repeat events.
    pub fn event(&self, kind: &str, data: Value) {
        push(self, kind, data);
    }
}
