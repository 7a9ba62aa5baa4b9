//! The queues of a store, with what waits in each, what executes and how old the oldest waiting
//! run is: what `GET /api/queues`, `durably queues` and the dashboard's queue page show.

use std::collections::BTreeSet;

use durably_core::{Result, Workflow};

/// One queue's counts, as the store keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueCounts {
    /// The queue's name.
    pub queue: String,
    /// Runs enqueued, not yet claimed (the queue's depth).
    pub enqueued: u64,
    /// Runs executing now.
    pub executing: u64,
    /// Parked runs (waiting without a worker).
    pub parked: u64,
    /// When the oldest enqueued run was enqueued, in milliseconds since the Unix epoch.
    pub oldest_enqueued_at_ms: Option<i64>,
}

/// The queues of `wf`'s store that hold a run, and those `wf` defines (only `queue`, when
/// given), by name, with their counts (`Workflow::queue_stats`).
pub async fn queue_counts(wf: &Workflow, queue: Option<&str>) -> Result<Vec<QueueCounts>> {
    let names: BTreeSet<String> = match queue {
        Some(name) => BTreeSet::from([name.to_owned()]),
        None => wf
            .queue_names()
            .await?
            .into_iter()
            .chain(wf.queues().iter().map(|q| q.name().to_owned()))
            .collect(),
    };
    let mut rows = Vec::with_capacity(names.len());
    for name in names {
        let stats = wf.queue_stats(&name).await?;
        rows.push(QueueCounts {
            queue: name,
            enqueued: stats.enqueued,
            executing: stats.executing,
            parked: stats.parked,
            oldest_enqueued_at_ms: stats.oldest_enqueued_at_ms,
        });
    }
    Ok(rows)
}
