//! The queues page: each queue's depth, executing and parked runs, oldest wait and limits, from
//! the same rows as `durably queues` (`crate::queues::rows`).

use std::fmt::Write as _;

use axum::extract::State;
use axum::response::Html;
use durably_core::{Workflow, now_ms};

use super::Failure;
use super::pages::{esc, page};
use crate::queues::{QueueRow, oldest_text, rows};

pub(super) async fn queues_page(State(wf): State<Workflow>) -> Result<Html<String>, Failure> {
    let rows = rows(&wf, None)
        .await
        .map_err(|e| Failure(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(page("Queues", &queues_body(&rows, now_ms())))
}

/// The page's body for `rows`, at time `now`.
pub(super) fn queues_body(rows: &[QueueRow], now: i64) -> String {
    let mut body = String::from("<h1>Queues</h1>");
    if rows.is_empty() {
        body.push_str("<p>No queues: no run in this store was enqueued.</p>");
        return body;
    }
    body.push_str(
        "<table id=\"queues\"><tr><th>Queue</th><th>Enqueued (depth)</th><th>Executing</th><th>Parked</th>\
         <th>Oldest waiting</th><th>Limits</th></tr>",
    );
    for r in rows {
        let limits = match &r.limits {
            Some(l) => esc(l),
            None => "<span class=\"legend\">not defined here</span>".to_owned(),
        };
        let _ = write!(
            body,
            "<tr data-queue=\"{q}\"><td><code>{q}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{limits}</td></tr>",
            r.enqueued,
            r.executing,
            r.parked,
            oldest_text(r, now),
            q = esc(&r.queue),
        );
    }
    body.push_str(
        "</table><p class=\"legend\">Counts are the store's, over every worker. Limits are set by the \
         application's queue definitions and are not kept in the store: they show for the queues the engine \
         serving this page defines (<code>durably ui</code> and <code>durably serve</code> define none).</p>",
    );
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_show_depth_executing_oldest_wait_and_limits() {
        let rows = vec![
            QueueRow {
                queue: "mail<x>".into(),
                enqueued: 3,
                executing: 2,
                parked: 1,
                oldest_enqueued_at_ms: Some(6_000),
                limits: Some("concurrency 2".into()),
            },
            QueueRow {
                queue: "other".into(),
                enqueued: 0,
                executing: 0,
                parked: 0,
                oldest_enqueued_at_ms: None,
                limits: None,
            },
        ];
        let html = queues_body(&rows, 10_000);
        assert!(html.contains("<code>mail&lt;x&gt;</code></td><td>3</td><td>2</td><td>1</td><td>4.0s ago</td><td>concurrency 2</td>"), "{html}");
        assert!(html.contains("<td>-</td><td><span class=\"legend\">not defined here</span>"), "{html}");
        assert!(queues_body(&[], 0).contains("No queues"));
    }
}
