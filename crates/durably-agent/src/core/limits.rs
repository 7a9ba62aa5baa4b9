//! The bounds of one invocation, shared by both agents: per-attempt timeouts of model and tool
//! calls, the run's deadline (recorded as a step, so that a resumed run keeps the deadline it
//! started with), the longest provider-asked wait, and the [`Budget`] checked against what the
//! invocation's steps recorded.

use std::future::Future;
use std::time::Duration;

use durably_core::journal::{RunContext, StepRecord, StepStatus, now_ms};
use durably_core::{Error, Result};

use super::ids::{Step, step_id};
use super::invocation::{Invocation, lock};
use super::provider::DEFAULT_MAX_RETRY_AFTER;
use super::settings::Settings;
use crate::{AgentError, Budget, BudgetKind};

/// The model answers this many times again when a structured answer does not fit, unless told
/// otherwise.
pub(crate) const DEFAULT_OUTPUT_RETRIES: u32 = 2;

/// An agent's bounds; the builders of both agents set them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The longest an attempt of a model call may take before it is abandoned and retried.
    pub(crate) model_timeout: Option<Duration>,
    /// The same for an attempt of a tool call.
    pub(crate) tool_timeout: Option<Duration>,
    /// The longest a whole run may take, counted from its first start.
    pub(crate) run_timeout: Option<Duration>,
    /// The longest wait a provider's `retry-after` may impose.
    pub(crate) max_retry_after: Duration,
    pub(crate) budget: Budget,
    /// How many more answers structured output asks for when one does not fit.
    pub(crate) output_retries: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            model_timeout: None,
            tool_timeout: None,
            run_timeout: None,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            budget: Budget::default(),
            output_retries: DEFAULT_OUTPUT_RETRIES,
        }
    }
}

/// What an invocation spent so far, replayed calls included.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Spent {
    pub(crate) prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
    pub(crate) total_tokens: u64,
    pub(crate) tool_calls: u64,
}

impl Invocation {
    fn exceeded(&self, step_id: &str, budget: BudgetKind, limit: u64, used: u64) -> Error {
        AgentError::BudgetExceeded {
            run_id: self.run_id.clone(),
            step_id: step_id.to_owned(),
            budget,
            limit,
            used,
        }
        .into()
    }

    /// Before model call `step_id` (the invocation's `model_calls()`-th): within the budget?
    pub(crate) fn check_model_budget(&self, step_id: &str) -> Result<()> {
        let n = u64::from(self.model_calls());
        match self.settings.limits.budget.model_calls {
            Some(limit) if n > limit => Err(self.exceeded(step_id, BudgetKind::ModelCalls, limit, n)),
            _ => Ok(()),
        }
    }

    /// Before tool call `step_id`: counts it, and refuses it past the budget.
    pub(crate) fn check_tool_budget(&self, step_id: &str) -> Result<()> {
        let n = {
            let mut spent = lock(&self.spent);
            spent.tool_calls += 1;
            spent.tool_calls
        };
        match self.settings.limits.budget.tool_calls {
            Some(limit) if n > limit => Err(self.exceeded(step_id, BudgetKind::ToolCalls, limit, n)),
            _ => Ok(()),
        }
    }

    /// After model call `step_id` (recorded or live) answered with this usage: adds it, and
    /// ends the run when a token budget is passed.
    pub(crate) fn add_usage(&self, step_id: &str, prompt: u64, completion: u64, total: u64) -> Result<()> {
        let spent = {
            let mut spent = lock(&self.spent);
            spent.prompt_tokens += prompt;
            spent.completion_tokens += completion;
            spent.total_tokens += total;
            *spent
        };
        for (kind, limit) in self.settings.limits.budget.limits() {
            let used = match kind {
                BudgetKind::PromptTokens => spent.prompt_tokens,
                BudgetKind::CompletionTokens => spent.completion_tokens,
                BudgetKind::TotalTokens => spent.total_tokens,
                _ => continue,
            };
            if used > limit {
                return Err(self.exceeded(step_id, kind, limit, used));
            }
        }
        Ok(())
    }
}

/// Runs `body`, an invocation under `prefix` in the current run, within the run's deadline when
/// the agent has one. The deadline is the step `<prefix>.deadline`, recorded when the run first
/// starts: a resumed run keeps it rather than starting a fresh one.
pub(crate) async fn within_deadline<T>(
    settings: &Settings,
    prefix: &str,
    body: impl Future<Output = Result<T>>,
) -> Result<T> {
    settings.limits.budget.validate(&settings.name)?;
    super::listing::record_tool_lists(settings, prefix).await?;
    let Some(timeout) = settings.limits.run_timeout else { return body.await };
    let ctx = RunContext::current().ok_or_else(|| Error::Invalid {
        what: "agent run",
        detail: format!("agent `{}` was invoked outside a workflow run", settings.name),
    })?;
    let step = step_id(&settings.name, prefix, Step::Deadline);
    let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    let deadline_ms = match ctx.replay_step(&step.id, &step.task)? {
        Some(rec) if rec.status == StepStatus::Completed => {
            let text = rec.value.as_deref().unwrap_or("null");
            serde_json::from_str::<i64>(text).map_err(|source| Error::Deserialize {
                run_id: ctx.run_id().to_owned(),
                step_id: step.id.clone(),
                what: "agent deadline",
                type_name: "i64",
                source,
            })?
        }
        _ => {
            let deadline = now_ms().saturating_add(i64::try_from(timeout_ms).unwrap_or(i64::MAX));
            let mut rec = StepRecord::new(&step.id, &step.task, StepStatus::Completed, now_ms());
            rec.value = Some(deadline.to_string());
            ctx.save_step(rec).await?;
            deadline
        }
    };
    let left = Duration::from_millis(u64::try_from(deadline_ms.saturating_sub(now_ms())).unwrap_or(0));
    let passed = || -> Error {
        AgentError::DeadlineExceeded {
            run_id: ctx.run_id().to_owned(),
            step_id: step.id.clone(),
            timeout_ms,
            deadline_ms,
        }
        .into()
    };
    if left.is_zero() {
        return Err(passed());
    }
    match tokio::time::timeout(left, body).await {
        Ok(outcome) => outcome,
        Err(_) => Err(passed()),
    }
}
