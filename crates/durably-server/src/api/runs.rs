//! `/api/runs` and `/api/workflows`: start, list and read runs, deliver signals and approvals,
//! cancel and fork.

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use durably_agent::Approval;
use durably_core::{RunFilter, RunRecord, RunStatus, Workflow, now_ms};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, ApiState, ErrorBody, JsonBody, RunView, body_bytes, listed};
use crate::start;

/// The most runs one list returns.
const MAX_LIST: usize = 1000;
/// How many runs a list returns when no `limit` is given.
const DEFAULT_LIST: usize = 100;

/// Filters of `GET /api/runs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RunsQuery {
    /// Only runs in this status: enqueued, running, waiting, completed, failed or cancelled.
    status: Option<String>,
    /// Only runs of this workflow.
    workflow: Option<String>,
    /// At most this many runs (default 100, at most 1000).
    limit: Option<String>,
}

/// Runs, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct RunList {
    /// The runs, without their steps and signals.
    runs: Vec<RunView>,
}

#[utoipa::path(
    get, path = "/api/runs", tag = "runs", params(RunsQuery),
    responses(
        (status = 200, description = "Runs, newest first", body = RunList),
        (status = 400, description = "A filter is not valid", body = ErrorBody),
    )
)]
/// Lists runs, newest first.
pub(crate) async fn list_runs(
    State(api): State<ApiState>,
    Query(q): Query<RunsQuery>,
) -> Result<axum::Json<RunList>, ApiError> {
    let limit = match q.limit.as_deref().filter(|l| !l.is_empty()) {
        None => DEFAULT_LIST,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LIST).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "limit `{text}` is not a number from 1 to {MAX_LIST}"
                )));
            }
        },
    };
    let mut filter = RunFilter::new().limit(limit);
    if let Some(s) = q.status.as_deref().filter(|s| !s.is_empty()) {
        filter = filter.status(s.parse::<RunStatus>()?);
    }
    if let Some(w) = q.workflow.as_deref().filter(|w| !w.is_empty()) {
        filter = filter.workflow(w);
    }
    let runs = api.wf.list_runs(&filter).await?;
    Ok(axum::Json(RunList { runs: runs.into_iter().map(RunView::summary).collect() }))
}

/// The body of `POST /api/runs`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartRun {
    /// A registered workflow (see `GET /api/workflows`).
    workflow: String,
    /// The run id: starting the same id again returns the existing run and starts nothing.
    run_id: String,
    /// The workflow's input.
    #[serde(default)]
    input: Value,
    /// The queue to enqueue the run in (default: the server's, `default` unless configured).
    #[serde(default)]
    queue: Option<String>,
}

#[utoipa::path(
    post, path = "/api/runs", tag = "runs", request_body = StartRun,
    responses(
        (status = 202, description = "The run was enqueued for a queue worker", body = RunView),
        (status = 200, description = "A run with this id existed: it is returned, nothing is started", body = RunView),
        (status = 400, description = "The body is not a start request, the input does not fit the workflow, or the queue is not defined", body = ErrorBody),
        (status = 404, description = "No workflow of that name is registered", body = ErrorBody),
        (status = 409, description = "The run id belongs to another workflow", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
    )
)]
/// Starts a run of a registered workflow, idempotently by run id: it is enqueued, and a queue
/// worker of any process sharing the store executes it.
pub(crate) async fn start_run(
    State(api): State<ApiState>,
    JsonBody(start): JsonBody<StartRun>,
) -> Result<(StatusCode, axum::Json<RunView>), ApiError> {
    let wf = &api.wf;
    let registered = wf.registered();
    if !registered.contains(&start.workflow) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no workflow is registered as `{}` on this server (registered: {})",
                start.workflow,
                listed(&registered)
            ),
        ));
    }
    check_run_id(&start.run_id)?;
    if let Some(run) = wf.get_run(&start.run_id).await? {
        if run.workflow != start.workflow {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "run id `{}` belongs to workflow `{}`, not to `{}`",
                    run.run_id, run.workflow, start.workflow
                ),
            ));
        }
        return Ok((StatusCode::OK, axum::Json(RunView::summary(run))));
    }
    let queue = start.queue.as_deref().filter(|q| !q.is_empty()).unwrap_or(&api.queue);
    start::start_run(wf, queue, &start.workflow, &start.run_id, &start.input).await.map_err(|e| match e {
        // The input was checked against the workflow's argument type before anything was
        // enqueued: the client's mistake.
        durably_core::Error::Deserialize { .. } => ApiError::bad_request(e.to_string()),
        other => ApiError::from(other),
    })?;
    let run = existing(wf, &start.run_id).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(RunView::summary(run))))
}

