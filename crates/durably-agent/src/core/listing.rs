//! Tool lists served from outside the program (an MCP server's), recorded when an invocation
//! starts: the step `<prefix>.mcp.<server>` keeps the list and its hash, so that an execution
//! against a server whose tools changed fails with `NonDeterminism` before anything is
//! replayed against the wrong tools.

use durably_core::Result;
use serde_json::Value;

use super::settings::Settings;

/// One server's tool list.
#[derive(Debug, Clone)]
pub(crate) struct ToolList {
    pub(crate) server: String,
    /// The canonical hash of `tools`.
    pub(crate) hash: String,
    pub(crate) tools: Value,
}

/// Records (or checks against the record) every tool list of the agent, under `prefix`.
pub(crate) async fn record_tool_lists(settings: &Settings, prefix: &str) -> Result<()> {
    for list in settings.tool_lists.iter() {
        let tools = list.tools.clone();
        let _: Value = durably_core::step(format!("{}.mcp", settings.name), move || {
            let tools = tools.clone();
            async move { Ok::<_, std::convert::Infallible>(tools) }
        })
        .step_id(format!("{prefix}.mcp.{}", list.server))
        .request_hash(list.hash.clone())
        .retries(0)
        .await?;
    }
    Ok(())
}
