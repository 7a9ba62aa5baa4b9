//! Structured output for the OpenAI agent: `extract::<T>` sends `T`'s JSON schema as the
//! request's `response_format` (`json_schema`), checks the answer against `T`, and sends an
//! answer that does not fit back to the model (see the agent core's `extract`).

use durably_core::Result;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use futures::future::BoxFuture;

use super::{AgentRun, OpenAiAgent, OpenAiAgentBuilder};
use crate::core::extract::{Extracting, Output, extract};
use crate::core::plan::Plan;

impl OpenAiAgentBuilder {
    /// How many more answers [`OpenAiAgent::extract`] asks for when one does not fit the type
    /// (default 2); each is a model call of the run.
    pub fn output_retries(mut self, n: u32) -> Self {
        self.settings_mut().limits.output_retries = n;
        self
    }
}

impl Extracting for OpenAiAgent {
    fn with_output(&self, output: Output) -> Self {
        let mut agent = self.clone();
        agent.output = Some(output);
        agent
    }

    fn plan_for(&self, prompt: &str) -> Plan {
        self.plan(prompt)
    }

    fn run_planned(&self, plan: Plan, prompt: String) -> BoxFuture<'static, Result<AgentRun>> {
        let agent = self.clone();
        Box::pin(async move { agent.run_plan(plan, prompt, None).await })
    }
}

impl OpenAiAgent {
    /// Asks the model for a `T`: the schema of `T` goes to the model as the request's
    /// `response_format`, and the answer must deserialize into `T`. An answer that does not is
    /// sent back to the model with the reason, up to
    /// [`output_retries`](OpenAiAgentBuilder::output_retries) times, each a model step; past
    /// them the run fails with [`AgentError::InvalidOutput`](crate::AgentError::InvalidOutput)
    /// naming the run and the step. Runs like [`run`](Self::run): part of the current run
    /// inside a workflow, a run of its own outside one; a completed run returns the same `T`
    /// without a request.
    ///
    /// ```no_run
    /// # async fn demo(agent: durably_agent::openai::OpenAiAgent) -> durably_core::Result<()> {
    /// #[derive(serde::Deserialize, schemars::JsonSchema)]
    /// struct Invoice {
    ///     number: String,
    ///     total_cents: u64,
    /// }
    /// let invoice: Invoice = agent.extract("Invoice 42, total 12.50 EUR").await?;
    /// # Ok(()) }
    /// ```
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
}
