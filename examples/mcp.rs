//! MCP tools in a durable agent: the tools of an MCP server process are tools of the agent,
//! each `tools/call` a step of the run. The server here is this program started again with
//! `serve` (an rmcp server over stdio); any MCP server command works the same way.
//!
//! The program executes one run id twice, with a fresh engine each time (as after a restart):
//! the first execution calls the model and the server's tool; the second replays both from
//! the store: 0 model requests and 0 tool calls reach the server.
//!
//! ```text
//! cargo run --example mcp --features openai,mcp
//! ```
//!
//! Offline by default: the model is the mock OpenAI-compatible server of durably-testkit. With
//! `OPENAI_API_KEY` set (and optionally `OPENAI_BASE_URL`) the agent calls that endpoint.

#![allow(clippy::print_stdout)] // an example talks to its user

use durably::agent::TaskConfig;
use durably::agent::mcp::McpServer;
use durably::agent::openai::OpenAiAgent;
use durably::backoff::exponential;
use durably::{SqliteStore, Workflow};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

const RUN_ID: &str = "mcp-demo";
const PROMPT: &str = "How many days of annual leave does Lea have left?";

#[derive(Deserialize, JsonSchema)]
struct EmployeeArgs {
    /// The employee's first name.
    name: String,
}

/// The MCP server: an HR directory with one tool, logging each call to stderr.
#[derive(Clone)]
struct Directory {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Directory {
    #[tool(description = "Remaining annual leave of an employee, in days")]
    async fn leave_balance(&self, Parameters(args): Parameters<EmployeeArgs>) -> String {
        // stdout carries the protocol: a server talks on stderr.
        eprintln!("    [MCP server] leave_balance({:?}) called", args.name);
        format!("{} has 12 days of annual leave left", args.name)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Directory {}

async fn serve() -> anyhow::Result<()> {
    let server = Directory { tool_router: Directory::tool_router() }.serve(rmcp::transport::stdio()).await?;
    server.waiting().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("serve") {
        return serve().await;
    }
    let (api_base, api_key, mock) = match std::env::var("OPENAI_API_KEY") {
        Ok(key) => {
            let base =
                std::env::var("OPENAI_BASE_URL").unwrap_or_else(|_| "https://api.openai.com/v1".into());
            (base, key, None)
        }
        Err(_) => {
            let mock = MockOpenAi::start().await;
            mock.push(MockReply::tool_calls([("leave_balance", json!({"name": "Lea"}))]));
            mock.push(MockReply::text("Lea has 12 days of annual leave left."));
            (mock.base_url(), "sk-offline".to_owned(), Some(mock))
        }
    };
    let requests = || mock.as_ref().map_or("n/a (real endpoint)".to_owned(), |m| m.requests().to_string());

    // The MCP server process: this program, started again with `serve`.
    let mut command = tokio::process::Command::new(std::env::current_exe()?);
    command.arg("serve");
    let directory = McpServer::spawn("hr", command).await?;
    println!(
        "MCP server `hr` lists {:?} (tool list hash {})",
        directory.tool_names(),
        directory.tools_hash()
    );

    let dir = tempfile::tempdir()?;
    let db = dir.path().join("mcp.db");
    for execution in ["first execution (live)", "second execution (replayed)"] {
        let wf = Workflow::builder("mcp-example").store(SqliteStore::open(&db).await?).build();
        let agent = OpenAiAgent::builder(&wf)
            .name("hr-assistant")
            .model("gpt-4o-mini")
            .system_prompt("Answer HR questions with the directory's tools.")
            .api_base(api_base.clone())
            .api_key(api_key.clone())
            .model_config(TaskConfig::new(3, exponential(2.0, 30.0)))
            .mcp(&directory)
            .build();
        let run = agent.run_with_id(PROMPT, RUN_ID).await?;
        println!("== {execution}");
        println!("answer: {}", run.output);
        println!("model requests so far: {}", requests());
        for step in wf.list_steps(RUN_ID).await? {
            println!("  {:<42} {:<10} attempts={}", step.step_id, step.status.as_str(), step.attempts);
        }
    }
    if let Some(mock) = &mock {
        anyhow::ensure!(mock.requests() == 2, "expected 2 model requests in all, got {}", mock.requests());
        println!("the second execution sent 0 requests and made 0 tool calls");
    }
    Ok(())
}