/// The longest run id a start accepts, in bytes.
const MAX_RUN_ID_BYTES: usize = 512;

/// A run id a client may choose: not empty, not too long, no control characters.
fn check_run_id(run_id: &str) -> Result<(), ApiError> {
    let shown = crate::text::preview(run_id, 60);
    if run_id.is_empty() {
        Err(ApiError::bad_request("run_id is empty"))
    } else if run_id.len() > MAX_RUN_ID_BYTES {
        Err(ApiError::bad_request(format!(
            "run_id `{shown}` is {} bytes long (at most {MAX_RUN_ID_BYTES})",
            run_id.len()
        )))
    } else if run_id.chars().any(char::is_control) {
        Err(ApiError::bad_request(format!("run_id `{shown}` contains a control character")))
    } else {
        Ok(())
    }
}

async fn existing(wf: &Workflow, run_id: &str) -> Result<RunRecord, ApiError> {
    wf.get_run(run_id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no run with id `{run_id}`")))
}

#[utoipa::path(
    get, path = "/api/runs/{run_id}", tag = "runs",
    params(("run_id" = String, Path, description = "The run id (percent-encoded)")),
    responses(
        (status = 200, description = "The run with its steps and signals", body = RunView),
        (status = 404, description = "No such run", body = ErrorBody),
    )
)]
/// Reads a run: status, output, error, the signal it waits on, its steps and signals.
pub(crate) async fn get_run(
    State(api): State<ApiState>,
    Path(run_id): Path<String>,
) -> Result<axum::Json<RunView>, ApiError> {
    let doc = api.wf.export(&run_id).await?;
    Ok(axum::Json(RunView::full(doc.run, doc.steps, doc.signals)))
}

/// What a delivery did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct Delivery {
    /// False when the signal had been delivered before: the first payload stays.
    delivered: bool,
    /// The signal's name.
    signal: String,
    /// The same, said for a person.
    message: String,
}

async fn deliver(
    wf: &Workflow,
    run_id: &str,
    name: &str,
    payload: &Value,
) -> Result<axum::Json<Delivery>, ApiError> {
    let delivered = wf.complete(run_id, name, payload).await?;
    let message = if delivered {
        format!("delivered signal `{name}` to run `{run_id}`")
    } else {
        format!("signal `{name}` was already delivered to run `{run_id}`; the first payload stays")
    };
    Ok(axum::Json(Delivery { delivered, signal: name.to_owned(), message }))
}

#[utoipa::path(
    post, path = "/api/runs/{run_id}/signals/{name}", tag = "runs",
    params(
        ("run_id" = String, Path, description = "The run id"),
        ("name" = String, Path, description = "The signal name"),
    ),
    request_body(content = serde_json::Value, description = "The signal's payload, any JSON"),
    responses(
        (status = 200, description = "Delivered, or delivered before (first write wins)", body = Delivery),
        (status = 400, description = "The payload is not JSON", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
    )
)]
/// Delivers a signal with the request body as its payload.
pub(crate) async fn deliver_signal(
    State(api): State<ApiState>,
    Path((run_id, name)): Path<(String, String)>,
    req: Request,
) -> Result<axum::Json<Delivery>, ApiError> {
    let bytes = body_bytes(req, &api).await?;
    existing(&api.wf, &run_id).await?;
    let payload: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!("the payload of signal `{name}` for run `{run_id}` is not JSON: {e}"))
    })?;
    deliver(&api.wf, &run_id, &name, &payload).await
}

/// The body of approve and reject; may be empty.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Decision {
    /// The signal to answer; default: the one the run waits on.
    #[serde(default)]
    signal: Option<String>,
    /// Why (a rejection's reason reaches the model as the tool's error).
    #[serde(default, alias = "note")]
    reason: Option<String>,
}

/// The signal a decision answers: the one named, or the one the run waits on.
async fn decided_signal(wf: &Workflow, run_id: &str, d: &Decision) -> Result<String, ApiError> {
    let run = existing(wf, run_id).await?;
    if let Some(name) = d.signal.as_deref().filter(|s| !s.is_empty()) {
        return Ok(name.to_owned());
    }
    match (run.status, run.waiting_on) {
        (RunStatus::Waiting, Some(name)) => Ok(name),
        (status, _) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "run `{run_id}` is {status}, not waiting on a signal; name the signal to answer with `signal`"
            ),
        )),
    }
}

