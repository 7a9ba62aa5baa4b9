//! A queue of agent runs under a model rate limit: support tickets are enqueued, and two workers
//! (two engines on one SQLite file, as two processes would be) classify them with a durable
//! agent, at most four at once over both workers, and at most three requests per second to the
//! model over both: the limit is kept in the store, so each worker's agent waits for room
//! before a request, whatever the other worker sends. Each ticket is enqueued again
//! afterwards: deduplication by run id returns the recorded answers, with no new model request
//! and no wait for the limit.
//!
//! ```text
//! cargo run --example queue_agents --features openai
//! ```
//!
//! Offline by default: the model is the mock OpenAI-compatible server of durably-testkit. With
//! `OPENAI_API_KEY` set (and optionally `OPENAI_BASE_URL`) the agent calls that endpoint.

#![allow(clippy::print_stdout)] // an example talks to its user

use std::time::{Duration, Instant};

use durably::agent::openai::OpenAiAgent;
use durably::agent::{ModelLimit, ModelLimits};
use durably::{Queue, SqliteStore, Workflow};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};

const TICKETS: [&str; 8] = [
    "I was charged twice this month",
    "The app crashes when I upload a photo",
    "How do I change my email address?",
    "Refund for the annual plan, please",
    "Login page shows a blank screen",
    "Can I add a second user to my account?",
    "Invoice 1042 has the wrong VAT number",
    "Export to CSV times out",
];

/// The model's limit: three requests per second over every worker.
const REQUESTS_PER_SECOND: usize = 3;

/// One worker engine: the queue, the model limit, the agent (as state) and the workflow that
/// uses it.
async fn engine(db: &std::path::Path, base: &str, key: &str) -> anyhow::Result<Workflow> {
    let wf = Workflow::builder("support").store(SqliteStore::open(db).await?).build();
    wf.add_queue(Queue::new("triage").concurrency(4))?;
    wf.add_model_limit(
        ModelLimit::new("openai", "gpt-4o-mini")
            .requests_per_minute(REQUESTS_PER_SECOND as u32)
            .per(Duration::from_secs(1)),
    )?;
    let agent = OpenAiAgent::builder(&wf)
        .name("triage")
        .model("gpt-4o-mini")
        .system_prompt("Classify the support ticket as billing, bug or account. One word.")
        .api_base(base)
        .api_key(key)
        .build();
    wf.set_state(agent);
    wf.register_fn("classify", |ctx, ticket: String| async move {
        let agent = ctx.state::<OpenAiAgent>()?;
        let answer = agent.run(format!("Ticket: {ticket}")).await?;
        Ok::<_, anyhow::Error>(answer.output)
    });
    Ok(wf)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (base, key, mock) = match std::env::var("OPENAI_API_KEY") {
        Ok(key) if !key.is_empty() => {
            let base =
                std::env::var("OPENAI_BASE_URL").unwrap_or_else(|_| "https://api.openai.com/v1".into());
            (base, key, None)
        }
        _ => {
            let mock = MockOpenAi::start().await;
            for answer in ["billing", "bug", "account", "billing", "bug", "account", "billing", "bug"] {
                mock.push(MockReply::text(answer));
            }
            (mock.base_url(), "sk-offline".to_owned(), Some(mock))
        }
    };
    let requests = || mock.as_ref().map_or("n/a (real endpoint)".to_owned(), |m| m.requests().to_string());

    let dir = tempfile::tempdir()?;
    let db = dir.path().join("support.db");
    let (a, b) = (engine(&db, &base, &key).await?, engine(&db, &base, &key).await?);

    println!("1) enqueue {} tickets, then start two workers", TICKETS.len());
    let mut handles = Vec::new();
    for (i, ticket) in TICKETS.iter().enumerate() {
        handles.push(a.enqueue("triage", "classify", &format!("ticket-{i}"), ticket).await?);
    }
    println!("   {:?}", a.queue_stats("triage").await?);
    let started = Instant::now();
    let workers = [
        a.queue_worker(["triage"]).concurrency(4).start()?,
        b.queue_worker(["triage"]).concurrency(4).start()?,
    ];
    for (handle, ticket) in handles.iter().zip(TICKETS) {
        let category: String = handle.result().await?;
        println!("   {} {ticket:?} -> {category}", handle.run_id());
    }
    println!("   all done in {:.1?}; model requests: {}", started.elapsed(), requests());
    if let Some(mock) = &mock {
        assert_eq!(mock.requests(), TICKETS.len(), "one model request per ticket");
        // As the provider counts: no second of arrivals holds more than the limit.
        let mut arrivals = mock.arrivals();
        arrivals.sort();
        for window in arrivals.windows(REQUESTS_PER_SECOND + 1) {
            let span = window[REQUESTS_PER_SECOND] - window[0];
            assert!(span >= Duration::from_secs(1), "{} requests within {span:?}", REQUESTS_PER_SECOND + 1);
        }
        println!("   at most {REQUESTS_PER_SECOND} model requests in any second, over both workers");
    }

    println!("\n2) the same tickets enqueued again: each run id runs once, the answers come from the store");
    for (i, ticket) in TICKETS.iter().enumerate() {
        let again: String =
            b.enqueue("triage", "classify", &format!("ticket-{i}"), ticket).await?.result().await?;
        assert!(!again.is_empty());
    }
    println!("   model requests now: {}", requests());
    if let Some(mock) = &mock {
        assert_eq!(mock.requests(), TICKETS.len(), "no request for a run that already completed");
    }
    for worker in workers {
        worker.shutdown().await;
    }
    Ok(())
}
