//! What bounds an agent run: its [`Budget`] (tokens, model calls, tool calls), and the typed
//! [`AgentError`]s a run ends with when a bound is reached or its answer does not fit.

use std::fmt;

use durably_core::Error;
use serde::{Deserialize, Serialize};

/// The most one agent run may spend, counted from what its steps recorded, so that a run
/// resumed after a crash counts what it spent before it: none of a token budget is forgotten,
/// and none is counted twice.
///
/// ```
/// use durably_agent::Budget;
/// let budget = Budget::new().total_tokens(20_000).model_calls(8).tool_calls(20);
/// assert_eq!(budget.model_calls, Some(8));
/// ```
///
/// Token budgets are checked after each model call (the call that passes the limit ends the
/// run); call budgets before each call (the call that would pass the limit is not made). A
/// budget of zero allows nothing and is refused when the agent is invoked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Budget {
    /// Tokens of the requests, summed over the run's model calls.
    pub prompt_tokens: Option<u64>,
    /// Tokens of the responses.
    pub completion_tokens: Option<u64>,
    /// Both.
    pub total_tokens: Option<u64>,
    /// Model calls.
    pub model_calls: Option<u64>,
    /// Tool calls.
    pub tool_calls: Option<u64>,
}

impl Budget {
    /// No limit on anything.
    pub fn new() -> Self {
        Budget::default()
    }

    /// At most `n` prompt tokens.
    pub fn prompt_tokens(mut self, n: u64) -> Self {
        self.prompt_tokens = Some(n);
        self
    }

    /// At most `n` completion tokens.
    pub fn completion_tokens(mut self, n: u64) -> Self {
        self.completion_tokens = Some(n);
        self
    }

    /// At most `n` tokens in all.
    pub fn total_tokens(mut self, n: u64) -> Self {
        self.total_tokens = Some(n);
        self
    }

    /// At most `n` model calls.
    pub fn model_calls(mut self, n: u64) -> Self {
        self.model_calls = Some(n);
        self
    }

    /// At most `n` tool calls.
    pub fn tool_calls(mut self, n: u64) -> Self {
        self.tool_calls = Some(n);
        self
    }

    /// Each limit set, with its kind.
    pub(crate) fn limits(&self) -> impl Iterator<Item = (BudgetKind, u64)> {
        [
            (BudgetKind::PromptTokens, self.prompt_tokens),
            (BudgetKind::CompletionTokens, self.completion_tokens),
            (BudgetKind::TotalTokens, self.total_tokens),
            (BudgetKind::ModelCalls, self.model_calls),
            (BudgetKind::ToolCalls, self.tool_calls),
        ]
        .into_iter()
        .filter_map(|(kind, limit)| limit.map(|l| (kind, l)))
    }

    /// Refuses a limit of zero, naming the agent and the budget.
    pub(crate) fn validate(&self, agent: &str) -> Result<(), Error> {
        match self.limits().find(|(_, limit)| *limit == 0) {
            Some((kind, _)) => Err(Error::Invalid {
                what: "agent budget",
                detail: format!(
                    "agent `{agent}` has a {kind} budget of 0, which allows no run at all; \
                     give it a positive limit or leave it unset"
                ),
            }),
            None => Ok(()),
        }
    }
}

/// One limit of a [`Budget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BudgetKind {
    /// [`Budget::prompt_tokens`].
    PromptTokens,
    /// [`Budget::completion_tokens`].
    CompletionTokens,
    /// [`Budget::total_tokens`].
    TotalTokens,
    /// [`Budget::model_calls`].
    ModelCalls,
    /// [`Budget::tool_calls`].
    ToolCalls,
}

impl fmt::Display for BudgetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BudgetKind::PromptTokens => "prompt_tokens",
            BudgetKind::CompletionTokens => "completion_tokens",
            BudgetKind::TotalTokens => "total_tokens",
            BudgetKind::ModelCalls => "model_calls",
            BudgetKind::ToolCalls => "tool_calls",
        })
    }
}

/// Why an agent run ended without an answer, beyond a failed step: a budget spent, a deadline
/// passed, an answer that does not fit the type asked for. Returned inside
/// [`Error::Permanent`]; [`agent_error_of`] finds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// A [`Budget`] limit was reached.
    #[error("run `{run_id}` reached its {budget} budget at step `{step_id}`: limit {limit}, used {used}")]
    BudgetExceeded {
        /// The run.
        run_id: String,
        /// The step that reached it (the call not made, or the model call that passed it).
        step_id: String,
        /// Which limit.
        budget: BudgetKind,
        /// The limit.
        limit: u64,
        /// What was used (or would have been, for a call not made).
        used: u64,
    },
    /// The run's deadline passed before it finished.
    #[error(
        "run `{run_id}` passed its deadline (recorded at step `{step_id}`, {timeout_ms} ms after the run \
         first started) before it finished"
    )]
    DeadlineExceeded {
        /// The run.
        run_id: String,
        /// The step that recorded the deadline.
        step_id: String,
        /// The run's time limit, in milliseconds.
        timeout_ms: u64,
        /// When the deadline fell (milliseconds since the Unix epoch).
        deadline_ms: i64,
    },
    /// An MCP server could not answer a tool call: it exited, or its connection closed. The
    /// error of the call's step (which names the run and the step) carries it.
    #[error("MCP server `{server}` could not answer the call of `{tool}`: {detail}")]
    McpServer {
        /// The server's name.
        server: String,
        /// The tool called.
        tool: String,
        /// What the connection reported.
        detail: String,
    },
    /// The model's answer did not fit the type asked for, after every retry.
    #[error(
        "run `{run_id}`: the answer of step `{step_id}` does not fit `{type_name}` after {attempts} \
         attempt(s): {detail}"
    )]
    InvalidOutput {
        /// The run.
        run_id: String,
        /// The model step of the last answer.
        step_id: String,
        /// The type asked for.
        type_name: String,
        /// How many answers were checked.
        attempts: u32,
        /// Why the last one did not fit.
        detail: String,
    },
}

impl From<AgentError> for Error {
    fn from(error: AgentError) -> Self {
        Error::permanent(error)
    }
}

/// The [`AgentError`] an agent run ended with, if `error` is one.
///
/// ```
/// # fn demo(err: durably_core::Error) {
/// if let Some(durably_agent::AgentError::BudgetExceeded { budget, limit, used, .. }) =
///     durably_agent::agent_error_of(&err)
/// {
///     eprintln!("{budget}: {used} of {limit}");
/// }
/// # }
/// ```
pub fn agent_error_of(error: &Error) -> Option<&AgentError> {
    error.downcast_source_ref::<AgentError>()
}
