//! [`Signals`] for [`PostgresStore`]: delivery, and waits woken by LISTEN/NOTIFY.

use std::time::Duration;

use async_trait::async_trait;
use durably_core::store::prelude::*;
use durably_core::{Error, Result, SignalRecord};
use tokio_postgres::types::ToSql;

use crate::sql::decode_signal;
use crate::{POLL_WHILE_DISCONNECTED, PostgresStore};

#[async_trait]
impl Signals for PostgresStore {
    async fn deliver_signal(&self, run_id: &str, signal: &SignalRecord) -> Result<bool> {
        let sql = &self.statements.deliver_signal;
        // Not retried: if the connection died after the insert committed, a second attempt
        // would report the delivery as a duplicate.
        let rows = on_connection!(self, "deliver_signal", Some(run_id), |client| async {
            let stmt = client.prepare_cached(sql).await?;
            let params: [&(dyn ToSql + Sync); 6] = [
                &run_id,
                &signal.name,
                &signal.payload,
                &signal.delivered_at_ms,
                &self.channel,
                &self.work_channel,
            ];
            Ok(client.query(&stmt, &params).await?)
        })?;
        Ok(!rows.is_empty())
    }
    async fn get_signal(&self, run_id: &str, name: &str) -> Result<Option<String>> {
        let sql = &self.statements.get_signal;
        let row = on_connection!(self, "get_signal", Some(run_id), |client| async {
            let stmt = client.prepare_cached(sql).await?;
            Ok(client.query_opt(&stmt, &[&run_id, &name]).await?)
        })?;
        row.map(|row| {
            row.try_get(0).map_err(|e| Error::Corrupt {
                run_id: run_id.to_owned(),
                step_id: None,
                detail: format!("payload of signal `{name}`: {e}"),
            })
        })
        .transpose()
    }
    async fn list_signals(&self, run_id: &str) -> Result<Vec<SignalRecord>> {
        let sql = &self.statements.list_signals;
        let rows = on_connection!(self, "list_signals", Some(run_id), |client| async {
            let stmt = client.prepare_cached(sql).await?;
            Ok(client.query(&stmt, &[&run_id]).await?)
        })?;
        rows.iter().map(|row| decode_signal(row, run_id)).collect()
    }
    async fn wait_for_signal(&self, run_id: &str, name: &str, max_wait: Duration) {
        let waiting = self.waiters.registry.register(run_id.to_owned());
        let wait = if self.waiters.is_connected() { max_wait } else { max_wait.min(POLL_WHILE_DISCONNECTED) };
        // Delivered already, or the store failed: the engine's own look will tell.
        let look = async { !matches!(self.get_signal(run_id, name).await, Ok(None)) };
        waiting.wait_unless(look, wait).await;
    }
}
