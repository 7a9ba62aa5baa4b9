//! rig agents: model errors retried by durably (429 and 5xx with the model TaskConfig, a 400
//! never), errors stored as `{kind, message, retryable}` without credentials, tool retries, and
//! divergence under the same run id.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rig_support;

use durably_agent::rig::{DurableAgent, model_error_of, rig_agent::AgentBuilder};
use durably_core::{Error, StepStatus, Workflow};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use rig_support::*;
use serde_json::json;

fn plain(wf: &Workflow, mock: &MockOpenAi, retries: u32) -> DurableAgent {
    DurableAgent::new(model(mock), wf, |b: AgentBuilder| b.preamble("terse"))
        .name("bot")
        .model_config(quick(retries))
}

async fn step(wf: &Workflow, run_id: &str, step_id: &str) -> durably_core::StepRecord {
    wf.list_steps(run_id).await.unwrap().into_iter().find(|s| s.step_id == step_id).unwrap()
}

#[tokio::test]
async fn http_429_and_500_are_retried_by_durably() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::status(429, "Rate limit reached"));
    mock.push(MockReply::status(500, "The server had an error"));
    mock.push(MockReply::text("finally"));
    let wf = engine(memory());

    let answer = plain(&wf, &mock, 3).run_with_id("hi", "retry-1").await.unwrap();
    assert_eq!(answer.output, "finally");
    assert_eq!(mock.requests(), 3, "two failed attempts, then the answer");
    let rec = step(&wf, "retry-1", "bot.model#1").await;
    assert_eq!((rec.status, rec.attempts), (StepStatus::Completed, 3));
}

#[tokio::test]
async fn a_400_is_sent_exactly_once_and_recorded_as_kind_message_retryable() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::status(400, "Invalid 'messages': empty"));
    mock.push(MockReply::text("never served"));
    let wf = engine(memory());

    let err = plain(&wf, &mock, 5).run_with_id("hi", "bad-1").await.unwrap_err();
    assert_eq!(mock.requests(), 1, "a 400 is not retried");
    match &err {
        Error::Task { run_id, step_id, attempts, .. } => {
            assert_eq!((run_id.as_str(), step_id.as_str(), *attempts), ("bad-1", "bot.model#1", 1));
        }
        other => panic!("expected the model step's error, got {other:?}"),
    }
    let model_error = model_error_of(&err).unwrap();
    assert_eq!((model_error.kind.as_str(), model_error.retryable), ("http_400", false));
    assert!(model_error.message.contains("Invalid 'messages'"), "{model_error:?}");

    let rec = step(&wf, "bad-1", "bot.model#1").await;
    assert_eq!(rec.status, StepStatus::Failed);
    let stored: serde_json::Value = serde_json::from_str(rec.error.as_deref().unwrap()).unwrap();
    assert_eq!(stored["kind"], "http_400");
    assert_eq!(stored["retryable"], false);
    assert!(stored["message"].as_str().unwrap().contains("Invalid 'messages'"));
    let run = wf.get_run("bad-1").await.unwrap().unwrap();
    assert!(run.error.unwrap().contains("http_400"));
}

#[tokio::test]
async fn retries_stop_at_the_model_task_config_and_the_run_resumes_later() {
    let mock = MockOpenAi::start().await;
    mock.push_all([MockReply::status(503, "overloaded"), MockReply::status(503, "overloaded")]);
    let store = memory();

    let err = plain(&engine(store.clone()), &mock, 1).run_with_id("hi", "down-1").await.unwrap_err();
    assert_eq!(mock.requests(), 2, "1 retry = 2 attempts");
    let model_error = model_error_of(&err).unwrap();
    assert_eq!((model_error.kind.as_str(), model_error.retryable), ("http_503", true));

    // A failed step is not cached: the next execution tries again.
    mock.push(MockReply::text("back up"));
    let answer = plain(&engine(store), &mock, 1).run_with_id("hi", "down-1").await.unwrap();
    assert_eq!(answer.output, "back up");
    assert_eq!(mock.requests(), 3);
}

#[tokio::test]
async fn no_credential_is_stored_even_when_the_provider_echoes_it() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::status(401, format!("Incorrect API key provided: {API_KEY}. Check it.")));
    let wf = engine(memory());
    let err = plain(&wf, &mock, 3).run_with_id("hi", "auth-1").await.unwrap_err();
    assert_eq!(mock.requests(), 1, "a 401 is not retried");
    assert!(!err.to_string().contains("SUPERSECRET"), "{err}");
    let text = stored_text(&wf, "auth-1").await;
    assert!(text.contains("http_401") && text.contains("[redacted]"), "{text}");
    assert!(!text.contains("SUPERSECRET"), "the key reached the store: {text}");
}

