//! Budgets for both agents: a run ends with a typed error naming the budget, its limit and what
//! was used; the count comes from what the run recorded, so a resumed run counts what it spent
//! before; a budget of zero is refused before anything is sent.
#![cfg(all(feature = "openai", feature = "rig"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rig_support;

use std::sync::atomic::{AtomicBool, Ordering};

use durably_agent::openai::{OpenAiAgent, Tool};
use durably_agent::rig::DurableAgent;
use durably_agent::rig::rig_agent::AgentBuilder;
use durably_agent::{AgentError, Budget, BudgetKind, TaskConfig, agent_error_of};
use durably_core::backoff::constant;
use durably_core::{Error, MemoryStore, Workflow};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use rig_support::{Add, Counter, memory, model};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize, JsonSchema)]
struct Nothing {}

fn ping() -> Tool {
    Tool::new("ping", "Answers pong", |_: Nothing| async { Ok::<_, std::io::Error>("pong") })
}

fn openai(wf: &Workflow, mock: &MockOpenAi, budget: Budget) -> OpenAiAgent {
    OpenAiAgent::builder(wf)
        .name("bot")
        .api_base(mock.base_url())
        .api_key("sk-test-1")
        .tool(ping())
        .model_config(TaskConfig::new(0, constant(0.0)))
        .budget(budget)
        .build()
}

fn engine() -> Workflow {
    Workflow::builder("budgets").store(MemoryStore::new()).build()
}

fn budget_error(err: &Error) -> (BudgetKind, u64, u64, String) {
    match agent_error_of(err) {
        Some(AgentError::BudgetExceeded { budget, limit, used, step_id, .. }) => {
            (*budget, *limit, *used, step_id.clone())
        }
        other => panic!("expected BudgetExceeded, got {other:?} from {err}"),
    }
}

#[tokio::test]
async fn openai_a_model_call_past_the_budget_is_not_made() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("ping", json!({}))])).push(MockReply::text("never sent"));
    let wf = engine();
    let err = openai(&wf, &mock, Budget::new().model_calls(1)).run_with_id("go", "b1").await.unwrap_err();
    assert_eq!(mock.requests(), 1);
    assert_eq!(budget_error(&err), (BudgetKind::ModelCalls, 1, 2, "bot.model#2".into()));
    assert!(err.to_string().contains("model_calls budget"), "{err}");
}

#[tokio::test]
async fn openai_tool_calls_past_the_budget_are_not_run() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("ping", json!({})), ("ping", json!({}))]));
    let wf = engine();
    let err = openai(&wf, &mock, Budget::new().tool_calls(1)).run_with_id("go", "b2").await.unwrap_err();
    let (kind, limit, used, _) = budget_error(&err);
    assert_eq!((kind, limit, used), (BudgetKind::ToolCalls, 1, 2));
    let tools =
        wf.list_steps("b2").await.unwrap().into_iter().filter(|s| s.step_id.contains(".tool.")).count();
    assert_eq!(tools, 1);
}

/// A run spends tokens and crashes after its agent; executed again with a token budget smaller
/// than what it spent, the replayed calls count: it fails on the recorded usage, sending nothing.
#[tokio::test]
async fn openai_recorded_usage_counts_after_a_restart() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("ping", json!({}))])).push(MockReply::text("done"));
    let wf = engine();
    let crash = AtomicBool::new(true);
    let execute = |budget: Budget| {
        let agent = openai(&wf, &mock, budget);
        let crash = &crash;
        wf.run("b3", move |_| async move {
            let run = agent.run("go").await?;
            if crash.swap(false, Ordering::SeqCst) {
                return Err(Error::Invalid { what: "test", detail: "crash after the agent".into() });
            }
            Ok(run)
        })
    };
    assert!(execute(Budget::new()).await.is_err());
    assert_eq!(mock.requests(), 2);
    let steps = wf.list_steps("b3").await.unwrap();
    let spent: u64 = steps
        .iter()
        .filter(|s| s.step_id.contains(".model#"))
        .map(|s| {
            let v: serde_json::Value = serde_json::from_str(s.value.as_deref().unwrap()).unwrap();
            v["usage"]["total_tokens"].as_u64().unwrap()
        })
        .sum();
    let err = execute(Budget::new().total_tokens(spent - 1)).await.unwrap_err();
    assert_eq!(mock.requests(), 2, "the recorded calls were replayed, not sent");
    let (kind, limit, used, step) = budget_error(&err);
    assert_eq!(
        (kind, limit, used, step.as_str()),
        (BudgetKind::TotalTokens, spent - 1, spent, "bot.model#2")
    );
}

#[tokio::test]
async fn a_budget_of_zero_is_refused_before_any_request() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::text("never"));
    let wf = engine();
    let err = openai(&wf, &mock, Budget::new().total_tokens(0)).run_with_id("go", "b4").await.unwrap_err();
    assert!(matches!(err, Error::Invalid { what: "agent budget", .. }), "{err}");
    assert!(err.to_string().contains("total_tokens budget of 0"), "{err}");
    let rig_agent = DurableAgent::new(model(&mock), &rig_support::engine(memory()), |b: AgentBuilder| b)
        .name("bot")
        .budget(Budget::new().tool_calls(0));
    let err = rig_agent.run_with_id("go", "b5").await.unwrap_err();
    assert!(err.to_string().contains("tool_calls budget of 0"), "{err}");
    assert_eq!(mock.requests(), 0);
}

#[tokio::test]
async fn rig_a_model_call_past_the_budget_is_not_made_and_tokens_are_counted() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("add", json!({"x": 1, "y": 2}))])).push(MockReply::text("3"));
    let wf = rig_support::engine(memory());
    let calls = Counter::default();
    let tools = calls.clone();
    let agent = DurableAgent::new(model(&mock), &wf, move |b: AgentBuilder| b.tool(Add(tools.clone())))
        .name("bot")
        .model_config(TaskConfig::new(0, constant(0.0)));
    let err = agent.clone().budget(Budget::new().model_calls(1)).run_with_id("1+2", "r1").await.unwrap_err();
    assert_eq!(mock.requests(), 1);
    assert_eq!(budget_error(&err), (BudgetKind::ModelCalls, 1, 2, "bot.model#2".into()));
    assert_eq!(calls.get(), 1);
    // A token budget the first answer passes ends the run after that answer.
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("add", json!({"x": 1, "y": 2}))])).push(MockReply::text("3"));
    let tools = calls.clone();
    let agent = DurableAgent::new(model(&mock), &wf, move |b: AgentBuilder| b.tool(Add(tools.clone())))
        .name("bot")
        .budget(Budget::new().prompt_tokens(1));
    let err = agent.run_with_id("1+2", "r2").await.unwrap_err();
    let (kind, limit, used, step) = budget_error(&err);
    assert_eq!((kind, limit, step.as_str()), (BudgetKind::PromptTokens, 1, "bot.model#1"));
    assert!(used > 1);
    assert_eq!(mock.requests(), 1);
}
