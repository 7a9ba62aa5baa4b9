//! The input step: the prompt of an invocation, recorded as `<prefix>.input` with the hash of
//! the prompt and the tool definitions, so that a replay asked another question, or with
//! another tool set, fails at once (and a completed run can be checked against it).

use durably_core::{Error, Result};
use serde_json::{Value, json};

use super::ids::Step;
use super::invocation::Invocation;
use crate::request_hash;

/// The hash of `prompt` with the tool definitions `tools` (in any order).
pub(crate) fn input_hash(prompt: &str, mut tools: Vec<Value>, run_id: &str, step_id: &str) -> Result<String> {
    tools.sort_by_key(|d| d.to_string());
    request_hash(&json!({ "prompt": prompt, "tools": tools })).map_err(|source| Error::Serialize {
        run_id: run_id.to_owned(),
        step_id: step_id.to_owned(),
        what: "agent input",
        type_name: "serde_json::Value",
        source,
    })
}

impl Invocation {
    /// Records the prompt (or checks it against the record).
    pub(crate) async fn record_input(&self, prompt: &str, tools: Vec<Value>) -> Result<()> {
        let step = self.step(Step::Input);
        let hash = input_hash(prompt, tools, &self.run_id, &step.id)?;
        let prompt = prompt.to_owned();
        let _: String = durably_core::step(step.task, move || {
            let p = prompt.clone();
            async move { Ok::<_, std::convert::Infallible>(p) }
        })
        .step_id(step.id)
        .request_hash(hash)
        .retries(0)
        .await?;
        Ok(())
    }
}
