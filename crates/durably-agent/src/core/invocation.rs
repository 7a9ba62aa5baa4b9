//! The state of one agent invocation, shared by its model calls and tool calls: where its
//! steps go, how many model calls it made, how many id-less tool calls each turn had, and the
//! first durably error that ended it (which the run returns instead of the client library's
//! report of it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

use durably_core::{Error, RunContext, StepStatus};

use super::ids::{Step, StepName, ToolCall, step_id};
use super::settings::Settings;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent; a poisoned lock is usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One invocation of an agent inside a run.
#[derive(Debug)]
pub(crate) struct Invocation {
    pub(crate) settings: Settings,
    /// The base of the task names: the agent's name (the OpenAI agent has always recorded its
    /// prefix there instead; recorded runs keep replaying under their names).
    pub(crate) task_base: String,
    /// The base of this invocation's step ids: the agent name, or `name#k` for the k-th
    /// further invocation of the same agent inside one run.
    pub(crate) prefix: String,
    /// The run the steps belong to.
    pub(crate) run_id: String,
    model_calls: AtomicU32,
    tool_calls_per_turn: Mutex<HashMap<usize, u32>>,
    failure: Mutex<Option<Error>>,
    /// What the invocation spent, for its budget.
    pub(crate) spent: Mutex<super::limits::Spent>,
}

impl Invocation {
    pub(crate) fn new(settings: Settings, task_base: String, prefix: String, run_id: String) -> Self {
        Invocation {
            settings,
            task_base,
            prefix,
            run_id,
            model_calls: AtomicU32::new(0),
            tool_calls_per_turn: Mutex::new(HashMap::new()),
            failure: Mutex::new(None),
            spent: Mutex::new(super::limits::Spent::default()),
        }
    }

    /// The invocation of the current run under `prefix`, its task names based on the agent's
    /// name.
    pub(crate) fn here(settings: &Settings, prefix: String) -> Result<Self, Error> {
        let ctx = RunContext::current().ok_or_else(|| Error::Invalid {
            what: "agent run",
            detail: format!("agent `{}` was invoked outside a workflow run", settings.name),
        })?;
        Ok(Invocation::new(settings.clone(), settings.name.clone(), prefix, ctx.run_id().to_owned()))
    }

    /// The id and task name of `step` of this invocation.
    pub(crate) fn step(&self, step: Step<'_>) -> StepName {
        step_id(&self.task_base, &self.prefix, step)
    }

    /// The next model call's step: `<prefix>.model#<n>`, n from 1.
    pub(crate) fn next_model_step(&self) -> StepName {
        let n = self.model_calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.step(Step::Model(n))
    }

    /// How many model calls the invocation made (replayed ones included).
    pub(crate) fn model_calls(&self) -> u32 {
        self.model_calls.load(Ordering::SeqCst)
    }

    /// A tool call's step; a call the provider sent without an id (`None`) is numbered within
    /// its turn.
    pub(crate) fn tool_step(&self, tool: &str, turn: usize, call_id: Option<&str>) -> StepName {
        let call = match call_id {
            Some(id) => ToolCall::Id(id),
            None => {
                let mut per_turn = lock(&self.tool_calls_per_turn);
                let n = per_turn.entry(turn).or_insert(0);
                *n += 1;
                ToolCall::Numbered(*n)
            }
        };
        self.step(Step::Tool { tool, turn, call })
    }

    /// The run context, checked to be this invocation's run: the client library polls the
    /// model calls and tool calls inside the future the agent returned.
    pub(crate) fn context(&self) -> Result<RunContext, Error> {
        let agent = &self.settings.name;
        match RunContext::current() {
            Some(ctx) if ctx.run_id() == self.run_id => Ok(ctx),
            Some(ctx) => Err(Error::Invalid {
                what: "agent call",
                detail: format!(
                    "agent `{agent}` of run `{}` was polled inside run `{}`",
                    self.run_id,
                    ctx.run_id()
                ),
            }),
            None => Err(Error::Invalid {
                what: "agent call",
                detail: format!(
                    "agent `{agent}` of run `{}` was polled outside its run; await the future that the \
                     agent's `run` returned, or consume its stream, inside the run",
                    self.run_id
                ),
            }),
        }
    }

    /// Whether `step_id` is recorded as completed in this invocation's run.
    pub(crate) fn completed(&self, ctx: &RunContext, step_id: &str) -> bool {
        ctx.recorded_step(step_id).is_some_and(|r| r.status == StepStatus::Completed)
    }

    /// Remembers the first durably error (a failed step, a divergence, a cancellation).
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
