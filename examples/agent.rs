//! A durable rig agent with two tools, run twice under one run id: the first execution calls
//! the model and the tools (live), the second replays every call from the store.
//!
//! ```text
//! cargo run --example agent --features rig
//! ```
//!
//! Offline by default: the model is the mock OpenAI-compatible server of durably-testkit. With
//! `OPENAI_API_KEY` set (and optionally `OPENAI_BASE_URL`) the agent calls that endpoint.

#![allow(clippy::print_stdout)] // an example talks to its user

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use durably::agent::TaskConfig;
use durably::agent::rig::DurableAgent;
use durably::agent::rig::rig_agent::AgentBuilder;
use durably::agent::rig::rig_core::providers::openai::OpenAIConfig;
use durably::agent::rig::rig_core::tool::{Tool, ToolContext};
use durably::backoff::exponential;
use durably::{SqliteStore, Workflow};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use serde::Deserialize;
use serde_json::json;

const RUN_ID: &str = "agent-demo";
const PROMPT: &str = "What is 17 + 25, and what is the weather in Lisbon?";

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ToolError(String);

#[derive(Deserialize)]
struct AddArgs {
    x: i64,
    y: i64,
}

/// `add`: adds two integers, counting its executions.
struct Add(Arc<AtomicUsize>);

impl Tool for Add {
    const NAME: &'static str = "add";
    type Args = AddArgs;
    type Output = i64;
    type Error = ToolError;

    fn description(&self) -> String {
        "Adds two integers".into()
    }

    fn parameters(&self) -> serde_json::Value {
        json!({"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}}, "required": ["x", "y"]})
    }

    async fn call(&self, _cx: &mut ToolContext, args: AddArgs) -> Result<i64, ToolError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        args.x.checked_add(args.y).ok_or_else(|| ToolError("overflow".into()))
    }
}

#[derive(Deserialize)]
struct WeatherArgs {
    city: String,
}

/// `weather`: a canned forecast, counting its executions.
struct Weather(Arc<AtomicUsize>);

impl Tool for Weather {
    const NAME: &'static str = "weather";
    type Args = WeatherArgs;
    type Output = String;
    type Error = ToolError;

    fn description(&self) -> String {
        "The current weather in a city".into()
    }

    fn parameters(&self) -> serde_json::Value {
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
    }

    async fn call(&self, _cx: &mut ToolContext, args: WeatherArgs) -> Result<String, ToolError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(format!("sunny and 21 °C in {}", args.city))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The model: a real endpoint with OPENAI_API_KEY, the scripted mock otherwise.
    let (config, mock) = match std::env::var("OPENAI_API_KEY") {
        Ok(key) => {
            let mut config = OpenAIConfig::new(key);
            if let Ok(url) = std::env::var("OPENAI_BASE_URL") {
                config = config.with_base_url(url);
            }
            (config, None)
        }
        Err(_) => {
            let mock = MockOpenAi::start().await;
            mock.push(MockReply::tool_calls([
                ("add", json!({"x": 17, "y": 25})),
                ("weather", json!({"city": "Lisbon"})),
            ]));
            mock.push(MockReply::text("17 + 25 = 42, and it is sunny and 21 °C in Lisbon."));
            (OpenAIConfig::new("sk-offline").with_base_url(mock.base_url()), Some(mock))
        }
    };
    let model = config.client().chat("gpt-4o-mini");
    let requests = || mock.as_ref().map_or("n/a (real endpoint)".to_owned(), |m| m.requests().to_string());

    let dir = tempfile::tempdir()?;
    let db = dir.path().join("agent.db");
    let (adds, forecasts) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));

    for execution in ["first execution (live)", "second execution (replayed)"] {
        // A fresh engine each time, as after a restart: everything comes from the SQLite file.
        let wf = Workflow::builder("agent-example").store(SqliteStore::open(&db).await?).build();
        let (a, f) = (adds.clone(), forecasts.clone());
        let agent = DurableAgent::new(model.clone(), &wf, move |b: AgentBuilder| {
            b.preamble("Use the tools, then answer in one sentence.")
                .tool(Add(a.clone()))
                .tool(Weather(f.clone()))
        })
        .name("assistant")
        .max_turns(4)
        .model_config(TaskConfig::new(3, exponential(2.0, 30.0)));

        let answer = agent.run_with_id(PROMPT, RUN_ID).await?;
        println!("== {execution}");
        println!("answer: {}", answer.output);
        println!(
            "model requests so far: {}; tool executions so far: add {}, weather {}; tokens: {:?}",
            requests(),
            adds.load(Ordering::SeqCst),
            forecasts.load(Ordering::SeqCst),
            answer.usage.total_tokens,
        );
        println!("steps of run {RUN_ID}:");
        for step in wf.list_steps(RUN_ID).await? {
            println!("  {:<34} {:<10} attempts={}", step.step_id, step.status.as_str(), step.attempts);
        }
    }

    if let Some(mock) = &mock {
        anyhow::ensure!(mock.requests() == 2, "expected 2 model requests in all, got {}", mock.requests());
        anyhow::ensure!(adds.load(Ordering::SeqCst) == 1 && forecasts.load(Ordering::SeqCst) == 1);
        println!("the second execution sent 0 requests and ran 0 tools");
    }
    Ok(())
}
