//! rig agents: each model request and each tool call is a step; executing a run again sends no
//! request for recorded model calls and runs no recorded tool call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rig_support;

use durably_agent::rig::{DurableAgent, rig_agent::AgentBuilder};
use durably_core::{Error, StepStatus, Workflow};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use rig_support::*;
use serde_json::json;

fn calculator(wf: &Workflow, mock: &MockOpenAi, add: &Counter, weather: &Counter) -> DurableAgent {
    let (add, weather) = (add.clone(), weather.clone());
    DurableAgent::new(model(mock), wf, move |b: AgentBuilder| {
        b.preamble("You are terse.").tool(Add(add.clone())).tool(Weather(weather.clone()))
    })
    .name("calc")
    .model_config(quick(2))
    .tool_config(quick(2))
}

fn script(mock: &MockOpenAi) {
    mock.push(MockReply::tool_calls([
        ("add", json!({"x": 2, "y": 3})),
        ("weather", json!({"city": "Paris"})),
    ]));
    mock.push(MockReply::tool_calls([("add", json!({"x": 5, "y": 10}))]));
    mock.push(MockReply::text("15, and sunny in Paris."));
}

#[tokio::test]
async fn each_model_request_and_tool_call_is_a_step() {
    let mock = MockOpenAi::start().await;
    script(&mock);
    let store = memory();
    let wf = engine(store.clone());
    let (add, weather) = (Counter::default(), Counter::default());
    let agent = calculator(&wf, &mock, &add, &weather);

    let answer = agent.run_with_id("What is 2+3+10, and the weather in Paris?", "calc-1").await.unwrap();
    assert_eq!(answer.output, "15, and sunny in Paris.");
    assert_eq!(mock.requests(), 3);
    assert_eq!((add.get(), weather.get()), (2, 1));
    assert!(answer.usage.total_tokens.unwrap_or(0) > 0, "usage is summed: {:?}", answer.usage);
    assert!(
        answer.messages.len() >= 6,
        "prompt, 3 assistant turns, tool results: {:?}",
        answer.messages.len()
    );

    let steps: Vec<(String, StepStatus)> =
        wf.list_steps("calc-1").await.unwrap().into_iter().map(|s| (s.step_id, s.status)).collect();
    let ids: Vec<&str> = steps.iter().map(|(id, _)| id.as_str()).collect();
    for id in [
        "calc.input",
        "calc.model#1",
        "calc.model#2",
        "calc.model#3",
        "calc.tool.add#1.call_1",
        "calc.tool.weather#1.call_2",
        "calc.tool.add#2.call_3",
    ] {
        assert!(ids.contains(&id), "step {id} missing from {ids:?}");
    }
    assert_eq!(steps.len(), 7, "{ids:?}");
    assert!(steps.iter().all(|(_, s)| *s == StepStatus::Completed));

    // The model's second request carried the tool results computed in the first turn.
    let second = mock.received()[1].to_string();
    assert!(second.contains("sunny in Paris") && second.contains('5'), "{second}");

    // The tool step holds the tool's output; the model step the whole response and a hash.
    let recs = wf.list_steps("calc-1").await.unwrap();
    let tool = recs.iter().find(|s| s.step_id == "calc.tool.weather#1.call_2").unwrap();
    assert!(tool.value.as_deref().unwrap().contains("sunny in Paris"), "{:?}", tool.value);
    let model1 = recs.iter().find(|s| s.step_id == "calc.model#1").unwrap();
    assert!(model1.value.as_deref().unwrap().contains("call_1"));
    assert_eq!(model1.request_hash.as_deref().map(str::len), Some(32));

    // No credential anywhere in what was stored.
    let text = stored_text(&wf, "calc-1").await;
    assert!(!text.contains("SUPERSECRET"), "the API key was stored: {text}");
    // ...although it was sent.
    assert!(format!("{:?}", mock.headers()[0]).contains("SUPERSECRET"));
}

