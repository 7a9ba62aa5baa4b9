//! The JSON API under `/api`: its state, errors, body extractor and views, and the routes with
//! their OpenAPI document (generated from the handlers' annotations by utoipa).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use durably_core::{Error, RunRecord, SignalRecord, StepRecord, Workflow};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::{DEFAULT_BODY_LIMIT, DEFAULT_QUEUE, TurnSender};

mod events;
mod queues;
mod runs;
mod sessions;

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct ApiState {
    pub(crate) wf: Workflow,
    pub(crate) agents: Arc<BTreeMap<String, TurnSender>>,
    pub(crate) body_limit: usize,
    pub(crate) queue: String,
}

impl ApiState {
    pub(crate) fn new(wf: Workflow) -> Self {
        ApiState {
            wf,
            agents: Arc::default(),
            body_limit: DEFAULT_BODY_LIMIT,
            queue: DEFAULT_QUEUE.to_owned(),
        }
    }
}

/// The API's description, completed by the routes' annotations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "durably HTTP API",
        description = "Start, read and steer durable workflow runs and agent sessions over HTTP. \
            Every request presents `Authorization: Bearer <token>` unless the server runs on \
            loopback without one; requests that change state send `Content-Type: application/json`.",
        license(name = "MIT OR Apache-2.0")
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "runs", description = "Workflow runs: start, read, signal, approve, cancel, fork"),
        (name = "sessions", description = "Agent conversations: list, read, send a turn"),
        (name = "queues", description = "Queues: depth, executing and parked runs, limits"),
    )
)]
struct ApiDoc;

/// Declares the bearer scheme every operation uses.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The routes and the document they describe.
fn parts() -> (Router<ApiState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(runs::list_runs, runs::start_run))
        .routes(routes!(runs::get_run))
        .routes(routes!(events::run_events))
        .routes(routes!(runs::deliver_signal))
        .routes(routes!(runs::approve))
        .routes(routes!(runs::reject))
        .routes(routes!(runs::cancel))
        .routes(routes!(runs::fork))
        .routes(routes!(runs::list_workflows))
        .routes(routes!(sessions::list_sessions))
        .routes(routes!(sessions::show_session))
        .routes(routes!(sessions::send_turn))
        .routes(routes!(queues::list_queues))
        .split_for_parts()
}

/// The API's OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = parts();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// The API's OpenAPI document as pretty JSON, as served at `/openapi.json` and checked in as
/// `docs/openapi.json`.
pub fn openapi_json() -> String {
    // Serializing the document's own types cannot fail; an empty object stands in if it did.
    serde_json::to_string_pretty(&openapi()).unwrap_or_else(|_| "{}".to_owned())
}

/// The routes with their state, and `/openapi.json`.
pub(crate) fn routes(state: ApiState) -> Router {
    let (router, _) = parts();
    let doc = openapi_json();
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], doc) }
            }),
        )
        .fallback(not_found)
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route `{}`; the API is described at /openapi.json", uri.path()),
    )
}

/// An error answer: its status code and `{"error": "…"}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    pub(crate) message: String,
}

/// The body of every error answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// What went wrong, naming the run, step, workflow or field concerned.
    error: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into() }
    }

    pub(crate) fn too_large(limit: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than this server's limit of {limit} bytes"),
        )
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(ErrorBody { error: self.message })).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::RunNotFound { .. } => StatusCode::NOT_FOUND,
            Error::Invalid { .. } | Error::Serialize { .. } => StatusCode::BAD_REQUEST,
            Error::RunConflict { .. }
            | Error::RunInProgress { .. }
            | Error::NonDeterminism { .. }
            | Error::Cancelled { .. } => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if let Error::Store { op, run_id, .. } = &e {
            // A driver's error can carry connection details (a URL with a password): it goes
            // to the log, the client learns only which operation failed.
            tracing::error!(error = %e, "request failed in the store");
            let run = run_id.as_deref().map(|r| format!(" of run `{r}`")).unwrap_or_default();
            return ApiError::new(
                status,
                format!("the store failed during {op}{run}; the server's log has the details"),
            );
        }
        // A workflow's or a model's error is the text the run records (agents redact secrets
        // from it, rule 20 of docs/design.md), readable in the run anyway.
        ApiError::new(status, e.to_string())
    }
}

/// A JSON request body: an empty body reads as `{}`, a body over the limit is 413, and one that
/// is not JSON of the expected shape is 400 saying where and why.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<ApiState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &ApiState) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
        serde_json::from_slice(text)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid: {e}")))
    }
}

