//! Durable conversations with the rig agent, on SQLite and in memory: the history of earlier
//! turns reaches the model, tool calls inside a turn are steps, a completed turn replays with no
//! request, streaming, and the stateless `chat`.
#![cfg(feature = "rig")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rig_support;

use std::sync::Arc;

use durably_agent::rig::rig_core::completion::Message;
use durably_agent::rig::{AgentEvent, DurableAgent, rig_agent::AgentBuilder};
use durably_agent::sessions::ChatMessage;
use durably_core::Workflow;
use durably_core::store::Store;
use durably_sqlite::SqliteStore;
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use futures::StreamExt;
use rig_support::*;
use serde_json::json;

fn calculator(wf: &Workflow, mock: &MockOpenAi, add: &Counter) -> DurableAgent {
    let add = add.clone();
    DurableAgent::new(model(mock), wf, move |b: AgentBuilder| {
        b.preamble("You are terse.").tool(Add(add.clone()))
    })
    .name("calc")
    .model_config(quick(0))
    .tool_config(quick(0))
}

async fn sqlite(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(dir.path().join("rig.db")).await.unwrap())
}

async fn conversation(store: Arc<dyn Store>) {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("add", json!({"x": 2, "y": 3}))]));
    mock.push(MockReply::text("2+3 is 5."));
    mock.push(MockReply::text("You asked about 2+3."));
    let add = Counter::default();
    let wf = engine(store.clone());
    let session = calculator(&wf, &mock, &add).session("math-1");
    assert_eq!(session.send_with_id("r1", "What is 2+3?").await.unwrap().output, "2+3 is 5.");
    assert_eq!((mock.requests(), add.get()), (2, 1));
    let second = session.send_with_id("r2", "What did I ask?").await.unwrap();
    assert_eq!(second.output, "You asked about 2+3.");
    assert_eq!(mock.requests(), 3);
    // The second turn's request carries the first turn's message, its tool call and result
    // (as the provider's messages: the call the model made, the result answering its id), and
    // its answer.
    let body = mock.received()[2].to_string();
    for text in ["What is 2+3?", "2+3 is 5.", "What did I ask?"] {
        assert!(body.contains(text), "{text} missing from {body}");
    }
    let sent = mock.received()[2]["messages"].as_array().unwrap().clone();
    let roles: Vec<&str> = sent.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "assistant", "user"], "{body}");
    let call = &sent[2]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "add");
    let args: serde_json::Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"x": 2, "y": 3}));
    assert_eq!(sent[3]["tool_call_id"], call["id"]);
    assert!(sent[3]["content"].to_string().contains('5'), "{}", sent[3]);
    assert_eq!(
        session.messages().await.unwrap(),
        [
            ChatMessage::user("What is 2+3?"),
            ChatMessage::assistant("2+3 is 5."),
            ChatMessage::user("What did I ask?"),
            ChatMessage::assistant("You asked about 2+3."),
        ]
    );
    // The turns again, on a new engine: recorded answers, no request, no tool call.
    let again = calculator(&engine(store), &mock, &add).session("math-1");
    assert_eq!(again.send_with_id("r1", "What is 2+3?").await.unwrap().output, "2+3 is 5.");
    let events: Vec<AgentEvent> =
        again.stream_with_id("r2", "What did I ask?").map(|e| e.unwrap()).collect::<Vec<_>>().await;
    assert!(matches!(&events[0], AgentEvent::Text(t) if t == "You asked about 2+3."));
    assert!(matches!(events.last(), Some(AgentEvent::Done(r)) if r.output == "You asked about 2+3."));
    assert_eq!((mock.requests(), add.get()), (3, 1));
}

#[tokio::test]
async fn a_conversation_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    conversation(sqlite(&dir).await).await;
}

#[tokio::test]
async fn a_conversation_in_memory() {
    conversation(memory()).await;
}

#[tokio::test]
async fn a_live_turn_streams_its_text() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::text("streamed"));
    let wf = engine(memory());
    let session = calculator(&wf, &mock, &Counter::default()).session("s");
    let events: Vec<AgentEvent> = session.stream("hi").map(|e| e.unwrap()).collect::<Vec<_>>().await;
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "streamed");
    assert!(matches!(events.last(), Some(AgentEvent::Done(r)) if r.output == "streamed"));
    assert_eq!(session.messages().await.unwrap().len(), 2);
}

#[tokio::test]
async fn chat_sends_the_callers_history() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::text("You are Ann."));
    let dir = tempfile::tempdir().unwrap();
    let wf = engine(sqlite(&dir).await);
    let agent = calculator(&wf, &mock, &Counter::default());
    let history = vec![Message::user("I am Ann"), Message::assistant("Hi Ann.")];
    assert_eq!(agent.chat("Who am I?", history.clone()).await.unwrap().output, "You are Ann.");
    let body = mock.received()[0].to_string();
    for text in ["I am Ann", "Hi Ann.", "Who am I?"] {
        assert!(body.contains(text), "{text} missing from {body}");
    }
    // The same call again is the same run: no request.
    assert_eq!(agent.chat("Who am I?", history).await.unwrap().output, "You are Ann.");
    assert_eq!(mock.requests(), 1);
}
