//! What both agents are configured with, beyond their client: the name their steps and run ids
//! start with, the retry policies, the turn limit and the secrets to blank out.

use crate::TaskConfig;
use crate::core::limits::Limits;
use crate::core::redact::Secrets;

/// The model calls one run may make when no limit is set (rig's own default is one, which
/// leaves no room for a tool loop).
pub(crate) const DEFAULT_MAX_TURNS: u32 = 10;

/// An agent's settings; the builders of both agents set them.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The base of step names and of default run ids.
    pub(crate) name: String,
    pub(crate) model_config: TaskConfig,
    pub(crate) tool_config: TaskConfig,
    pub(crate) max_turns: u32,
    pub(crate) secrets: Secrets,
    /// Timeouts, the run's deadline, its budget and the longest provider-asked wait.
    pub(crate) limits: Limits,
    /// Tool lists served from outside (MCP servers), recorded when a run starts.
    pub(crate) tool_lists: std::sync::Arc<Vec<crate::core::listing::ToolList>>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            name: "agent".into(),
            model_config: TaskConfig::default(),
            tool_config: TaskConfig::default(),
            max_turns: DEFAULT_MAX_TURNS,
            secrets: Secrets::default(),
            limits: Limits::default(),
            tool_lists: std::sync::Arc::default(),
        }
    }
}
