//! The one response type of an agent run, for both agents: the final text, the conversation in
//! the client library's message type `M`, token usage in its usage type `U`, and the number of
//! model calls. It is the run's output too, so a completed run returns it from the store.

use serde::{Deserialize, Serialize};

/// What an agent run returns: `durably_agent::rig::AgentResponse` and
/// `durably_agent::openai::AgentRun` are this type with each library's messages and usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AgentResponse<M, U> {
    /// The model's final answer.
    pub output: String,
    /// The run's messages, in order: the prompts, every assistant turn (with its tool calls)
    /// and every tool result.
    pub messages: Vec<M>,
    /// Token usage summed over every model call of the run (replayed calls included, so the
    /// figure is the same on every execution).
    pub usage: U,
    /// How many model calls the run made (0 in outputs recorded before it was counted).
    #[serde(default)]
    pub turns: u32,
}

impl<M, U> AgentResponse<M, U> {
    pub(crate) fn new(output: String, messages: Vec<M>, usage: U, turns: u32) -> Self {
        AgentResponse { output, messages, usage, turns }
    }
}
