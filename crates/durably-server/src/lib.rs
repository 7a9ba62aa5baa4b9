//! An HTTP API for durably that any language can call: start a run of a registered workflow
//! (enqueued for a queue worker, idempotent by run id), read runs (status, output, error, the signal awaited, steps), list
//! them, deliver a signal or an approval, cancel, fork, and list, read and talk to agent
//! sessions. JSON over HTTP, described by an OpenAPI document generated from the handlers
//! (`GET /openapi.json`, checked in as `docs/openapi.json`).
//!
//! ```no_run
//! # async fn demo(wf: durably_core::Workflow) -> Result<(), Box<dyn std::error::Error>> {
//! use durably_server::{Auth, ServerConfig, Token};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let config = ServerConfig::new(listener.local_addr()?, Auth::Token(Token::from_env("DURABLY_TOKEN")?))?;
//! durably_server::serve(listener, durably_server::router(wf, config)).await?;
//! # Ok(()) }
//! ```
//!
//! Security (rule 21 of docs/design.md), in front of every route, refusals before routing so
//! that a refused request changes nothing:
//! - the [`guard`]: the `Host` must name the server (DNS rebinding), and a request that changes
//!   state must be same-origin and `Content-Type: application/json` (no cross-site form or
//!   `text/plain` posts); strict Content-Security-Policy and `nosniff` on every response;
//! - a bearer token ([`Token`], compared in constant time), unless the server is bound to
//!   loopback and [`Auth::InsecureLoopback`] was asked for;
//! - a body size limit (1 MiB by default: 413 above it); malformed JSON is a 400 saying why;
//!   an unknown run, workflow or session is a 404 naming it; an internal error's details go to
//!   the log, never to the client, and the token is never echoed.

mod api;
mod config;
pub mod guard;
mod login;
pub mod queues;
mod secure;
mod start;
mod text;

use axum::Router;
use durably_core::Workflow;

pub use api::{openapi, openapi_json};
pub use config::{
    Auth, DEFAULT_BODY_LIMIT, DEFAULT_QUEUE, MIN_TOKEN_BYTES, ServerConfig, ServerError, Token,
};
pub use guard::AllowedHosts;
pub use secure::secure;
pub use text::preview;

/// The API on `wf` behind `config`'s security: what [`serve`] serves.
pub fn router(wf: Workflow, config: ServerConfig) -> Router {
    let state = api::ApiState {
        wf,
        agents: std::sync::Arc::new(config.agents.clone()),
        body_limit: config.body_limit,
        queue: config.queue.clone(),
    };
    secure(api::routes(state), &config)
}

/// The API's routes on `wf` with no security layer and no session agents, for a server that
/// puts its own in front ([`secure`], or [`guard::guarded`] as `durably ui` does) and adds
/// routes of its own.
pub fn api_routes(wf: Workflow) -> Router {
    api::routes(api::ApiState::new(wf))
}

/// Serves `router` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> Result<(), ServerError> {
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".to_owned());
    axum::serve(listener, router).await.map_err(|source| ServerError::Io { addr, source })
}
