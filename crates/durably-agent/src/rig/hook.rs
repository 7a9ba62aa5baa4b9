//! The hook: every tool call is a step. `on_dispatch` answers the call itself (from the record,
//! or by running the tool inside the step, after an approval when the tool needs one) and denies
//! rig's own dispatch; `on_outcome` then hands rig that answer in place of the denial.

use std::sync::Arc;

use durably_core::{Error, StepStatus};
use rig_agent::agent::{AgentHook, DispatchAction, DispatchEvent, HookContext, OutcomeAction, OutcomeEvent};
use rig_core::effect::{EffectKind, Outcome};
use rig_core::error::{ErrorKind, ErrorReport};
use rig_core::tool::{ToolContext, ToolExecutionError, ToolResult};
use serde_json::json;

use super::invocation::Invocation;
use crate::core::ids::approval_signal;
use crate::{Approval, request_hash};

pub(crate) struct DurableHook {
    pub(crate) inv: Arc<Invocation>,
}

/// A tool attempt that failed and may be tried again.
#[derive(Debug, thiserror::Error)]
#[error("tool `{tool}` failed: {message}")]
struct ToolAttemptError {
    tool: String,
    message: String,
}

impl DurableHook {
    async fn answer(&self, event: &DispatchEvent<'_>, name: &str, args: &str) -> Result<Outcome, Error> {
        let ctx = self.inv.context()?;
        let call_id = event.call_id.map(|c| c.wire().into_owned());
        let (step_id, task) = self.inv.tool_step(name, event.turn, call_id.as_deref());
        let recorded = ctx.recorded_step(&step_id).is_some_and(|r| r.status == StepStatus::Completed);

        let mut rejection = None;
        if !recorded && self.inv.approvals.contains(name) {
            let approval: Approval = durably_core::signal(&approval_signal(&step_id)).await?;
            if !approval.approved {
                let reason = approval.reason.unwrap_or_else(|| "no reason given".into());
                rejection = Some(ToolResult::failed(ToolExecutionError::refused(format!(
                    "the call of `{name}` was not approved: {reason}"
                ))));
            }
        }

        let hash =
            request_hash(&json!({ "tool": name, "args": args })).map_err(|source| Error::Serialize {
                run_id: self.inv.run_id.clone(),
                step_id: step_id.clone(),
                what: "tool call",
                type_name: "rig_core::effect::EffectKind",
                source,
            })?;
        let tools = self.inv.tools().ok_or_else(|| Error::Invalid {
            what: "agent",
            detail: format!("agent `{}` has no tool registry", self.inv.agent),
        })?;
        let config = self.inv.tool_config;
        let context: ToolContext = event.context.cloned().unwrap_or_default();
        let (name, args) = (name.to_owned(), args.to_owned());
        durably_core::step(task, move || {
            let tools = tools.clone();
            let mut context = context.clone();
            let rejection = rejection.clone();
            let (name, args) = (name.clone(), args.clone());
            async move {
                if let Some(result) = rejection {
                    return Ok(Outcome::ToolResult { result });
                }
                let result = tools.execute(&name, &args, &mut context).await;
                if let Some(error) = result.error() {
                    let attempt = durably_core::current_step().map_or(u32::MAX, |s| s.attempt);
                    let retryable = error.retryable().unwrap_or(true);
                    // A failure that will not be tried again is the tool's answer: recorded,
                    // and shown to the model, like rig does.
                    if retryable && attempt <= config.retries {
                        return Err(ToolAttemptError { tool: name, message: error.message().to_owned() });
                    }
                }
                Ok(Outcome::ToolResult { result })
            }
        })
        .step_id(step_id)
        .request_hash(hash)
        .retries(config.retries)
        .backoff(config.backoff)
        .await
    }
}

impl AgentHook for DurableHook {
    fn name(&self) -> Option<String> {
        Some("durably".into())
    }

    async fn on_dispatch(&self, _ctx: &HookContext, event: DispatchEvent<'_>) -> DispatchAction {
        let EffectKind::ToolCall { name, args } = event.kind else {
            return DispatchAction::Proceed;
        };
        match self.answer(&event, name, args).await {
            Ok(outcome) => {
                self.inv.hold_answer(event.id, outcome);
                DispatchAction::Deny(ErrorReport::new(ErrorKind::Other, "answered by its durably step"))
            }
            Err(error) => {
                let reason = error.to_string();
                self.inv.fail(error);
                DispatchAction::stop(reason)
            }
        }
    }

    async fn on_outcome(&self, _ctx: &HookContext, event: OutcomeEvent<'_>) -> OutcomeAction {
        match self.inv.take_answer(event.id) {
            Some(outcome) => OutcomeAction::Replace(Ok(outcome)),
            None => OutcomeAction::Proceed,
        }
    }
}
