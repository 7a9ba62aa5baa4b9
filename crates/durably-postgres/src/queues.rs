//! [`Queues`] for [`PostgresStore`]: enqueueing, claims made atomic per queue, parked runs, and
//! waits for work woken by LISTEN/NOTIFY.
//!
//! A claim is one transaction that first takes a transaction-scoped advisory lock on the hash
//! of the schema and queue: claims of one queue run one after the other, across every process,
//! so the counts they read (executing runs, per-key counts, claims in the rate window) cannot
//! change under them before they commit. Claims of different queues do not wait for each
//! other. Times are by the server's clock, read once after the lock, as leases are: workers
//! whose clocks disagree still agree on when a lease lapses or a rate window ends.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Object;
use durably_core::store::prelude::*;
use durably_core::{Claim, Error, QueueStats, QueuedRun, Result, RunRecord};
use tokio_postgres::types::ToSql;

use crate::error::Fail;
use crate::sql::decode_run_from;
use crate::{POLL_WHILE_DISCONNECTED, PostgresStore};

#[async_trait]
impl Queues for PostgresStore {
    async fn enqueue(&self, run: &QueuedRun) -> Result<(RunRecord, bool)> {
        let run_id = run.run_id.as_str();
        let sql = &self.statements.enqueue;
        // A run created by a concurrent transaction may be invisible to the statement's
        // snapshot (see `Statements::enqueue`): the next attempt sees it.
        for _ in 0..3 {
            let row = on_connection!(self, "enqueue", Some(run_id), |client| async {
                let stmt = client.prepare_cached(sql).await?;
                let params: [&(dyn ToSql + Sync); 10] = [
                    &run.run_id,
                    &run.workflow,
                    &run.input,
                    &run.now_ms,
                    &run.queue,
                    &run.priority,
                    &run.key,
                    &run.parent_id,
                    &self.work_channel,
                    &run.version,
                ];
                Ok(client.query_opt(&stmt, &params).await?)
            })?;
            if let Some(row) = row {
                let created: bool = row.try_get(0).map_err(|e| corrupt(run_id, e))?;
                return Ok((decode_run_from(&row, 1, run_id)?, created));
            }
        }
        Err(Error::store("enqueue", Some(run_id), "the run was neither created nor found; try again"))
    }

    /// One transaction under the queue's advisory lock (see the module docs). The caller's
    /// `now_ms` is ignored: the server's clock decides, as for `acquire_lease`.
    async fn claim_runs(&self, claim: &Claim) -> Result<Vec<RunRecord>> {
        if claim.max == 0 {
            return Ok(Vec::new());
        }
        let mut client = self.pool.get().await.map_err(|e| Fail::Pool(e).into_error("claim_runs", None))?;
        let outcome = self.claim_in(&mut client, claim).await;
        outcome.map_err(|fail| {
            if fail.is_connection_lost() {
                // Not back into the pool: the next call gets a fresh connection.
                drop(Object::take(client));
            }
            fail.into_error("claim_runs", None)
        })
    }

