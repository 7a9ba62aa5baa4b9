//! [`Events`] for [`RedisStore`]: each run's event log is a list of the events it keeps, whose
//! first element is at the offset kept in `events-from` (0 until events were dropped), appended
//! to and trimmed in one script and followed through pub/sub.

use std::time::Duration;

use async_trait::async_trait;
use durably_core::store::prelude::*;
use durably_core::{EventRecord, NewEvent, Result};

use crate::RedisStore;
use crate::codec::{check_size, decode_event, encode_event};
use crate::error::fail;

/// Offsets and counts handed to the scripts stay below 2^53, where Lua's numbers are exact; no
/// log gets anywhere near it.
const LUA_EXACT: u64 = 1 << 53;

#[async_trait]
impl Events for RedisStore {
    async fn append_events(&self, run_id: &str, events: &[NewEvent], keep: u64) -> Result<u64> {
        let op = "append_events";
        let mut call = self.invoke(&self.scripts.append_events);
        call.arg(run_id).arg(keep.clamp(1, LUA_EXACT));
        for (i, event) in events.iter().enumerate() {
            let text = encode_event(event);
            check_size(op, run_id, || format!("event {i} of the batch (`{}`)", event.kind), text.len())?;
            call.arg(text);
        }
        let first: u64 = call.invoke_async(&mut self.conn.clone()).await.map_err(fail(op, run_id))?;
        Ok(first)
    }

    /// One script reads where the list starts and the events from there, so that a concurrent
    /// append dropping old events cannot shift the offsets between the two.
    async fn read_events(&self, run_id: &str, from: u64, limit: usize) -> Result<Vec<EventRecord>> {
        if limit == 0 || from >= LUA_EXACT {
            return Ok(Vec::new());
        }
        // A page, not a whole log: bounded well inside what Lua counts exactly.
        let limit = u64::try_from(limit).unwrap_or(u64::MAX).min(1 << 30);
        let (first, texts): (u64, Vec<String>) = self
            .invoke(&self.scripts.read_events)
            .arg(run_id)
            .arg(from)
            .arg(limit)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(fail("read_events", run_id))?;
        texts.iter().zip(first..).map(|(text, offset)| decode_event(run_id, offset, text)).collect()
    }

    /// Subscribes to the run's events channel, then looks at where the log ends: an append
    /// after the look is published on the channel.
    async fn wait_for_events(&self, run_id: &str, from: u64, max_wait: Duration) {
        let appended = async {
            let end = self
                .invoke(&self.scripts.events_end)
                .arg(run_id)
                .invoke_async::<u64>(&mut self.conn.clone())
                .await;
            // A failed look counts as events: the read that follows reports the error.
            end.map_or(true, |end| end > from)
        };
        self.wait_on(self.keys.appended(run_id), appended, max_wait).await;
    }
}
