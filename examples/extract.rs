//! Structured output: a durable agent extracts a typed `Invoice` from text. The schema of the
//! type goes to the model (`response_format` json_schema); an answer that does not fit is sent
//! back to the model with the reason; the typed value is the run's output.
//!
//! The program executes one run id twice, with a fresh engine each time (as after a restart):
//! the first execution calls the model (its first answer lacks a field, so it is asked again:
//! two model steps), the second returns the same `Invoice` from the store with 0 requests.
//!
//! ```text
//! cargo run --example extract --features openai
//! ```
//!
//! Offline by default: the model is the mock OpenAI-compatible server of durably-testkit. With
//! `OPENAI_API_KEY` set (and optionally `OPENAI_BASE_URL`) the agent calls that endpoint.

#![allow(clippy::print_stdout)] // an example talks to its user

use durably::agent::openai::OpenAiAgent;
use durably::agent::{Budget, TaskConfig};
use durably::backoff::exponential;
use durably::{SqliteStore, Workflow};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use schemars::JsonSchema;
use serde::Deserialize;

const RUN_ID: &str = "extract-demo";
const TEXT: &str = "Invoice INV-2041 from Acme GmbH, dated 2026-03-14: 3 widgets at 12.50 EUR each, \
                    total 37.50 EUR, payable within 30 days.";

/// What the model is asked to extract.
#[derive(Deserialize, JsonSchema)]
struct Invoice {
    /// The invoice number, e.g. "INV-1".
    number: String,
    /// Who sent the invoice.
    vendor: String,
    /// The total, in cents.
    total_cents: u64,
    /// ISO 4217 currency code.
    currency: String,
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
            // A first answer without the currency, then a complete one.
            mock.push(MockReply::text(r#"{"number":"INV-2041","vendor":"Acme GmbH","total_cents":3750}"#));
            mock.push(MockReply::text(
                r#"{"number":"INV-2041","vendor":"Acme GmbH","total_cents":3750,"currency":"EUR"}"#,
            ));
            (mock.base_url(), "sk-offline".to_owned(), Some(mock))
        }
    };
    let requests = || mock.as_ref().map_or("n/a (real endpoint)".to_owned(), |m| m.requests().to_string());

    let dir = tempfile::tempdir()?;
    let db = dir.path().join("extract.db");
    for execution in ["first execution (live)", "second execution (replayed)"] {
        let wf = Workflow::builder("extract-example").store(SqliteStore::open(&db).await?).build();
        let agent = OpenAiAgent::builder(&wf)
            .name("invoices")
            .model("gpt-4o-mini")
            .system_prompt("You extract invoice data. Answer with JSON only.")
            .api_base(api_base.clone())
            .api_key(api_key.clone())
            .model_config(TaskConfig::new(3, exponential(2.0, 30.0)))
            .output_retries(2)
            .budget(Budget::new().model_calls(4).total_tokens(20_000))
            .build();
        let invoice: Invoice = agent.extract_with_id(TEXT, RUN_ID).await?;
        println!("== {execution}");
        let Invoice { number, vendor, total_cents, currency } = &invoice;
        println!("invoice {number} from {vendor}: {total_cents} cents {currency}");
        println!("model requests so far: {}", requests());
        for step in wf.list_steps(RUN_ID).await? {
            println!("  {:<22} {:<10} attempts={}", step.step_id, step.status.as_str(), step.attempts);
        }
    }
    if let Some(mock) = &mock {
        anyhow::ensure!(mock.requests() == 2, "expected 2 model requests in all, got {}", mock.requests());
        println!("the second execution sent 0 requests");
    }
    Ok(())
}
