//! `durably queues`: the queues found in a store, with what waits in each, what executes and
//! how old the oldest waiting run is. Limits are set by the application's `Queue`
//! definitions, not kept in the store, so they are not shown here.

use std::collections::BTreeSet;
use std::io::Write;

use anyhow::Result;
use durably_core::{RunFilter, Workflow, now_ms};
use serde::Serialize;

use crate::format;

/// One row of `durably queues`.
#[derive(Debug, Serialize)]
struct QueueRow {
    queue: String,
    enqueued: u64,
    executing: u64,
    parked: u64,
    oldest_enqueued_at_ms: Option<i64>,
}

/// Writes the queues of the store (only `queue`, when given), as a table or JSON.
pub async fn list(wf: &Workflow, queue: Option<&str>, json: bool, out: &mut dyn Write) -> Result<()> {
    let names: BTreeSet<String> = match queue {
        Some(name) => BTreeSet::from([name.to_owned()]),
        None => wf.list_runs(&RunFilter::new()).await?.into_iter().filter_map(|r| r.queue).collect(),
    };
    let mut rows = Vec::with_capacity(names.len());
    for name in names {
        let stats = wf.queue_stats(&name).await?;
        rows.push(QueueRow {
            queue: name,
            enqueued: stats.enqueued,
            executing: stats.executing,
            parked: stats.parked,
            oldest_enqueued_at_ms: stats.oldest_enqueued_at_ms,
        });
    }
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
                    r.oldest_enqueued_at_ms
                        .map_or_else(|| "-".to_owned(), |t| format!("{} ago", format::duration_ms(now - t))),
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
