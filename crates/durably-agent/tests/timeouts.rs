//! Timeouts for both agents: a model request with no answer within the per-attempt timeout is
//! abandoned and retried; a hung tool is retried, then its timeout is what the model is shown;
//! a run's deadline is recorded when it first starts, so executing it again keeps it.
#![cfg(all(feature = "openai", feature = "rig"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rig_support;

use std::time::{Duration, Instant};

use durably_agent::openai::{OpenAiAgent, Tool};
use durably_agent::rig::DurableAgent;
use durably_agent::rig::rig_agent::AgentBuilder;
use durably_agent::{AgentError, TaskConfig, agent_error_of};
use durably_core::backoff::constant;
use durably_core::{MemoryStore, Workflow};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use rig_support::{memory, model};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

/// Longer than any test may take: a run that finishes did not wait for it.
const HUNG: Duration = Duration::from_secs(30);

#[derive(Deserialize, JsonSchema)]
struct Nothing {}

fn engine() -> Workflow {
    Workflow::builder("timeouts").store(MemoryStore::new()).build()
}

fn openai(wf: &Workflow, mock: &MockOpenAi) -> durably_agent::openai::OpenAiAgentBuilder {
    OpenAiAgent::builder(wf)
        .name("bot")
        .api_base(mock.base_url())
        .api_key("sk-test-1")
        .model_config(TaskConfig::new(1, constant(0.0)))
        .tool_config(TaskConfig::new(1, constant(0.0)))
}

#[tokio::test]
async fn openai_a_hung_model_request_is_retried() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::text("too late").delayed(HUNG)).push(MockReply::text("on time"));
    let wf = engine();
    let agent = openai(&wf, &mock).model_timeout(Duration::from_millis(300)).build();
    let started = Instant::now();
    let run = agent.run_with_id("hi", "t1").await.unwrap();
    assert_eq!(run.output, "on time");
    assert_eq!(mock.requests(), 2);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(wf.list_steps("t1").await.unwrap()[0].attempts, 2);
}

#[tokio::test]
async fn openai_a_hung_tool_is_retried_then_shown_to_the_model_as_timed_out() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("hang", json!({}))])).push(MockReply::text("gave up on it"));
    let wf = engine();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let hang = Tool::new("hang", "Never answers", move |_: Nothing| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async {
            tokio::time::sleep(HUNG).await;
            Ok::<_, std::io::Error>("never")
        }
    });
    let agent = openai(&wf, &mock).tool(hang).tool_timeout(Duration::from_millis(100)).build();
    let run = agent.run_with_id("hi", "t2").await.unwrap();
    assert_eq!(run.output, "gave up on it");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2, "one retry");
    let tool_message = mock.received()[1]["messages"].as_array().unwrap().last().cloned().unwrap();
    assert_eq!(tool_message["role"], "tool");
    assert!(tool_message["content"].as_str().unwrap().contains("gave no answer within"), "{tool_message}");
}

#[tokio::test]
async fn openai_the_run_deadline_is_recorded_and_kept_by_the_next_execution() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::text("too late").delayed(HUNG));
    let wf = engine();
    let agent = openai(&wf, &mock).run_timeout(Duration::from_millis(300)).build();
    let started = Instant::now();
    let err = agent.run_with_id("hi", "t3").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    let Some(AgentError::DeadlineExceeded { run_id, step_id, deadline_ms, timeout_ms }) =
        agent_error_of(&err).cloned()
    else {
        panic!("expected DeadlineExceeded, got {err}");
    };
    assert_eq!((run_id.as_str(), step_id.as_str(), timeout_ms), ("t3", "bot.deadline", 300));
    assert_eq!(mock.requests(), 1);
    // Executing the failed run again, even with a longer timeout, keeps the recorded deadline
    // (long past): it fails at once, sending nothing.
    let patient = openai(&wf, &mock).run_timeout(Duration::from_secs(600)).build();
    let again = patient.run_with_id("hi", "t3").await.unwrap_err();
    match agent_error_of(&again) {
        Some(AgentError::DeadlineExceeded { deadline_ms: kept, .. }) => assert_eq!(*kept, deadline_ms),
        other => panic!("expected DeadlineExceeded, got {other:?}"),
    }
    assert_eq!(mock.requests(), 1);
}

#[tokio::test]
async fn rig_a_hung_model_request_is_retried_and_the_deadline_holds() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::text("too late").delayed(HUNG)).push(MockReply::text("on time"));
    let wf = rig_support::engine(memory());
    let agent = DurableAgent::new(model(&mock), &wf, |b: AgentBuilder| b)
        .name("bot")
        .model_config(TaskConfig::new(1, constant(0.0)))
        .model_timeout(Duration::from_millis(300));
    assert_eq!(agent.run_with_id("hi", "t1").await.unwrap().output, "on time");
    assert_eq!(mock.requests(), 2);

    mock.push(MockReply::text("too late").delayed(HUNG));
    let slow = DurableAgent::new(model(&mock), &wf, |b: AgentBuilder| b)
        .name("bot")
        .run_timeout(Duration::from_millis(300));
    let err = slow.run_with_id("hi", "t2").await.unwrap_err();
    assert!(matches!(agent_error_of(&err), Some(AgentError::DeadlineExceeded { .. })), "{err}");
    assert_eq!(mock.requests(), 3);
}
