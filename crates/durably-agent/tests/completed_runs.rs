//! A completed run executed again, with either agent: streaming it yields its recorded text, a
//! different prompt under its run id is `Error::NonDeterminism`, and tool steps carry a request
//! hash, as the rig agent's do.
#![cfg(feature = "openai")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use durably_agent::openai::{OpenAiAgent, StreamEvent, Tool};
use durably_agent::{TaskConfig, request_hash};
use durably_core::backoff::constant;
use durably_core::{Error, MemoryStore, Result, Workflow};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use futures::{Stream, StreamExt};
use serde_json::{Value, json};

/// An agent with one tool, `get_weather`, counting its calls.
fn agent(wf: &Workflow, mock: &MockOpenAi, calls: Arc<AtomicUsize>) -> OpenAiAgent {
    let weather = Tool::new("get_weather", "Weather of a city", move |args: Value| {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok::<_, std::io::Error>(format!("rain in {}", args["city"])))
    });
    OpenAiAgent::builder(wf)
        .name("weather")
        .api_base(mock.base_url())
        .api_key("sk-completed")
        .tool(weather)
        .model_config(TaskConfig::new(0, constant(0.0)))
        .build()
}

fn engine() -> Workflow {
    Workflow::builder("completed").store(MemoryStore::new()).build()
}

async fn collect(stream: impl Stream<Item = Result<StreamEvent>>) -> Result<Vec<StreamEvent>> {
    let mut stream = std::pin::pin!(stream);
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event?);
    }
    Ok(events)
}

/// Checks that `events` are exactly the replayed `text`, then the end with that output.
fn assert_replayed(events: &[StreamEvent], text: &str) {
    match events {
        [StreamEvent::Text { text: replayed_text, replayed: true }, StreamEvent::Done(run)] => {
            assert_eq!((replayed_text.as_str(), run.output.as_str()), (text, text));
        }
        other => panic!("expected the replayed text then Done, got {other:?}"),
    }
}

#[tokio::test]
async fn streaming_a_completed_openai_run_yields_its_recorded_text() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::text("It rains."));
    mock.push(MockReply::text("It snows."));
    let wf = engine();
    let agent = agent(&wf, &mock, Arc::new(AtomicUsize::new(0)));

    agent.run_with_id("Weather?", "done-1").await.unwrap();
    let events = collect(agent.stream_with_id("Weather?", "done-1")).await.unwrap();
    assert_replayed(&events, "It rains.");

    // Outside a workflow, `stream` resumes the prompt's own run: completed, it replays too.
    agent.run("Forecast?").await.unwrap();
    let events = collect(agent.stream("Forecast?")).await.unwrap();
    assert_replayed(&events, "It snows.");
    assert_eq!(mock.requests(), 2, "streaming a completed run sent a request");
}

fn assert_non_determinism(err: &Error, run: &str, step: &str) {
    match err {
        Error::NonDeterminism { run_id, step_id, .. } => {
            assert_eq!((run_id.as_str(), step_id.as_str()), (run, step));
        }
        other => panic!("expected NonDeterminism, got {other}"),
    }
}

#[tokio::test]
async fn a_completed_openai_run_with_another_prompt_is_non_determinism() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::text("Paris"));
    let wf = engine();
    let agent = agent(&wf, &mock, Arc::new(AtomicUsize::new(0)));
    assert_eq!(agent.run_with_id("Capital of France?", "geo-1").await.unwrap().output, "Paris");

    let err = agent.run_with_id("Capital of Spain?", "geo-1").await.unwrap_err();
    assert_non_determinism(&err, "geo-1", "weather.model#1");
    assert!(err.to_string().contains("geo-1") && err.to_string().contains("weather.model#1"), "{err}");
    let err = collect(agent.stream_with_id("Capital of Spain?", "geo-1")).await.unwrap_err();
    assert_non_determinism(&err, "geo-1", "weather.model#1");
    // The same prompt still gets its answer.
    assert_eq!(agent.run_with_id("Capital of France?", "geo-1").await.unwrap().output, "Paris");
    assert_eq!(mock.requests(), 1);
}

#[tokio::test]
async fn openai_tool_steps_record_the_request_hash_the_rig_agent_records() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("get_weather", json!({"city": "Oslo"}))]));
    mock.push(MockReply::text("Rain in Oslo."));
    let wf = engine();
    let calls = Arc::new(AtomicUsize::new(0));
    agent(&wf, &mock, calls.clone()).run_with_id("Weather in Oslo?", "tool-1").await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let steps = wf.list_steps("tool-1").await.unwrap();
    let tool = steps.iter().find(|s| s.step_id == "weather.tool.get_weather#1.call_1").unwrap();
    let args = mock.received()[1]["messages"][1]["tool_calls"][0]["function"]["arguments"].clone();
    let expected = request_hash(&json!({"tool": "get_weather", "args": args})).unwrap();
    assert_eq!(tool.request_hash.as_deref(), Some(expected.as_str()));
}
