//! Handoffs for the rig agent: the triage agent's model calls `transfer_to_billing`, and the
//! billing agent answers in the same run, its steps under its own prefix; executing the run
//! again replays the chain with no request.
#![cfg(feature = "rig")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rig_support;

use std::sync::atomic::{AtomicBool, Ordering};

use durably_agent::TaskConfig;
use durably_agent::rig::DurableAgent;
use durably_agent::rig::rig_agent::AgentBuilder;
use durably_core::Error;
use durably_core::backoff::constant;
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use rig_support::{memory, model};
use serde_json::json;

#[tokio::test]
async fn triage_hands_off_inside_one_run_and_the_replay_sends_nothing() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("transfer_to_billing", json!({"reason": "a refund"}))]));
    mock.push(MockReply::text("Your refund is on its way."));
    let wf = rig_support::engine(memory());
    let specialist = |name: &str| {
        let preamble = format!("You are the {name} specialist.");
        DurableAgent::new(model(&mock), &wf, move |b: AgentBuilder| b.preamble(&preamble))
            .name(name)
            .description(format!("the {name} specialist"))
            .model_config(TaskConfig::new(0, constant(0.0)))
    };
    let (billing, support) = (specialist("billing"), specialist("support"));
    let triage = DurableAgent::new(model(&mock), &wf, |b: AgentBuilder| b.preamble("Route the customer."))
        .name("triage")
        .handoff(&billing)
        .handoff(&support)
        .model_config(TaskConfig::new(0, constant(0.0)));
    let crash = AtomicBool::new(true);
    let execute = || {
        let (triage, crash) = (&triage, &crash);
        wf.run("h1", move |_| async move {
            let run = triage.run("I want my money back").await?;
            if crash.swap(false, Ordering::SeqCst) {
                return Err(Error::Invalid { what: "test", detail: "crash after the agents".into() });
            }
            Ok(run)
        })
    };
    assert!(execute().await.is_err());
    assert_eq!(mock.requests(), 2);
    let received = mock.received();
    let offered: Vec<&str> = received[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert!(
        offered.contains(&"transfer_to_billing") && offered.contains(&"transfer_to_support"),
        "{offered:?}"
    );
    assert_eq!(
        received[1]["messages"][0]["content"][0]["text"], "You are the billing specialist.",
        "{}",
        received[1]
    );
    let mut ids: Vec<String> = wf.list_steps("h1").await.unwrap().into_iter().map(|s| s.step_id).collect();
    ids.sort();
    assert_eq!(
        ids,
        ["billing.input", "billing.model#1", "triage.handoff#1", "triage.input", "triage.model#1"]
    );

    let run = execute().await.unwrap();
    assert_eq!(run.output, "Your refund is on its way.");
    assert_eq!(run.turns, 2);
    assert_eq!(mock.requests(), 2);
}
