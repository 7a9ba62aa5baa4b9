//! `durably queues` and the dashboard's queue page: the queues found in a store, with what
//! waits in each, what executes and how old the oldest waiting run is. Limits are set by the
//! application's `Queue` definitions, not kept in the store: they are shown for the queues the
//! engine serving them defines (an application embedding the dashboard), and `durably` itself
//! defines none.

use std::io::Write;

use anyhow::Result;
use durably_core::{Queue, Workflow, now_ms};
use durably_server::queues::queue_counts;
use serde::Serialize;

use crate::format;

/// One queue: its counts from the store, and its limits when the engine defines it.
#[derive(Debug, Clone, Serialize)]
pub struct QueueRow {
    /// The queue's name.
    pub queue: String,
    /// Runs enqueued, not yet claimed (the queue's depth).
    pub enqueued: u64,
    /// Runs executing now.
    pub executing: u64,
    /// Parked runs (waiting without a worker).
    pub parked: u64,
    /// When the oldest enqueued run was enqueued.
    pub oldest_enqueued_at_ms: Option<i64>,
    /// The limits, as the engine defines them; `None` when it does not define the queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<String>,
}

/// The limits of `queue` in words: `concurrency 8, per key 2, 60 starts / 1m00s, 4 per worker`,
/// or `none` for a queue without limits.
pub fn limits_text(queue: &Queue) -> String {
    let limits = queue.limits();
    let mut parts = Vec::new();
    if let Some(n) = limits.concurrency {
        parts.push(format!("concurrency {n}"));
    }
    if let Some(n) = limits.per_key {
        parts.push(format!("per key {n}"));
    }
    if let Some(rate) = limits.rate {
        parts.push(format!("{} starts / {}", rate.starts, format::duration_ms(rate.period_ms)));
    }
    if let Some(n) = queue.worker_limit() {
        parts.push(format!("{n} per worker"));
    }
    if parts.is_empty() { "none".to_owned() } else { parts.join(", ") }
}

/// The queues of the store (only `queue`, when given) and those `wf` defines, by name, with
/// their counts (`durably_server::queues::queue_counts`) and, for the ones `wf` defines, their
/// limits.
pub async fn rows(wf: &Workflow, queue: Option<&str>) -> Result<Vec<QueueRow>> {
    let defined = wf.queues();
    let rows = queue_counts(wf, queue).await?.into_iter().map(|c| {
        let limits = defined.iter().find(|q| q.name() == c.queue).map(limits_text);
        QueueRow {
            queue: c.queue,
            enqueued: c.enqueued,
            executing: c.executing,
            parked: c.parked,
            oldest_enqueued_at_ms: c.oldest_enqueued_at_ms,
            limits,
        }
    });
    Ok(rows.collect())
}

/// Writes the queues of the store (only `queue`, when given), as a table or JSON.
pub async fn list(wf: &Workflow, queue: Option<&str>, json: bool, out: &mut dyn Write) -> Result<()> {
    let rows = rows(wf, queue).await?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
    } else if rows.is_empty() {
        writeln!(out, "no queues")?;
    } else {
        let now = now_ms();
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.queue.clone(),
                    r.enqueued.to_string(),
                    r.executing.to_string(),
                    r.parked.to_string(),
                    oldest_text(r, now),
                ]
            })
            .collect();
        write!(
            out,
            "{}",
            format::table(&["QUEUE", "ENQUEUED", "EXECUTING", "PARKED", "OLDEST WAITING"], &table)
        )?;
    }
    Ok(())
}

/// `4s ago`, or `-` when nothing waits.
pub fn oldest_text(row: &QueueRow, now: i64) -> String {
    row.oldest_enqueued_at_ms
        .map_or_else(|| "-".to_owned(), |t| format!("{} ago", format::duration_ms(now - t)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn limits_in_words() {
        assert_eq!(limits_text(&Queue::new("q")), "none");
        let q =
            Queue::new("q").concurrency(8).per_key(2).rate(60, Duration::from_secs(60)).worker_concurrency(4);
        assert_eq!(limits_text(&q), "concurrency 8, per key 2, 60 starts / 1m00s, 4 per worker");
    }
}
