//! The dashboard's HTML pages: the runs list with its status filters and a run's page (its
//! record, timeline, steps, signals, the agent conversation of an agent run, its event log,
//! and the buttons for a waiting run). Everything taken from the store is escaped; the pages
//! carry no inline script or style (see `assets.rs`).

use std::fmt::Write as _;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use durably_core::{Error, EventRecord, Events as _, RunStatus, StepStatus, Workflow, now_ms};

use super::agent::{self, Provenance};
use super::{Failure, RunsQuery, filter_of, timeline};
use crate::format;

/// Escapes text for HTML.
pub(super) fn esc(text: &str) -> String {
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
pub(super) fn seg(text: &str) -> String {
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

pub(super) fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · durably</title>\
         <link rel=\"stylesheet\" href=\"/assets/dashboard.css\"></head><body><header><a href=\"/\">durably</a>\
         <nav><a href=\"/\">Runs</a><a href=\"/sessions\">Sessions</a><a href=\"/queues\">Queues</a></nav></header>\
         <main>{body}</main></body></html>",
        esc(title)
    ))
}

/// A status badge without the run page's `id`.
pub(super) fn badge_plain(status: RunStatus) -> String {
    format!("<span class=\"s s-{0}\">{0}</span>", status.as_str())
}

pub(super) fn badge(status: RunStatus) -> String {
    format!("<span class=\"s s-{0}\" id=\"status\">{0}</span>", status.as_str())
}

