//! `durably ui`: a small dashboard served from the binary. Server-rendered HTML with a little
//! inline JavaScript (no build step): a runs page with status filters, a run page with a
//! timeline of its steps, their values, and Approve / Reject buttons for a run waiting on a
//! signal, and a JSON API under `/api` that the buttons (and scripts) use.

use std::fmt::Write as _;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use durably_core::{Error, RunExport, RunFilter, RunRecord, RunStatus, StepStatus, Workflow, now_ms};
use serde::Deserialize;
use serde_json::json;

use crate::format;

/// Serves the dashboard on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, wf: Workflow) -> anyhow::Result<()> {
    axum::serve(listener, router(wf)).await?;
    Ok(())
}

/// The dashboard's routes, for embedding or testing.
pub fn router(wf: Workflow) -> Router {
    Router::new()
        .route("/", get(runs_page))
        .route("/runs/{run_id}", get(run_page))
        .route("/api/runs", get(api_runs))
        .route("/api/runs/{run_id}", get(api_run))
        .route("/api/runs/{run_id}/approve", post(api_approve))
        .route("/api/runs/{run_id}/reject", post(api_reject))
        .route("/api/runs/{run_id}/signal/{name}", post(api_signal))
        .route("/api/runs/{run_id}/cancel", post(api_cancel))
        .with_state(wf)
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

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a path segment.
fn seg(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

const STYLE: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:10px 24px}header a{color:#fff;text-decoration:none;font-weight:600}
main{padding:16px 24px;max-width:1200px}
table{border-collapse:collapse;width:100%;background:#fff}th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #e3e6eb;vertical-align:top}
th{font-weight:600;color:#5a6272;font-size:12px;text-transform:uppercase}
code,pre,td.v{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
pre{white-space:pre-wrap;word-break:break-all;margin:0}
.s{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.s-running{background:#dbeafe;color:#1e40af}.s-waiting{background:#fef3c7;color:#92400e}
.s-completed{background:#dcfce7;color:#166534}.s-failed{background:#fee2e2;color:#991b1b}.s-cancelled{background:#e5e7eb;color:#374151}
.filters a{margin-right:10px}.filters a.on{font-weight:700;text-decoration:none;color:#1d2330}
.card{background:#fff;border:1px solid #e3e6eb;border-radius:6px;padding:12px 16px;margin:12px 0}
.approval{border-color:#f59e0b;background:#fffbeb}
button{font:inherit;padding:6px 16px;border-radius:4px;border:1px solid #888;cursor:pointer}
#approve{background:#16a34a;color:#fff;border-color:#15803d}#reject{background:#dc2626;color:#fff;border-color:#b91c1c}
input[type=text]{font:inherit;padding:5px 8px;width:320px}
dl{display:grid;grid-template-columns:110px 1fr;margin:0}dt{color:#5a6272}dd{margin:0}
"#;

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · durably</title>\
         <style>{STYLE}</style></head><body><header><a href=\"/\">durably</a></header><main>{body}</main></body></html>",
        esc(title)
    ))
}

fn badge(status: RunStatus) -> String {
    format!("<span class=\"s s-{0}\" id=\"status\">{0}</span>", status.as_str())
}

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

async fn runs_page(State(wf): State<Workflow>, Query(q): Query<RunsQuery>) -> Result<Html<String>, Failure> {
    let runs = wf.list_runs(&filter_of(&q)?).await?;
    let now = now_ms();
    let mut body = String::from("<h1>Runs</h1><p class=\"filters\">");
    let current = q.status.as_deref().unwrap_or("");
    for s in ["", "running", "waiting", "completed", "failed", "cancelled"] {
        let label = if s.is_empty() { "all" } else { s };
        let href = if s.is_empty() { "/".to_owned() } else { format!("/?status={s}") };
        let on = if s == current { " class=\"on\"" } else { "" };
        let _ = write!(body, "<a href=\"{href}\"{on}>{label}</a>");
    }
    body.push_str("</p>");
    if runs.is_empty() {
        body.push_str("<p>No runs.</p>");
    } else {
        body.push_str(
            "<table id=\"runs\"><tr><th>Run</th><th>Workflow</th><th>Status</th><th>Created (UTC)</th>\
             <th>Updated</th><th>Note</th></tr>",
        );
        for r in &runs {
            let note = match r.status {
                RunStatus::Waiting => {
                    format!("waiting on <code>{}</code>", esc(r.waiting_on.as_deref().unwrap_or("?")))
                }
                RunStatus::Failed => esc(&format::preview(r.error.as_deref().unwrap_or(""), 80)),
                _ => String::new(),
            };
            let _ = write!(
                body,
                "<tr><td><a href=\"/runs/{href}\">{id}</a></td><td>{wf}</td><td><span class=\"s s-{st}\">{st}</span></td>\
                 <td>{created}</td><td>{age} ago</td><td>{note}</td></tr>",
                href = seg(&r.run_id),
                id = esc(&r.run_id),
                wf = esc(&r.workflow),
                st = r.status.as_str(),
                created = format::time(r.created_at_ms),
                age = format::duration_ms(now - r.updated_at_ms),
            );
        }
        body.push_str("</table>");
    }
    Ok(page("Runs", &body))
}

/// The inline SVG timeline: one bar per step from its start to its end (or now), coloured by
/// status, waits (signals, sleeps) hatched, retries annotated, signal deliveries as ticks.
fn timeline(doc: &RunExport, now: i64) -> String {
    let run = &doc.run;
    let start = doc.steps.iter().map(|s| s.started_at_ms).chain([run.created_at_ms]).min().unwrap_or(0);
    let open_end = !run.status.is_final() && run.status != RunStatus::Failed;
    let mut end = doc
        .steps
        .iter()
        .map(|s| s.finished_at_ms.unwrap_or(s.started_at_ms))
        .chain(doc.signals.iter().map(|s| s.delivered_at_ms))
        .chain([run.updated_at_ms])
        .max()
        .unwrap_or(start);
    if open_end {
        end = end.max(now);
    }
    let span = (end - start).max(1) as f64;
    let (label_w, chart_w, row_h) = (190.0, 760.0, 24.0);
    let waiting_row = run.status == RunStatus::Waiting;
    let rows = doc.steps.len() + usize::from(waiting_row);
    let height = 34.0 + row_h * rows as f64;
    let x = |t: i64| label_w + chart_w * ((t - start) as f64 / span);
    let mut svg = format!(
        "<svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" \
         viewBox=\"0 0 {w} {height}\" role=\"img\" aria-label=\"step timeline\" font-size=\"11\" \
         font-family=\"ui-monospace,monospace\"><defs><pattern id=\"hatch\" width=\"6\" height=\"6\" \
         patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" \
         fill=\"#fde68a\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#d97706\" stroke-width=\"2\"/>\
         </pattern></defs>",
        w = label_w + chart_w + 90.0
    );
    // Axis: start, middle, end.
    for (i, frac) in [0.0, 0.5, 1.0].into_iter().enumerate() {
        let t = (span * frac) as i64;
        let anchor = ["start", "middle", "end"][i];
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"12\" fill=\"#5a6272\" text-anchor=\"{anchor}\">+{}</text>\
             <line x1=\"{0:.1}\" y1=\"16\" x2=\"{0:.1}\" y2=\"{height}\" stroke=\"#e3e6eb\"/>",
            label_w + chart_w * frac,
            format::duration_ms(t)
        );
    }
    let mut y = 24.0;
    for s in &doc.steps {
        let is_wait = s.name.starts_with("signal:") || s.name == "sleep";
        let fin = s.finished_at_ms.unwrap_or(if open_end { now } else { end });
        let (x0, x1) = (x(s.started_at_ms), x(fin));
        let fill = match (s.status, is_wait) {
            (_, true) => "url(#hatch)",
            (StepStatus::Completed, _) => "#22c55e",
            (StepStatus::Failed, _) => "#ef4444",
            _ => "#f59e0b",
        };
        let retries = if s.attempts > 1 { format!(" ×{} attempts", s.attempts) } else { String::new() };
        let kind = if is_wait { "wait" } else { "executed" };
        let _ = write!(
            svg,
            "<g class=\"bar\" data-step=\"{id}\"><title>{id} ({name}): {status}, {kind}, {attempts} attempt(s), {dur}</title>\
             <text x=\"{lx:.1}\" y=\"{ty:.1}\" text-anchor=\"end\">{short}</text>\
             <rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"16\" rx=\"2\" fill=\"{fill}\"/>\
             <text x=\"{tx:.1}\" y=\"{ty:.1}\" fill=\"#5a6272\">{dur}{retries}</text></g>",
            id = esc(&s.step_id),
            name = esc(&s.name),
            status = s.status,
            attempts = s.attempts,
            dur = s
                .finished_at_ms
                .map(|f| format::duration_ms(f - s.started_at_ms))
                .unwrap_or_else(|| "…".into()),
            lx = label_w - 8.0,
            ty = y + 12.0,
            short = esc(&format::preview(&s.step_id, 26)),
            w = (x1 - x0).max(2.0),
            tx = x1 + 4.0,
        );
        y += row_h;
    }
    if waiting_row {
        let since = run.updated_at_ms;
        let _ = write!(
            svg,
            "<g class=\"bar wait\"><title>waiting on {sig}</title><text x=\"{lx:.1}\" y=\"{ty:.1}\" \
             text-anchor=\"end\">waiting: {sig}</text><rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"16\" \
             rx=\"2\" fill=\"url(#hatch)\"/></g>",
            sig = esc(&format::preview(run.waiting_on.as_deref().unwrap_or("?"), 18)),
            lx = label_w - 8.0,
            ty = y + 12.0,
            x0 = x(since),
            w = (x(now) - x(since)).max(2.0),
        );
    }
    for sig in &doc.signals {
        let sx = x(sig.delivered_at_ms);
        let _ = write!(
            svg,
            "<line x1=\"{sx:.1}\" y1=\"16\" x2=\"{sx:.1}\" y2=\"{height}\" stroke=\"#7c3aed\" stroke-dasharray=\"3,2\">\
             <title>signal {} delivered</title></line>",
            esc(&sig.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

const RUN_SCRIPT: &str = r#"
<script>
const runId = document.body.dataset.run;
async function send(path, body) {
  const msg = document.getElementById('msg');
  const res = await fetch('/api/runs/' + encodeURIComponent(runId) + path, {
    method: 'POST', headers: {'content-type': 'application/json'}, body: JSON.stringify(body || {})
  });
  const data = await res.json();
  msg.textContent = res.ok ? data.message : ('error: ' + data.error);
  if (res.ok) follow();
}
function follow() {
  const timer = setInterval(async () => {
    const res = await fetch('/api/runs/' + encodeURIComponent(runId));
    if (!res.ok) return;
    const doc = await res.json();
    const el = document.getElementById('status');
    el.textContent = doc.run.status;
    el.className = 's s-' + doc.run.status;
    if (doc.run.status !== 'running' && doc.run.status !== 'waiting') { clearInterval(timer); location.reload(); }
  }, 300);
}
for (const [id, path] of [['approve', '/approve'], ['reject', '/reject']]) {
  const b = document.getElementById(id);
  if (b) b.addEventListener('click', () => send(path, {note: document.getElementById('note').value}));
}
const c = document.getElementById('cancel');
if (c) c.addEventListener('click', () => { if (confirm('Cancel run ' + runId + '?')) send('/cancel'); });
if (document.body.dataset.status === 'running') follow();
</script>"#;

async fn run_page(State(wf): State<Workflow>, Path(run_id): Path<String>) -> Result<Response, Failure> {
    let doc = match wf.export(&run_id).await {
        Ok(doc) => doc,
        Err(Error::RunNotFound { .. }) => {
            let body = format!("<h1>Run not found</h1><p>No run with id <code>{}</code>.</p>", esc(&run_id));
            return Ok((StatusCode::NOT_FOUND, page("Not found", &body)).into_response());
        }
        Err(e) => return Err(e.into()),
    };
    let r = &doc.run;
    let now = now_ms();
    let mut body = format!("<h1>Run <code>{}</code> {}</h1>", esc(&r.run_id), badge(r.status));
    let _ = write!(
        body,
        "<div class=\"card\"><dl><dt>workflow</dt><dd>{}</dd><dt>created</dt><dd>{} UTC</dd><dt>updated</dt><dd>{} UTC</dd>",
        esc(&r.workflow),
        format::time(r.created_at_ms),
        format::time(r.updated_at_ms)
    );
    for (k, v) in [("input", &r.input), ("output", &r.output), ("error", &r.error)] {
        if let Some(v) = v {
            let _ = write!(body, "<dt>{k}</dt><dd><pre>{}</pre></dd>", esc(&format::preview(v, 2000)));
        }
    }
    body.push_str("</dl></div>");
    if r.status == RunStatus::Waiting {
        let _ = write!(
            body,
            "<div class=\"card approval\" id=\"approval\"><p>Waiting on signal <code>{}</code>.</p>\
             <p><input type=\"text\" id=\"note\" placeholder=\"note (sent as the reason of a rejection)\"> \
             <button id=\"approve\">Approve</button> <button id=\"reject\">Reject</button></p></div>",
            esc(r.waiting_on.as_deref().unwrap_or("?"))
        );
    }
    if !r.status.is_final() {
        body.push_str("<p><button id=\"cancel\">Cancel run</button></p>");
    }
    body.push_str("<p id=\"msg\" role=\"status\"></p><h2>Timeline</h2>");
    if doc.steps.is_empty() && r.status != RunStatus::Waiting {
        body.push_str("<p>No steps recorded.</p>");
    } else {
        body.push_str("<div class=\"card\">");
        body.push_str(&timeline(&doc, now));
        body.push_str(
            "<p style=\"color:#5a6272;font-size:12px\">Bars: step executions as recorded (green completed, red failed, \
             orange started), hatched: waits (signals, sleeps); dashed purple lines: signal deliveries. Replays of a \
             step write nothing, so a bar is the execution that recorded it.</p></div>",
        );
    }
    body.push_str("<h2>Steps</h2>");
    if !doc.steps.is_empty() {
        body.push_str(
            "<table id=\"steps\"><tr><th>Step</th><th>Name</th><th>Status</th><th>Attempts</th><th>Duration</th>\
             <th>Value</th></tr>",
        );
        for s in &doc.steps {
            let value = match (&s.value, &s.error) {
                (_, Some(e)) if s.status != StepStatus::Completed => format!("error: {e}"),
                (Some(v), _) => v.clone(),
                _ => String::new(),
            };
            let _ = write!(
                body,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"v\"><pre>{}</pre></td></tr>",
                esc(&s.step_id),
                esc(&s.name),
                s.status,
                s.attempts,
                s.finished_at_ms
                    .map(|f| format::duration_ms(f - s.started_at_ms))
                    .unwrap_or_else(|| "-".into()),
                esc(&format::preview(&value, 600))
            );
        }
        body.push_str("</table>");
    }
    if !doc.signals.is_empty() {
        body.push_str("<h2>Signals</h2><table id=\"signals\"><tr><th>Name</th><th>Delivered (UTC)</th><th>Payload</th></tr>");
        for s in &doc.signals {
            let _ = write!(
                body,
                "<tr><td><code>{}</code></td><td>{}</td><td class=\"v\"><pre>{}</pre></td></tr>",
                esc(&s.name),
                format::time(s.delivered_at_ms),
                esc(&format::preview(&s.payload, 600))
            );
        }
        body.push_str("</table>");
    }
    body.push_str(RUN_SCRIPT);
    let html = page(&format!("Run {}", r.run_id), &body).0.replacen(
        "<body>",
        &format!("<body data-run=\"{}\" data-status=\"{}\">", esc(&r.run_id), r.status.as_str()),
        1,
    );
    Ok(Html(html).into_response())
}

async fn api_runs(
    State(wf): State<Workflow>,
    Query(q): Query<RunsQuery>,
) -> Result<axum::Json<Vec<RunRecord>>, Failure> {
    Ok(axum::Json(wf.list_runs(&filter_of(&q)?).await?))
}

async fn api_run(
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

async fn api_approve(
    State(wf): State<Workflow>,
    Path(run_id): Path<String>,
    body: String,
) -> Result<Response, Failure> {
    let _ = decision(&body)?;
    let name = waiting_signal(&wf, &run_id).await?;
    deliver(&wf, &run_id, &name, &json!({ "approved": true })).await
}

async fn api_reject(
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

async fn api_signal(
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

async fn api_cancel(State(wf): State<Workflow>, Path(run_id): Path<String>) -> Result<Response, Failure> {
    let cancelled = wf.cancel(&run_id).await?;
    let message = if cancelled {
        format!("cancelled run `{run_id}`")
    } else {
        format!("run `{run_id}` had already finished")
    };
    Ok(axum::Json(json!({ "cancelled": cancelled, "message": message })).into_response())
}
