//! Handoffs: a triage agent hands the customer's conversation to one of two specialists
//! (billing, support), which the model sees as tools `transfer_to_billing` and
//! `transfer_to_support`. The specialist goes on in the same durable run, with its own
//! instructions and tools.
//!
//! The program executes one run id twice, with a fresh engine each time (as after a restart):
//! the first execution calls the model three times (triage, then the billing specialist twice,
//! around its `refund` tool); the second replays the whole chain: 0 requests, 0 refunds.
//!
//! ```text
//! cargo run --example handoff --features openai
//! ```
//!
//! Offline by default: the model is the mock OpenAI-compatible server of durably-testkit. With
//! `OPENAI_API_KEY` set (and optionally `OPENAI_BASE_URL`) the agents call that endpoint.

#![allow(clippy::print_stdout)] // an example talks to its user

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use durably::agent::TaskConfig;
use durably::agent::openai::{OpenAiAgent, Tool};
use durably::backoff::exponential;
use durably::{SqliteStore, Workflow};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

const RUN_ID: &str = "handoff-demo";
const PROMPT: &str = "I was charged twice for order A-1, please give me my money back.";

#[derive(Deserialize, JsonSchema)]
struct OrderArgs {
    /// The order to refund.
    order: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (api_base, api_key, mock) = match std::env::var("OPENAI_API_KEY") {
        Ok(key) => {
            let base =
                std::env::var("OPENAI_BASE_URL").unwrap_or_else(|_| "https://api.openai.com/v1".into());
            (base, key, None)
        }
        Err(_) => {
            let mock = MockOpenAi::start().await;
            mock.push(MockReply::tool_calls([("transfer_to_billing", json!({"reason": "a double charge"}))]));
            mock.push(MockReply::tool_calls([("refund", json!({"order": "A-1"}))]));
            mock.push(MockReply::text("I refunded the duplicate charge on order A-1."));
            (mock.base_url(), "sk-offline".to_owned(), Some(mock))
        }
    };
    let requests = || mock.as_ref().map_or("n/a (real endpoint)".to_owned(), |m| m.requests().to_string());
    let refunds = Arc::new(AtomicUsize::new(0));

    let dir = tempfile::tempdir()?;
    let db = dir.path().join("handoff.db");
    for execution in ["first execution (live)", "second execution (replayed)"] {
        let wf = Workflow::builder("handoff-example").store(SqliteStore::open(&db).await?).build();
        let agent = |name: &str| {
            OpenAiAgent::builder(&wf)
                .name(name)
                .model("gpt-4o-mini")
                .api_base(api_base.clone())
                .api_key(api_key.clone())
                .model_config(TaskConfig::new(3, exponential(2.0, 30.0)))
        };
        let counted = refunds.clone();
        let refund = Tool::new("refund", "Refunds an order", move |a: OrderArgs| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, std::io::Error>(format!("order {} refunded", a.order)) }
        });
        let billing = agent("billing")
            .description("payments, charges and refunds")
            .system_prompt("You are the billing specialist. Use your tools, then answer in one sentence.")
            .tool(refund)
            .build();
        let support = agent("support")
            .description("technical problems with the product")
            .system_prompt("You are the technical support specialist.")
            .build();
        let triage = agent("triage")
            .system_prompt("Hand the customer to the right specialist.")
            .handoff(&billing)
            .handoff(&support)
            .build();

        let run = triage.run_with_id(PROMPT, RUN_ID).await?;
        println!("== {execution}");
        println!("answer: {}", run.output);
        println!("model requests so far: {}; refunds so far: {}", requests(), refunds.load(Ordering::SeqCst));
        for step in wf.list_steps(RUN_ID).await? {
            println!("  {:<30} {:<10} attempts={}", step.step_id, step.status.as_str(), step.attempts);
        }
    }
    if let Some(mock) = &mock {
        anyhow::ensure!(mock.requests() == 3, "expected 3 model requests in all, got {}", mock.requests());
        anyhow::ensure!(refunds.load(Ordering::SeqCst) == 1, "the refund ran more than once");
        println!("the second execution sent 0 requests and refunded nothing again");
    }
    Ok(())
}
