//! [`Events`]: an append-only log of events per run (steps, agent text, tool calls, approvals
//! needed, completion), each at a dense offset, that clients read from an offset and follow.
//! Each append keeps only the newest events of its log (rule 27 of docs/design.md): the
//! oldest are dropped, and the offsets of the others do not change.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::store::signals::unsupported;

/// An event to append: the parameter of [`Events::append_events`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NewEvent {
    /// What happened: `step`, `text`, `tool_call`, `approval`, `completed`…
    pub kind: String,
    /// Its JSON data, kept byte for byte.
    pub data: String,
    /// When it happened.
    pub at_ms: i64,
}

impl NewEvent {
    /// An event of `kind` with JSON `data`.
    pub fn new(kind: impl Into<String>, data: impl Into<String>, at_ms: i64) -> Self {
        NewEvent { kind: kind.into(), data: data.into(), at_ms }
    }
}

/// An event as stored, at its offset in its run's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EventRecord {
    /// Its place in the run's log: 0, 1, 2… with no gap and never reused.
    pub offset: u64,
    /// What happened.
    pub kind: String,
    /// Its JSON data.
    pub data: String,
    /// When it happened.
    pub at_ms: i64,
}

impl EventRecord {
    /// An event at `offset`.
    pub fn new(offset: u64, event: NewEvent) -> Self {
        EventRecord { offset, kind: event.kind, data: event.data, at_ms: event.at_ms }
    }
}

/// The event log of each run.
///
/// The defaults fail with [`Error::Invalid`](crate::Error::Invalid) (and `wait_for_events`
/// sleeps): a store without an event log still runs workflows.
#[async_trait]
pub trait Events: Send + Sync {
    /// Appends `events` to `run_id`'s log, in order, at the next offsets, and drops the events
    /// older than the newest `keep` of the log (a `keep` of 0 counts as 1), in one atomic step:
    /// concurrent appends never share or skip an offset, and an offset is never given twice,
    /// however many events were dropped. Returns the offset of the first of `events` (written
    /// or, in a batch longer than `keep`, dropped at once). The run need not exist. Wakes
    /// [`wait_for_events`](Self::wait_for_events) callers.
    async fn append_events(&self, run_id: &str, events: &[NewEvent], keep: u64) -> Result<u64> {
        let _ = (events, keep);
        Err(unsupported("append_events", run_id))
    }

    /// At most `limit` events of `run_id` from offset `from` on, in offset order. When the
    /// events from `from` on were dropped by the retention of
    /// [`append_events`](Self::append_events), the read starts at the oldest event kept: the
    /// first event's offset is then above `from`, which is how readers see the gap.
    async fn read_events(&self, run_id: &str, from: u64, limit: usize) -> Result<Vec<EventRecord>> {
        let _ = (from, limit);
        Err(unsupported("read_events", run_id))
    }

    /// Resolves when events at offset `from` or later *may* exist in `run_id`'s log, or after
    /// at most `max_wait`; readers read after it returns. The default sleeps.
    async fn wait_for_events(&self, run_id: &str, from: u64, max_wait: Duration) {
        let _ = (run_id, from);
        tokio::time::sleep(max_wait).await;
    }
}

#[async_trait]
impl<S: Events + ?Sized> Events for Arc<S> {
    async fn append_events(&self, run_id: &str, events: &[NewEvent], keep: u64) -> Result<u64> {
        (**self).append_events(run_id, events, keep).await
    }
    async fn read_events(&self, run_id: &str, from: u64, limit: usize) -> Result<Vec<EventRecord>> {
        (**self).read_events(run_id, from, limit).await
    }
    async fn wait_for_events(&self, run_id: &str, from: u64, max_wait: Duration) {
        (**self).wait_for_events(run_id, from, max_wait).await
    }
}
