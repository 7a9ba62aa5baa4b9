//! [`Events`] for [`PostgresStore`]: each run's log, appended at dense offsets, and waits woken
//! by LISTEN/NOTIFY.

use std::time::Duration;

use async_trait::async_trait;
use durably_core::store::prelude::*;
use durably_core::{Error, EventRecord, NewEvent, Result};
use tokio_postgres::types::ToSql;

use crate::sql::decode_event;
use crate::{POLL_WHILE_DISCONNECTED, PostgresStore};

#[async_trait]
impl Events for PostgresStore {
    /// One statement: the log's head row is advanced (its row lock serializes concurrent
    /// appends to one run) and the events written at the offsets it gave up. Not retried after
    /// a lost connection: the append may have committed, and a second one would duplicate it.
    async fn append_events(&self, run_id: &str, events: &[NewEvent]) -> Result<u64> {
        let sql = &self.statements.append_events;
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
        let at: Vec<i64> = events.iter().map(|e| e.at_ms).collect();
        let row = on_connection!(self, "append_events", Some(run_id), |client| async {
            let stmt = client.prepare_cached(sql).await?;
            let params: [&(dyn ToSql + Sync); 5] = [&run_id, &kinds, &data, &at, &self.events_channel];
            Ok(client.query_one(&stmt, &params).await?)
        })?;
        let first: i64 = row.try_get(0).map_err(|e| Error::Corrupt {
            run_id: run_id.to_owned(),
            step_id: None,
            detail: format!("event head: {e}"),
        })?;
        u64::try_from(first).map_err(|_| Error::Corrupt {
            run_id: run_id.to_owned(),
            step_id: None,
            detail: format!("event offset {first} is negative"),
        })
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
