//! A multi-agent pipeline in one workflow run (planner → N concurrent searches → summarizer,
//! all rig agents): every agent call is a step of the enclosing run; executing the run again
//! replays it fully with no request, and after a failure it resumes in the middle.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rig_support;

use durably_agent::rig::{DurableAgent, rig_agent::AgentBuilder};
use durably_core::{Error, Workflow};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use rig_support::*;
use serde_json::json;

const RUN_ID: &str = "research-1";

struct Agents {
    planner: DurableAgent,
    searcher: DurableAgent,
    summarizer: DurableAgent,
}

fn agents(wf: &Workflow, mock: &MockOpenAi, weather: &Counter) -> Agents {
    let w = weather.clone();
    let planner = DurableAgent::new(model(mock), wf, move |b: AgentBuilder| {
        b.preamble("Plan one search per line.").tool(Weather(w.clone()))
    })
    .name("planner");
    let searcher = DurableAgent::new(model(mock), wf, |b: AgentBuilder| b.preamble("Search."))
        .name("searcher")
        .model_config(quick(0));
    let summarizer =
        DurableAgent::new(model(mock), wf, |b: AgentBuilder| b.preamble("Summarize.")).name("summarizer");
    Agents { planner, searcher, summarizer }
}

/// The pipeline; `gate` fails the step after the summary while it returns false.
async fn pipeline(wf: &Workflow, agents: Agents, gate: Counter) -> Result<String, Error> {
    wf.run(RUN_ID, move |_| async move {
        let plan = agents.planner.run("Research durable agents").await?;
        // Invocation ids are taken here, in order: searcher, searcher#1, searcher#2.
        let searches: Vec<_> = plan.output.lines().map(|q| agents.searcher.run(q)).collect();
        let mut findings = Vec::new();
        for result in futures::future::join_all(searches).await {
            findings.push(result?.output);
        }
        let summary = agents.summarizer.run(findings.join("\n")).await?;
        let gate = gate.clone();
        durably_core::step("publish", move || {
            let gate = gate.clone();
            async move {
                gate.bump();
                if gate.get() == 1 { Err(std::io::Error::other("publisher down")) } else { Ok(()) }
            }
        })
        .retries(0)
        .await?;
        Ok::<_, Error>(summary.output)
    })
    .await
}

fn plan(mock: &MockOpenAi) {
    mock.push(MockReply::tool_calls([("weather", json!({"city": "Lisbon"}))]));
    mock.push(MockReply::text("durable execution\nsqlite wal\nagent replay"));
}

#[tokio::test]
async fn a_pipeline_replays_fully_with_no_request() {
    let mock = MockOpenAi::start().await;
    plan(&mock);
    mock.push_all([MockReply::text("finding A"), MockReply::text("finding B"), MockReply::text("finding C")]);
    mock.push(MockReply::text("the summary"));
    let store = memory();
    let weather = Counter::default();
    let gate = Counter::default();

    let wf = engine(store.clone());
    let err = pipeline(&wf, agents(&wf, &mock, &weather), gate.clone()).await.unwrap_err();
    assert!(err.to_string().contains("publisher down"), "{err}");
    assert_eq!(mock.requests(), 6);
    assert_eq!(weather.get(), 1);

    let ids: Vec<String> = wf.list_steps(RUN_ID).await.unwrap().into_iter().map(|s| s.step_id).collect();
    for id in [
        "planner.input",
        "planner.model#1",
        "planner.tool.weather#1.call_1",
        "planner.model#2",
        "searcher.model#1",
        "searcher#1.model#1",
        "searcher#2.model#1",
        "summarizer.model#1",
    ] {
        assert!(ids.contains(&id.to_owned()), "{id} missing from {ids:?}");
    }
    // Each search step recorded the request of its own query.
    let steps = wf.list_steps(RUN_ID).await.unwrap();
    for (id, query) in [("searcher.input", "durable execution"), ("searcher#2.input", "agent replay")] {
        let s = steps.iter().find(|s| s.step_id == id).unwrap();
        assert_eq!(s.value.as_deref(), Some(format!("\"{query}\"").as_str()));
    }

    // A new engine on the store: the body runs again, every agent call replays.
    let wf = engine(store);
    let summary = pipeline(&wf, agents(&wf, &mock, &weather), gate).await.unwrap();
    assert_eq!(summary, "the summary");
    assert_eq!(mock.requests(), 6, "no request on replay");
    assert_eq!(weather.get(), 1, "no tool call on replay");
}

#[tokio::test]
async fn a_pipeline_resumes_in_the_middle_after_a_failure() {
    let mock = MockOpenAi::start().await;
    plan(&mock);
    // One of the three concurrent searches gets the 400 (which one depends on arrival order).
    mock.push_all([
        MockReply::text("finding A"),
        MockReply::status(400, "bad query"),
        MockReply::text("finding C"),
    ]);
    let store = memory();
    let weather = Counter::default();
    let gate = Counter::default();
    gate.bump(); // the publish step succeeds at once in this test

    let wf = engine(store.clone());
    let err = pipeline(&wf, agents(&wf, &mock, &weather), gate.clone()).await.unwrap_err();
    assert!(err.to_string().contains("http_400"), "{err}");
    assert_eq!(mock.requests(), 5, "planner (2) + three searches");

    mock.push_all([MockReply::text("finding B"), MockReply::text("the summary")]);
    let wf = engine(store);
    let summary = pipeline(&wf, agents(&wf, &mock, &weather), gate).await.unwrap();
    assert_eq!(summary, "the summary");
    assert_eq!(mock.requests(), 7, "only the failed search and the summary were sent");
    assert_eq!(weather.get(), 1);
    let last = mock.received()[6].to_string();
    for finding in ["finding A", "finding B", "finding C"] {
        assert!(last.contains(finding), "the summarizer got {finding}: {last}");
    }
}
