//! [`Events`] for [`PostgresStore`]: each run's log, appended at dense offsets, and waits woken
//! by LISTEN/NOTIFY.

use std::time::Duration;

use async_trait::async_trait;
use durably_core::store::prelude::*;
use durably_core::{EventRecord, NewEvent, Result};

use crate::sql::decode_event;
use crate::{POLL_WHILE_DISCONNECTED, PostgresStore};

#[async_trait]
impl Events for PostgresStore {
    /// Written with the checkpoints and appends of concurrent runs, one statement per batch
    /// (see `batch.rs`): the log's head row is advanced (its row lock serializes concurrent
    /// appends to one run), the events written at the offsets it gave up and the ones beyond
    /// the newest `keep` deleted. Not retried after a lost connection: the append may have
    /// committed, and a second one would duplicate it.
    async fn append_events(&self, run_id: &str, events: &[NewEvent], keep: u64) -> Result<u64> {
        self.batcher.append_events(run_id, events, keep).await
    }

    async fn read_events(&self, run_id: &str, from: u64, limit: usize) -> Result<Vec<EventRecord>> {
        // Offsets are `bigint`s: none is beyond `i64::MAX`.
        let Ok(from) = i64::try_from(from) else { return Ok(Vec::new()) };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = &self.statements.read_events;
        let rows = on_connection!(self, "read_events", Some(run_id), |client| async {
            let stmt = client.prepare_cached(sql).await?;
            Ok(client.query(&stmt, &[&run_id, &from, &limit]).await?)
        })?;
        rows.iter().map(|row| decode_event(row, run_id)).collect()
    }

    async fn wait_for_events(&self, run_id: &str, from: u64, max_wait: Duration) {
        let waiting = self.waiters.events.register(run_id.to_owned());
        let wait = if self.waiters.is_connected() { max_wait } else { max_wait.min(POLL_WHILE_DISCONNECTED) };
        // Appended already, or the store failed: the reader's own read will tell.
        let look =
            async { !matches!(self.read_events(run_id, from, 1).await, Ok(events) if events.is_empty()) };
        waiting.wait_unless(look, wait).await;
    }
}
