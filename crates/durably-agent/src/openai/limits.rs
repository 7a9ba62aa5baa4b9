//! The OpenAI agent's bounds: timeouts, the run's deadline, the budget, the longest
//! provider-asked wait (see the agent core's `limits`).

use std::time::Duration;

use super::OpenAiAgentBuilder;
use crate::Budget;

impl OpenAiAgentBuilder {
    /// The most one run may spend (tokens, model calls, tool calls), counted from what its
    /// steps recorded; passing it ends the run with
    /// [`AgentError::BudgetExceeded`](crate::AgentError::BudgetExceeded).
    pub fn budget(mut self, budget: Budget) -> Self {
        self.settings_mut().limits.budget = budget;
        self
    }

    /// How long one attempt of a model call may take: a request with no answer by then is
    /// abandoned and retried per the model `TaskConfig`, like a timeout.
    pub fn model_timeout(mut self, limit: Duration) -> Self {
        self.settings_mut().limits.model_timeout = Some(limit);
        self
    }

    /// How long one attempt of a tool call may take: retried per the tool `TaskConfig`, then
    /// shown to the model as the tool's error.
    pub fn tool_timeout(mut self, limit: Duration) -> Self {
        self.settings_mut().limits.tool_timeout = Some(limit);
        self
    }

    /// How long a whole run may take, from when it first started: the deadline is recorded as
    /// the step `<agent>.deadline`, so a run resumed after a crash keeps it. Passing it ends the
    /// run with [`AgentError::DeadlineExceeded`](crate::AgentError::DeadlineExceeded).
    pub fn run_timeout(mut self, limit: Duration) -> Self {
        self.settings_mut().limits.run_timeout = Some(limit);
        self
    }

    /// The longest wait a provider's `retry-after` may impose before the next attempt
    /// (default 60 s); a longer one is cut to this.
    pub fn max_retry_after(mut self, limit: Duration) -> Self {
        self.settings_mut().limits.max_retry_after = limit;
        self
    }
}
