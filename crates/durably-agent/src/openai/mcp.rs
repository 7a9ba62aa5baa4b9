//! MCP servers' tools as tools of the OpenAI agent (see [`crate::mcp`]).

use std::sync::Arc;

use super::OpenAiAgentBuilder;
use super::tools::{Tool, ToolError};
use crate::mcp::{McpCallError, McpServer};

impl OpenAiAgentBuilder {
    /// Adds every tool `server` listed. Each call is a tool step of the run (a recorded call is
    /// not sent again); the server's tool list is recorded when a run starts, and a run executed
    /// again against a server whose tools changed fails with `Error::NonDeterminism`. A server
    /// that cannot answer a call fails the run with
    /// [`AgentError::McpServer`](crate::AgentError::McpServer).
    pub fn mcp(mut self, server: &McpServer) -> Self {
        for (name, description, parameters) in server.definitions() {
            let (server, tool) = (server.clone(), name.clone());
            self = self.tool(Tool::from_parts(name, description, parameters, move |args| {
                let (server, tool) = (server.clone(), tool.clone());
                async move {
                    server.call(&tool, args).await.map_err(|e| match e {
                        McpCallError::Refused(message) => ToolError::Arguments(message),
                        McpCallError::Failed(message) => ToolError::Failed(message),
                        McpCallError::Gone(error) => ToolError::Fatal(error),
                    })
                }
            }));
        }
        Arc::make_mut(&mut self.settings_mut().tool_lists).push(server.listing());
        self
    }
}
