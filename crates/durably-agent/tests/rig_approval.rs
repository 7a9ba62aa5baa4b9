//! rig agents: a tool that needs approval makes the run wait on `approve:<step id>`; approve
//! runs the tool, reject returns the reason to the model as the tool's error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rig_support;

use durably_agent::Approval;
use durably_agent::rig::{DurableAgent, rig_agent::AgentBuilder};
use durably_core::{RunStatus, Workflow};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use rig_support::*;
use serde_json::json;

const SIGNAL: &str = "approve:mailer.tool.send_email#1.call_1";

fn mailer(wf: &Workflow, mock: &MockOpenAi, sent: &Counter, weather: &Counter) -> DurableAgent {
    let (s, w) = (sent.clone(), weather.clone());
    DurableAgent::new(model(mock), wf, move |b: AgentBuilder| {
        b.tool(SendEmail(s.clone())).tool(Weather(w.clone()))
    })
    .name("mailer")
    .require_approval("send_email")
}

fn script(mock: &MockOpenAi) {
    mock.push(MockReply::tool_calls([("send_email", json!({"to": "bob@example.com"}))]));
    mock.push(MockReply::text("done"));
}

async fn wait_for_signal(wf: &Workflow, run_id: &str) {
    for _ in 0..1000 {
        if let Some(run) = wf.get_run(run_id).await.unwrap()
            && run.status == RunStatus::Waiting
        {
            assert_eq!(run.waiting_on.as_deref(), Some(SIGNAL));
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("run {run_id} never waited for approval");
}

#[tokio::test]
async fn approve_runs_the_tool_once() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("send_email", json!({"to": "bob@example.com"}))]));
    mock.push(MockReply::status(400, "fails once, after the tool ran"));
    let wf = engine(memory());
    let (sent, weather) = (Counter::default(), Counter::default());
    let agent = mailer(&wf, &mock, &sent, &weather).model_config(quick(0));
    assert_eq!(DurableAgent::approval_signal("mailer.tool.send_email#1.call_1"), SIGNAL);

    let run = tokio::spawn(agent.run_with_id("Email Bob", "mail-1"));
    wait_for_signal(&wf, "mail-1").await;
    assert_eq!(sent.get(), 0, "the tool waits for the approval");
    assert_eq!(mock.requests(), 1);

    assert!(wf.complete("mail-1", SIGNAL, &Approval::approve()).await.unwrap());
    assert!(run.await.unwrap().is_err(), "the model call after the tool failed");
    assert_eq!(sent.get(), 1);
    assert!(mock.received()[1].to_string().contains("sent to bob@example.com"));

    // Executing the run again: the approved call is recorded, so it neither waits nor runs.
    mock.push(MockReply::text("done"));
    let answer = mailer(&wf, &mock, &sent, &weather).run_with_id("Email Bob", "mail-1").await.unwrap();
    assert_eq!(answer.output, "done");
    assert_eq!((sent.get(), mock.requests()), (1, 3));
    assert_eq!(wf.get_run("mail-1").await.unwrap().unwrap().status, RunStatus::Completed);
}

#[tokio::test]
async fn reject_returns_the_reason_to_the_model_as_the_tools_error() {
    let mock = MockOpenAi::start().await;
    script(&mock);
    let wf = engine(memory());
    let (sent, weather) = (Counter::default(), Counter::default());
    let agent = mailer(&wf, &mock, &sent, &weather);

    let run = tokio::spawn(agent.run_with_id("Email Bob", "mail-2"));
    wait_for_signal(&wf, "mail-2").await;
    wf.complete("mail-2", SIGNAL, &json!({"approved": false, "reason": "Bob is on holiday"})).await.unwrap();
    assert_eq!(run.await.unwrap().unwrap().output, "done");
    assert_eq!(sent.get(), 0, "a rejected call does not run");
    let tool_message = mock.received()[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .cloned()
        .unwrap();
    assert!(tool_message.to_string().contains("Bob is on holiday"), "{tool_message}");
    let step = wf.list_steps("mail-2").await.unwrap();
    let step = step.iter().find(|s| s.step_id == "mailer.tool.send_email#1.call_1").unwrap();
    assert!(
        step.value.as_deref().unwrap().contains("Bob is on holiday"),
        "the rejection is the step's value"
    );
}

#[tokio::test]
async fn an_approval_delivered_before_the_wait_is_used_at_once() {
    let mock = MockOpenAi::start().await;
    script(&mock);
    let wf = engine(memory());
    let (sent, weather) = (Counter::default(), Counter::default());
    assert!(wf.complete("mail-3", SIGNAL, &Approval::approve()).await.unwrap());

    let answer = mailer(&wf, &mock, &sent, &weather).run_with_id("Email Bob", "mail-3").await.unwrap();
    assert_eq!(answer.output, "done");
    assert_eq!(sent.get(), 1);
}

#[tokio::test]
async fn tools_without_approval_do_not_wait() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("weather", json!({"city": "Oslo"}))]));
    mock.push(MockReply::text("cold"));
    let wf = engine(memory());
    let (sent, weather) = (Counter::default(), Counter::default());
    let answer = mailer(&wf, &mock, &sent, &weather).run_with_id("Weather?", "mail-4").await.unwrap();
    assert_eq!(answer.output, "cold");
    assert_eq!(weather.get(), 1);
}
