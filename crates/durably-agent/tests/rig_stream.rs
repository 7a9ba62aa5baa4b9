//! rig agents, streaming: live chunks when the model is called, the recorded response as a
//! stream when the call is replayed, the same text both times and no request on replay.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rig_support;

use durably_agent::rig::{AgentEvent, AgentResponse, AgentStream, DurableAgent, rig_agent::AgentBuilder};
use durably_core::{Error, Workflow};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use futures::StreamExt;
use rig_support::*;
use serde_json::json;

const ANSWER: &str = "The weather in Lisbon is sunny, with a light breeze from the sea.";

fn forecaster(wf: &Workflow, mock: &MockOpenAi, weather: &Counter) -> DurableAgent {
    let w = weather.clone();
    DurableAgent::new(model(mock), wf, move |b: AgentBuilder| b.tool(Weather(w.clone()))).name("forecaster")
}

/// The text chunks and the final response of a stream.
async fn collect(mut stream: AgentStream) -> Result<(Vec<String>, AgentResponse), Error> {
    let mut chunks = Vec::new();
    while let Some(event) = stream.next().await {
        match event? {
            AgentEvent::Text(t) => chunks.push(t),
            AgentEvent::Done(response) => return Ok((chunks, response)),
            _ => {}
        }
    }
    panic!("the stream ended without Done");
}

#[tokio::test]
async fn a_streamed_run_and_its_replay_give_the_same_text_with_no_request() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("weather", json!({"city": "Lisbon"}))]));
    mock.push(MockReply::text(ANSWER));
    let store = memory();
    let weather = Counter::default();
    let fail_once = Counter::default();

    // The agent streams inside a workflow whose next step fails the first time, so the second
    // execution runs the body again and replays both model calls through the stream.
    let execute = |wf: Workflow| {
        let agent = forecaster(&wf, &mock, &weather);
        let fail_once = fail_once.clone();
        async move {
            wf.run("stream-1", move |_| async move {
                let (chunks, response) = collect(agent.stream("Weather in Lisbon?")).await?;
                let fail_once = fail_once.clone();
                durably_core::step("after", move || {
                    let fail_once = fail_once.clone();
                    async move {
                        fail_once.bump();
                        if fail_once.get() == 1 { Err(std::io::Error::other("down")) } else { Ok(()) }
                    }
                })
                .retries(0)
                .await?;
                Ok::<_, Error>((chunks, response.output))
            })
            .await
        }
    };

    assert!(execute(engine(store.clone())).await.is_err());
    assert_eq!(mock.requests(), 2);
    assert_eq!(weather.get(), 1);
    assert!(mock.received().iter().all(|r| r["stream"] == true), "the model was called streaming");

    let (chunks, output) = execute(engine(store.clone())).await.unwrap();
    assert_eq!(output, ANSWER);
    assert_eq!(chunks.concat(), ANSWER, "the recorded response streams back as text");
    assert_eq!(mock.requests(), 2, "no request on replay");
    assert_eq!(weather.get(), 1, "no tool call on replay");
}

#[tokio::test]
async fn live_chunks_arrive_as_the_provider_sends_them() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::text(ANSWER));
    let wf = engine(memory());
    let (chunks, response) =
        collect(forecaster(&wf, &mock, &Counter::default()).stream_with_id("Weather?", "stream-2"))
            .await
            .unwrap();
    assert!(chunks.len() > 1, "several live chunks: {chunks:?}");
    assert_eq!(chunks.concat(), ANSWER);
    assert_eq!(response.output, ANSWER);
    assert_eq!(mock.requests(), 1);
    let recs = wf.list_steps("stream-2").await.unwrap();
    let model = recs.iter().find(|s| s.step_id == "forecaster.model#1").unwrap();
    assert!(model.value.as_deref().unwrap().contains("light breeze"), "the whole response was recorded");

    // The run completed: streaming it again replays its output, with no request.
    let (again, response) =
        collect(forecaster(&wf, &mock, &Counter::default()).stream_with_id("Weather?", "stream-2"))
            .await
            .unwrap();
    assert_eq!((again.concat(), response.output), (ANSWER.to_owned(), ANSWER.to_owned()));
    assert_eq!(mock.requests(), 1);
}

#[tokio::test]
async fn a_streamed_call_is_retried_on_429_and_a_400_ends_the_stream_with_the_error() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::status(429, "slow down"));
    mock.push(MockReply::text(ANSWER));
    let wf = engine(memory());
    let agent = forecaster(&wf, &mock, &Counter::default()).model_config(quick(2));
    let (chunks, _) = collect(agent.stream_with_id("Weather?", "stream-3")).await.unwrap();
    assert_eq!(chunks.concat(), ANSWER);
    assert_eq!(mock.requests(), 2);

    mock.push(MockReply::status(400, "bad"));
    let err = collect(agent.stream_with_id("Other?", "stream-4")).await.unwrap_err();
    assert_eq!(mock.requests(), 3);
    match err {
        Error::Task { step_id, .. } => assert_eq!(step_id, "forecaster.model#1"),
        other => panic!("expected the model step's error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_streamed_tool_loop_reports_the_tool_calls() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("weather", json!({"city": "Lisbon"}))]));
    mock.push(MockReply::text(ANSWER));
    let wf = engine(memory());
    let weather = Counter::default();
    let mut stream = forecaster(&wf, &mock, &weather).stream_with_id("Weather in Lisbon?", "stream-5");
    let mut calls = Vec::new();
    let mut text = String::new();
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            AgentEvent::ToolCall { name, arguments } => calls.push((name, arguments)),
            AgentEvent::Text(t) => text.push_str(&t),
            AgentEvent::Done(response) => assert_eq!(response.output, ANSWER),
            _ => {}
        }
    }
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].0, "weather");
    assert!(calls[0].1.contains("Lisbon"), "{calls:?}");
    assert_eq!(text, ANSWER);
    assert_eq!(weather.get(), 1);
}
