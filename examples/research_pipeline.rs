//! A multi-agent research pipeline in one durable run: a planner agent lists search queries, a
//! searcher agent (with a `web_search` tool) handles each one, and a summarizer agent writes the
//! summary. Every model call and tool call is a step of the pipeline's run.
//!
//! The program executes the run three times:
//! 1. the run is interrupted before the summary (a simulated crash): 7 model requests;
//! 2. the same run id again: the planner and the searches replay from the store (0 requests),
//!    only the summarizer calls the model (1 request);
//! 3. the same run id once more: the stored output, 0 requests.
//!
//! ```text
//! cargo run --example research_pipeline --features openai
//! ```
//!
//! Offline by default: the model is the mock OpenAI-compatible server of durably-testkit,
//! playing `fixtures/research_pipeline.json`. With `OPENAI_API_KEY` set (and optionally
//! `OPENAI_BASE_URL`) the agents call that endpoint instead.

#![allow(clippy::print_stdout)] // an example talks to its user

use std::sync::atomic::{AtomicBool, Ordering};

use durably::agent::TaskConfig;
use durably::agent::openai::{OpenAiAgent, Tool};
use durably::backoff::exponential;
use durably::{SqliteStore, State, StepStatus, Workflow};
use durably_testkit::mock_openai::MockOpenAi;
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Deserialize, JsonSchema)]
struct SearchArgs {
    /// What to search for.
    query: String,
}

async fn web_search(args: SearchArgs) -> Result<String, std::io::Error> {
    // A real tool would call a search API here; it runs once per call, whatever happens later.
    println!("    [tool ran] web_search({:?})", args.query);
    Ok(format!("top result for {:?}: an article on {}", args.query, args.query))
}

struct Agents {
    planner: OpenAiAgent,
    searcher: OpenAiAgent,
    summarizer: OpenAiAgent,
}

static CRASH_BEFORE_SUMMARY: AtomicBool = AtomicBool::new(true);

/// The pipeline: `#[durably::durable_pipeline]` is the workflow attribute; the agent runs in it
/// are part of its run. The agents are application state registered on the engine: no
/// argument of `research(&wf, …)`, not recorded, and there for a recovered run too.
#[durably::durable_pipeline(id = "research-{topic_id}")]
async fn research(State(agents): State<Agents>, topic_id: String, topic: String) -> anyhow::Result<String> {
    let plan = agents.planner.run(format!("Plan three web searches about: {topic}")).await?;
    let mut findings = Vec::new();
    for query in plan.output.lines().map(str::trim).filter(|q| !q.is_empty()).take(3) {
        findings.push(agents.searcher.run(query).await?.output);
    }
    if CRASH_BEFORE_SUMMARY.swap(false, Ordering::SeqCst) {
        anyhow::bail!("simulated crash before the summary (topic {topic_id})");
    }
    Ok(agents.summarizer.run(findings.join("\n")).await?.output)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Offline unless a key is set: the mock serves the recorded conversation and counts requests.
    let (mock, base_url, key) = match std::env::var("OPENAI_API_KEY") {
        Ok(key) if !key.is_empty() => {
            let base =
                std::env::var("OPENAI_BASE_URL").unwrap_or_else(|_| "https://api.openai.com/v1".into());
            println!("model: {base} (OPENAI_API_KEY is set)");
            (None, base, key)
        }
        _ => {
            let mock = MockOpenAi::from_fixture("fixtures/research_pipeline.json").await?;
            println!("model: mock server at {} playing fixtures/research_pipeline.json", mock.base_url());
            let base = mock.base_url();
            (Some(mock), base, "sk-offline-example".to_owned())
        }
    };
    let requests = || mock.as_ref().map(MockOpenAi::requests);

    let dir = tempfile::tempdir()?;
    let wf =
        Workflow::builder("research").store(SqliteStore::open(dir.path().join("research.db")).await?).build();
    let agent = |name: &str, prompt: &str| {
        OpenAiAgent::builder(&wf)
            .name(name)
            .model("gpt-4o-mini")
            .api_base(&base_url)
            .api_key(&key)
            .system_prompt(prompt)
            .model_config(TaskConfig::new(3, exponential(2.0, 30.0)))
    };
    let agents = Agents {
        planner: agent("planner", "Answer with three web search queries, one per line, nothing else.")
            .build(),
        searcher: agent("searcher", "Call web_search once, then state the main finding in one sentence.")
            .tool(Tool::new("web_search", "Search the web", web_search))
            .build(),
        summarizer: agent("summarizer", "Summarize the findings in two sentences.").build(),
    };
    // The agents hold the engine, so they are registered once it is built.
    wf.set_state(agents);

    let topic = "durable LLM agents".to_owned();
    println!("\n1) first execution of run research-42 (interrupted before the summary)");
    match research(&wf, "42".into(), topic.clone()).await {
        Ok(_) => anyhow::bail!("the first execution should have been interrupted"),
        Err(e) => println!("   failed as planned: {e}"),
    }
    let first = requests();
    println!("   model requests so far: {}", show(first));

    println!("\n2) the same run id again: recorded calls replay, the rest runs live");
    let summary = research(&wf, "42".into(), topic.clone()).await?;
    let second = requests();
    println!("   model requests in this execution: {}", show(diff(second, first)));
    println!("   summary: {summary}");

    println!("\n3) once more: the run is complete, its stored output comes back");
    let again = research(&wf, "42".into(), topic).await?;
    println!("   model requests in this execution: {}", show(diff(requests(), second)));
    assert_eq!(again, summary);

    println!("\nsteps of run research-42:");
    for step in wf.list_steps("research-42").await? {
        let status = if step.status == StepStatus::Completed { "completed" } else { "not completed" };
        println!("   {:<40} {status}, {} attempt(s)", step.step_id, step.attempts);
    }
    if let Some(mock) = &mock {
        assert_eq!(mock.requests(), 8, "7 requests, then 1, then 0");
    }
    Ok(())
}

fn diff(now: Option<usize>, before: Option<usize>) -> Option<usize> {
    Some(now? - before?)
}

fn show(n: Option<usize>) -> String {
    n.map_or_else(|| "(not counted against a real endpoint)".into(), |n| n.to_string())
}
