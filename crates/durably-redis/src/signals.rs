//! [`Signals`] for [`RedisStore`]: delivery, and waits woken by pub/sub.

use std::time::Duration;

use async_trait::async_trait;
use durably_core::store::prelude::*;
use durably_core::{Error, Result, SignalRecord};

use crate::RedisStore;
use crate::codec::{check_size, decode_signal, encode_signal, sort_signals};
use crate::error::{Context, fail};

#[async_trait]
impl Signals for RedisStore {
    async fn deliver_signal(&self, run_id: &str, signal: &SignalRecord) -> Result<bool> {
        let op = "deliver_signal";
        check_size(
            op,
            run_id,
            || format!("the payload of signal `{}`", signal.name),
            signal.payload.len() + 21,
        )?;
        let mut call = self.invoke(&self.scripts.deliver_signal);
        call.arg(run_id).arg(&signal.name).arg(encode_signal(signal)).arg(signal.delivered_at_ms);
        let delivered: i64 = call.invoke_async(&mut self.conn.clone()).await.map_err(|e| {
            Error::store(op, Some(run_id), Context::new(format!("signal `{}`", signal.name), e))
        })?;
        Ok(delivered == 1)
    }
    async fn get_signal(&self, run_id: &str, name: &str) -> Result<Option<String>> {
        let value: Option<String> = redis::cmd("HGET")
            .arg(self.keys.signals(run_id))
            .arg(name)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(fail("get_signal", run_id))?;
        value.map(|v| decode_signal(run_id, name.to_owned(), &v).map(|s| s.payload)).transpose()
    }
    async fn list_signals(&self, run_id: &str) -> Result<Vec<SignalRecord>> {
        let fields: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(self.keys.signals(run_id))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(fail("list_signals", run_id))?;
        let mut signals = fields
            .into_iter()
            .map(|(name, value)| decode_signal(run_id, name, &value))
            .collect::<Result<Vec<_>>>()?;
        sort_signals(&mut signals);
        Ok(signals)
    }
    async fn wait_for_signal(&self, run_id: &str, name: &str, max_wait: Duration) {
        // Delivered already, or the store failed: the engine's own look will tell.
        let delivered = async { !matches!(self.get_signal(run_id, name).await, Ok(None)) };
        self.wait_on(self.keys.wake(run_id), delivered, max_wait).await;
    }
}
