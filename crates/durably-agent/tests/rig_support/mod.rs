//! Shared by the rig tests: a model pointed at the mock server, counting tools, an engine.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use durably_agent::TaskConfig;
use durably_agent::rig::rig_core::DynModel;
use durably_agent::rig::rig_core::operation::Completion;
use durably_agent::rig::rig_core::providers::openai::OpenAIConfig;
use durably_agent::rig::rig_core::tool::{Tool, ToolContext};
use durably_core::backoff::constant;
use durably_core::store::prelude::*;
use durably_core::{MemoryStore, Workflow};
use durably_testkit::mock_openai::MockOpenAi;
use serde::Deserialize;

/// The API key the tests use: it must never appear in the store.
pub const API_KEY: &str = "sk-test-SUPERSECRET";

/// A chat model on the mock server.
pub fn model_at(base_url: &str) -> DynModel<Completion> {
    OpenAIConfig::new(API_KEY).with_base_url(base_url.to_owned()).client().chat("gpt-4o-mini").into()
}

pub fn model(mock: &MockOpenAi) -> DynModel<Completion> {
    model_at(&mock.base_url())
}

/// An engine on `store` with no backoff waits between retries.
pub fn engine(store: Arc<dyn Store>) -> Workflow {
    Workflow::builder("rig-tests").shared_store(store).default_backoff(constant(0.0)).build()
}

pub fn memory() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

/// Retries with no wait, so retry tests do not sleep.
pub fn quick(retries: u32) -> TaskConfig {
    TaskConfig::new(retries, constant(0.0))
}

/// Counts executions per tool.
#[derive(Clone, Default, Debug)]
pub struct Counter(Arc<AtomicUsize>);

impl Counter {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
    pub fn bump(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Debug, thiserror::Error)]
#[error("tool failed: {0}")]
pub struct ToolError(pub String);

#[derive(Deserialize)]
pub struct AddArgs {
    pub x: i64,
    pub y: i64,
}

/// `add`: x + y.
pub struct Add(pub Counter);

impl Tool for Add {
    const NAME: &'static str = "add";
    type Args = AddArgs;
    type Output = i64;
    type Error = ToolError;

    fn description(&self) -> String {
        "Adds two integers".into()
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "object",
            "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
            "required": ["x", "y"]
        })
    }

    async fn call(&self, _cx: &mut ToolContext, args: AddArgs) -> Result<i64, ToolError> {
        self.0.bump();
        Ok(args.x + args.y)
    }
}

#[derive(Deserialize)]
pub struct LookupArgs {
    pub city: String,
}

/// `weather`: a canned forecast for a city.
pub struct Weather(pub Counter);

impl Tool for Weather {
    const NAME: &'static str = "weather";
    type Args = LookupArgs;
    type Output = String;
    type Error = ToolError;

    fn description(&self) -> String {
        "The weather in a city".into()
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"]
        })
    }

    async fn call(&self, _cx: &mut ToolContext, args: LookupArgs) -> Result<String, ToolError> {
        self.0.bump();
        Ok(format!("sunny in {}", args.city))
    }
}

#[derive(Deserialize)]
pub struct EmailArgs {
    pub to: String,
}

/// `send_email`: an effect that needs a human's approval in the tests.
pub struct SendEmail(pub Counter);

impl Tool for SendEmail {
    const NAME: &'static str = "send_email";
    type Args = EmailArgs;
    type Output = String;
    type Error = ToolError;

    fn description(&self) -> String {
        "Sends an email".into()
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "object",
            "properties": {"to": {"type": "string"}},
            "required": ["to"]
        })
    }

    async fn call(&self, _cx: &mut ToolContext, args: EmailArgs) -> Result<String, ToolError> {
        self.0.bump();
        Ok(format!("sent to {}", args.to))
    }
}

/// `flaky`: fails its first `fail_first` calls, then answers "ok".
pub struct Flaky {
    pub calls: Counter,
    pub fail_first: usize,
}

impl Tool for Flaky {
    const NAME: &'static str = "flaky";
    type Args = serde_json::Value;
    type Output = String;
    type Error = ToolError;

    fn description(&self) -> String {
        "Fails at first".into()
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({"type": "object", "properties": {}})
    }

    async fn call(&self, _cx: &mut ToolContext, _args: serde_json::Value) -> Result<String, ToolError> {
        self.calls.bump();
        if self.calls.get() <= self.fail_first {
            return Err(ToolError(format!("transient failure #{}", self.calls.get())));
        }
        Ok("ok".into())
    }
}

/// Waits until `cond` holds (polling), failing after 10 s.
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Every stored text of a run (step values, errors, request hashes, signals, output), for
/// checking that no credential was stored.
pub async fn stored_text(wf: &Workflow, run_id: &str) -> String {
    let mut text = String::new();
    for s in wf.list_steps(run_id).await.unwrap() {
        text.push_str(&format!("{s:?}\n"));
    }
    text.push_str(&format!("{:?}", wf.get_run(run_id).await.unwrap()));
    text
}
