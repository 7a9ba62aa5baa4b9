//! [`Events`] for [`RedisStore`]: each run's event log is a list whose indexes are the offsets,
//! appended to in one script and followed through pub/sub.

use std::time::Duration;

use async_trait::async_trait;
use durably_core::store::prelude::*;
use durably_core::{EventRecord, NewEvent, Result};

use crate::RedisStore;
use crate::codec::{check_size, decode_event, encode_event};
use crate::error::fail;

#[async_trait]
impl Events for RedisStore {
    async fn append_events(&self, run_id: &str, events: &[NewEvent]) -> Result<u64> {
        let op = "append_events";
        let mut call = self.invoke(&self.scripts.append_events);
        call.arg(run_id);
        for (i, event) in events.iter().enumerate() {
            let text = encode_event(event);
            check_size(op, run_id, || format!("event {i} of the batch (`{}`)", event.kind), text.len())?;
            call.arg(text);
        }
        let first: u64 = call.invoke_async(&mut self.conn.clone()).await.map_err(fail(op, run_id))?;
        Ok(first)
    }

    async fn read_events(&self, run_id: &str, from: u64, limit: usize) -> Result<Vec<EventRecord>> {
        // Offsets past what a Redis list can index (2^63) hold nothing.
        let Ok(start) = i64::try_from(from) else { return Ok(Vec::new()) };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let stop = start.saturating_add(i64::try_from(limit).unwrap_or(i64::MAX) - 1);
        let texts: Vec<String> = redis::cmd("LRANGE")
            .arg(self.keys.events(run_id))
            .arg(start)
            .arg(stop)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(fail("read_events", run_id))?;
        texts.iter().zip(from..).map(|(text, offset)| decode_event(run_id, offset, text)).collect()
    }

    /// Subscribes to the run's events channel, then looks at the log's length: an append after
    /// the look is published on the channel.
    async fn wait_for_events(&self, run_id: &str, from: u64, max_wait: Duration) {
        let appended = async {
            let len = redis::cmd("LLEN")
                .arg(self.keys.events(run_id))
                .query_async::<u64>(&mut self.conn.clone())
                .await;
            // A failed look counts as events: the read that follows reports the error.
            len.map_or(true, |len| len > from)
        };
        self.wait_on(self.keys.appended(run_id), appended, max_wait).await;
    }
}
