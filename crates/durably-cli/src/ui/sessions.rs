//! The sessions pages: the agents' durable conversations, read through
//! `durably_agent::sessions` as `durably sessions` reads them (each turn is a run of its own,
//! `<agent>:<session>#<n>`), and one session's turns, each linking to its run's agent view.

use std::fmt::Write as _;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use durably_agent::sessions::{self, TurnInfo};
use durably_core::{RunStatus, Workflow, now_ms};
use serde_json::Value;

use super::Failure;
use super::pages::{badge_plain, esc, page, seg};
use crate::format;

pub(super) async fn sessions_page(State(wf): State<Workflow>) -> Result<Html<String>, Failure> {
    let all = sessions::list(&wf).await?;
    let now = now_ms();
    let mut body = String::from("<h1>Sessions</h1>");
    if all.is_empty() {
        body.push_str("<p>No sessions. An agent's <code>session(id)</code> records each turn as a run.</p>");
        return Ok(page("Sessions", &body));
    }
    body.push_str(
        "<table id=\"sessions\"><tr><th>Session</th><th>Agent</th><th>Turns</th><th>Completed</th><th>Active</th></tr>",
    );
    for s in &all {
        let _ = write!(
            body,
            "<tr><td><a href=\"/sessions/{}/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{} ago</td></tr>",
            seg(&s.agent),
            seg(&s.session),
            esc(&s.session),
            esc(&s.agent),
            s.turns,
            s.completed,
            format::duration_ms(now - s.updated_at_ms)
        );
    }
    body.push_str("</table>");
    Ok(page("Sessions", &body))
}

pub(super) async fn session_page(
    State(wf): State<Workflow>,
    Path((agent, session)): Path<(String, String)>,
) -> Result<Response, Failure> {
    let turns = match sessions::turns(&wf, &agent, &session).await {
        Ok(turns) => turns,
        // A session id that cannot exist (empty, too long) is no session either.
        Err(durably_core::Error::Invalid { .. }) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    if turns.is_empty() {
        let body = format!(
            "<h1>Session not found</h1><p>No session <code>{}</code> of agent <code>{}</code>.</p>",
            esc(&session),
            esc(&agent)
        );
        return Ok((StatusCode::NOT_FOUND, page("Not found", &body)).into_response());
    }
    Ok(page(&format!("Session {session}"), &session_body(&agent, &session, &turns)).into_response())
}

/// The session page's body: a card per turn with the message, the answer, the tokens, and a
/// link to the turn's run (its agent view).
pub(super) fn session_body(agent: &str, session: &str, turns: &[TurnInfo]) -> String {
    let completed = turns.iter().filter(|t| t.status == RunStatus::Completed).count();
    let (tin, tout) = turns.iter().fold((0, 0), |(a, b), t| {
        let (i, o) = tokens(t.usage.as_ref());
        (a + i.unwrap_or(0), b + o.unwrap_or(0))
    });
    let mut body = format!(
        "<h1>Session <code>{}</code></h1><div class=\"card\"><dl><dt>agent</dt><dd>{}</dd><dt>turns</dt><dd>{} \
         ({completed} completed)</dd><dt>tokens</dt><dd>{tin} in / {tout} out (completed turns; durably keeps no \
         price table)</dd></dl></div><ol id=\"turns\" class=\"conv\">",
        esc(session),
        esc(agent),
        turns.len()
    );
    for t in turns {
        let (i, o) = tokens(t.usage.as_ref());
        let usage = match (i, o) {
            (None, None) => String::new(),
            (i, o) => format!(
                " · {} in / {} out tokens",
                i.map_or_else(|| "?".into(), |n| n.to_string()),
                o.map_or_else(|| "?".into(), |n| n.to_string())
            ),
        };
        let calls = t.model_calls.map(|n| format!(" · {n} model call(s)")).unwrap_or_default();
        let _ = write!(
            body,
            "<li class=\"turn\" data-turn=\"{n}\"><p><b>turn {n}</b> {st} <a href=\"/runs/{href}\">run <code>{id}</code></a>{usage}{calls} \
             · turn id <code>{tid}</code></p><div class=\"msg user\"><b>user</b><pre>{msg}</pre></div>",
            n = t.turn,
            st = badge_plain(t.status),
            href = seg(&t.run_id),
            id = esc(&t.run_id),
            tid = esc(&t.turn_id),
            msg = esc(&format::preview_keep_lines(&t.message, 4000)),
        );
        match (&t.output, t.status) {
            (Some(out), _) => {
                let _ = write!(
                    body,
                    "<div class=\"msg assistant\"><b>assistant</b><pre>{}</pre></div>",
                    esc(&format::preview_keep_lines(out, 4000))
                );
            }
            (None, RunStatus::Waiting) => {
                let _ = write!(
                    body,
                    "<p class=\"ap ap-requested\">waiting on <code>{}</code>: approve or reject it on the \
                     <a href=\"/runs/{}\">turn's run page</a></p>",
                    esc(t.waiting_on.as_deref().unwrap_or("?")),
                    seg(&t.run_id)
                );
            }
            (None, status) => {
                let _ = write!(body, "<p class=\"legend\">no answer: the turn is {status}</p>");
            }
        }
        body.push_str("</li>");
    }
    body.push_str("</ol>");
    body
}

/// Input and output tokens of a turn's usage, in either agent's spelling.
fn tokens(usage: Option<&Value>) -> (Option<u64>, Option<u64>) {
    let Some(u) = usage else { return (None, None) };
    let get = |a: &str, b: &str| u.get(a).or_else(|| u.get(b)).and_then(Value::as_u64);
    (get("prompt_tokens", "input_tokens"), get("completion_tokens", "output_tokens"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn a_session_page_shows_each_turn_escaped_with_its_tokens() {
        let turns: Vec<TurnInfo> = serde_json::from_value(json!([
            {"turn": 1, "run_id": "support:c<1>#1", "turn_id": "t-1", "message": "I am <Ann>", "status": "completed",
             "waiting_on": null, "output": "Hello & welcome", "usage": {"prompt_tokens": 12, "completion_tokens": 3},
             "model_calls": 1},
            {"turn": 2, "run_id": "support:c<1>#2", "turn_id": "t-2", "message": "pay", "status": "waiting",
             "waiting_on": "approve:support.tool.pay#1.call_1", "output": null, "usage": null, "model_calls": null}
        ]))
        .unwrap();
        let html = session_body("support", "c<1>", &turns);
        assert!(!html.contains("<Ann>") && html.contains("I am &lt;Ann&gt;"), "{html}");
        assert!(html.contains("Hello &amp; welcome"), "{html}");
        assert!(html.contains("href=\"/runs/support%3Ac%3C1%3E%231\""), "the turn's run, encoded: {html}");
        assert!(html.contains("12 in / 3 out tokens") && html.contains("1 model call(s)"), "{html}");
        assert!(html.contains("waiting on <code>approve:support.tool.pay#1.call_1</code>"), "{html}");
        assert!(html.contains("2 (1 completed)"), "{html}");
    }
}
