//! Handoffs: a triage agent hands the conversation to a specialist (a tool the model calls),
//! inside one durable run; the specialist answers with its own instructions and tools, its
//! steps under its own prefix, and executing the run again replays the whole chain with no
//! request and no tool run.
#![cfg(feature = "openai")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use durably_agent::TaskConfig;
use durably_agent::openai::{AgentRun, OpenAiAgent, Tool};
use durably_core::backoff::constant;
use durably_core::{Error, MemoryStore, Workflow};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize, JsonSchema)]
struct OrderArgs {
    /// The order.
    order: String,
}

fn specialist(wf: &Workflow, mock: &MockOpenAi, name: &str, refunds: Arc<AtomicUsize>) -> OpenAiAgent {
    let refund = Tool::new("refund", "Refunds an order", move |a: OrderArgs| {
        let refunds = refunds.clone();
        async move {
            refunds.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(format!("order {} refunded", a.order))
        }
    });
    OpenAiAgent::builder(wf)
        .name(name)
        .description(format!("the {name} specialist"))
        .system_prompt(format!("You are the {name} specialist."))
        .api_base(mock.base_url())
        .api_key("sk-test-1")
        .tool(refund)
        .model_config(TaskConfig::new(0, constant(0.0)))
        .build()
}

#[tokio::test]
async fn triage_hands_off_inside_one_run_and_the_replay_sends_nothing() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("transfer_to_billing", json!({"reason": "a refund"}))]));
    mock.push(MockReply::tool_calls([("refund", json!({"order": "A-1"}))]));
    mock.push(MockReply::text("Order A-1 is refunded."));
    let wf = Workflow::builder("handoffs").store(MemoryStore::new()).build();
    let refunds = Arc::new(AtomicUsize::new(0));
    let billing = specialist(&wf, &mock, "billing", refunds.clone());
    let support = specialist(&wf, &mock, "support", refunds.clone());
    let triage = OpenAiAgent::builder(&wf)
        .name("triage")
        .system_prompt("Route the customer to the right specialist.")
        .api_base(mock.base_url())
        .api_key("sk-test-1")
        .handoff(&billing)
        .handoff(&support)
        .model_config(TaskConfig::new(0, constant(0.0)))
        .build();
    let crash = AtomicBool::new(true);
    let execute = || {
        let (triage, crash) = (&triage, &crash);
        wf.run("h1", move |_| async move {
            let run: AgentRun = Box::pin(triage.run("I want my money back for order A-1")).await?;
            if crash.swap(false, Ordering::SeqCst) {
                return Err(Error::Invalid { what: "test", detail: "crash after the agents".into() });
            }
            Ok(run)
        })
    };
    assert!(execute().await.is_err());
    assert_eq!((mock.requests(), refunds.load(Ordering::SeqCst)), (3, 1));
    let received = mock.received();
    // The triage agent saw both handoffs as tools.
    let offered: Vec<&str> = received[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(offered, ["transfer_to_billing", "transfer_to_support"]);
    // The specialist went on with the conversation, under its own instructions and tools.
    assert_eq!(received[1]["messages"][0]["content"], "You are the billing specialist.");
    assert_eq!(received[1]["messages"][1]["content"], "I want my money back for order A-1");
    assert_eq!(received[1]["tools"][0]["function"]["name"], "refund");
    let mut ids: Vec<String> = wf.list_steps("h1").await.unwrap().into_iter().map(|s| s.step_id).collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "billing.model#1",
            "billing.model#2",
            "billing.tool.refund#1.call_2",
            "triage.handoff#1",
            "triage.model#1"
        ]
    );

    // Executed again: the whole chain is replayed.
    let run = execute().await.unwrap();
    assert_eq!(run.output, "Order A-1 is refunded.");
    assert_eq!(run.turns, 3);
    assert_eq!((mock.requests(), refunds.load(Ordering::SeqCst)), (3, 1));
}
