//! Streaming runs of the OpenAI agent: live deltas from the model on the first execution, the
//! recorded text on a replay, and the same steps as a plain run.
#![cfg(feature = "openai")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use durably_agent::TaskConfig;
use durably_agent::openai::{OpenAiAgent, StreamEvent, Tool};
use durably_core::backoff::constant;
use durably_core::{Error, MemoryStore, Workflow};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use futures::StreamExt;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize, JsonSchema)]
struct CityArgs {
    /// The city.
    city: String,
}

fn agent(wf: &Workflow, mock: &MockOpenAi, calls: Arc<AtomicUsize>) -> OpenAiAgent {
    let weather = Tool::new("get_weather", "Weather of a city", move |a: CityArgs| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(format!("rain in {}", a.city))
        }
    });
    OpenAiAgent::builder(wf)
        .name("streamer")
        .api_base(mock.base_url())
        .api_key("sk-stream")
        .tool(weather)
        .model_config(TaskConfig::new(0, constant(0.0)))
        .build()
}

fn texts(events: &[StreamEvent]) -> Vec<(String, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Text { text, replayed } => Some((text.clone(), *replayed)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_streamed_run_yields_live_deltas_then_replays_the_recorded_text() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("get_weather", json!({"city": "Bergen"}))]));
    mock.push(MockReply::text("It rains in Bergen, as usual."));
    let wf = Workflow::builder("s").store(MemoryStore::new()).build();
    let calls = Arc::new(AtomicUsize::new(0));
    let agent = agent(&wf, &mock, calls.clone());
    let crash = AtomicBool::new(true);
    let execute = || {
        wf.run("stream-1", |_| async {
            // Streaming inside a workflow: the agent's steps are part of this run.
            let events: Vec<StreamEvent> =
                agent.stream("Weather in Bergen?").map(|e| e.unwrap()).collect().await;
            if crash.swap(false, Ordering::SeqCst) {
                return Err(Error::Invalid { what: "test", detail: "crash".into() });
            }
            Ok(events.iter().map(|e| format!("{e:?}")).collect::<Vec<_>>())
        })
    };

    // First execution: live deltas, several of them, that add up to the answer.
    let events = {
        let mut seen = Vec::new();
        let run = wf.run("stream-0", |_| async {
            let mut stream = std::pin::pin!(agent.stream("Weather in Bergen?"));
            while let Some(e) = stream.next().await {
                seen.push(e?);
            }
            Ok::<_, Error>(())
        });
        run.await.unwrap();
        seen
    };
    let live = texts(&events);
    assert!(live.len() >= 2, "expected several deltas: {live:?}");
    assert!(live.iter().all(|(_, replayed)| !replayed));
    assert_eq!(live.iter().map(|(t, _)| t.as_str()).collect::<String>(), "It rains in Bergen, as usual.");
    match events.last().unwrap() {
        StreamEvent::Done(run) => {
            assert_eq!(run.output, "It rains in Bergen, as usual.");
            assert!(run.usage.total_tokens > 0, "usage comes in the last chunk");
        }
        other => panic!("expected Done last, got {other:?}"),
    }
    assert_eq!(mock.requests(), 2);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the streamed tool call's arguments were assembled");
    assert_eq!(mock.received()[0]["stream"], true);
    assert_eq!(mock.received()[0]["stream_options"]["include_usage"], true);
    let tool_message = &mock.received()[1]["messages"][2];
    assert_eq!(tool_message["content"], "rain in Bergen");

    // A run that crashed after streaming replays the recorded text, without a request.
    mock.push(MockReply::tool_calls([("get_weather", json!({"city": "Bergen"}))]));
    mock.push(MockReply::text("It rains in Bergen, as usual."));
    execute().await.unwrap_err();
    assert_eq!(mock.requests(), 4);
    let replayed = execute().await.unwrap();
    assert_eq!(mock.requests(), 4, "the replay sent a request");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        replayed.iter().filter(|e| e.starts_with("Text")).collect::<Vec<_>>(),
        [&format!(
            "{:?}",
            StreamEvent::Text { text: "It rains in Bergen, as usual.".into(), replayed: true }
        )]
    );
}

#[tokio::test]
async fn a_streamed_run_records_what_a_plain_run_replays() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::text("Plain and simple."));
    let wf = Workflow::builder("s").store(MemoryStore::new()).build();
    let agent = agent(&wf, &mock, Arc::new(AtomicUsize::new(0)));
    let crash = AtomicBool::new(true);
    let first = wf
        .run("mixed", |_| async {
            let events: Vec<_> = agent.stream("Say it").collect().await;
            assert!(events.iter().all(Result::is_ok));
            if crash.swap(false, Ordering::SeqCst) {
                return Err(Error::Invalid { what: "test", detail: "crash".into() });
            }
            Ok(String::new())
        })
        .await;
    assert!(first.is_err());
    // The next execution runs plainly: the streamed call's record serves it.
    let output =
        wf.run("mixed", |_| async { Ok::<_, Error>(agent.run("Say it").await?.output) }).await.unwrap();
    assert_eq!(output, "Plain and simple.");
    assert_eq!(mock.requests(), 1);
}
