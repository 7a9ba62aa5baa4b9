//! Structured output, for both agents: the JSON schema of the type asked for (sent to the
//! model), the check of an answer against it (it must deserialize into the type), and what the
//! model is told when it does not, so that it can answer again. Every answer is a model step of
//! the run; an answer still wrong after the retries ends the run with
//! [`AgentError::InvalidOutput`] naming the run and the step.

use std::sync::Arc;

use durably_core::{Error, Result};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::invocation::Invocation;
use super::plan::Plan;
use super::response::AgentResponse;
use super::session::Conversational;
use crate::AgentError;

/// What an agent gives [`extract`]: itself asking for an output, its plan for a prompt, and a
/// run of that plan.
pub(crate) trait Extracting: Conversational {
    /// The agent, asking for `output`.
    fn with_output(&self, output: Output) -> Self;
    /// The run a prompt makes: part of the current run inside a workflow, or its own.
    fn plan_for(&self, prompt: &str) -> Plan;
    /// Runs `prompt` under `plan`.
    fn run_planned(
        &self,
        plan: Plan,
        prompt: String,
    ) -> futures::future::BoxFuture<'static, Result<AgentResponse<Self::Message, Self::Usage>>>;
}

/// Asks `agent` for a `T` (the run `run_id`, or the one its plan makes): both agents'
/// `extract` and `extract_with_id`.
pub(crate) async fn extract<A: Extracting, T: JsonSchema + DeserializeOwned + 'static>(
    agent: &A,
    prompt: String,
    run_id: Option<String>,
) -> Result<T> {
    let output = Output::of::<T>();
    let type_name = output.type_name;
    let agent = agent.with_output(output);
    let plan = match run_id {
        Some(run_id) => Plan::Own { run_id },
        None => agent.plan_for(&prompt),
    };
    let run_id = plan.run_id();
    let run = agent.run_planned(plan, prompt).await?;
    // The answer was checked when it was given: this only fails for a run recorded with
    // another type.
    parse(&run_id, &format!("{}.model#{}", agent.settings().name, run.turns), type_name, &run.output)
}

type Check = dyn Fn(&str) -> std::result::Result<(), String> + Send + Sync;

/// The output a run is asked for.
#[derive(Clone)]
pub(crate) struct Output {
    /// The schema's name for the provider (letters, digits, `_` and `-`, at most 64).
    pub(crate) name: String,
    pub(crate) type_name: &'static str,
    /// The JSON schema of the type.
    pub(crate) schema: Value,
    check: Arc<Check>,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("name", &self.name)
            .field("type_name", &self.type_name)
            .finish_non_exhaustive()
    }
}

impl Output {
    /// The output `T`.
    pub(crate) fn of<T: JsonSchema + DeserializeOwned + 'static>() -> Output {
        let mut schema = schemars::schema_for!(T).to_value();
        if let Some(map) = schema.as_object_mut() {
            map.remove("$schema");
        }
        let type_name = std::any::type_name::<T>();
        let short = T::schema_name();
        let name: String = short
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
            .take(64)
            .collect();
        let check =
            |text: &str| serde_json::from_str::<T>(json_text(text)).map(|_| ()).map_err(|e| e.to_string());
        Output {
            name: if name.is_empty() { "output".into() } else { name },
            type_name,
            schema,
            check: Arc::new(check),
        }
    }

    /// Whether `text` is a `T`: `Err` says why not.
    pub(crate) fn check(&self, text: &str) -> std::result::Result<(), String> {
        (self.check)(text)
    }
}

/// The JSON in an answer: the text, without a Markdown code fence around it.
pub(crate) fn json_text(text: &str) -> &str {
    let trimmed = text.trim();
    let Some(inner) = trimmed.strip_prefix("```") else { return trimmed };
    let inner = inner.strip_prefix("json").unwrap_or(inner);
    inner.strip_suffix("```").unwrap_or(inner).trim()
}

/// What the model is told when its answer does not fit.
pub(crate) fn feedback(detail: &str) -> String {
    format!(
        "Your answer does not match the required JSON schema: {detail}. Answer again with only a JSON \
         value that matches the schema, with no other text."
    )
}

/// The value of a checked answer.
pub(crate) fn parse<T: DeserializeOwned>(
    run_id: &str,
    step_id: &str,
    type_name: &'static str,
    text: &str,
) -> Result<T> {
    serde_json::from_str(json_text(text)).map_err(|source| Error::Deserialize {
        run_id: run_id.to_owned(),
        step_id: step_id.to_owned(),
        what: "structured output",
        type_name,
        source,
    })
}

impl Invocation {
    /// Checks the answer `text` of model step `step_id`: `Ok(None)` when it fits,
    /// `Ok(Some(feedback))` to send back to the model while retries are left (`rejected` counts
    /// the answers refused so far), an [`AgentError::InvalidOutput`] when none are.
    pub(crate) fn review(
        &self,
        output: &Output,
        step_id: &str,
        text: &str,
        rejected: &mut u32,
    ) -> Result<Option<String>> {
        let Err(detail) = output.check(text) else { return Ok(None) };
        *rejected += 1;
        if *rejected > self.settings.limits.output_retries {
            return Err(AgentError::InvalidOutput {
                run_id: self.run_id.clone(),
                step_id: step_id.to_owned(),
                type_name: output.type_name.to_owned(),
                attempts: *rejected,
                detail,
            }
            .into());
        }
        Ok(Some(feedback(&detail)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Person {
        name: String,
        age: u32,
    }

    #[test]
    fn answers_are_checked_against_the_type() {
        let out = Output::of::<Person>();
        assert_eq!(out.name, "Person");
        assert_eq!(out.schema["properties"]["age"]["type"], "integer");
        assert!(out.check(r#"{"name":"Ada","age":36}"#).is_ok());
        assert!(out.check("```json\n{\"name\":\"Ada\",\"age\":36}\n```").is_ok());
        assert!(out.check(r#"{"name":"Ada"}"#).is_err_and(|e| e.contains("age")));
        assert!(out.check("not json").is_err());
    }
}