#[tokio::test]
async fn a_failing_tool_is_retried_and_its_last_error_goes_to_the_model() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("flaky", json!({}))]));
    mock.push(MockReply::text("it worked"));
    let wf = engine(memory());
    let calls = Counter::default();
    let c = calls.clone();
    let agent = DurableAgent::new(model(&mock), &wf, move |b: AgentBuilder| {
        b.tool(Flaky { calls: c.clone(), fail_first: 2 })
    })
    .name("bot")
    .tool_config(quick(2));
    assert_eq!(agent.run_with_id("go", "flaky-1").await.unwrap().output, "it worked");
    assert_eq!(calls.get(), 3, "two failures, then success");
    let rec = step(&wf, "flaky-1", "bot.tool.flaky#1.call_1").await;
    assert_eq!((rec.status, rec.attempts), (StepStatus::Completed, 3));
    assert!(mock.received()[1].to_string().contains("ok"));

    // Without retries the first error is the tool's answer, recorded and shown to the model.
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("flaky", json!({}))]));
    mock.push(MockReply::text("sorry"));
    let calls = Counter::default();
    let c = calls.clone();
    let agent = DurableAgent::new(model(&mock), &wf, move |b: AgentBuilder| {
        b.tool(Flaky { calls: c.clone(), fail_first: 5 })
    })
    .name("bot")
    .tool_config(quick(0));
    assert_eq!(agent.run_with_id("go", "flaky-2").await.unwrap().output, "sorry");
    assert_eq!(calls.get(), 1);
    let rec = step(&wf, "flaky-2", "bot.tool.flaky#1.call_1").await;
    assert_eq!(rec.status, StepStatus::Completed);
    assert!(rec.value.unwrap().contains("error"));
}

fn non_determinism(err: &Error) -> (&str, &str) {
    match err {
        Error::NonDeterminism { run_id, step_id, .. } => (run_id, step_id),
        other => panic!("expected NonDeterminism, got {other:?}"),
    }
}

#[tokio::test]
async fn a_changed_prompt_under_the_same_run_id_is_non_determinism() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::text("Paris"));
    let wf = engine(memory());
    let agent = plain(&wf, &mock, 0);
    agent.run_with_id("Capital of France?", "geo-1").await.unwrap();

    let err = agent.run_with_id("Capital of Spain?", "geo-1").await.unwrap_err();
    assert_eq!(non_determinism(&err), ("geo-1", "bot.input"));
    assert!(err.to_string().contains("geo-1") && err.to_string().contains("bot.input"), "{err}");
    assert_eq!(mock.requests(), 1);
}

#[tokio::test]
async fn a_changed_tool_set_under_the_same_run_id_is_non_determinism() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("add", json!({"x": 1, "y": 1}))]));
    mock.push(MockReply::status(400, "stop here"));
    let store = memory();
    let add = Counter::default();
    let a = add.clone();
    let one_tool = DurableAgent::new(model(&mock), &engine(store.clone()), move |b: AgentBuilder| {
        b.tool(Add(a.clone()))
    })
    .name("bot")
    .model_config(quick(0));
    assert!(one_tool.run_with_id("1+1?", "tools-1").await.is_err());

    // Same prompt, one more tool: the run (failed, so executing it again runs its body)
    // refuses to replay answers given with another tool set.
    let (a, w) = (add.clone(), Counter::default());
    let two_tools = DurableAgent::new(model(&mock), &engine(store), move |b: AgentBuilder| {
        b.tool(Add(a.clone())).tool(Weather(w.clone()))
    })
    .name("bot");
    let err = two_tools.run_with_id("1+1?", "tools-1").await.unwrap_err();
    assert_eq!(non_determinism(&err), ("tools-1", "bot.input"));
    assert_eq!(mock.requests(), 2);
    assert_eq!(add.get(), 1);
}

#[tokio::test]
async fn a_changed_model_request_is_non_determinism_at_that_model_step() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("add", json!({"x": 1, "y": 1}))]));
    mock.push(MockReply::status(400, "stop here"));
    let store = memory();
    let agent = |preamble: &'static str| {
        DurableAgent::new(model(&mock), &engine(store.clone()), move |b: AgentBuilder| {
            b.preamble(preamble).tool(Add(Counter::default()))
        })
        .name("bot")
        .model_config(quick(0))
    };
    assert!(agent("Be terse.").run_with_id("1+1?", "req-1").await.is_err());
    // Same prompt and tools, another system prompt: the first request now hashes differently.
    let err = agent("Be verbose.").run_with_id("1+1?", "req-1").await.unwrap_err();
    assert_eq!(non_determinism(&err), ("req-1", "bot.model#1"));
    assert_eq!(mock.requests(), 2, "nothing was sent for the diverging request");
}

#[tokio::test]
async fn max_turns_bounds_the_model_calls_of_a_run() {
    let mock = MockOpenAi::start().await;
    for _ in 0..5 {
        mock.push(MockReply::tool_calls([("add", json!({"x": 1, "y": 1}))]));
    }
    let wf = engine(memory());
    let add = Counter::default();
    let a = add.clone();
    let agent = DurableAgent::new(model(&mock), &wf, move |b: AgentBuilder| b.tool(Add(a.clone())))
        .name("looper")
        .max_turns(2);
    let err = agent.run_with_id("loop forever", "loop-1").await.unwrap_err();
    assert!(err.to_string().contains("max turns") && err.to_string().contains("loop-1"), "{err}");
    assert_eq!(mock.requests(), 2);
    assert_eq!(add.get(), 2);
}
