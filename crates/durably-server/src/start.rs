//! Starting a run of a registered workflow: the one place the API starts runs.
//!
//! The run is created in the store first (so that it can be read as soon as the request is
//! answered, and so that a recovery worker resumes it if this process dies), then executed in
//! a task of its own through the engine's registry. A second start of the same run id in this
//! process waits for the first execution instead of running it twice (rule 9 of
//! docs/design.md).

use durably_core::store::prelude::*;
use durably_core::{Error, NewRun, Result, Workflow, now_ms};
use serde_json::Value;

/// Starts run `run_id` of the registered workflow `workflow` with `input`, without waiting for
/// it to finish.
pub(crate) async fn start_run(wf: &Workflow, workflow: &str, run_id: &str, input: &Value) -> Result<()> {
    let json = serde_json::to_string(input).map_err(|source| Error::Serialize {
        run_id: run_id.to_owned(),
        step_id: "input".into(),
        what: "workflow input",
        type_name: "serde_json::Value",
        source,
    })?;
    wf.store().open_run(NewRun::new(run_id, workflow, Some(json), now_ms())).await?;
    let (wf, workflow, run_id, input) = (wf.clone(), workflow.to_owned(), run_id.to_owned(), input.clone());
    tokio::spawn(async move {
        match wf.start::<Value, Value>(&workflow, run_id.clone(), &input).await {
            Ok(_) => {
                tracing::info!(run_id = %run_id, workflow = %workflow, "run started over HTTP completed")
            }
            Err(e) => {
                tracing::info!(run_id = %run_id, workflow = %workflow, error = %e, "run started over HTTP ended")
            }
        }
    });
    Ok(())
}
