//! Handoffs: an agent hands the conversation to another agent, which the model sees as a tool
//! `transfer_to_<agent>`. The other agent goes on from the conversation so far (with its own
//! system prompt, tools and handoffs) inside the same run, its steps under its own prefix; its
//! answer is the run's answer. The handoff is the step `<prefix>.handoff#<turn>`, and replays
//! like any step: the recorded model call asks for it again, and the other agent's recorded
//! calls answer without a request.

use async_openai::types::chat::{
    ChatCompletionMessageToolCall, ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestSystemMessageContent, ChatCompletionTool, ChatCompletionTools, FunctionObject,
};
use durably_core::{Error, Result, RunContext};
use serde_json::json;

use super::agent::ToolOutcome;
use super::stream::Sink;
use super::{AgentRun, OpenAiAgent, OpenAiAgentBuilder, Usage};
use crate::core::ids::{Step, step_id};
use crate::core::invocation::Invocation;

/// The agents one agent may hand off to, and how it describes itself to the agents that may
/// hand off to it.
#[derive(Clone, Default)]
pub(crate) struct Handoffs {
    targets: Vec<OpenAiAgent>,
    description: Option<String>,
}

/// The tool name that hands off to the agent `name`.
fn tool_name(name: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .collect();
    format!("transfer_to_{name}")
}

impl Handoffs {
    pub(crate) fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The agent the tool `tool` hands off to.
    pub(crate) fn target(&self, tool: &str) -> Option<&OpenAiAgent> {
        self.targets.iter().find(|t| tool_name(t.name()) == tool)
    }

    /// The handoff tools, as the model sees them.
    pub(crate) fn definitions(&self) -> impl Iterator<Item = ChatCompletionTools> + '_ {
        self.targets.iter().map(|target| {
            let about = target.handoffs.description.as_deref().unwrap_or("another agent");
            ChatCompletionTools::Function(ChatCompletionTool {
                function: FunctionObject {
                    name: tool_name(target.name()),
                    description: Some(format!("Hand the conversation over to `{}`: {about}", target.name())),
                    parameters: Some(json!({
                        "type": "object",
                        "properties": { "reason": { "type": "string", "description": "Why it is handed over." } }
                    })),
                    strict: None,
                },
            })
        })
    }
}

impl OpenAiAgentBuilder {
    /// Lets this agent hand the conversation to `agent`: the model sees a tool
    /// `transfer_to_<agent's name>`; calling it hands the run over to `agent`, which answers
    /// from the conversation so far, in the same run. A triage agent with two specialists is
    /// `.handoff(&billing).handoff(&support)`.
    pub fn handoff(mut self, agent: &OpenAiAgent) -> Self {
        self.agent_mut().handoffs.targets.push(agent.clone());
        self
    }

    /// What this agent does, shown to the agents that may hand off to it.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.agent_mut().handoffs.description = Some(description.into());
        self
    }
}

impl OpenAiAgent {
    /// Records the handoff of turn `turn` (the step `<prefix>.handoff#<turn>`, valued with the
    /// target's name), and answers the handoff call.
    pub(super) async fn hand_off(
        &self,
        inv: &Invocation,
        turn: u32,
        call: &ChatCompletionMessageToolCall,
    ) -> Result<(OpenAiAgent, ToolOutcome)> {
        let Some(target) = self.handoffs.target(&call.function.name).cloned() else {
            return Err(Error::Invalid {
                what: "handoff",
                detail: format!("no agent behind `{}`", call.function.name),
            });
        };
        let name = target.name().to_owned();
        let recorded: String = durably_core::step(format!("{}.handoff", inv.task_base), move || {
            let name = name.clone();
            async move { Ok::<_, std::convert::Infallible>(name) }
        })
        .step_id(format!("{}.handoff#{turn}", inv.prefix))
        .retries(0)
        .await?;
        Ok((target, ToolOutcome::Ok(json!(format!("the conversation is now handled by `{recorded}`")))))
    }

    /// `target` takes the conversation `messages` over, in the current run: its answer is the
    /// run's, with the usage and model calls of both agents.
    pub(super) async fn taken_over(
        &self,
        target: &OpenAiAgent,
        mut messages: Vec<ChatCompletionRequestMessage>,
        usage: Usage,
        turns: u32,
        sink: Option<&Sink>,
    ) -> Result<AgentRun> {
        let ctx = RunContext::current().ok_or_else(|| Error::Invalid {
            what: "handoff",
            detail: format!("agent `{}` handed off outside a workflow run", self.name()),
        })?;
        let prefix = step_id(target.name(), "", Step::Invocation(&ctx)).id;
        let mut inv = Invocation::here(&target.settings, prefix)?;
        inv.task_base = inv.prefix.clone();
        // The target speaks with its own instructions.
        messages.retain(|m| !matches!(m, ChatCompletionRequestMessage::System(_)));
        if let Some(system) = &target.system_prompt {
            let system = ChatCompletionRequestSystemMessage {
                content: ChatCompletionRequestSystemMessageContent::Text(system.clone()),
                name: None,
            };
            messages.insert(0, ChatCompletionRequestMessage::System(system));
        }
        let run = Box::pin(target.converse(&inv, messages, sink)).await?;
        let usage = Usage {
            prompt_tokens: usage.prompt_tokens + run.usage.prompt_tokens,
            completion_tokens: usage.completion_tokens + run.usage.completion_tokens,
            total_tokens: usage.total_tokens + run.usage.total_tokens,
        };
        Ok(AgentRun::new(run.output, run.messages, usage, turns + run.turns))
    }
}
