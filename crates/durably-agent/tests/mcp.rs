//! MCP tools of both durable agents, against a real MCP server process: this test program started
//! again with `serve` (an rmcp server over stdio), not a mock of the protocol. Each tools/call is
//! a step not sent again on replay; the server's tool list is recorded, and a changed server
//! fails with `NonDeterminism`; a server that dies mid-call ends the run with a typed error.
//!
//! `harness = false`: `main` is both the server (`mcp serve`) and the tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use durably_agent::mcp::McpServer;
use durably_agent::openai::{AgentRun, OpenAiAgent};
use durably_agent::{AgentError, TaskConfig, agent_error_of};
use durably_core::backoff::constant;
use durably_core::{Error, MemoryStore, Workflow};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize, JsonSchema)]
struct AddArgs {
    a: i64,
    b: i64,
}

/// The server: `add` (counting its calls in the file `MCP_CALLS`), `die` (exits mid-call).
#[derive(Clone)]
struct Calc {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Calc {
    #[tool(description = "Adds two integers")]
    async fn add(&self, Parameters(args): Parameters<AddArgs>) -> String {
        if let Ok(path) = std::env::var("MCP_CALLS") {
            let mut calls = std::fs::read_to_string(&path).unwrap_or_default();
            calls.push_str("add\n");
            let _ = std::fs::write(&path, calls);
        }
        (args.a + args.b).to_string()
    }

    #[tool(description = "Exits the server process in the middle of the call")]
    async fn die(&self) -> String {
        std::process::exit(3)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Calc {}

/// A later version of the server: `add` describes itself differently.
#[derive(Clone)]
struct CalcV2 {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl CalcV2 {
    #[tool(description = "Adds two integers, saturating")]
    async fn add(&self, Parameters(args): Parameters<AddArgs>) -> String {
        args.a.saturating_add(args.b).to_string()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for CalcV2 {}

async fn serve(version: &str) {
    let transport = rmcp::transport::stdio();
    let running = if version == "v2" {
        CalcV2 { tool_router: CalcV2::tool_router() }
            .serve(transport)
            .await
            .map(|s| tokio::spawn(s.waiting()))
    } else {
        Calc { tool_router: Calc::tool_router() }.serve(transport).await.map(|s| tokio::spawn(s.waiting()))
    };
    if let Ok(handle) = running {
        let _ = handle.await;
    }
}

/// This program as an MCP server process.
async fn server(version: &str, calls: &Path) -> McpServer {
    let mut command = tokio::process::Command::new(std::env::current_exe().unwrap());
    command.arg("serve").arg(version).env("MCP_CALLS", calls);
    McpServer::spawn("calc", command).await.unwrap()
}

fn agent(wf: &Workflow, mock: &MockOpenAi, server: &McpServer) -> OpenAiAgent {
    OpenAiAgent::builder(wf)
        .name("bot")
        .api_base(mock.base_url())
        .api_key("sk-test-1")
        .model_config(TaskConfig::new(0, constant(0.0)))
        .tool_config(TaskConfig::new(0, constant(0.0)))
        .mcp(server)
        .build()
}

/// Runs the agent inside `run_id`, failing the run after it the first time.
async fn run_failing_once(
    wf: &Workflow,
    agent: &OpenAiAgent,
    run_id: &str,
    crash: &AtomicBool,
) -> durably_core::Result<AgentRun> {
    wf.run(run_id, |_| async move {
        let run = Box::pin(agent.run("What is 2 + 3?")).await?;
        if crash.swap(false, Ordering::SeqCst) {
            return Err(Error::Invalid { what: "test", detail: "crash after the agent".into() });
        }
        Ok(run)
    })
    .await
}

fn calls_in(path: &Path) -> usize {
    std::fs::read_to_string(path).unwrap_or_default().lines().count()
}

async fn tools_calls_are_steps_not_sent_again_on_replay(dir: &Path) {
    let calls = dir.join("calls-1");
    let server = server("v1", &calls).await;
    assert_eq!(server.tool_names(), ["add", "die"]);
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("add", json!({"a": 2, "b": 3}))])).push(MockReply::text("2 + 3 = 5"));
    let wf = Workflow::builder("mcp").store(MemoryStore::new()).build();
    let agent = agent(&wf, &mock, &server);
    let crash = AtomicBool::new(true);
    assert!(run_failing_once(&wf, &agent, "m1", &crash).await.is_err());
    assert_eq!((mock.requests(), calls_in(&calls)), (2, 1));
    // The model saw the server's answer.
    assert_eq!(mock.received()[1]["messages"].as_array().unwrap().last().unwrap()["content"], "5");
    let steps = wf.list_steps("m1").await.unwrap();
    let ids: Vec<&str> = steps.iter().map(|s| s.step_id.as_str()).collect();
    assert_eq!(ids, ["bot.mcp.calc", "bot.model#1", "bot.tool.add#1.call_1", "bot.model#2"]);
    assert_eq!(steps[0].request_hash.as_deref(), Some(server.tools_hash()));
    // Executed again: the model calls and the tools/call come from the store.
    let run = run_failing_once(&wf, &agent, "m1", &crash).await.unwrap();
    assert_eq!(run.output, "2 + 3 = 5");
    assert_eq!((mock.requests(), calls_in(&calls)), (2, 1));
}

async fn a_changed_server_is_non_determinism(dir: &Path) {
    let calls = dir.join("calls-2");
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("add", json!({"a": 2, "b": 3}))])).push(MockReply::text("5"));
    let wf = Workflow::builder("mcp").store(MemoryStore::new()).build();
    let crash = AtomicBool::new(true);
    let v1 = server("v1", &calls).await;
    assert!(run_failing_once(&wf, &agent(&wf, &mock, &v1), "m2", &crash).await.is_err());
    let v2 = server("v2", &calls).await;
    assert_ne!(v1.tools_hash(), v2.tools_hash());
    let err = run_failing_once(&wf, &agent(&wf, &mock, &v2), "m2", &crash).await.unwrap_err();
    match &err {
        Error::NonDeterminism { run_id, step_id, .. } => {
            assert_eq!((run_id.as_str(), step_id.as_str()), ("m2", "bot.mcp.calc"))
        }
        other => panic!("expected NonDeterminism, got {other}"),
    }
    assert_eq!(mock.requests(), 2);
}

