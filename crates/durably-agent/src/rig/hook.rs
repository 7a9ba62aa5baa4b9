//! The hook: every tool call is a core tool step. `on_dispatch` answers the call itself (from
//! the record, or by running the tool inside the step) and denies rig's own dispatch;
//! `on_outcome` then hands rig that answer in place of the denial.

use std::sync::Arc;

use durably_core::Error;
use rig_agent::agent::{AgentHook, DispatchAction, DispatchEvent, HookContext, OutcomeAction, OutcomeEvent};
use rig_core::effect::{EffectKind, Outcome};
use rig_core::error::{ErrorKind, ErrorReport};
use rig_core::tool::{ToolContext, ToolExecutionError, ToolResult};

use super::invocation::RigInvocation;
use crate::core::tool::{Attempt, TimedOut, ToolCallRef};

impl TimedOut for Outcome {
    fn timed_out(message: String) -> Self {
        let error = rig_core::tool::ToolExecutionError::new(rig_core::tool::ToolErrorKind::Timeout, message);
        Outcome::ToolResult { result: ToolResult::failed(error) }
    }
}

pub(crate) struct DurableHook {
    pub(crate) inv: Arc<RigInvocation>,
}

impl DurableHook {
    /// Records the handoff of turn `turn` to `target` (the step `<prefix>.handoff#<turn>`).
    async fn hand_off(&self, turn: usize, target: String) -> Result<(), Error> {
        let name = target.clone();
        let _: String = durably_core::step(format!("{}.handoff", self.inv.task_base), move || {
            let name = name.clone();
            async move { Ok::<_, std::convert::Infallible>(name) }
        })
        .step_id(format!("{}.handoff#{turn}", self.inv.prefix))
        .retries(0)
        .await?;
        self.inv.hand_to(target);
        Ok(())
    }

    async fn answer(&self, event: &DispatchEvent<'_>, name: &str, args: &str) -> Result<Outcome, Error> {
        let call_id = event.call_id.map(|c| c.wire().into_owned());
        let tools = self.inv.tools().ok_or_else(|| Error::Invalid {
            what: "agent",
            detail: format!("agent `{}` has no tool registry", self.inv.settings.name),
        })?;
        let context: ToolContext = event.context.cloned().unwrap_or_default();
        let call = ToolCallRef {
            tool: name,
            turn: event.turn,
            // rig may hand an empty id: such calls are numbered within their turn.
            call_id: call_id.as_deref().filter(|id| !id.is_empty()),
            args,
            needs_approval: self.inv.approvals.contains(name),
        };
        let refused = |reason: String| Outcome::ToolResult {
            result: ToolResult::failed(ToolExecutionError::refused(format!(
                "the call of `{name}` was not approved: {reason}"
            ))),
        };
        let (name, args) = (name.to_owned(), args.to_owned());
        let run = move || {
            let tools = tools.clone();
            let mut context = context.clone();
            let (name, args) = (name.clone(), args.clone());
            async move {
                let result = tools.execute(&name, &args, &mut context).await;
                // A tool whose server is gone (an MCP server that exited) ends the run.
                let fatal = result
                    .error()
                    .and_then(|e| std::error::Error::source(e))
                    .and_then(|source| source.downcast_ref::<crate::AgentError>())
                    .cloned();
                if let Some(error) = fatal {
                    return Attempt::Fatal(error);
                }
                // A failure that will not be tried again is the tool's answer, shown to the
                // model, as rig does.
                let retry =
                    result.error().filter(|e| e.retryable().unwrap_or(true)).map(|e| e.message().to_owned());
                let answer = Outcome::ToolResult { result };
                match retry {
                    Some(message) => Attempt::Retryable { answer, message },
                    None => Attempt::Answer(answer),
                }
            }
        };
        self.inv.tool_call(call, "rig_core::effect::EffectKind", refused, run).await
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
        if let Some(target) = self.inv.handoffs.get(name.as_str()).cloned() {
            return match self.hand_off(event.turn, target).await {
                Ok(()) => DispatchAction::stop("the conversation was handed to another agent"),
                Err(error) => {
                    let reason = error.to_string();
                    self.inv.fail(error);
                    DispatchAction::stop(reason)
                }
            };
        }
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
