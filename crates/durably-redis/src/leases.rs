//! [`Leases`] for [`RedisStore`]: leases on the server's clock, cancellations, recovery.

use std::time::Duration;

use async_trait::async_trait;
use durably_core::store::prelude::*;
use durably_core::{Error, Lease, LeaseOutcome, Result, RunRecord, RunUpdate};

use crate::error::fail;
use crate::{BATCH, MAX_TTL, RedisStore, decode_runs};

#[async_trait]
impl Leases for RedisStore {
    async fn acquire_lease(
        &self,
        run_id: &str,
        owner: &str,
        ttl: Duration,
        _now_ms: i64,
    ) -> Result<LeaseOutcome> {
        let ttl_ms = ttl.min(MAX_TTL).as_millis().max(1);
        let mut call = self.invoke(&self.scripts.acquire_lease);
        call.arg(run_id).arg(owner).arg(ttl_ms.to_string());
        let reply: Vec<String> =
            call.invoke_async(&mut self.conn.clone()).await.map_err(fail("acquire_lease", run_id))?;
        match reply.as_slice() {
            [granted] if granted == "1" => Ok(LeaseOutcome::Acquired),
            [_, holder, expires] => {
                let expires_at_ms = expires.parse().map_err(|_| Error::Corrupt {
                    run_id: run_id.to_owned(),
                    step_id: None,
                    detail: format!("the lease's expiry `{expires}` is not a time in milliseconds"),
                })?;
                Ok(LeaseOutcome::HeldBy(Lease::new(holder.clone(), expires_at_ms)))
            }
            other => Err(Error::Corrupt {
                run_id: run_id.to_owned(),
                step_id: None,
                detail: format!("unexpected reply from the lease script: {other:?}"),
            }),
        }
    }
    async fn release_lease(&self, run_id: &str, owner: &str) -> Result<()> {
        let mut call = self.invoke(&self.scripts.release_lease);
        call.arg(run_id).arg(owner);
        let _: i64 =
            call.invoke_async(&mut self.conn.clone()).await.map_err(fail("release_lease", run_id))?;
        Ok(())
    }
    /// One script call per 1,000 leases, extending only `owner`'s, by the server's clock
    /// (`now_ms` is ignored, as in `acquire_lease`).
    async fn renew_leases(
        &self,
        run_ids: &[String],
        owner: &str,
        ttl: Duration,
        _now_ms: i64,
    ) -> Result<Vec<(String, Option<String>)>> {
        let ttl_ms = ttl.min(MAX_TTL).as_millis().max(1).to_string();
        let mut lost = Vec::new();
        for chunk in run_ids.chunks(BATCH) {
            let mut call = self.invoke(&self.scripts.renew_leases);
            call.arg(owner).arg(&ttl_ms).arg(chunk);
            let reply: Vec<String> =
                call.invoke_async(&mut self.conn.clone()).await.map_err(fail("renew_leases", None))?;
            for found in reply.chunks(3) {
                match found {
                    [run_id, held, holder] => {
                        lost.push((run_id.clone(), (held == "1").then(|| holder.clone())));
                    }
                    other => {
                        return Err(Error::Corrupt {
                            run_id: other.first().cloned().unwrap_or_default(),
                            step_id: None,
                            detail: format!("unexpected reply from the lease renewal script: {other:?}"),
                        });
                    }
                }
            }
        }
        Ok(lost)
    }
    /// One script call per 1,000 ids.
    async fn cancelled_runs(&self, run_ids: &[String]) -> Result<Vec<String>> {
        let mut cancelled = Vec::new();
        for chunk in run_ids.chunks(BATCH) {
            let mut call = self.invoke(&self.scripts.cancelled_runs);
            call.arg(chunk);
            let found: Vec<String> =
                call.invoke_async(&mut self.conn.clone()).await.map_err(fail("cancelled_runs", None))?;
            cancelled.extend(found);
        }
        Ok(cancelled)
    }
    async fn recoverable_runs(&self, _now_ms: i64, limit: usize) -> Result<Vec<RunRecord>> {
        let mut call = self.invoke(&self.scripts.recoverable_runs);
        call.arg(limit.to_string());
        let flats: Vec<Vec<String>> =
            call.invoke_async(&mut self.conn.clone()).await.map_err(fail("recoverable_runs", None))?;
        decode_runs(flats)
    }
    async fn update_run_unless_cancelled(&self, run_id: &str, update: &RunUpdate) -> Result<bool> {
        self.update(run_id, update, true).await
    }
}
