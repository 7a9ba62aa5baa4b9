//! What one rig invocation adds to the core's invocation state: the tools rig built, which of
//! them need approval, and the tool answers waiting to be handed to rig (`on_outcome`).

use std::collections::{BTreeSet, HashMap};
use std::ops::Deref;
use std::sync::{Mutex, OnceLock};

use rig_agent::tool::server::ToolServerHandle;
use rig_core::effect::{EffectId, Outcome};

use crate::core::invocation::{Invocation, lock};

pub(crate) struct RigInvocation {
    core: Invocation,
    pub(crate) approvals: BTreeSet<String>,
    /// The handoff tools (`transfer_to_<agent>`) and the agent each hands off to.
    pub(crate) handoffs: HashMap<String, String>,
    /// The agent the model handed the conversation to, once it did.
    handed_to: Mutex<Option<String>>,
    tools: OnceLock<ToolServerHandle>,
    answers: Mutex<HashMap<EffectId, Outcome>>,
}

impl Deref for RigInvocation {
    type Target = Invocation;

    fn deref(&self) -> &Invocation {
        &self.core
    }
}

impl RigInvocation {
    pub(crate) fn new(core: Invocation, approvals: BTreeSet<String>) -> Self {
        RigInvocation {
            core,
            approvals,
            handoffs: HashMap::new(),
            handed_to: Mutex::new(None),
            tools: OnceLock::new(),
            answers: Mutex::new(HashMap::new()),
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

    /// Remembers that the model handed the conversation to `agent`.
    pub(crate) fn hand_to(&self, agent: String) {
        lock(&self.handed_to).get_or_insert(agent);
    }

    pub(crate) fn handed_to(&self) -> Option<String> {
        lock(&self.handed_to).take()
    }
}
