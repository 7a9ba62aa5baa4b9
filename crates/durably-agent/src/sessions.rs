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

use durably_core::{Result, Workflow};

use crate::core::session::{check_id, delete_session, read_turns, transcript};

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

/// Deletes session `session` of agent `agent` (every turn's run with its steps); returns how
/// many turns were deleted.
pub async fn delete(wf: &Workflow, agent: &str, session: &str) -> Result<usize> {
    delete_session(wf, agent, session).await
}
