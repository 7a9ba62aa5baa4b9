//! A multi-agent pipeline in one run (planner → N searches → summarizer, as in the
//! python-durable README): a full replay sends no request, and a run that failed in the middle
//! resumes there.
#![cfg(feature = "openai")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use durably_agent::TaskConfig;
use durably_agent::openai::{OpenAiAgent, Tool};
use durably_core::backoff::constant;
use durably_core::{Error, MemoryStore, RunStatus, Workflow};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize, JsonSchema)]
struct SearchArgs {
    /// What to search for.
    query: String,
}

struct Agents {
    planner: OpenAiAgent,
    searcher: OpenAiAgent,
    summarizer: OpenAiAgent,
    searches: Arc<AtomicUsize>,
}

fn agents(wf: &Workflow, mock: &MockOpenAi) -> Agents {
    let searches = Arc::new(AtomicUsize::new(0));
    let count = searches.clone();
    let search = Tool::new("web_search", "Search the web", move |a: SearchArgs| {
        let count = count.clone();
        async move {
            count.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(format!("top result for {}", a.query))
        }
    });
    let base = |name: &str| {
        OpenAiAgent::builder(wf)
            .name(name)
            .api_base(mock.base_url())
            .api_key("sk-pipeline")
            .model_config(TaskConfig::new(0, constant(0.0)))
    };
    Agents {
        planner: base("planner").system_prompt("List three search queries, one per line.").build(),
        searcher: base("searcher").system_prompt("Search, then report one finding.").tool(search).build(),
        summarizer: base("summarizer").system_prompt("Summarize the findings.").build(),
        searches,
    }
}

/// The pipeline body: part of whatever run it is called in.
async fn research(a: &Agents, topic: &str) -> durably_core::Result<String> {
    let plan = a.planner.run(format!("Plan searches about {topic}")).await?;
    let mut findings = Vec::new();
    for query in plan.output.lines() {
        findings.push(a.searcher.run(query).await?.output);
    }
    Ok(a.summarizer.run(findings.join("\n")).await?.output)
}

#[tokio::test]
async fn a_pipeline_replays_fully_with_zero_requests() {
    let mock = MockOpenAi::from_fixture("research_pipeline.json").await.unwrap();
    let wf = Workflow::builder("pipelines").store(MemoryStore::new()).build();
    let a = agents(&wf, &mock);
    let crash = AtomicBool::new(true);
    let execute = || {
        wf.run("research-1", |_| async {
            let summary = research(&a, "durable agents").await?;
            if crash.swap(false, Ordering::SeqCst) {
                return Err(Error::Invalid { what: "test", detail: "crash at the end".into() });
            }
            Ok(summary)
        })
    };
    execute().await.unwrap_err();
    assert_eq!(mock.requests(), 8);
    assert_eq!(mock.remaining(), 0);
    assert_eq!(a.searches.load(Ordering::SeqCst), 3);

    let summary = execute().await.unwrap();
    assert_eq!(mock.requests(), 8, "the replay sent a request");
    assert_eq!(a.searches.load(Ordering::SeqCst), 3, "the replay ran a search");
    assert!(summary.starts_with("Summary:"), "{summary}");

    // One run holds every agent's steps; the searcher's later invocations have their own prefix.
    let ids: Vec<String> =
        wf.list_steps("research-1").await.unwrap().into_iter().map(|s| s.step_id).collect();
    for id in [
        "planner.model#1",
        "searcher.model#1",
        "searcher.tool.web_search#1.call_1",
        "searcher#1.model#2",
        "searcher#2.tool.web_search#1.call_3",
        "summarizer.model#1",
    ] {
        assert!(ids.iter().any(|i| i == id), "{id} missing from {ids:?}");
    }
    assert_eq!(ids.len(), 1 + 3 * 3 + 1);
}

#[tokio::test]
async fn a_pipeline_that_failed_in_the_middle_resumes_there() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::text("alpha\nbeta\ngamma"));
    mock.push(MockReply::tool_calls([("web_search", json!({"query": "alpha"}))]));
    mock.push(MockReply::text("finding alpha"));
    // The second search's model call fails with a 400: not retried, the run fails.
    mock.push(MockReply::status(400, "context length exceeded"));
    let wf = Workflow::builder("pipelines").store(MemoryStore::new()).build();
    let a = agents(&wf, &mock);
    let execute = || wf.run("research-2", |_| research(&a, "greek letters"));

    let err = execute().await.unwrap_err();
    assert!(err.to_string().contains("searcher#1.model#1"), "{err}");
    assert_eq!(wf.get_run("research-2").await.unwrap().unwrap().status, RunStatus::Failed);
    assert_eq!(mock.requests(), 4);
    assert_eq!(a.searches.load(Ordering::SeqCst), 1);

    mock.push_all([
        MockReply::tool_calls([("web_search", json!({"query": "beta"}))]),
        MockReply::text("finding beta"),
        MockReply::tool_calls([("web_search", json!({"query": "gamma"}))]),
        MockReply::text("finding gamma"),
        MockReply::text("alpha, beta and gamma"),
    ]);
    let summary = execute().await.unwrap();
    assert_eq!(summary, "alpha, beta and gamma");
    // The planner and the first search were replayed: only the five new calls were sent.
    assert_eq!(mock.requests(), 9);
    assert_eq!(a.searches.load(Ordering::SeqCst), 3, "the first search ran again");
    // The first request of the resumed execution is the second search, asked afresh.
    let resumed = &mock.received()[4];
    assert_eq!(resumed["messages"][1]["content"], "beta");
    let summarized = &mock.received()[8];
    assert_eq!(summarized["messages"][1]["content"], "finding alpha\nfinding beta\nfinding gamma");
}
