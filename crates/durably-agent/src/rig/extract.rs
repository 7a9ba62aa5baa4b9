//! Structured output for the rig agent: `extract::<T>` gives the rig agent `T`'s JSON schema as
//! its native output schema (sent to the model as the request's response format), checks the
//! answer against `T`, and prompts again with the reason while it does not fit, continuing the
//! same conversation (see the agent core's `extract`).

use std::sync::Arc;

use durably_core::{Error, Result};
use rig_agent::Agent;
use rig_agent::agent::PromptResponse;
use rig_agent::completion::PromptError;
use rig_core::completion::{Message, Usage};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use futures::future::BoxFuture;

use super::invocation::RigInvocation;
use super::model::ROUTE;
use super::{AgentResponse, DurableAgent};
use crate::core::extract::{Extracting, Output, extract};
use crate::core::ids::Step;
use crate::core::plan::Plan;

impl Extracting for DurableAgent {
    fn with_output(&self, output: Output) -> Self {
        DurableAgent { output: Some(output), ..self.clone() }
    }

    fn plan_for(&self, prompt: &str) -> Plan {
        self.plan(prompt)
    }

    fn run_planned(&self, plan: Plan, prompt: String) -> BoxFuture<'static, Result<AgentResponse>> {
        self.run_plan(plan, prompt, None)
    }
}

impl DurableAgent {
    /// How many more answers [`extract`](Self::extract) asks for when one does not fit the
    /// type (default 2); each is a model call of the run.
    pub fn output_retries(mut self, n: u32) -> Self {
        self.settings.limits.output_retries = n;
        self
    }

    /// Asks the model for a `T`: the schema of `T` is the rig agent's native output schema
    /// (sent as the request's response format), and the answer must deserialize into `T`. An
    /// answer that does not is sent back to the model with the reason, in the same
    /// conversation, up to [`output_retries`](Self::output_retries) times, each a model step;
    /// past them the run fails with [`AgentError::InvalidOutput`](crate::AgentError::InvalidOutput)
    /// naming the run and the step. Runs like [`run`](Self::run); a completed run returns the
    /// same `T` without a request.
    pub async fn extract<T: JsonSchema + DeserializeOwned + 'static>(
        &self,
        prompt: impl Into<String>,
    ) -> Result<T> {
        extract(self, prompt.into(), None).await
    }

    /// Like [`extract`](Self::extract), as the run `run_id`.
    pub async fn extract_with_id<T: JsonSchema + DeserializeOwned + 'static>(
        &self,
        prompt: impl Into<String>,
        run_id: impl Into<String>,
    ) -> Result<T> {
        extract(self, prompt.into(), Some(run_id.into())).await
    }

    /// The answer of an invocation: `first`'s, or, when structured output is asked for and it
    /// does not fit, the answer of the model prompted again with the reason (the transcript
    /// and usage cover every round).
    pub(super) async fn checked_answer(
        &self,
        agent: &Agent,
        inv: &Arc<RigInvocation>,
        first: PromptResponse,
        fail: impl Fn(PromptError) -> Error,
    ) -> Result<(String, Vec<Message>, Usage)> {
        let mut output = first.output();
        let mut messages = first.messages().to_vec();
        let mut usage = first.usage();
        let Some(schema) = &self.output else { return Ok((output, messages, usage)) };
        let max_turns = usize::try_from(self.settings.max_turns).unwrap_or(usize::MAX);
        let mut rejected = 0;
        loop {
            let step_id = inv.step(Step::Model(inv.model_calls())).id;
            let Some(feedback) = inv.review(schema, &step_id, &output, &mut rejected)? else {
                return Ok((output, messages, usage));
            };
            let runner =
                agent.prompt(feedback).history(messages.clone()).using_model(ROUTE).max_turns(max_turns);
            let response = Box::pin(runner.run()).await.map_err(&fail)?;
            output = response.output();
            messages.extend(response.messages().iter().cloned());
            usage += response.usage();
        }
    }
}
