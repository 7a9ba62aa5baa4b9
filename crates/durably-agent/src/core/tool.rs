//! The tool-call step: each tool call is the step `<prefix>.tool.<tool>#<turn>.<call id>`, with
//! the hash of the tool's name and arguments. A recorded call answers from its record and the
//! tool does not run. An unrecorded call of a tool that needs approval first waits for the
//! signal `approve:<step id>`; a rejection is the tool's answer. A failure another attempt may
//! fix is retried per the tool `TaskConfig`; the last one is the tool's answer, recorded and
//! shown to the model.

use std::future::Future;

use durably_core::{BoxError, Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::ids::approval_signal;
use super::invocation::Invocation;
use crate::{Approval, request_hash};

/// What one attempt of a tool gives.
pub(crate) enum Attempt<O> {
    /// The tool's answer, recorded (a value, or an error not worth another attempt).
    Answer(O),
    /// A failure another attempt may fix; `answer` is the tool's answer if none is left.
    Retryable { answer: O, message: String },
    /// A failure that ends the run (the tool's server is gone): the step fails, permanently.
    #[cfg_attr(not(feature = "mcp"), allow(dead_code))]
    Fatal(crate::AgentError),
}

/// A tool's answer when one attempt ran out of the per-attempt timeout and no attempt is left.
pub(crate) trait TimedOut {
    /// The answer the model is shown.
    fn timed_out(message: String) -> Self;
}

/// A tool attempt that failed and will be tried again.
#[derive(Debug, thiserror::Error)]
#[error("tool `{tool}` failed: {message}")]
struct ToolAttemptError {
    tool: String,
    message: String,
}

/// One tool call of a model turn.
pub(crate) struct ToolCallRef<'a> {
    pub(crate) tool: &'a str,
    pub(crate) turn: usize,
    /// The provider's call id; `None` numbers the call within its turn.
    pub(crate) call_id: Option<&'a str>,
    /// The arguments, as the model sent them.
    pub(crate) args: &'a str,
    pub(crate) needs_approval: bool,
}

impl Invocation {
    /// Runs the tool call `call` as a step: `run()` is one attempt; `rejected(reason)` is the
    /// answer when a human rejects the call.
    pub(crate) async fn tool_call<O, F, Fut>(
        &self,
        call: ToolCallRef<'_>,
        type_name: &'static str,
        rejected: impl FnOnce(String) -> O,
        run: F,
    ) -> Result<O>
    where
        O: Clone + Serialize + DeserializeOwned + TimedOut + Send + 'static,
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Attempt<O>> + Send + 'static,
    {
        let ctx = self.context()?;
        let step = self.tool_step(call.tool, call.turn, call.call_id);
        self.check_tool_budget(&step.id)?;
        let mut rejection = None;
        let live = !self.completed(&ctx, &step.id);
        if live {
            let args = serde_json::from_str(call.args).unwrap_or_else(|_| json!(call.args));
            let data = json!({ "step_id": step.id, "tool": call.tool, "args": args });
            ctx.event("tool_call", data);
        }
        if call.needs_approval && live {
            let signal = approval_signal(&step.id);
            ctx.event("approval", json!({ "step_id": step.id, "tool": call.tool, "signal": signal }));
            let approval: Approval = durably_core::signal(&signal).await?;
            if !approval.approved {
                rejection = Some(rejected(approval.reason.unwrap_or_else(|| "no reason given".into())));
            }
        }
        let hash = request_hash(&json!({ "tool": call.tool, "args": call.args })).map_err(|source| {
            Error::Serialize {
                run_id: self.run_id.clone(),
                step_id: step.id.clone(),
                what: "tool call",
                type_name,
                source,
            }
        })?;
        let config = self.settings.tool_config;
        let secrets = self.settings.secrets.clone();
        let tool = call.tool.to_owned();
        let timeout = self.settings.limits.tool_timeout;
        let step_id = step.id.clone();
        let answer = durably_core::step(step.task, move || {
            // A rejected call does not run the tool: the rejection is its answer.
            let pending = match rejection.clone() {
                Some(answer) => Err(answer),
                None => Ok(run()),
            };
            let (tool, secrets) = (tool.clone(), secrets.clone());
            async move {
                let attempt = match (pending, timeout) {
                    (Err(answer), _) => return Ok(answer),
                    (Ok(attempt), None) => attempt.await,
                    // A hung tool is an attempt that failed: retried, then shown to the model.
                    (Ok(attempt), Some(limit)) => {
                        tokio::time::timeout(limit, attempt).await.unwrap_or_else(|_| {
                            let message = format!("tool `{tool}` gave no answer within {limit:?}");
                            Attempt::Retryable { answer: O::timed_out(message.clone()), message }
                        })
                    }
                };
                match attempt {
                    Attempt::Answer(answer) => Ok(answer),
                    Attempt::Retryable { answer, message } => {
                        let attempt = durably_core::current_step().map_or(u32::MAX, |s| s.attempt);
                        if attempt <= config.retries {
                            Err(Box::new(ToolAttemptError { tool, message: secrets.redact(&message) })
                                as BoxError)
                        } else {
                            Ok(answer)
                        }
                    }
                    Attempt::Fatal(error) => Err(Box::new(Error::permanent(error)) as BoxError),
                }
            }
        })
        .step_id(step.id)
        .request_hash(hash)
        .retries(config.retries)
        .backoff(config.backoff)
        .await?;
        if live {
            let result = serde_json::to_value(&answer).unwrap_or(serde_json::Value::Null);
            ctx.event("tool_result", json!({ "step_id": step_id, "tool": call.tool, "result": result }));
        }
        Ok(answer)
    }
}
