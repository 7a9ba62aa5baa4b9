//! `/api/queues`: each queue's depth, what executes, what is parked, how old the oldest waiting
//! run is, and the limits of the queues the serving engine defines.

use axum::extract::{Query, State};
use durably_core::Queue;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, ApiState};
use crate::queues::{QueueCounts, queue_counts};

/// Filters of `GET /api/queues`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct QueuesQuery {
    /// Only this queue.
    queue: Option<String>,
}

/// A queue's limits, as the serving engine defines them.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct LimitsView {
    /// Runs executing at once over every worker.
    concurrency: Option<u32>,
    /// Runs executing at once per concurrency key.
    per_key: Option<u32>,
    /// Claims allowed per `rate_period_ms`.
    rate_starts: Option<u32>,
    /// The window of `rate_starts`, in milliseconds.
    rate_period_ms: Option<i64>,
    /// Runs executing at once per worker.
    per_worker: Option<u32>,
}

impl From<&Queue> for LimitsView {
    fn from(q: &Queue) -> Self {
        let limits = q.limits();
        LimitsView {
            concurrency: limits.concurrency,
            per_key: limits.per_key,
            rate_starts: limits.rate.map(|r| r.starts),
            rate_period_ms: limits.rate.map(|r| r.period_ms),
            per_worker: q.worker_limit(),
        }
    }
}

/// A queue as listed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct QueueView {
    /// The queue's name.
    queue: String,
    /// Runs enqueued, not yet claimed (the queue's depth).
    enqueued: u64,
    /// Runs executing now.
    executing: u64,
    /// Parked runs (waiting without a worker).
    parked: u64,
    /// When the oldest enqueued run was enqueued, in milliseconds since the Unix epoch.
    oldest_enqueued_at_ms: Option<i64>,
    /// The limits, when the serving engine defines the queue.
    limits: Option<LimitsView>,
}

/// The queues of the store.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct QueueList {
    /// By name.
    queues: Vec<QueueView>,
}

#[utoipa::path(
    get, path = "/api/queues", tag = "queues", params(QueuesQuery),
    responses((status = 200, description = "The queues, by name", body = QueueList))
)]
/// Lists the queues of the store, and those the serving engine defines, with their counts.
pub(crate) async fn list_queues(
    State(api): State<ApiState>,
    Query(q): Query<QueuesQuery>,
) -> Result<axum::Json<QueueList>, ApiError> {
    let defined = api.wf.queues();
    let only = q.queue.as_deref().filter(|name| !name.is_empty());
    let queues = queue_counts(&api.wf, only)
        .await?
        .into_iter()
        .map(|c: QueueCounts| QueueView {
            limits: defined.iter().find(|d| d.name() == c.queue).map(LimitsView::from),
            queue: c.queue,
            enqueued: c.enqueued,
            executing: c.executing,
            parked: c.parked,
            oldest_enqueued_at_ms: c.oldest_enqueued_at_ms,
        })
        .collect();
    Ok(axum::Json(QueueList { queues }))
}