#[tokio::test]
async fn a_completed_run_executed_again_sends_no_request() {
    let mock = MockOpenAi::start().await;
    script(&mock);
    let store = memory();
    let (add, weather) = (Counter::default(), Counter::default());
    let first = calculator(&engine(store.clone()), &mock, &add, &weather)
        .run_with_id("What is 2+3+10, and the weather in Paris?", "calc-2")
        .await
        .unwrap();
    assert_eq!(mock.requests(), 3);

    // A "restarted process": a new engine and a new agent on the same store.
    let again = calculator(&engine(store), &mock, &add, &weather)
        .run_with_id("What is 2+3+10, and the weather in Paris?", "calc-2")
        .await
        .unwrap();
    assert_eq!(again.output, first.output);
    assert_eq!(again.usage, first.usage);
    assert_eq!(mock.requests(), 3, "no request on replay");
    assert_eq!((add.get(), weather.get()), (2, 1), "no tool ran on replay");
}

/// The agent inside a workflow whose next step fails the first time: executing the run again
/// replays every model call and tool call from the store (the handler and the hook answer
/// them), with no request and no tool execution.
#[tokio::test]
async fn an_unfinished_run_replays_every_call_then_goes_on() {
    let mock = MockOpenAi::start().await;
    script(&mock);
    let store = memory();
    let (add, weather) = (Counter::default(), Counter::default());
    let fail_once = Counter::default();

    let execute = |wf: Workflow| {
        let agent = calculator(&wf, &mock, &add, &weather);
        let fail_once = fail_once.clone();
        async move {
            wf.run("wf-1", move |_| async move {
                let answer = agent.run("What is 2+3+10, and the weather in Paris?").await?;
                let fail_once = fail_once.clone();
                durably_core::step("publish", move || {
                    let fail_once = fail_once.clone();
                    async move {
                        fail_once.bump();
                        if fail_once.get() == 1 { Err(std::io::Error::other("down")) } else { Ok(()) }
                    }
                })
                .retries(0)
                .await?;
                Ok::<_, Error>(answer.output)
            })
            .await
        }
    };

    let err = execute(engine(store.clone())).await.unwrap_err();
    assert!(err.to_string().contains("publish"), "{err}");
    assert_eq!(mock.requests(), 3);
    assert_eq!((add.get(), weather.get()), (2, 1));

    let output = execute(engine(store.clone())).await.unwrap();
    assert_eq!(output, "15, and sunny in Paris.");
    assert_eq!(mock.requests(), 3, "recorded model calls were answered from the store");
    assert_eq!((add.get(), weather.get()), (2, 1), "recorded tool calls did not run again");
    assert_eq!(fail_once.get(), 2);
}

/// A run that failed after its first model call and tool call: the next execution replays
/// those and continues live from the first unrecorded call.
#[tokio::test]
async fn after_a_failure_the_run_continues_live_from_the_first_unrecorded_call() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([
        ("add", json!({"x": 2, "y": 3})),
        ("weather", json!({"city": "Paris"})),
    ]));
    mock.push(MockReply::status(400, "malformed"));
    let store = memory();
    let (add, weather) = (Counter::default(), Counter::default());
    let prompt = "What is 2+3, and the weather in Paris?";

    let err = calculator(&engine(store.clone()), &mock, &add, &weather).run_with_id(prompt, "calc-3").await;
    assert!(err.is_err());
    assert_eq!(mock.requests(), 2);

    mock.push(MockReply::text("5, sunny."));
    let answer = calculator(&engine(store.clone()), &mock, &add, &weather)
        .run_with_id(prompt, "calc-3")
        .await
        .unwrap();
    assert_eq!(answer.output, "5, sunny.");
    assert_eq!(mock.requests(), 3, "only the failed call was sent again");
    assert_eq!((add.get(), weather.get()), (1, 1), "the recorded tool calls did not run again");
    // The resent request is the one that failed, built from the replayed history.
    assert_eq!(mock.received()[2]["messages"], mock.received()[1]["messages"]);
}

#[tokio::test]
async fn outside_a_workflow_the_run_id_comes_from_agent_name_and_prompt() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::text("hello"));
    let wf = engine(memory());
    let agent = DurableAgent::new(model(&mock), &wf, |b: AgentBuilder| b).name("greeter");
    let id = agent.default_run_id("say hello");
    assert!(id.starts_with("greeter-") && id.len() == "greeter-".len() + 16, "{id}");
    assert_ne!(id, agent.default_run_id("say goodbye"));

    assert_eq!(agent.run("say hello").await.unwrap().output, "hello");
    assert!(wf.get_run(&id).await.unwrap().is_some());
    assert_eq!(agent.run("say hello").await.unwrap().output, "hello");
    assert_eq!(mock.requests(), 1, "the same prompt resumed the same run");
}
