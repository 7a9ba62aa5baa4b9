//! A tool that needs a human: the agent's `transfer_funds` tool waits for an approval signal,
//! which an operator delivers over HTTP.
//!
//! The program starts a small axum server with
//! - `GET  /runs/{id}`                 the run's status and the signal it waits on;
//! - `POST /runs/{id}/signals/{name}`  delivers the JSON body as the signal's payload
//!   (`{"approved": true}` or `{"approved": false, "reason": "…"}`),
//!
//! starts the agent run, waits until the run is `waiting`, prints the equivalent curl commands,
//! sends the approval itself with reqwest, and prints the agent's answer.
//!
//! ```text
//! cargo run --example approval --features openai
//! ```
//!
//! Offline by default (the mock OpenAI-compatible server of durably-testkit); with
//! `OPENAI_API_KEY` set (and optionally `OPENAI_BASE_URL`) the agent calls that endpoint.

#![allow(clippy::print_stdout)] // an example talks to its user

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use durably::agent::openai::{OpenAiAgent, Tool};
use durably::agent::{Approval, TaskConfig};
use durably::backoff::exponential;
use durably::{MemoryStore, RunStatus, Workflow};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

const RUN_ID: &str = "payout-7";

#[derive(Deserialize, JsonSchema)]
struct Transfer {
    /// The recipient's account.
    to: String,
    /// The amount in euros.
    amount_eur: u32,
}

async fn transfer_funds(t: Transfer) -> Result<String, std::io::Error> {
    println!("    [tool ran] transfer_funds({} EUR to {})", t.amount_eur, t.to);
    Ok(format!("transferred {} EUR to {}", t.amount_eur, t.to))
}

/// `POST /runs/{id}/signals/{name}`: delivers the body as the signal's payload.
async fn deliver(
    State(wf): State<Workflow>,
    Path((run_id, name)): Path<(String, String)>,
    Json(payload): Json<Value>,
) -> (StatusCode, Json<Value>) {
    match wf.complete(&run_id, &name, &payload).await {
        Ok(true) => (StatusCode::OK, Json(json!({ "delivered": true }))),
        // First write wins: a second delivery of the same signal changes nothing.
        Ok(false) => {
            (StatusCode::CONFLICT, Json(json!({ "delivered": false, "reason": "already delivered" })))
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": e.to_string() }))),
    }
}

/// `GET /runs/{id}`: what an operator looks at to find the pending approval.
async fn status(State(wf): State<Workflow>, Path(run_id): Path<String>) -> (StatusCode, Json<Value>) {
    match wf.get_run(&run_id).await {
        Ok(Some(run)) => (
            StatusCode::OK,
            Json(
                json!({ "run_id": run.run_id, "status": run.status.to_string(), "waiting_on": run.waiting_on }),
            ),
        ),
        Ok(None) => (StatusCode::NOT_FOUND, Json(json!({ "error": format!("no run {run_id}") }))),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": e.to_string() }))),
    }
}

/// Percent-encodes a path segment (signal names contain `#`).
fn encode(segment: &str) -> String {
    segment
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '-' | '_' | '.' | '~' | ':' => c.to_string(),
            other => other.to_string().bytes().map(|b| format!("%{b:02X}")).collect(),
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (mock, base_url, key) = match std::env::var("OPENAI_API_KEY") {
        Ok(key) if !key.is_empty() => {
            let base =
                std::env::var("OPENAI_BASE_URL").unwrap_or_else(|_| "https://api.openai.com/v1".into());
            println!("model: {base} (OPENAI_API_KEY is set)");
            (None, base, key)
        }
        _ => {
            let mock = MockOpenAi::start().await;
            mock.push(MockReply::tool_calls([(
                "transfer_funds",
                json!({ "to": "DE89 3704 0044 0532 0130 00", "amount_eur": 250 }),
            )]));
            mock.push(MockReply::text("Done: 250 EUR went to DE89 3704 0044 0532 0130 00 after approval."));
            println!("model: mock server at {}", mock.base_url());
            let base = mock.base_url();
            (Some(mock), base, "sk-offline-example".to_owned())
        }
    };

    let wf = Workflow::builder("payouts").store(MemoryStore::new()).build();
    let agent = OpenAiAgent::builder(&wf)
        .name("payouts")
        .model("gpt-4o-mini")
        .api_base(base_url)
        .api_key(key)
        .system_prompt("You pay suppliers with transfer_funds.")
        .tool(Tool::new("transfer_funds", "Transfer money to an account", transfer_funds).requires_approval())
        .model_config(TaskConfig::new(3, exponential(2.0, 30.0)))
        .build();

    // The operator's HTTP endpoint.
    let app = Router::new()
        .route("/runs/{id}", get(status))
        .route("/runs/{id}/signals/{name}", post(deliver))
        .with_state(wf.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let server = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("operator endpoint: {server}");

    // The agent run, until it waits for the approval.
    let run = tokio::spawn({
        let agent = agent.clone();
        async move { agent.run_with_id("Pay 250 EUR to DE89 3704 0044 0532 0130 00.", RUN_ID).await }
    });
    let http = reqwest::Client::new();
    let signal = loop {
        if run.is_finished() {
            // It ended without waiting (an error from the model, say): show why.
            let outcome = run.await?;
            anyhow::bail!("the run ended before it waited for an approval: {outcome:?}");
        }
        let run = wf.get_run(RUN_ID).await?;
        if let Some(run) = run.filter(|r| r.status == RunStatus::Waiting) {
            break run.waiting_on.unwrap_or_default();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let status: Value = http.get(format!("{server}/runs/{RUN_ID}")).send().await?.json().await?;
    println!("\nrun {RUN_ID} is waiting: {status}");

    let url = format!("{server}/runs/{RUN_ID}/signals/{}", encode(&signal));
    println!("\nthe equivalent curl commands:");
    println!("  curl {server}/runs/{RUN_ID}");
    println!("  curl -X POST '{url}' -H 'content-type: application/json' -d '{{\"approved\": true}}'");
    println!("  # or reject; the model gets the reason as the tool's error:");
    println!(
        "  curl -X POST '{url}' -H 'content-type: application/json' -d '{{\"approved\": false, \"reason\": \"over budget\"}}'"
    );

    println!("\napproving over HTTP…");
    let reply = http.post(&url).json(&Approval::approve()).send().await?;
    println!("  {} {}", reply.status(), reply.text().await?);

    let result = run.await??;
    println!("\nagent: {}", result.output);
    if let Some(mock) = &mock {
        assert_eq!(mock.requests(), 2);
    }
    Ok(())
}
