//! An agent's stream in the run's event log: live text chunks, tool calls with their arguments
//! and results, approvals needed; batched, so a streamed answer costs a few appends, not one
//! per chunk.
#![cfg(feature = "openai")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use durably::agent::openai::{OpenAiAgent, StreamEvent, Tool};
use durably::{Error, MemoryStore, Workflow};
use durably_testkit::faults::{FaultStore, Op};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use futures::StreamExt;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize, JsonSchema)]
struct CityArgs {
    /// The city.
    city: String,
}

#[tokio::test]
async fn a_streamed_answer_reaches_the_event_log_in_a_few_appends() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("get_weather", json!({"city": "Bergen"}))]));
    let answer: String = (0..60).map(|i| format!("word{i} ")).collect();
    mock.push(MockReply::text(answer.trim_end()));
    let store = Arc::new(FaultStore::new(MemoryStore::new()));
    let wf = Workflow::builder("events").shared_store(store.clone()).build();
    let weather = Tool::new("get_weather", "Weather of a city", |a: CityArgs| async move {
        Ok::<_, std::io::Error>(format!("rain in {}", a.city))
    })
    .requires_approval();
    let agent = OpenAiAgent::builder(&wf)
        .name("streamer")
        .api_base(mock.base_url())
        .api_key("sk-x")
        .tool(weather)
        .build();
    let runner = {
        let (wf, agent) = (wf.clone(), agent.clone());
        tokio::spawn(async move {
            wf.run("agent-ev", |_| async move {
                let events: Vec<StreamEvent> =
                    agent.stream("Weather in Bergen?").map(|e| e.unwrap()).collect().await;
                Ok::<_, Error>(events.len())
            })
            .await
        })
    };
    let mut follow = wf.events("agent-ev").from(0);
    let mut seen = Vec::new();
    loop {
        match follow.next().await {
            Some(Ok(event)) => {
                let approval = event.kind == "approval";
                seen.push(event);
                if approval {
                    break;
                }
            }
            Some(Err(Error::RunNotFound { .. })) => {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                follow = wf.events("agent-ev").from(seen.len() as u64);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let approval: Value = serde_json::from_str(&seen.last().unwrap().data).unwrap();
    let appends_before_text = store.calls(Op::AppendEvents);
    assert!(
        wf.complete("agent-ev", approval["signal"].as_str().unwrap(), &json!({"approved": true}))
            .await
            .unwrap()
    );
    while let Some(event) = follow.next().await {
        seen.push(event.unwrap());
    }
    runner.await.unwrap().unwrap();

    let kinds: Vec<&str> = seen.iter().map(|e| e.kind.as_str()).collect();
    let call = seen.iter().find(|e| e.kind == "tool_call").unwrap();
    let call: Value = serde_json::from_str(&call.data).unwrap();
    assert_eq!((call["tool"].as_str(), &call["args"]), (Some("get_weather"), &json!({"city": "Bergen"})));
    let result = seen.iter().find(|e| e.kind == "tool_result").unwrap();
    assert_eq!(serde_json::from_str::<Value>(&result.data).unwrap()["result"]["ok"], "rain in Bergen");
    let texts: Vec<String> = seen
        .iter()
        .filter(|e| e.kind == "text")
        .map(|e| serde_json::from_str::<Value>(&e.data).unwrap()["text"].as_str().unwrap().to_owned())
        .collect();
    assert!(texts.len() >= 50, "the answer came in {} chunks: {kinds:?}", texts.len());
    assert_eq!(texts.concat().trim_end(), answer.trim_end());
    assert_eq!(kinds.last(), Some(&"completed"));
    let offsets: Vec<u64> = seen.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, (0..seen.len() as u64).collect::<Vec<_>>());
    // Dozens of chunks, a handful of appends: the buffer goes out with the checkpoints.
    let appends = store.calls(Op::AppendEvents) - appends_before_text;
    eprintln!("{appends} appends for {} text chunks", texts.len());
    assert!(appends <= 8, "{appends} appends for {} text chunks", texts.len());
}
