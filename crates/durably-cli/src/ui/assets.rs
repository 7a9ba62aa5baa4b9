//! The dashboard's stylesheet and script, compiled into the binary and served as files: the
//! Content-Security-Policy (`guard.rs`) allows scripts and styles only from the dashboard's own
//! origin, never inline, so an injected `<script>` in a run's data could not run.

use axum::http::header;
use axum::response::IntoResponse;

const STYLESHEET: &str = include_str!("assets/dashboard.css");
const RUN_SCRIPT: &str = include_str!("assets/run.js");

pub(super) async fn stylesheet() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], STYLESHEET)
}

pub(super) async fn run_script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")],
        RUN_SCRIPT,
    )
}
