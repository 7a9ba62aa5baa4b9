//! The JSON API under `/api`: list and read runs, and the state-changing calls the run page's
//! buttons make (approve, reject, deliver a signal, cancel). The guard has already refused any
//! of these that did not come from the dashboard's own page or a script sending JSON.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use durably_core::{RunExport, RunRecord, RunStatus, Workflow};
use serde::Deserialize;
use serde_json::json;

use super::{Failure, RunsQuery, filter_of};

pub(super) async fn runs(
    State(wf): State<Workflow>,
    Query(q): Query<RunsQuery>,
) -> Result<axum::Json<Vec<RunRecord>>, Failure> {
    Ok(axum::Json(wf.list_runs(&filter_of(&q)?).await?))
}

pub(super) async fn run(
    State(wf): State<Workflow>,
    Path(run_id): Path<String>,
) -> Result<axum::Json<RunExport>, Failure> {
    Ok(axum::Json(wf.export(&run_id).await?))
}

/// The body of Approve / Reject.
#[derive(Debug, Default, Deserialize)]
struct Decision {
    #[serde(default)]
    note: Option<String>,
}

async fn waiting_signal(wf: &Workflow, run_id: &str) -> Result<String, Failure> {
    let run = wf
        .get_run(run_id)
        .await?
        .ok_or_else(|| Failure(StatusCode::NOT_FOUND, format!("no run with id `{run_id}`")))?;
    match (run.status, run.waiting_on) {
        (RunStatus::Waiting, Some(name)) => Ok(name),
        (status, _) => {
            Err(Failure(StatusCode::CONFLICT, format!("run `{run_id}` is {status}, not waiting on a signal")))
        }
    }
}

async fn deliver(
    wf: &Workflow,
    run_id: &str,
    name: &str,
    payload: &serde_json::Value,
) -> Result<Response, Failure> {
    let delivered = wf.complete(run_id, name, payload).await?;
    let message = if delivered {
        format!("delivered signal `{name}` to run `{run_id}`")
    } else {
        format!("signal `{name}` was already delivered to run `{run_id}`; the first payload stays")
    };
    Ok(axum::Json(json!({ "delivered": delivered, "signal": name, "message": message })).into_response())
}

fn decision(body: &str) -> Result<Decision, Failure> {
    if body.trim().is_empty() {
        return Ok(Decision::default());
    }
    serde_json::from_str(body)
        .map_err(|e| Failure(StatusCode::BAD_REQUEST, format!("body is not a decision: {e}")))
}

pub(super) async fn approve(
    State(wf): State<Workflow>,
    Path(run_id): Path<String>,
    body: String,
) -> Result<Response, Failure> {
    let _ = decision(&body)?;
    let name = waiting_signal(&wf, &run_id).await?;
    deliver(&wf, &run_id, &name, &json!({ "approved": true })).await
}

pub(super) async fn reject(
    State(wf): State<Workflow>,
    Path(run_id): Path<String>,
    body: String,
) -> Result<Response, Failure> {
    let d = decision(&body)?;
    let name = waiting_signal(&wf, &run_id).await?;
    let mut payload = json!({ "approved": false });
    if let Some(note) = d.note.filter(|n| !n.trim().is_empty()) {
        payload["reason"] = json!(note);
    }
    deliver(&wf, &run_id, &name, &payload).await
}

pub(super) async fn signal(
    State(wf): State<Workflow>,
    Path((run_id, name)): Path<(String, String)>,
    body: String,
) -> Result<Response, Failure> {
    if wf.get_run(&run_id).await?.is_none() {
        return Err(Failure(StatusCode::NOT_FOUND, format!("no run with id `{run_id}`")));
    }
    let payload: serde_json::Value = serde_json::from_str(&body).map_err(|e| {
        Failure(StatusCode::BAD_REQUEST, format!("the payload of signal `{name}` is not JSON: {e}"))
    })?;
    deliver(&wf, &run_id, &name, &payload).await
}

pub(super) async fn cancel(
    State(wf): State<Workflow>,
    Path(run_id): Path<String>,
) -> Result<Response, Failure> {
    let cancelled = wf.cancel(&run_id).await?;
    let message = if cancelled {
        format!("cancelled run `{run_id}`")
    } else {
        format!("run `{run_id}` had already finished")
    };
    Ok(axum::Json(json!({ "cancelled": cancelled, "message": message })).into_response())
}
