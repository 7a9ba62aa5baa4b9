//! Structured output for the OpenAI agent: `extract::<T>` sends `T`'s JSON schema as the
//! request's `response_format` (`json_schema`), checks the answer against `T`, and sends an
//! answer that does not fit back to the model (see the agent core's `extract`).

use durably_core::Result;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use super::{OpenAiAgent, OpenAiAgentBuilder};
use crate::core::extract::{Output, parse};
use crate::core::plan::Plan;

impl OpenAiAgentBuilder {
    /// How many more answers [`OpenAiAgent::extract`] asks for when one does not fit the type
    /// (default 2); each is a model call of the run.
    pub fn output_retries(mut self, n: u32) -> Self {
        self.settings_mut().limits.output_retries = n;
        self
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
        let prompt = prompt.into();
        let agent = self.with_output::<T>();
        let plan = agent.plan(&prompt);
        agent.extract_plan(plan, prompt).await
    }

    /// Like [`extract`](Self::extract), as the run `run_id`.
    pub async fn extract_with_id<T: JsonSchema + DeserializeOwned + 'static>(
        &self,
        prompt: impl Into<String>,
        run_id: impl Into<String>,
    ) -> Result<T> {
        self.with_output::<T>().extract_plan(Plan::Own { run_id: run_id.into() }, prompt.into()).await
    }

    fn with_output<T: JsonSchema + DeserializeOwned + 'static>(&self) -> OpenAiAgent {
        let mut agent = self.clone();
        agent.output = Some(Output::of::<T>());
        agent
    }

    async fn extract_plan<T: DeserializeOwned>(&self, plan: Plan, prompt: String) -> Result<T> {
        let run_id = plan.run_id();
        let run = self.run_plan(plan, prompt, None).await?;
        let type_name = self.output.as_ref().map_or("T", |o| o.type_name);
        // The run's answer was checked when it was given: this only fails for a run recorded
        // with another type.
        parse(&run_id, &format!("{}.model#{}", self.name(), run.turns), type_name, &run.output)
    }
}
