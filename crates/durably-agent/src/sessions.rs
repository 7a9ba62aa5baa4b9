//! Durable conversations: what the agents' `session(..)` handles share, and the functions that
//! read sessions without an agent (for operators' tools such as `durably sessions`).
//!
//! A session is a sequence of turns, and **each turn is a run of its own**:
//! `<agent>:<session>#<n>` (n from 1), of the workflow [`SESSION_WORKFLOW`]. The run's input
//! is the turn (`{"turn": {"agent", "session", "turn", "turn_id", "message"}}`), its steps are
//! the agent's model and tool calls as in any agent run, and its output is the turn's record
//! (`{"turn_id", "output", "usage", "model_calls"}`, plus a `summary` when the turn compacted
//! the history, and an `exchange` with its tool calls and results). The history a turn sends is
//! rebuilt from the earlier turns' messages, tool calls and results, and answers, read in one
//! store call, never copied from turn to turn: storage grows with the messages.
//!
//! After a crash, [`resume`] resumes an agent's interrupted turns with no send (as
//! `Workflow::recover` does for workflows); the next send of a session also finishes its
//! unfinished turn first.
//!
//! - One turn at a time: a turn executes under its run's lease, and a send first finishes
//!   the session's unfinished turn, if any (another send's, or one that crashed). A busy
//!   session fails a send with `Error::RunInProgress`, or makes it wait (`.wait(true)`).
//! - Idempotent turns: `send_with_id(turn_id, message)` returns the recorded answer of a
//!   completed turn with no model request, and resumes an unfinished one from its steps.
//! - History: `.history_limit(n)` sends at most the last `n` messages of the earlier turns;
//!   `.compact_after(k)` summarizes every `k` turns with a model call recorded as a step.

pub use crate::core::session::{
    ChatMessage, MAX_ID_BYTES, ResumedTurn, Role, SESSION_WORKFLOW, Session, SessionAgent, SessionInfo,
    resume,
};

use durably_core::{Result, RunStatus, Workflow};
use serde::{Deserialize, Serialize};

use crate::core::session::{check_id, delete_session, read_turns, transcript, turn_run_id};

/// Every session in `wf`'s store, of every agent, most recently active first.
pub async fn list(wf: &Workflow) -> Result<Vec<SessionInfo>> {
    crate::core::session::list_sessions(wf).await
}

/// The conversation of session `session` of agent `agent`: each completed turn's message and
/// answer, in order.
pub async fn messages(wf: &Workflow, agent: &str, session: &str) -> Result<Vec<ChatMessage>> {
    check_id("session id", session)?;
    let turns = read_turns::<serde_json::Value>(wf, agent, session).await?;
    Ok(transcript(&turns))
}

/// One turn of a session as an operator sees it: its run, its message, its status and, once
/// completed, its answer, token usage and number of model calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TurnInfo {
    /// The turn's number, from 1.
    pub turn: u32,
    /// The turn's run, `<agent>:<session>#<turn>`: its steps are the agent's model and tool
    /// calls.
    pub run_id: String,
    /// The turn id the send gave (sending it again returns the recorded answer).
    pub turn_id: String,
    /// The user's message.
    pub message: String,
    /// The status of the turn's run.
    pub status: RunStatus,
    /// The signal a waiting turn waits for (an approval of one of its tool calls).
    pub waiting_on: Option<String>,
    /// The answer of a completed turn.
    pub output: Option<String>,
    /// The token usage of a completed turn, in the agent's usage type as JSON
    /// (`prompt_tokens`/`completion_tokens` for the OpenAI agent, `input_tokens`/`output_tokens`
    /// for rig).
    pub usage: Option<serde_json::Value>,
    /// How many model calls a completed turn made.
    pub model_calls: Option<u32>,
}

/// The turns of session `session` of agent `agent`, in order, read in one store call: the
/// completed ones with their answers, and an unfinished or failed one with its status.
pub async fn turns(wf: &Workflow, agent: &str, session: &str) -> Result<Vec<TurnInfo>> {
    check_id("session id", session)?;
    let turns = read_turns::<serde_json::Value>(wf, agent, session).await?;
    Ok(turns
        .into_iter()
        .map(|t| TurnInfo {
            turn: t.input.turn,
            run_id: turn_run_id(agent, session, t.input.turn),
            turn_id: t.input.turn_id,
            message: t.input.message,
            status: t.status,
            waiting_on: t.waiting_on,
            output: t.record.as_ref().map(|r| r.output.clone()),
            usage: t.record.as_ref().map(|r| r.usage.clone()),
            model_calls: t.record.as_ref().map(|r| r.model_calls),
        })
        .collect())
}

/// Deletes session `session` of agent `agent` (every turn's run with its steps); returns how
/// many turns were deleted.
pub async fn delete(wf: &Workflow, agent: &str, session: &str) -> Result<usize> {
    delete_session(wf, agent, session).await
}
