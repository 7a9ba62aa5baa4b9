//! MCP tools for durable agents (feature `mcp`, on the `rmcp` crate): the tools an MCP server
//! serves become tools of an agent, each call a tool step like any other, so a recorded call is
//! not sent again on replay.
//!
//! ```no_run
//! # #[cfg(feature = "openai")]
//! # async fn demo(wf: durably_core::Workflow) -> durably_core::Result<()> {
//! use durably_agent::mcp::McpServer;
//! use durably_agent::openai::OpenAiAgent;
//!
//! let files = McpServer::spawn("files", tokio::process::Command::new("my-mcp-server")).await?;
//! let agent = OpenAiAgent::builder(&wf).name("assistant").mcp(&files).build();
//! let run = agent.run_with_id("What is in notes.txt?", "ask-1").await?;
//! # Ok(()) }
//! ```
//!
//! The rig agent takes them the same way: `DurableAgent::new(..).mcp(&files)`.
//!
//! The server's tool list is recorded when a run starts, as the step
//! `<agent>.mcp.<server>` whose request hash is the hash of the list: executing the run again
//! against a server whose tools changed (names, descriptions or schemas) fails with
//! `Error::NonDeterminism` naming the run and that step, instead of replaying answers given by
//! other tools. A tool's error result is shown to the model; a server that cannot answer (it
//! exited, its connection closed) fails the call's step, and the run, with
//! [`AgentError::McpServer`](crate::AgentError::McpServer).

// Without an agent nothing calls the tools.
#![cfg_attr(not(any(feature = "openai", feature = "rig")), allow(dead_code))]

use std::sync::Arc;

use durably_core::{Error, Result};
use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ServiceError, ServiceExt};
use serde_json::Value;

use crate::request_hash;

/// A connected MCP server and the tools it listed. Cheap to clone; the connection closes (and
/// a spawned server process is killed) when the last clone and every agent using it are gone.
#[derive(Clone)]
pub struct McpServer {
    name: String,
    service: Arc<RunningService<RoleClient, ()>>,
    tools: Arc<Vec<rmcp::model::Tool>>,
    hash: String,
}

impl std::fmt::Debug for McpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer")
            .field("name", &self.name)
            .field("tools", &self.tool_names())
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

fn mcp_error(name: &str, what: &str, detail: impl std::fmt::Display) -> Error {
    Error::Invalid { what: "MCP server", detail: format!("server `{name}`: {what}: {detail}") }
}

impl McpServer {
    /// Starts `command` as an MCP server speaking over its stdin and stdout, and lists its
    /// tools. `name` names it in step ids (`<agent>.mcp.<name>`) and errors.
    pub async fn spawn(name: impl Into<String>, command: tokio::process::Command) -> Result<McpServer> {
        let name = name.into();
        let transport =
            TokioChildProcess::new(command).map_err(|e| mcp_error(&name, "cannot start it", e))?;
        let service = ().serve(transport).await.map_err(|e| mcp_error(&name, "no MCP handshake", e))?;
        McpServer::connected(name, service).await
    }

    /// An MCP server already connected with rmcp (any transport: `().serve(transport)`), its
    /// tools listed now.
    pub async fn connected(
        name: impl Into<String>,
        service: RunningService<RoleClient, ()>,
    ) -> Result<McpServer> {
        let name = name.into();
        if name.is_empty() || name.contains(['.', '#', '/']) {
            return Err(mcp_error(&name, "bad name", "a server name is non-empty, without `.`, `#` or `/`"));
        }
        let tools = service.list_all_tools().await.map_err(|e| mcp_error(&name, "tools/list failed", e))?;
        let listing = serde_json::to_value(&tools).map_err(|e| mcp_error(&name, "tool list", e))?;
        let hash = request_hash(&listing).map_err(|e| mcp_error(&name, "tool list", e))?;
        Ok(McpServer { name, service: Arc::new(service), tools: Arc::new(tools), hash })
    }

    /// The server's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The names of the tools it listed.
    pub fn tool_names(&self) -> Vec<&str> {
        self.tools.iter().map(|t| t.name.as_ref()).collect()
    }

    /// The hash of its tool list, recorded with each run that uses it.
    pub fn tools_hash(&self) -> &str {
        &self.hash
    }

    /// The tool list as recorded: its JSON and its hash.
    pub(crate) fn listing(&self) -> crate::core::listing::ToolList {
        crate::core::listing::ToolList {
            server: self.name.clone(),
            hash: self.hash.clone(),
            tools: serde_json::to_value(&*self.tools).unwrap_or(Value::Null),
        }
    }

    /// Each tool: name, description, JSON schema of its arguments.
    pub(crate) fn definitions(&self) -> impl Iterator<Item = (String, String, Value)> + '_ {
        self.tools.iter().map(|t| {
            let description = t.description.as_deref().unwrap_or_default().to_owned();
            (t.name.to_string(), description, Value::Object((*t.input_schema).clone()))
        })
    }

    /// One `tools/call`: the tool's answer (`Ok`), its error result (`Err(Refused)`), a failure
    /// another attempt may fix (`Err(Failed)`), or a server that cannot answer (`Err(Gone)`).
    pub(crate) async fn call(&self, tool: &str, args: Value) -> std::result::Result<Value, McpCallError> {
        let mut params = CallToolRequestParams::new(tool.to_owned());
        match args {
            Value::Object(map) => params = params.with_arguments(map),
            Value::Null => {}
            other => {
                return Err(McpCallError::Refused(format!(
                    "the arguments must be a JSON object, not {other}"
                )));
            }
        }
        match self.service.call_tool(params).await {
            Ok(result) if result.is_error == Some(true) => Err(McpCallError::Refused(text_of(&result))),
            Ok(result) => Ok(value_of(result)),
            Err(
                e @ (ServiceError::TransportClosed
                | ServiceError::TransportSend(_)
                | ServiceError::Cancelled { .. }),
            ) => Err(McpCallError::Gone(crate::AgentError::McpServer {
                server: self.name.clone(),
                tool: tool.to_owned(),
                detail: e.to_string(),
            })),
            Err(e) => Err(McpCallError::Failed(e.to_string())),
        }
    }
}

/// Why a `tools/call` gave no value.
pub(crate) enum McpCallError {
    /// The tool's own error result: shown to the model.
    Refused(String),
    /// A failure another attempt may fix.
    Failed(String),
    /// The server cannot answer any more.
    Gone(crate::AgentError),
}

fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| match c {
            ContentBlock::Text(t) => Some(t.text.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A result as the model sees it: its structured content, else its text, else its JSON.
fn value_of(result: CallToolResult) -> Value {
    if let Some(structured) = result.structured_content {
        return structured;
    }
    let text = text_of(&result);
    if !text.is_empty() || result.content.is_empty() {
        return Value::String(text);
    }
    serde_json::to_value(&result.content).unwrap_or(Value::Null)
}
