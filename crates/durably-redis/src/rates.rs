//! [`RateLimits`] for [`RedisStore`]: each call is one script (`scripts.rs`), so an acquire's
//! count of the window and its grant are one atomic step on the server. Windows and blocks are
//! on the server's clock, like leases and queue rates; the callers' `now_ms` is ignored.

use std::time::Duration;

use async_trait::async_trait;
use durably_core::store::{RateLimits, duration_ms};
use durably_core::{RateAcquire, RateCost, RateDecision, Result};

use crate::RedisStore;
use crate::error::fail;

/// An optional number as a script takes it: `''` when unset.
fn opt_number(value: Option<impl ToString>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

#[async_trait]
impl RateLimits for RedisStore {
    async fn acquire_rate(&self, acquire: &RateAcquire) -> Result<RateDecision> {
        let op = "acquire_rate";
        acquire.limit.check(&acquire.key, acquire.cost)?;
        let limit = acquire.limit;
        let mut call = self.invoke(&self.scripts.acquire_rate);
        call.arg(&acquire.key).arg(&acquire.grant_id);
        call.arg(opt_number(limit.requests)).arg(opt_number(limit.tokens)).arg(limit.period_ms);
        call.arg(acquire.cost.requests).arg(acquire.cost.tokens);
        let answer: Vec<i64> =
            call.invoke_async(&mut self.conn.clone()).await.map_err(fail(op, None::<&str>))?;
        match answer.as_slice() {
            [1] => Ok(RateDecision::Granted),
            [0, at_ms, now_ms] => Ok(RateDecision::retry_at(*at_ms, *now_ms)),
            other => Err(durably_core::Error::store(
                op,
                None,
                format!("rate limit `{}`: unexpected answer of the script: {other:?}", acquire.key),
            )),
        }
    }

    async fn settle_rate(&self, key: &str, grant_id: &str, actual: RateCost, _now_ms: i64) -> Result<()> {
        let mut call = self.invoke(&self.scripts.settle_rate);
        call.arg(key).arg(grant_id).arg(actual.requests).arg(actual.tokens);
        let _: i64 =
            call.invoke_async(&mut self.conn.clone()).await.map_err(fail("settle_rate", None::<&str>))?;
        Ok(())
    }

    async fn block_rate(&self, key: &str, duration: Duration, _now_ms: i64) -> Result<()> {
        let mut call = self.invoke(&self.scripts.block_rate);
        call.arg(key).arg(duration_ms(duration));
        let _: i64 =
            call.invoke_async(&mut self.conn.clone()).await.map_err(fail("block_rate", None::<&str>))?;
        Ok(())
    }
}
