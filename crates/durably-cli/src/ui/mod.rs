//! `durably ui`: a small dashboard served from the binary. Server-rendered HTML with one small
//! script file (no build step): a runs page with status filters; a run page with a timeline of
//! its steps, their values, an agent run's conversation (`agent.rs`), its event log, and
//! Approve / Reject buttons for a run waiting on a signal; the agents' sessions and their
//! turns; the queues. The run page follows the run live from its event stream
//! (`GET /api/runs/{id}/events`, Server-Sent Events). The buttons and the stream use the HTTP
//! API of `durably_server` under `/api`, served beside the pages. Every request passes `durably_server`'s guard first: the dashboard can approve
//! payouts, so it answers only requests addressed to it and changes runs only for its own pages
//! and for scripts that send JSON. `durably serve` serves the same pages behind the API's
//! token as well.

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use durably_core::{Error, RunFilter, RunStatus, Workflow};
use serde::Deserialize;
use serde_json::json;

mod agent;
mod assets;
mod pages;
mod queues;
mod sessions;
mod timeline;

pub use durably_server::AllowedHosts;

/// Serves the dashboard on `listener` until the process ends, answering requests whose `Host`
/// names the listener's own address (and `localhost` when it is a loopback one).
pub async fn serve(listener: tokio::net::TcpListener, wf: Workflow) -> anyhow::Result<()> {
    let hosts = AllowedHosts::new(listener.local_addr()?);
    serve_with(listener, wf, hosts).await
}

/// [`serve`] admitting the `Host` names of `hosts` (see [`AllowedHosts::allow`]).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    wf: Workflow,
    hosts: AllowedHosts,
) -> anyhow::Result<()> {
    axum::serve(listener, router(wf, hosts)).await?;
    Ok(())
}

/// The dashboard's routes behind its guard, for embedding or testing; `hosts` are the names
/// its requests may be addressed to ([`AllowedHosts::new`] with the address it is served on).
pub fn router(wf: Workflow, hosts: AllowedHosts) -> Router {
    durably_server::guard::guarded(app(wf), hosts)
}

/// The pages, their files and the API, with no security layer: [`router`] puts the guard in
/// front, `durably serve` the guard and the API's token.
pub fn app(wf: Workflow) -> Router {
    Router::new()
        .route("/", get(pages::runs_page))
        .route("/runs/{run_id}", get(pages::run_page))
        .route("/sessions", get(sessions::sessions_page))
        .route("/sessions/{agent}/{session}", get(sessions::session_page))
        .route("/queues", get(queues::queues_page))
        .route("/assets/dashboard.css", get(assets::stylesheet))
        .route("/assets/run.js", get(assets::run_script))
        .with_state(wf.clone())
        .merge(durably_server::api_routes(wf))
}

/// An error page or JSON error with the right status code.
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match e {
            Error::RunNotFound { .. } => StatusCode::NOT_FOUND,
            Error::Invalid { .. } | Error::Serialize { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure(code, e.to_string())
    }
}

/// The filters of the runs page and of `/api/runs`.
#[derive(Debug, Deserialize)]
struct RunsQuery {
    status: Option<String>,
    workflow: Option<String>,
}

fn filter_of(q: &RunsQuery) -> Result<RunFilter, Failure> {
    let mut filter = RunFilter::new().limit(500);
    if let Some(s) = q.status.as_deref().filter(|s| !s.is_empty()) {
        filter = filter.status(s.parse::<RunStatus>()?);
    }
    if let Some(w) = q.workflow.as_deref().filter(|w| !w.is_empty()) {
        filter = filter.workflow(w);
    }
    Ok(filter)
}
