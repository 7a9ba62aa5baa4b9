//! [`Queues`] for [`RedisStore`]: runs enqueued in named queues, claimed under limits in one
//! script each, and parked without a lease until their signal or timer makes them due.

use std::time::Duration;

use async_trait::async_trait;
use durably_core::store::prelude::*;
use durably_core::{Claim, Error, QueueStats, QueuedRun, Result, RunRecord};

use crate::codec::{check_size, decode_run};
use crate::error::{Context, fail, kind_of};
use crate::{MAX_TTL, RedisStore, decode_runs, opt_arg};

/// The sort prefix of a queued run in its queue's `ready` set: 8 hex digits of the priority,
/// highest first, then 16 of the creation time, oldest first. Compared byte for byte with the
/// run id after it, the members sort as a claim takes them (priority, age, run id).
fn rank(priority: i32, created_at_ms: i64) -> String {
    let priority = !(priority.cast_unsigned() ^ 0x8000_0000);
    let created = created_at_ms.cast_unsigned() ^ (1 << 63);
    format!("{priority:08x}{created:016x}")
}

/// An optional number as a script takes it: `''` when unset.
fn opt_number(value: Option<impl ToString>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

#[async_trait]
impl Queues for RedisStore {
    async fn enqueue(&self, run: &QueuedRun) -> Result<(RunRecord, bool)> {
        let op = "enqueue";
        if let Some(input) = &run.input {
            check_size(op, &run.run_id, || "the run's input".to_owned(), input.len())?;
        }
        let mut call = self.invoke(&self.scripts.enqueue);
        call.arg(&run.run_id).arg(&run.workflow);
        opt_arg(&mut call, run.input.as_deref());
        call.arg(&run.queue).arg(run.priority);
        opt_arg(&mut call, run.key.as_deref());
        opt_arg(&mut call, run.parent_id.as_deref());
        call.arg(rank(run.priority, run.now_ms)).arg(run.now_ms);
        opt_arg(&mut call, run.version.as_deref());
        let (created, flat): (i64, Vec<String>) =
            call.invoke_async(&mut self.conn.clone()).await.map_err(fail(op, run.run_id.as_str()))?;
        Ok((decode_run(&run.run_id, flat)?, created == 1))
    }

    /// Leases and the rate window use the server's clock, as in `acquire_lease`; wake times
    /// of parked runs are compared with `claim.now_ms`.
    async fn claim_runs(&self, claim: &Claim) -> Result<Vec<RunRecord>> {
        if claim.max == 0 {
            return Ok(Vec::new());
        }
        let ttl_ms = claim.ttl.min(MAX_TTL).as_millis().max(1);
        let limits = &claim.limits;
        let mut call = self.invoke(&self.scripts.claim_runs);
        call.arg(&claim.queue).arg(&claim.owner).arg(ttl_ms.to_string()).arg(claim.now_ms);
        call.arg(claim.max.to_string());
        call.arg(opt_number(limits.concurrency)).arg(opt_number(limits.per_key));
        call.arg(opt_number(limits.rate.map(|r| r.starts)));
        call.arg(opt_number(limits.rate.map(|r| r.period_ms)));
        call.arg(claim.version.as_deref().unwrap_or_default());
        let flats: Vec<Vec<String>> = call.invoke_async(&mut self.conn.clone()).await.map_err(|e| {
            let what = format!("queue `{}`", claim.queue);
            Error::store_kind(kind_of(&e), "claim_runs", None, Context::new(what, e))
        })?;
        decode_runs(flats)
    }

    async fn park_run(
        &self,
        run_id: &str,
        owner: &str,
        waiting_on: &str,
        wake_at_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<bool> {
        let mut call = self.invoke(&self.scripts.park_run);
        call.arg(run_id).arg(owner).arg(waiting_on);
        call.arg(opt_number(wake_at_ms)).arg(now_ms);
        match call.invoke_async::<i64>(&mut self.conn.clone()).await.map_err(fail("park_run", run_id))? {
            0 => Err(Error::RunNotFound { run_id: run_id.to_owned() }),
            2 => Ok(false),
            _ => Ok(true),
        }
    }

    /// `executing` counts by the server's clock (live lease keys), like `claim_runs`.
    async fn queue_stats(&self, queue: &str, _now_ms: i64) -> Result<QueueStats> {
        let mut call = self.invoke(&self.scripts.queue_stats);
        call.arg(queue);
        let (enqueued, executing, parked, oldest): (u64, u64, u64, String) =
            call.invoke_async(&mut self.conn.clone()).await.map_err(fail("queue_stats", None))?;
        let mut stats = QueueStats::default();
        stats.enqueued = enqueued;
        stats.executing = executing;
        stats.parked = parked;
        if !oldest.is_empty() {
            let detail = || format!("queue `{queue}`: the oldest enqueued time `{oldest}` is not a time");
            stats.oldest_enqueued_at_ms =
                Some(oldest.parse().map_err(|_| Error::store("queue_stats", None, detail()))?);
        }
        Ok(stats)
    }

    /// Finds the queue indexes with `SCAN` (a queue's index is removed with its last run), a
    /// page at a time, so the server is never blocked for long.
    async fn queue_names(&self) -> Result<Vec<String>> {
        let pattern = self.keys.queue_index_pattern();
        let mut conn = self.conn.clone();
        let mut names = std::collections::BTreeSet::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1_000)
                .query_async(&mut conn)
                .await
                .map_err(fail("queue_names", None))?;
            names.extend(keys.iter().filter_map(|key| self.keys.queue_of_index(key)));
            if next == 0 {
                return Ok(names.into_iter().collect());
            }
            cursor = next;
        }
    }

    /// Subscribes to the channel of each queue, then looks for a candidate or a due timer in
    /// it: an enqueue or an unpark after the look is published on the channel.
    async fn wait_for_work(&self, queues: &[String], max_wait: Duration) {
        if queues.is_empty() {
            tokio::time::sleep(max_wait).await;
            return;
        }
        let waits = queues.iter().map(|queue| {
            let has_work = async move {
                let mut call = self.invoke(&self.scripts.has_work);
                call.arg(durably_core::now_ms()).arg(queue);
                // A failed look counts as work: the claim that follows reports the error.
                call.invoke_async::<i64>(&mut self.conn.clone()).await.map_or(true, |found| found == 1)
            };
            Box::pin(self.wait_on(self.keys.work(queue), has_work, max_wait))
        });
        futures::future::select_all(waits).await;
    }
}

#[cfg(test)]
mod tests {
    use super::rank;

    #[test]
    fn ranks_sort_by_priority_descending_then_creation_time() {
        let mut ranks = [
            (rank(0, 5), "0@5"),
            (rank(-3, -10), "-3@-10"),
            (rank(i32::MAX, i64::MAX), "max@max"),
            (rank(0, -1), "0@-1"),
            (rank(7, 1_000), "7@1000"),
            (rank(i32::MIN, i64::MIN), "min@min"),
        ];
        ranks.sort();
        let order: Vec<&str> = ranks.iter().map(|(_, name)| *name).collect();
        assert_eq!(order, ["max@max", "7@1000", "0@-1", "0@5", "-3@-10", "min@min"]);
        assert!(ranks.iter().all(|(r, _)| r.len() == 24));
    }
}