/// The whole body, within the limit.
pub(crate) async fn body_bytes(req: Request, state: &ApiState) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(state.body_limit)
        } else {
            ApiError::bad_request(format!("could not read the request body: {e}"))
        }
    })
}

/// Names for an error message: `a, b`, or `none`.
pub(crate) fn listed<S: AsRef<str>>(names: &[S]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    names.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(", ")
}

/// A stored JSON text as a JSON value (a text that is not JSON, as a string).
fn json_value(text: Option<&str>) -> Option<Value> {
    text.map(|t| serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_owned())))
}

/// A run as the API shows it: its record, with its stored JSON as JSON.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct RunView {
    /// The run id.
    run_id: String,
    /// The workflow the run belongs to.
    workflow: String,
    /// `enqueued`, `running`, `waiting`, `completed`, `failed` or `cancelled`.
    #[schema(example = "waiting")]
    status: String,
    /// The run's input.
    input: Option<Value>,
    /// The output of a completed run.
    output: Option<Value>,
    /// The error text of a failed run.
    error: Option<String>,
    /// The signal a waiting run waits for (`approve:<step>` for an agent's tool approval).
    waiting_on: Option<String>,
    /// The queue it was enqueued in, if it was.
    queue: Option<String>,
    /// The run that started it as a child, if one did.
    parent_id: Option<String>,
    /// When the run was created, in milliseconds since the Unix epoch.
    created_at_ms: i64,
    /// When it last changed.
    updated_at_ms: i64,
    /// Its steps, in the order they were recorded (absent in lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    steps: Option<Vec<StepView>>,
    /// The signals delivered to it (absent in lists); the engine's own (`durably.*`: a child
    /// run's outcome, a queued run's end) are left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signals: Option<Vec<SignalView>>,
}

impl RunView {
    pub(crate) fn summary(run: RunRecord) -> Self {
        RunView {
            input: json_value(run.input.as_deref()),
            output: json_value(run.output.as_deref()),
            status: run.status.as_str().to_owned(),
            run_id: run.run_id,
            workflow: run.workflow,
            error: run.error,
            waiting_on: run.waiting_on,
            queue: run.queue,
            parent_id: run.parent_id,
            created_at_ms: run.created_at_ms,
            updated_at_ms: run.updated_at_ms,
            steps: None,
            signals: None,
        }
    }

    pub(crate) fn full(run: RunRecord, steps: Vec<StepRecord>, signals: Vec<SignalRecord>) -> Self {
        RunView {
            steps: Some(steps.into_iter().map(StepView::from).collect()),
            signals: Some(
                signals
                    .into_iter()
                    .filter(|s| !durably_core::is_internal_signal(&s.name))
                    .map(SignalView::from)
                    .collect(),
            ),
            ..RunView::summary(run)
        }
    }
}

/// One checkpoint of a run.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct StepView {
    /// The step id (`fetch`, `fetch#1`, `agent.model#2`).
    step_id: String,
    /// The task that recorded it.
    name: String,
    /// `completed`, `failed` or `started`.
    status: String,
    /// The value of a completed step.
    value: Option<Value>,
    /// The error text of a failed step.
    error: Option<String>,
    /// How many attempts the execution that recorded it made.
    attempts: u32,
    /// When it started, in milliseconds since the Unix epoch.
    started_at_ms: i64,
    /// When it finished.
    finished_at_ms: Option<i64>,
}

impl From<StepRecord> for StepView {
    fn from(s: StepRecord) -> Self {
        StepView {
            value: json_value(s.value.as_deref()),
            status: s.status.as_str().to_owned(),
            step_id: s.step_id,
            name: s.name,
            error: s.error,
            attempts: s.attempts,
            started_at_ms: s.started_at_ms,
            finished_at_ms: s.finished_at_ms,
        }
    }
}

/// A signal delivered to a run.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct SignalView {
    /// The signal name.
    name: String,
    /// Its payload.
    payload: Value,
    /// When it was delivered, in milliseconds since the Unix epoch.
    delivered_at_ms: i64,
}

impl From<SignalRecord> for SignalView {
    fn from(s: SignalRecord) -> Self {
        SignalView {
            payload: json_value(Some(&s.payload)).unwrap_or(Value::Null),
            name: s.name,
            delivered_at_ms: s.delivered_at_ms,
        }
    }
}
