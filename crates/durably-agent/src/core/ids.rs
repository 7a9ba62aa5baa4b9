//! Step ids: every id an agent gives a step (and the prefix of an invocation's steps) is made
//! by [`step_id`], so that the scheme lives in one place. Recorded runs replay by these ids:
//! they must not change.

use durably_core::RunContext;

/// A step of an agent invocation, or the invocation itself.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step<'a> {
    /// The next invocation of the agent in the run `.0`: its id is the prefix of its steps,
    /// `<agent>` for the first, then `<agent>#1`, `<agent>#2`… in call order.
    Invocation(&'a RunContext),
    /// The prompt (rig agent): `<prefix>.input`.
    Input,
    /// The run's deadline, when it has one: `<prefix>.deadline`.
    Deadline,
    /// The n-th model call (n from 1): `<prefix>.model#<n>`.
    Model(u32),
    /// A tool call: `<prefix>.tool.<tool>#<turn>.<call>`, where `call` is the provider's call id,
    /// or `n<k>` for the k-th call of the turn that came without one.
    Tool {
        /// The tool's name.
        tool: &'a str,
        /// The model turn that made the call.
        turn: usize,
        /// The provider's call id, or the call's number within its turn.
        call: ToolCall<'a>,
    },
}

/// How a tool call is told apart from the others of its turn.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ToolCall<'a> {
    /// The provider's call id, as it is (even empty).
    Id(&'a str),
    /// The k-th call of the turn without an id.
    Numbered(u32),
}

/// A step's id and its task name (the name its record carries, checked on replay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StepName {
    pub(crate) id: String,
    pub(crate) task: String,
}

/// The id and task name of `step` of the agent `agent` whose invocation prefix is `prefix`.
pub(crate) fn step_id(agent: &str, prefix: &str, step: Step<'_>) -> StepName {
    match step {
        Step::Invocation(ctx) => {
            // A scope of the run, opened when the call is made, so concurrent invocations keep
            // their ids; the core numbers agents and other scopes of one name together.
            let scope = ctx.scope(agent);
            let prefix = scope.scope_prefix().unwrap_or(agent).to_owned();
            StepName { id: prefix, task: format!("agent:{agent}") }
        }
        Step::Input => StepName { id: format!("{prefix}.input"), task: format!("{agent}.input") },
        Step::Deadline => StepName { id: format!("{prefix}.deadline"), task: format!("{agent}.deadline") },
        Step::Model(n) => StepName { id: format!("{prefix}.model#{n}"), task: format!("{agent}.model") },
        Step::Tool { tool, turn, call } => {
            let call = match call {
                ToolCall::Id(id) => id.to_owned(),
                ToolCall::Numbered(k) => format!("n{k}"),
            };
            StepName {
                id: format!("{prefix}.tool.{tool}#{turn}.{call}"),
                task: format!("{agent}.tool.{tool}"),
            }
        }
    }
}

/// The signal an approval-gated tool call waits on, given its step id.
pub(crate) fn approval_signal(step_id: &str) -> String {
    format!("approve:{step_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_the_recorded_ones() {
        assert_eq!(step_id("bot", "bot#1", Step::Input).id, "bot#1.input");
        assert_eq!(step_id("bot", "bot#1", Step::Input).task, "bot.input");
        assert_eq!(
            step_id("bot", "bot", Step::Model(2)),
            StepName { id: "bot.model#2".into(), task: "bot.model".into() }
        );
        let tool = |call| step_id("bot", "bot", Step::Tool { tool: "add", turn: 1, call });
        assert_eq!(tool(ToolCall::Id("call_1")).id, "bot.tool.add#1.call_1");
        assert_eq!(tool(ToolCall::Numbered(2)).id, "bot.tool.add#1.n2");
        assert_eq!(tool(ToolCall::Id("")).id, "bot.tool.add#1.");
        assert_eq!(tool(ToolCall::Id("")).task, "bot.tool.add");
        assert_eq!(approval_signal("bot.tool.add#1.call_1"), "approve:bot.tool.add#1.call_1");
    }
}