pub(super) async fn runs_page(
    State(wf): State<Workflow>,
    Query(q): Query<RunsQuery>,
) -> Result<Html<String>, Failure> {
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

/// The most events of a run's log the page reads (for the provenance of its steps); a longer
/// log (a long streamed answer) is shown from its tail and its provenance said to be partial.
const MAX_EVENTS_READ: usize = 20_000;
/// The events the page lists; live ones are added below them.
const EVENTS_SHOWN: usize = 200;

/// What the page knows of a run's event log.
struct Log {
    /// The offset after the last event read: where the live stream starts. `None` when the
    /// store keeps no event log.
    next: Option<u64>,
    /// The last [`EVENTS_SHOWN`] events.
    tail: Vec<EventRecord>,
    prov: Provenance,
    /// The log is longer than [`MAX_EVENTS_READ`]: only its start was read.
    cut: bool,
}

/// Reads run `run_id`'s event log from the start, a page at a time.
async fn read_log(wf: &Workflow, run_id: &str) -> Log {
    let mut log = Log { next: Some(0), tail: Vec::new(), prov: Provenance::default(), cut: false };
    let mut from = 0u64;
    loop {
        match wf.store().read_events(run_id, from, durably_core::EVENT_PAGE).await {
            Ok(page) if page.is_empty() => break,
            Ok(page) => {
                for e in page {
                    log.prov.add(&e);
                    from = e.offset + 1;
                    log.tail.push(e);
                }
                if log.tail.len() > EVENTS_SHOWN {
                    let extra = log.tail.len() - EVENTS_SHOWN;
                    log.tail.drain(..extra);
                }
                log.next = Some(from);
                if usize::try_from(from).unwrap_or(usize::MAX) >= MAX_EVENTS_READ {
                    log.cut = true;
                    break;
                }
            }
            Err(e) => {
                // No event log in this store (or it failed): the page works without it.
                tracing::debug!(run_id, error = %e, "the run's event log could not be read");
                if from == 0 {
                    log.next = None;
                }
                break;
            }
        }
    }
    log
}

pub(super) async fn run_page(
    State(wf): State<Workflow>,
    Path(run_id): Path<String>,
) -> Result<Response, Failure> {
    // The log first, then the records: a step recorded in between is in the records and comes
    // again on the live stream, where the script updates its row instead of adding one.
    let log = read_log(&wf, &run_id).await;
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
    if let Some(q) = &r.queue {
        let _ = write!(body, "<dt>queue</dt><dd><a href=\"/queues\">{}</a></dd>", esc(q));
    }
    for (k, v) in [("input", &r.input), ("output", &r.output), ("error", &r.error)] {
        if let Some(v) = v {
            let _ = write!(body, "<dt>{k}</dt><dd><pre>{}</pre></dd>", esc(&format::preview(v, 2000)));
        }
    }
    body.push_str("</dl></div>");
    // Rendered for every unfinished run, shown while it waits: the live stream shows it when
    // the run starts waiting and hides it when the signal arrives.
    let waiting = r.status == RunStatus::Waiting;
    if !r.status.is_final() {
        let _ = write!(
            body,
            "<div class=\"card approval\" id=\"approval\"{hidden}><p>Waiting on signal <code>{}</code>.</p>\
             <p><input type=\"text\" id=\"note\" placeholder=\"note (sent as the reason of a rejection)\"> \
             <button id=\"approve\">Approve</button> <button id=\"reject\">Reject</button></p></div>",
            esc(r.waiting_on.as_deref().unwrap_or("?")),
            hidden = if waiting { "" } else { " hidden" },
        );
        body.push_str("<p><button id=\"cancel\">Cancel run</button></p>");
    }
    body.push_str("<p id=\"msg\" role=\"status\"></p>");
    let invocations = agent::invocations(&doc);
    if !invocations.is_empty() {
        body.push_str(&agent::render(&invocations, &log.prov, now));
    }
    body.push_str("<h2>Timeline</h2>");
    if doc.steps.is_empty() && r.status != RunStatus::Waiting {
        body.push_str("<p>No steps recorded.</p>");
    } else {
        body.push_str("<div class=\"card\">");
        body.push_str(&timeline::timeline(&doc, now));
        body.push_str(
            "<p class=\"legend\">Bars: step executions as recorded (green completed, red failed, \
             orange started), hatched: waits (signals, sleeps); dashed purple lines: signal deliveries. Replays of a \
             step write nothing, so a bar is the execution that recorded it. The timeline is drawn when the page \
             loads; the steps table and the events below follow the run live.</p></div>",
        );
    }
    body.push_str("<h2>Steps</h2>");
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
            "<tr data-step=\"{id}\"><td><code>{id}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"v\"><pre>{}</pre></td></tr>",
            esc(&s.name),
            s.status,
            s.attempts,
            s.finished_at_ms.map(|f| format::duration_ms(f - s.started_at_ms)).unwrap_or_else(|| "-".into()),
            esc(&format::preview(&value, 600)),
            id = esc(&s.step_id),
        );
    }
    body.push_str("</table>");
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
    body.push_str("<h2>Events</h2>");
    match log.next {
        Some(next) => {
            let earlier = next.saturating_sub(log.tail.len() as u64);
            let _ = write!(body, "<p class=\"legend\" id=\"live\">The run's event log");
            if earlier > 0 {
                let _ = write!(body, " ({earlier} earlier event(s) not listed)");
            }
            if log.cut {
                let _ = write!(
                    body,
                    "; only its first {MAX_EVENTS_READ} events were read for the provenance above"
                );
            }
            body.push_str(if r.status.is_final() {
                ".</p>"
            } else {
                "; new events appear below as the run writes them.</p>"
            });
            let _ = write!(body, "<ol id=\"events\" data-next=\"{next}\" start=\"{}\">", earlier + 1);
            for e in &log.tail {
                body.push_str(&agent::event_line(e));
            }
            body.push_str("</ol>");
        }
        None => body.push_str(
            "<p class=\"legend\" id=\"live\">This store keeps no event log: the page shows the run as it was \
             when it loaded, and follows its status.</p>",
        ),
    }
    body.push_str("<script src=\"/assets/run.js\" defer></script>");
    let html = page(&format!("Run {}", r.run_id), &body).0.replacen(
        "<body>",
        &format!("<body data-run=\"{}\" data-status=\"{}\">", esc(&r.run_id), r.status.as_str()),
        1,
    );
    Ok(Html(html).into_response())
}
