//! Handoffs for the rig agent: the model sees a tool `transfer_to_<agent>` per agent this one
//! may hand off to. Calling it records the step `<prefix>.handoff#<turn>` and ends this agent's
//! turn; the other agent then answers the prompt in the same run, its steps under its own
//! prefix, and its answer is the run's. A replay asks for the same handoff (the recorded model
//! call), so the other agent's recorded calls answer without a request.

use durably_core::{Error, Result, RunContext};
use rig_core::message::ToolName;
use rig_core::tool::{DynamicTool, ToolOutput};
use serde_json::json;

use super::{AgentResponse, DurableAgent};
use crate::core::ids::{Step, step_id};

/// The tool name that hands off to the agent `name`.
pub(super) fn tool_name(name: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .collect();
    format!("transfer_to_{name}")
}

/// The handoff tool to `target`, as the model sees it (the hook answers its calls).
pub(super) fn tool(target: &DurableAgent) -> Option<DynamicTool> {
    let name = ToolName::new(tool_name(target.agent_name())).ok()?;
    let about = target.description.clone().unwrap_or_else(|| "another agent".into());
    let parameters = json!({
        "type": "object",
        "properties": { "reason": { "type": "string", "description": "Why it is handed over." } }
    });
    let description = format!("Hand the conversation over to `{}`: {about}", target.agent_name());
    Some(DynamicTool::new(name, description, parameters, |_| {
        Box::pin(async { Ok(ToolOutput::text("the conversation was handed over")) })
    }))
}

impl DurableAgent {
    /// Lets this agent hand the conversation to `agent`: the model sees a tool
    /// `transfer_to_<agent's name>`; calling it hands the prompt over to `agent`, which answers
    /// in the same run.
    pub fn handoff(mut self, agent: &DurableAgent) -> Self {
        self.handoffs.push(agent.clone());
        self
    }

    /// What this agent does, shown to the agents that may hand off to it.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// The agent `target` answers `prompt` in the current run, after this one made `turns`
    /// model calls.
    pub(super) async fn taken_over(&self, target: &str, prompt: &str, turns: u32) -> Result<AgentResponse> {
        let Some(agent) = self.handoffs.iter().find(|a| a.agent_name() == target) else {
            return Err(Error::Invalid { what: "handoff", detail: format!("no agent named `{target}`") });
        };
        let ctx = RunContext::current().ok_or_else(|| Error::Invalid {
            what: "handoff",
            detail: format!("agent `{}` handed off outside a workflow run", self.agent_name()),
        })?;
        let prefix = step_id(agent.agent_name(), "", Step::Invocation(&ctx)).id;
        let mut response = Box::pin(agent.invoke(prefix, prompt, None)).await?;
        response.turns += turns;
        Ok(response)
    }
}
