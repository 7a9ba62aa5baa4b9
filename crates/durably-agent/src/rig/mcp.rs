//! MCP servers' tools as tools of the rig agent (see [`crate::mcp`]).

use std::sync::Arc;

use rig_core::message::ToolName;
use rig_core::tool::{DynamicTool, ToolErrorKind, ToolExecutionError, ToolOutput};
use serde_json::Value;

use super::DurableAgent;
use crate::mcp::{McpCallError, McpServer};

impl DurableAgent {
    /// Adds every tool `server` listed, beside the tools of the agent's configuration (a
    /// configuration that gives rig a tool server handle keeps only that server's tools). Each
    /// call is a tool step of the run (a recorded call is not sent again); the server's tool list
    /// is recorded when a run starts, and a run executed again against a server whose tools
    /// changed fails with `Error::NonDeterminism`. A server that cannot answer a call fails the
    /// run with [`AgentError::McpServer`](crate::AgentError::McpServer).
    pub fn mcp(mut self, server: &McpServer) -> Self {
        for (name, description, parameters) in server.definitions() {
            let Ok(tool_name) = ToolName::new(name.clone()) else { continue };
            let server = server.clone();
            self.extra_tools.push(Arc::new(move || {
                let (server, tool) = (server.clone(), name.clone());
                DynamicTool::new(
                    tool_name.clone(),
                    description.clone(),
                    parameters.clone(),
                    move |args: Value| {
                        let (server, tool) = (server.clone(), tool.clone());
                        Box::pin(async move {
                            match server.call(&tool, args).await {
                                Ok(Value::String(text)) => Ok(ToolOutput::text(text)),
                                Ok(value) => Ok(ToolOutput::json(value)),
                                Err(McpCallError::Refused(message)) => {
                                    Err(ToolExecutionError::new(ToolErrorKind::Other, message)
                                        .with_retryable(false))
                                }
                                Err(McpCallError::Failed(message)) => {
                                    Err(ToolExecutionError::new(ToolErrorKind::Provider, message)
                                        .with_retryable(true))
                                }
                                Err(McpCallError::Gone(error)) => {
                                    Err(ToolExecutionError::from_error(error).with_retryable(false))
                                }
                            }
                        })
                    },
                )
            }));
        }
        Arc::make_mut(&mut self.settings.tool_lists).push(server.listing());
        self
    }
}
