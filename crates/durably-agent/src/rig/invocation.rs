//! The state one agent invocation shares between its model handler and its hook: where its
//! steps go, how many model calls it made, the tool answers waiting to be handed to rig, and
//! the first durably error that ended it.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use durably_core::{Error, RunContext};
use rig_agent::tool::server::ToolServerHandle;
use rig_core::effect::{EffectId, Outcome};

use crate::TaskConfig;
use crate::core::ids::{Step, ToolCall, step_id};
use crate::core::redact::Secrets;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent; a poisoned lock is usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) struct Invocation {
    /// The agent name: the base of the step (task) names.
    pub(crate) agent: String,
    /// The base of this invocation's step ids: the agent name, or `name#k` for the k-th
    /// further invocation of the same agent inside one run.
    pub(crate) prefix: String,
    /// The run the steps belong to.
    pub(crate) run_id: String,
    pub(crate) model_config: TaskConfig,
    pub(crate) tool_config: TaskConfig,
    pub(crate) approvals: BTreeSet<String>,
    /// What is blanked out of provider error messages.
    pub(crate) secrets: Secrets,
    model_calls: AtomicU32,
    tools: OnceLock<ToolServerHandle>,
    answers: Mutex<HashMap<EffectId, Outcome>>,
    tool_calls_per_turn: Mutex<HashMap<usize, u32>>,
    failure: Mutex<Option<Error>>,
}

impl Invocation {
    pub(crate) fn new(
        agent: String,
        prefix: String,
        run_id: String,
        model_config: TaskConfig,
        tool_config: TaskConfig,
        approvals: BTreeSet<String>,
        secrets: Secrets,
    ) -> Self {
        Invocation {
            agent,
            prefix,
            run_id,
            model_config,
            tool_config,
            approvals,
            secrets,
            model_calls: AtomicU32::new(0),
            tools: OnceLock::new(),
            answers: Mutex::new(HashMap::new()),
            tool_calls_per_turn: Mutex::new(HashMap::new()),
            failure: Mutex::new(None),
        }
    }

    /// The step id and task name of the next model call: `<prefix>.model#<n>`, n from 1.
    pub(crate) fn next_model_step(&self) -> (String, String) {
        let n = self.model_calls.fetch_add(1, Ordering::SeqCst) + 1;
        let name = step_id(&self.agent, &self.prefix, Step::Model(n));
        (name.id, name.task)
    }

    /// The step id and task name of a tool call: `<prefix>.tool.<tool>#<turn>.<call id>`.
    /// A call the provider sent without an id is numbered within its turn.
    pub(crate) fn tool_step(&self, tool: &str, turn: usize, call_id: Option<&str>) -> (String, String) {
        let call = match call_id {
            Some(id) if !id.is_empty() => ToolCall::Id(id),
            _ => {
                let mut per_turn = lock(&self.tool_calls_per_turn);
                let n = per_turn.entry(turn).or_insert(0);
                *n += 1;
                ToolCall::Numbered(*n)
            }
        };
        let name = step_id(&self.agent, &self.prefix, Step::Tool { tool, turn, call });
        (name.id, name.task)
    }

    /// The run context, checked to be this invocation's run: rig polls the model handler and
    /// the hook inside the future that `DurableAgent::run` returned.
    pub(crate) fn context(&self) -> Result<RunContext, Error> {
        match RunContext::current() {
            Some(ctx) if ctx.run_id() == self.run_id => Ok(ctx),
            Some(ctx) => Err(Error::Invalid {
                what: "agent call",
                detail: format!(
                    "agent `{}` of run `{}` was polled inside run `{}`",
                    self.agent,
                    self.run_id,
                    ctx.run_id()
                ),
            }),
            None => Err(Error::Invalid {
                what: "agent call",
                detail: format!(
                    "agent `{}` of run `{}` was polled outside its run; await the future that \
                     `DurableAgent::run` returned, or consume its stream, inside the run",
                    self.agent, self.run_id
                ),
            }),
        }
    }

    pub(crate) fn set_tools(&self, tools: ToolServerHandle) {
        let _ = self.tools.set(tools);
    }

    pub(crate) fn tools(&self) -> Option<ToolServerHandle> {
        self.tools.get().cloned()
    }

    /// Keeps the answer of a tool call until rig asks for it (`on_outcome`).
    pub(crate) fn hold_answer(&self, id: EffectId, outcome: Outcome) {
        lock(&self.answers).insert(id, outcome);
    }

    pub(crate) fn take_answer(&self, id: EffectId) -> Option<Outcome> {
        lock(&self.answers).remove(&id)
    }

    /// Remembers the first durably error (a failed step, a divergence, a cancellation), which
    /// the run returns instead of rig's report of it.
    pub(crate) fn fail(&self, error: Error) {
        let mut slot = lock(&self.failure);
        if slot.is_none() {
            *slot = Some(error);
        }
    }

    pub(crate) fn take_failure(&self) -> Option<Error> {
        lock(&self.failure).take()
    }
}
