//! Starting runs: the two places the API makes a run execute.
//!
//! A new run is enqueued (rule 22 of docs/design.md): a queue worker of any process
//! sharing the store executes it, and a start of the same run id changes nothing. A fork
//! exists already when it is to run, so it cannot be enqueued: it executes in this process
//! through the engine's registry, and a recovery worker resumes it if this process dies.

use durably_core::{Result, Workflow};
use serde_json::Value;

/// Enqueues run `run_id` of the registered workflow `workflow` with `input` in `queue`.
pub(crate) async fn start_run(
    wf: &Workflow,
    queue: &str,
    workflow: &str,
    run_id: &str,
    input: &Value,
) -> Result<()> {
    wf.enqueue(queue, workflow, run_id, input).await.map(drop)
}

/// Executes the existing run `run_id` of the registered workflow `workflow` in this process,
/// without waiting for it to finish.
pub(crate) fn execute_here(wf: &Workflow, workflow: &str, run_id: &str, input: Value) {
    let (wf, workflow, run_id) = (wf.clone(), workflow.to_owned(), run_id.to_owned());
    tokio::spawn(async move {
        match wf.start::<Value, Value>(&workflow, run_id.clone(), &input).await {
            Ok(_) => tracing::info!(run_id = %run_id, workflow = %workflow, "forked run completed"),
            Err(e) => tracing::info!(run_id = %run_id, workflow = %workflow, error = %e, "forked run ended"),
        }
    });
}
