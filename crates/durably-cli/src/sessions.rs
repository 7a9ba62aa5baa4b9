//! `durably sessions` and `durably show <session>`: the durable conversations of a store, read
//! through `durably_agent::sessions` (a session is the runs of its turns).

use std::io::Write;

use anyhow::Result;
use durably_agent::sessions::{self, ChatMessage, Role, SessionInfo};
use durably_core::{Workflow, now_ms};

use crate::format;

/// Writes the sessions of the store (of `agent` only, when given), as a table or JSON.
pub async fn list(wf: &Workflow, agent: Option<&str>, json: bool, out: &mut dyn Write) -> Result<()> {
    let mut all = sessions::list(wf).await?;
    if let Some(agent) = agent {
        all.retain(|s| s.agent == agent);
    }
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
    } else if all.is_empty() {
        writeln!(out, "no sessions")?;
    } else {
        let now = now_ms();
        let rows: Vec<Vec<String>> = all
            .iter()
            .map(|s| {
                vec![
                    s.session.clone(),
                    s.agent.clone(),
                    s.turns.to_string(),
                    s.completed.to_string(),
                    format!("{} ago", format::duration_ms(now - s.updated_at_ms)),
                ]
            })
            .collect();
        write!(out, "{}", format::table(&["SESSION", "AGENT", "TURNS", "COMPLETED", "ACTIVE"], &rows))?;
    }
    Ok(())
}

/// The sessions `name` may mean: `<session>` of any agent, or `<agent>:<session>`.
pub async fn find(wf: &Workflow, name: &str) -> Result<Vec<SessionInfo>> {
    let all = sessions::list(wf).await?;
    Ok(all
        .into_iter()
        .filter(|s| s.session == name || format!("{}:{}", s.agent, s.session) == name)
        .collect())
}

/// Writes the messages of each of `found`, as text or JSON.
pub async fn show(wf: &Workflow, found: &[SessionInfo], json: bool, out: &mut dyn Write) -> Result<()> {
    let mut docs = Vec::new();
    for s in found {
        let messages = sessions::messages(wf, &s.agent, &s.session).await?;
        if json {
            docs.push(serde_json::json!({ "agent": s.agent, "session": s.session, "messages": messages }));
        } else {
            write!(out, "{}", show_text(s, &messages))?;
        }
    }
    if json {
        let doc = if docs.len() == 1 { docs.remove(0) } else { serde_json::Value::Array(docs) };
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    }
    Ok(())
}

fn show_text(s: &SessionInfo, messages: &[ChatMessage]) -> String {
    let mut text = format!(
        "session   {}\nagent     {}\nturns     {} ({} completed)\nupdated   {} UTC\n\n",
        s.session,
        s.agent,
        s.turns,
        s.completed,
        format::time(s.updated_at_ms)
    );
    for m in messages {
        let who = match m.role {
            Role::User => "user",
            Role::Assistant => "assistant",
            _ => "?",
        };
        text.push_str(&format!("{who:>9}: {}\n", m.content));
    }
    if messages.is_empty() {
        text.push_str("no completed turns\n");
    }
    text
}