#[utoipa::path(
    post, path = "/api/runs/{run_id}/approve", tag = "runs",
    params(("run_id" = String, Path, description = "The run id")),
    request_body = Decision,
    responses(
        (status = 200, description = "`{\"approved\": true}` delivered", body = Delivery),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run waits on no signal and none was named", body = ErrorBody),
    )
)]
/// Approves what the run waits for (an agent's tool call): delivers `{"approved": true}`.
pub(crate) async fn approve(
    State(api): State<ApiState>,
    Path(run_id): Path<String>,
    JsonBody(d): JsonBody<Decision>,
) -> Result<axum::Json<Delivery>, ApiError> {
    let name = decided_signal(&api.wf, &run_id, &d).await?;
    deliver(&api.wf, &run_id, &name, &approval_json(&Approval::approve())?).await
}

#[utoipa::path(
    post, path = "/api/runs/{run_id}/reject", tag = "runs",
    params(("run_id" = String, Path, description = "The run id")),
    request_body = Decision,
    responses(
        (status = 200, description = "`{\"approved\": false, \"reason\": …}` delivered", body = Delivery),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run waits on no signal and none was named", body = ErrorBody),
    )
)]
/// Rejects what the run waits for: delivers `{"approved": false, "reason": …}`.
pub(crate) async fn reject(
    State(api): State<ApiState>,
    Path(run_id): Path<String>,
    JsonBody(d): JsonBody<Decision>,
) -> Result<axum::Json<Delivery>, ApiError> {
    let name = decided_signal(&api.wf, &run_id, &d).await?;
    let reason =
        d.reason.as_deref().map(str::trim).filter(|r| !r.is_empty()).unwrap_or("rejected by an operator");
    deliver(&api.wf, &run_id, &name, &approval_json(&Approval::reject(reason))?).await
}

fn approval_json(a: &Approval) -> Result<Value, ApiError> {
    serde_json::to_value(a).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// What a cancellation did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct Cancellation {
    /// False when the run had already completed or been cancelled.
    cancelled: bool,
    /// The same, said for a person.
    message: String,
}

#[utoipa::path(
    post, path = "/api/runs/{run_id}/cancel", tag = "runs",
    params(("run_id" = String, Path, description = "The run id")),
    responses(
        (status = 200, description = "Cancelled, or already finished", body = Cancellation),
        (status = 404, description = "No such run", body = ErrorBody),
    )
)]
/// Cancels a run: it stops at its next step, wait or sleep, in whichever process executes it.
pub(crate) async fn cancel(
    State(api): State<ApiState>,
    Path(run_id): Path<String>,
) -> Result<axum::Json<Cancellation>, ApiError> {
    let cancelled = api.wf.cancel(&run_id).await?;
    let message = if cancelled {
        format!("cancelled run `{run_id}`: it stops at its next step, wait or sleep")
    } else {
        format!("run `{run_id}` had already finished; nothing to cancel")
    };
    Ok(axum::Json(Cancellation { cancelled, message }))
}

/// The body of `POST /api/runs/{run_id}/fork`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Fork {
    /// The first step to run again.
    from_step: String,
    /// The new run's id (default `<run_id>-fork-<millis>`).
    #[serde(default)]
    new_run_id: Option<String>,
}

#[utoipa::path(
    post, path = "/api/runs/{run_id}/fork", tag = "runs",
    params(("run_id" = String, Path, description = "The run to fork")),
    request_body = Fork,
    responses(
        (status = 201, description = "The new run, holding the steps before `from_step`; started when its workflow is registered", body = RunView),
        (status = 400, description = "No such step, or the new id is taken", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
    )
)]
/// Forks a run from a step: a new run with the steps before it, which runs the rest again.
pub(crate) async fn fork(
    State(api): State<ApiState>,
    Path(run_id): Path<String>,
    JsonBody(f): JsonBody<Fork>,
) -> Result<(StatusCode, axum::Json<RunView>), ApiError> {
    let wf = &api.wf;
    let new_id =
        f.new_run_id.filter(|i| !i.is_empty()).unwrap_or_else(|| format!("{run_id}-fork-{}", now_ms()));
    check_run_id(&new_id)?;
    let run = wf.fork(&run_id, &f.from_step, &new_id).await?;
    if wf.registered().contains(&run.workflow) {
        let input = run.input.as_deref().and_then(|i| serde_json::from_str(i).ok()).unwrap_or(Value::Null);
        start::execute_here(wf, &run.workflow, &new_id, input);
    }
    Ok((StatusCode::CREATED, axum::Json(RunView::summary(existing(wf, &new_id).await?))))
}

/// The workflows a server can start.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct Workflows {
    /// Their names, sorted.
    workflows: Vec<String>,
}

#[utoipa::path(
    get, path = "/api/workflows", tag = "runs",
    responses((status = 200, description = "The registered workflows", body = Workflows))
)]
/// Lists the workflows this server can start.
pub(crate) async fn list_workflows(State(api): State<ApiState>) -> axum::Json<Workflows> {
    axum::Json(Workflows { workflows: api.wf.registered() })
}
