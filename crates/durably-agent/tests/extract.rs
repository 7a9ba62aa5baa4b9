//! Structured output for both agents: the schema goes to the model, the answer is checked
//! against the type, an answer that does not fit goes back to the model (each retry a recorded
//! model step), a completed run returns the same value with no request, and answers still wrong
//! after the retries end the run with a typed error naming the run and the step.
#![cfg(all(feature = "openai", feature = "rig"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rig_support;

use durably_agent::openai::OpenAiAgent;
use durably_agent::rig::DurableAgent;
use durably_agent::rig::rig_agent::AgentBuilder;
use durably_agent::{AgentError, TaskConfig, agent_error_of};
use durably_core::backoff::constant;
use durably_core::{MemoryStore, Workflow};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use rig_support::{memory, model};
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, PartialEq, Deserialize, JsonSchema)]
struct Person {
    /// Full name.
    name: String,
    /// Age in years.
    age: u32,
}

const ADA: &str = r#"{"name":"Ada Lovelace","age":36}"#;

fn openai(wf: &Workflow, mock: &MockOpenAi) -> OpenAiAgent {
    OpenAiAgent::builder(wf)
        .name("extractor")
        .api_base(mock.base_url())
        .api_key("sk-test-1")
        .model_config(TaskConfig::new(0, constant(0.0)))
        .output_retries(1)
        .build()
}

fn rig(wf: &Workflow, mock: &MockOpenAi) -> DurableAgent {
    DurableAgent::new(model(mock), wf, |b: AgentBuilder| b.preamble("You extract people."))
        .name("extractor")
        .model_config(TaskConfig::new(0, constant(0.0)))
        .output_retries(1)
}

fn engine() -> Workflow {
    Workflow::builder("extract").store(MemoryStore::new()).build()
}

/// The feedback a request carried to the model, if any (the last user message).
fn last_user_text(request: &serde_json::Value) -> String {
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let user = messages.iter().rev().find(|m| m["role"] == "user").cloned().unwrap_or_default();
    match &user["content"] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[tokio::test]
async fn openai_sends_the_schema_retries_a_bad_answer_and_replays_the_value() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::text(r#"{"name":"Ada Lovelace"}"#)).push(MockReply::text(ADA));
    let wf = engine();
    let agent = openai(&wf, &mock);
    let person: Person = agent.extract_with_id("Ada Lovelace died at 36.", "x1").await.unwrap();
    assert_eq!(person, Person { name: "Ada Lovelace".into(), age: 36 });
    assert_eq!(mock.requests(), 2);
    let first = &mock.received()[0];
    assert_eq!(first["response_format"]["type"], "json_schema");
    assert_eq!(first["response_format"]["json_schema"]["name"], "Person");
    assert_eq!(first["response_format"]["json_schema"]["schema"]["properties"]["age"]["type"], "integer");
    // The second request told the model what was wrong.
    assert!(last_user_text(&mock.received()[1]).contains("missing field `age`"), "{}", mock.received()[1]);
    let ids: Vec<String> = wf.list_steps("x1").await.unwrap().into_iter().map(|s| s.step_id).collect();
    assert_eq!(ids, ["extractor.model#1", "extractor.model#2"]);
    // The completed run answers the same value with no request.
    let again: Person = agent.extract_with_id("Ada Lovelace died at 36.", "x1").await.unwrap();
    assert_eq!(again, person);
    assert_eq!(mock.requests(), 2);
}

#[tokio::test]
async fn openai_invalid_json_past_the_retries_is_a_typed_error_naming_run_and_step() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::text("Ada, 36")).push(MockReply::text("{\"name\": \"Ada\", \"age\": \"old\"}"));
    let wf = engine();
    let err = openai(&wf, &mock).extract_with_id::<Person>("Ada?", "x2").await.unwrap_err();
    assert_eq!(mock.requests(), 2);
    match agent_error_of(&err) {
        Some(AgentError::InvalidOutput { run_id, step_id, attempts, type_name, .. }) => {
            assert_eq!((run_id.as_str(), step_id.as_str(), *attempts), ("x2", "extractor.model#2", 2));
            assert!(type_name.ends_with("Person"), "{type_name}");
        }
        other => panic!("expected InvalidOutput, got {other:?} from {err}"),
    }
    let text = err.to_string();
    assert!(text.contains("x2") && text.contains("extractor.model#2"), "{text}");
    // Both answers stay recorded: executing the run again sends nothing and fails the same way.
    let again = openai(&wf, &mock).extract_with_id::<Person>("Ada?", "x2").await.unwrap_err();
    assert!(matches!(agent_error_of(&again), Some(AgentError::InvalidOutput { .. })), "{again}");
    assert_eq!(mock.requests(), 2);
}

#[tokio::test]
async fn rig_sends_the_schema_retries_a_bad_answer_and_replays_the_value() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::text("not json at all")).push(MockReply::text(ADA));
    let wf = rig_support::engine(memory());
    let agent = rig(&wf, &mock);
    let person: Person = agent.extract_with_id("Ada Lovelace died at 36.", "x1").await.unwrap();
    assert_eq!(person.age, 36);
    assert_eq!(mock.requests(), 2);
    let first = &mock.received()[0];
    assert_eq!(first["response_format"]["type"], "json_schema", "{first}");
    assert!(first["response_format"]["json_schema"]["schema"]["properties"]["age"].is_object(), "{first}");
    assert!(last_user_text(&mock.received()[1]).contains("does not match the required JSON schema"));
    let ids: Vec<String> = wf.list_steps("x1").await.unwrap().into_iter().map(|s| s.step_id).collect();
    assert_eq!(ids, ["extractor.input", "extractor.model#1", "extractor.model#2"]);
    let again: Person = agent.extract_with_id("Ada Lovelace died at 36.", "x1").await.unwrap();
    assert_eq!(again, person);
    assert_eq!(mock.requests(), 2);
}

#[tokio::test]
async fn rig_invalid_json_past_the_retries_is_a_typed_error() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::text("nope")).push(MockReply::text("still nope"));
    let wf = rig_support::engine(memory());
    let err = rig(&wf, &mock).extract_with_id::<Person>("Ada?", "x2").await.unwrap_err();
    assert_eq!(mock.requests(), 2);
    match agent_error_of(&err) {
        Some(AgentError::InvalidOutput { run_id, step_id, .. }) => {
            assert_eq!((run_id.as_str(), step_id.as_str()), ("x2", "extractor.model#2"));
        }
        other => panic!("expected InvalidOutput, got {other:?} from {err}"),
    }
}
