//! [`RateLimits`] for [`PostgresStore`]: each acquire and settle is one transaction that first
//! locks its key's row in `rate_keys`, so the acquires of one key follow one another across
//! every process, and the log they read cannot change before they commit; other keys do not
//! wait. Times are by the server's clock, read after the lock, as for leases and queue rates:
//! workers whose clocks disagree still agree on when a window ends.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Object;
use durably_core::store::{LoggedGrant, RateLimits, decide, duration_ms};
use durably_core::{RateAcquire, RateCost, RateDecision, Result};

use crate::PostgresStore;
use crate::error::Fail;
use crate::sql::SERVER_CLOCK_MS;

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl RateLimits for PostgresStore {
    /// The caller's `now_ms` is ignored: the server's clock decides.
    async fn acquire_rate(&self, acquire: &RateAcquire) -> Result<RateDecision> {
        acquire.limit.check(&acquire.key, acquire.cost)?;
        let mut client = self.pool.get().await.map_err(|e| Fail::Pool(e).into_error("acquire_rate", None))?;
        let outcome = self.acquire_in(&mut client, acquire).await;
        outcome.map_err(|fail| lost(client, fail, "acquire_rate"))
    }

    /// The caller's `now_ms` is ignored: the server's clock decides.
    async fn settle_rate(&self, key: &str, grant_id: &str, actual: RateCost, _now_ms: i64) -> Result<()> {
        let mut client = self.pool.get().await.map_err(|e| Fail::Pool(e).into_error("settle_rate", None))?;
        let outcome = self.settle_in(&mut client, key, grant_id, actual).await;
        outcome.map_err(|fail| lost(client, fail, "settle_rate"))
    }

    /// One statement, which takes the key row's lock itself; the block's end is by the
    /// server's clock (the caller's `now_ms` is ignored).
    async fn block_rate(&self, key: &str, duration: Duration, _now_ms: i64) -> Result<()> {
        let sql = &self.statements.block_rate;
        on_connection!(self, "block_rate", None::<&str>, |client| async {
            let stmt = client.prepare_cached(sql).await?;
            client.execute(&stmt, &[&key, &duration_ms(duration)]).await?;
            Ok(())
        })
    }
}

/// The error of a failed call; a connection that was lost does not go back into the pool.
fn lost(client: Object, fail: Fail, op: &'static str) -> durably_core::Error {
    if fail.is_connection_lost() {
        drop(Object::take(client));
    }
    fail.into_error(op, None)
}

impl PostgresStore {
    /// Locks `key`'s row (creating it first if needed) inside `tx`, and returns the end of its
    /// block and the server's time after the lock.
    async fn lock_rate_key(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        key: &str,
    ) -> Result<(i64, i64), Fail> {
        let st = &self.statements;
        let create = tx.prepare_cached(&st.create_rate_key).await?;
        tx.execute(&create, &[&key]).await?;
        let lock = tx.prepare_cached(&st.lock_rate_key).await?;
        let blocked: i64 = tx.query_one(&lock, &[&key]).await?.try_get(0)?;
        let clock = tx.prepare_cached(SERVER_CLOCK_MS).await?;
        let now: i64 = tx.query_one(&clock, &[]).await?.try_get(0)?;
        Ok((blocked, now))
    }

    async fn acquire_in(&self, client: &mut Object, acquire: &RateAcquire) -> Result<RateDecision, Fail> {
        let st = &self.statements;
        let key = acquire.key.as_str();
        let tx = client.transaction().await?;
        let (blocked, now) = self.lock_rate_key(&tx, key).await?;
        let exists = tx.prepare_cached(&st.grant_exists).await?;
        if tx.query_opt(&exists, &[&key, &acquire.grant_id]).await?.is_some() {
            tx.commit().await?;
            return Ok(RateDecision::Granted);
        }
        let prune = tx.prepare_cached(&st.prune_grants).await?;
        tx.execute(&prune, &[&key, &now.saturating_sub(acquire.limit.period_ms)]).await?;
        let read = tx.prepare_cached(&st.rate_log).await?;
        let log = tx
            .query(&read, &[&key])
            .await?
            .iter()
            .map(|row| {
                Ok(LoggedGrant {
                    at_ms: row.try_get(0)?,
                    requests: u64::try_from(row.try_get::<_, i64>(1)?).unwrap_or(0),
                    tokens: u64::try_from(row.try_get::<_, i64>(2)?).unwrap_or(0),
                })
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
        let decision = decide(&acquire.limit, acquire.cost, &log, blocked, now);
        if decision == RateDecision::Granted {
            let put = tx.prepare_cached(&st.put_grant).await?;
            let cost = acquire.cost;
            tx.execute(
                &put,
                &[&key, &acquire.grant_id, &now, &i64::from(cost.requests), &clamp(cost.tokens)],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(decision)
    }

    async fn settle_in(
        &self,
        client: &mut Object,
        key: &str,
        grant_id: &str,
        actual: RateCost,
    ) -> Result<(), Fail> {
        let tx = client.transaction().await?;
        let (_, now) = self.lock_rate_key(&tx, key).await?;
        let put = tx.prepare_cached(&self.statements.put_grant).await?;
        let at = now.saturating_add(1);
        tx.execute(&put, &[&key, &grant_id, &at, &i64::from(actual.requests), &clamp(actual.tokens)]).await?;
        tx.commit().await?;
        Ok(())
    }
}