    /// Locks the run's row, then parks it in a second statement, in one transaction: a
    /// delivery to the run either committed before the lock (and the second statement sees
    /// the signal) or waits for the park to commit (and unparks it); see
    /// `Statements::deliver_signal`.
    async fn park_run(
        &self,
        run_id: &str,
        owner: &str,
        waiting_on: &str,
        wake_at_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<bool> {
        let mut client =
            self.pool.get().await.map_err(|e| Fail::Pool(e).into_error("park_run", Some(run_id)))?;
        let wake_at = wake_at_ms.unwrap_or(i64::MAX);
        let outcome = async {
            let tx = client.transaction().await?;
            let lock = tx.prepare_cached(&self.statements.lock_run).await?;
            let Some(row) = tx.query_opt(&lock, &[&run_id]).await? else {
                return Err(Fail::Store(Error::RunNotFound { run_id: run_id.to_owned() }));
            };
            let status: String = row.try_get(0)?;
            if status == "cancelled" {
                return Ok(false);
            }
            let park = tx.prepare_cached(&self.statements.park_run).await?;
            let params: [&(dyn ToSql + Sync); 6] =
                [&run_id, &waiting_on, &wake_at, &now_ms, &owner, &self.work_channel];
            tx.query_one(&park, &params).await?;
            tx.commit().await?;
            Ok(true)
        }
        .await;
        outcome.map_err(|fail| {
            if fail.is_connection_lost() {
                drop(Object::take(client));
            }
            fail.into_error("park_run", Some(run_id))
        })
    }

    /// Counts by the server's clock (`now_ms` is ignored), as leases are kept.
    async fn queue_stats(&self, queue: &str, _now_ms: i64) -> Result<QueueStats> {
        let sql = &self.statements.queue_stats;
        let row = on_connection!(self, "queue_stats", None::<&str>, |client| async {
            let stmt = client.prepare_cached(sql).await?;
            Ok(client.query_one(&stmt, &[&queue]).await?)
        })?;
        let hint = format!("(queue `{queue}`)");
        let count = |idx: usize| -> Result<u64> {
            let n: i64 = row.try_get(idx).map_err(|e| corrupt(&hint, e))?;
            u64::try_from(n).map_err(|_| Error::Corrupt {
                run_id: hint.clone(),
                step_id: None,
                detail: format!("a count of {n}"),
            })
        };
        let mut stats = QueueStats::default();
        stats.executing = count(0)?;
        stats.enqueued = count(1)?;
        stats.parked = count(2)?;
        stats.oldest_enqueued_at_ms = row.try_get(3).map_err(|e| corrupt(&hint, e))?;
        Ok(stats)
    }

    async fn queue_names(&self) -> Result<Vec<String>> {
        let sql = &self.statements.queue_names;
        let rows = on_connection!(self, "queue_names", None::<&str>, |client| async {
            let stmt = client.prepare_cached(sql).await?;
            Ok(client.query(&stmt, &[]).await?)
        })?;
        let mut names = rows
            .iter()
            .map(|row| row.try_get::<_, String>(0).map_err(|e| corrupt("(a queue)", e)))
            .collect::<Result<Vec<_>>>()?;
        // In byte order, whatever the database's collation.
        names.sort_unstable();
        Ok(names)
    }

    /// Returns when a notification names one of `queues` (a run enqueued, a parked run's
    /// signal delivered, by any process), or a look finds a runnable run, or after `max_wait`
    /// (at most half a second while the listener reconnects).
    async fn wait_for_work(&self, queues: &[String], max_wait: Duration) {
        if queues.is_empty() {
            tokio::time::sleep(max_wait).await;
            return;
        }
        let waiting: Vec<_> = queues.iter().map(|queue| self.waiters.work.register(queue.clone())).collect();
        let wait = if self.waiters.is_connected() { max_wait } else { max_wait.min(POLL_WHILE_DISCONNECTED) };
        let look = || async {
            // Work already, or the store failed: the worker's claim will tell.
            !matches!(self.runnable_queues(queues).await, Ok(found) if found.is_empty())
        };
        // The last wait looks: `select_all` polls the waits in order, so every wake-up is armed
        // before the look, and work made runnable after the look wakes one of them.
        let last = waiting.len() - 1;
        let waits = waiting
            .iter()
            .enumerate()
            .map(|(i, w)| Box::pin(w.wait_unless(async move { i == last && look().await }, wait)));
        futures::future::select_all(waits).await;
    }
}

impl PostgresStore {
    /// The claim's transaction (see the module docs), in six round trips: `BEGIN`; the lock
    /// and the clock; the rate window and the executing runs, pipelined; the candidates; the
    /// writes (leases, runs, claim times) in one statement; `COMMIT`.
    async fn claim_in(&self, client: &mut Object, claim: &Claim) -> Result<Vec<RunRecord>, Fail> {
        let st = &self.statements;
        let queue = claim.queue.as_str();
        let limits = claim.limits;
        let tx = client.transaction().await?;
        let lock = tx.prepare_cached(&st.lock_queue).await?;
        let key = format!("durably-postgres:{}:queue:{queue}", self.schema);
        let now: i64 = tx.query_one(&lock, &[&key]).await?.try_get(0)?;

        // Both counts in one round trip (tokio-postgres pipelines queries sent together).
        let cut_off = limits.rate.map_or(i64::MAX, |rate| now.saturating_sub(rate.period_ms));
        let window = tx.prepare_cached(&st.claims_in_window).await?;
        let count_executing = tx.prepare_cached(&st.count_executing).await?;
        let recent = async { tx.query_one(&window, &[&queue, &cut_off]).await?.try_get::<_, i64>(0) };
        let executing = async {
            match limits.concurrency {
                Some(_) => {
                    tx.query_one(&count_executing, &[&queue, &now]).await?.try_get::<_, i64>(0).map(Some)
                }
                None => Ok(None),
            }
        };
        let (recent, executing) = futures::future::try_join(recent, executing).await?;

        let mut allowed = i64::try_from(claim.max).unwrap_or(i64::MAX);
        if let Some(rate) = limits.rate {
            allowed = allowed.min(i64::from(rate.starts).saturating_sub(recent));
        }
        if let (Some(concurrency), Some(executing)) = (limits.concurrency, executing) {
            allowed = allowed.min(i64::from(concurrency).saturating_sub(executing));
        }
        if allowed <= 0 {
            tx.commit().await?;
            return Ok(Vec::new());
        }

        let per_key = limits.per_key.map(i64::from);
        let candidates = match per_key {
            Some(_) => tx.prepare_cached(&st.claim_candidates).await?,
            None => tx.prepare_cached(&st.claim_candidates_in_order).await?,
        };
        let chosen: Vec<String> = tx
            .query(&candidates, &[&queue, &now, &per_key, &allowed, &claim.version])
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;
        if chosen.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let expires_at_ms = now.saturating_add(i64::try_from(claim.ttl.as_millis()).unwrap_or(i64::MAX));
        let write = tx.prepare_cached(&st.claim).await?;
        let rated = limits.rate.is_some();
        let params: [&(dyn ToSql + Sync); 7] =
            [&chosen, &claim.owner, &expires_at_ms, &now, &queue, &rated, &claim.version];
        let rows = tx.query(&write, &params).await?;
        let mut claimed = Vec::with_capacity(rows.len());
        let mut unclaimed: Vec<String> = Vec::new();
        for row in &rows {
            if row.try_get::<_, bool>(0)? {
                claimed.push(decode_run_from(row, 1, "(claimed run)").map_err(Fail::Store)?);
            } else {
                // Leased, but no longer runnable when its row was re-checked: give the lease back.
                unclaimed.push(row.try_get(1)?);
            }
        }
        if !unclaimed.is_empty() {
            let release = tx.prepare_cached(&st.release_unclaimed).await?;
            tx.execute(&release, &[&unclaimed, &claim.owner]).await?;
        }
        tx.commit().await?;
        // In claim order, which `RETURNING` does not keep.
        claimed.sort_by_key(|run| chosen.iter().position(|id| *id == run.run_id));
        Ok(claimed)
    }

    /// The queues among `queues` with a runnable run, by the server's clock.
    async fn runnable_queues(&self, queues: &[String]) -> Result<Vec<String>> {
        let sql = &self.statements.runnable_queues;
        let rows = on_connection!(self, "wait_for_work", None::<&str>, |client| async {
            let stmt = client.prepare_cached(sql).await?;
            Ok(client.query(&stmt, &[&queues]).await?)
        })?;
        rows.iter().map(|row| row.try_get(0).map_err(|e| corrupt("(a queue)", e))).collect()
    }
}

fn corrupt(what: &str, e: tokio_postgres::Error) -> Error {
    Error::Corrupt { run_id: what.to_owned(), step_id: None, detail: format!("{e}") }
}
