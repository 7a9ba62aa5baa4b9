//! The run page's SVG timeline, drawn on the server from the run's export.

use std::fmt::Write as _;

use durably_core::{RunExport, RunStatus, StepStatus};

use super::pages::esc;
use crate::format;

/// The inline SVG timeline: one bar per step from its start to its end (or now), coloured by
/// status, waits (signals, sleeps) hatched, retries annotated, signal deliveries as ticks.
pub(super) fn timeline(doc: &RunExport, now: i64) -> String {
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