async fn a_server_that_dies_mid_call_is_a_typed_error(dir: &Path) {
    let calls = dir.join("calls-3");
    let server = server("v1", &calls).await;
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("die", json!({}))])).push(MockReply::text("never"));
    let wf = Workflow::builder("mcp").store(MemoryStore::new()).build();
    let err = agent(&wf, &mock, &server).run_with_id("die please", "m3").await.unwrap_err();
    match agent_error_of(&err) {
        Some(AgentError::McpServer { server, tool, .. }) => {
            assert_eq!((server.as_str(), tool.as_str()), ("calc", "die"))
        }
        other => panic!("expected McpServer, got {other:?} from {err}"),
    }
    let text = err.to_string();
    assert!(text.contains("m3") && text.contains("bot.tool.die#1.call_1"), "{text}");
    assert_eq!(mock.requests(), 1);
    // The failed call is recorded as failed, with what happened.
    let steps = wf.list_steps("m3").await.unwrap();
    let failed = steps.iter().find(|s| s.step_id == "bot.tool.die#1.call_1").unwrap();
    assert!(failed.error.as_deref().unwrap_or_default().contains("MCP server `calc`"), "{failed:?}");
}

/// The rig agent takes the same server's tools: one tools/call step, not sent again; a dead
/// server is the same typed error.
async fn rig_agent_calls_mcp_tools_as_steps(dir: &Path) {
    use durably_agent::rig::DurableAgent;
    use durably_agent::rig::rig_agent::AgentBuilder;
    use durably_agent::rig::rig_core::providers::openai::OpenAIConfig;

    let calls = dir.join("calls-4");
    let server = server("v1", &calls).await;
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("add", json!({"a": 4, "b": 5}))])).push(MockReply::text("4 + 5 = 9"));
    mock.push(MockReply::tool_calls([("die", json!({}))]));
    let wf = Workflow::builder("mcp-rig").store(MemoryStore::new()).build();
    let model = OpenAIConfig::new("sk-test-1").with_base_url(mock.base_url()).client().chat("gpt-4o-mini");
    let agent = DurableAgent::new(model, &wf, |b: AgentBuilder| b.preamble("Use the tools."))
        .name("bot")
        .model_config(TaskConfig::new(0, constant(0.0)))
        .tool_config(TaskConfig::new(0, constant(0.0)))
        .mcp(&server);
    let run = agent.run_with_id("What is 4 + 5?", "r1").await.unwrap();
    assert_eq!(run.output, "4 + 5 = 9");
    assert_eq!((mock.requests(), calls_in(&calls)), (2, 1));
    let mut ids: Vec<String> = wf.list_steps("r1").await.unwrap().into_iter().map(|s| s.step_id).collect();
    ids.sort();
    assert_eq!(ids, ["bot.input", "bot.mcp.calc", "bot.model#1", "bot.model#2", "bot.tool.add#1.call_1"]);
    assert_eq!(agent.run_with_id("What is 4 + 5?", "r1").await.unwrap().output, "4 + 5 = 9");
    assert_eq!((mock.requests(), calls_in(&calls)), (2, 1));

    let err = agent.run_with_id("die please", "r2").await.unwrap_err();
    match agent_error_of(&err) {
        Some(AgentError::McpServer { server, tool, .. }) => {
            assert_eq!((server.as_str(), tool.as_str()), ("calc", "die"))
        }
        other => panic!("expected McpServer, got {other:?} from {err}"),
    }
    assert_eq!(mock.requests(), 3);
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        serve(args.get(2).map_or("v1", String::as_str)).await;
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dir: PathBuf = dir.path().to_owned();
    tools_calls_are_steps_not_sent_again_on_replay(&dir).await;
    println!("test tools_calls_are_steps_not_sent_again_on_replay ... ok");
    a_changed_server_is_non_determinism(&dir).await;
    println!("test a_changed_server_is_non_determinism ... ok");
    a_server_that_dies_mid_call_is_a_typed_error(&dir).await;
    println!("test a_server_that_dies_mid_call_is_a_typed_error ... ok");
    rig_agent_calls_mcp_tools_as_steps(&dir).await;
    println!("test rig_agent_calls_mcp_tools_as_steps ... ok");
}
