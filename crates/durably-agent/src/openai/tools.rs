//! Tools declared as typed Rust functions: the arguments type gives the JSON schema the model
//! sees (`schemars`), and the output is serialized back to the model.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_openai::types::chat::{ChatCompletionTool, ChatCompletionTools, FunctionObject};
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

type ToolFuture = Pin<Box<dyn Future<Output = Result<Value, ToolError>> + Send + 'static>>;
type ToolFn = dyn Fn(Value) -> ToolFuture + Send + Sync + 'static;

/// Why a tool call did not produce a value.
#[derive(Debug, Clone)]
pub(crate) enum ToolError {
    /// The call cannot succeed as made (the model's arguments do not fit the tool's argument
    /// type, or an MCP tool answered with an error result): shown to the model, not retried.
    Arguments(String),
    /// The tool's own error: retried per the tool `TaskConfig`, then shown to the model.
    Failed(String),
    /// A failure that ends the run (the tool's MCP server is gone).
    #[cfg_attr(not(feature = "mcp"), allow(dead_code))]
    Fatal(crate::AgentError),
}

/// A tool the model may call: a name, a description, the JSON schema of its arguments, and an
/// async Rust function.
///
/// ```
/// use durably_agent::openai::Tool;
/// use schemars::JsonSchema;
/// use serde::Deserialize;
///
/// #[derive(Deserialize, JsonSchema)]
/// struct SearchArgs {
///     /// What to look for.
///     query: String,
/// }
///
/// let search = Tool::new("search", "Search the web", |args: SearchArgs| async move {
///     Ok::<_, std::io::Error>(format!("results for {}", args.query))
/// });
/// assert_eq!(search.name(), "search");
/// assert_eq!(search.parameters()["properties"]["query"]["type"], "string");
/// ```
///
/// Each call of the tool by the agent is its own step. An error is retried per the agent's tool
/// [`TaskConfig`](crate::TaskConfig); the last error is recorded and shown to the model as the
/// tool's result, so a replay gives the model the same answer. Arguments that do not
/// deserialize into the arguments type are reported to the model at once, without retries.
#[derive(Clone)]
pub struct Tool {
    name: String,
    description: String,
    parameters: Value,
    requires_approval: bool,
    call: Arc<ToolFn>,
}

impl fmt::Debug for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tool")
            .field("name", &self.name)
            .field("description", &self.description)
            .field("requires_approval", &self.requires_approval)
            .finish_non_exhaustive()
    }
}

impl Tool {
    /// A tool named `name` calling `f` with its arguments deserialized from the model's JSON.
    /// The schema the model sees is `schemars::schema_for!(A)`.
    pub fn new<A, R, E, F, Fut>(name: impl Into<String>, description: impl Into<String>, f: F) -> Tool
    where
        A: DeserializeOwned + JsonSchema + Send + 'static,
        R: Serialize + Send + 'static,
        E: fmt::Display + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
    {
        let mut schema = schemars::schema_for!(A);
        if let Some(map) = schema.as_object_mut() {
            // Noise for the model; the rest of the schema is what it needs.
            map.remove("$schema");
            map.remove("title");
        }
        let f = Arc::new(f);
        let call = move |args: Value| -> ToolFuture {
            let f = f.clone();
            Box::pin(async move {
                let args: A = serde_json::from_value(args)
                    .map_err(|e| ToolError::Arguments(format!("invalid arguments: {e}")))?;
                let out = f(args).await.map_err(|e| ToolError::Failed(e.to_string()))?;
                serde_json::to_value(out)
                    .map_err(|e| ToolError::Failed(format!("the tool's result does not serialize: {e}")))
            })
        };
        Tool {
            name: name.into(),
            description: description.into(),
            parameters: schema.to_value(),
            requires_approval: false,
            call: Arc::new(call),
        }
    }

    /// A tool from its parts: what the model sees, and a function of the JSON arguments.
    #[cfg_attr(not(feature = "mcp"), allow(dead_code))]
    pub(crate) fn from_parts<F, Fut>(name: String, description: String, parameters: Value, f: F) -> Tool
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, ToolError>> + Send + 'static,
    {
        let call = move |args: Value| -> ToolFuture { Box::pin(f(args)) };
        Tool { name, description, parameters, requires_approval: false, call: Arc::new(call) }
    }

    /// Makes every call of this tool wait for a human's [`Approval`](crate::Approval),
    /// delivered as the signal `approve:<step id of the call>`.
    pub fn requires_approval(mut self) -> Self {
        self.requires_approval = true;
        self
    }

    /// The tool's name, as the model calls it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The description the model sees.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The JSON schema of the arguments.
    pub fn parameters(&self) -> &Value {
        &self.parameters
    }

    /// Whether calls wait for an approval.
    pub fn needs_approval(&self) -> bool {
        self.requires_approval
    }

    /// The chat-completions definition of this tool.
    pub fn definition(&self) -> ChatCompletionTools {
        ChatCompletionTools::Function(ChatCompletionTool {
            function: FunctionObject {
                name: self.name.clone(),
                description: Some(self.description.clone()),
                parameters: Some(self.parameters.clone()),
                strict: None,
            },
        })
    }

    pub(crate) fn invoke(&self, args: Value) -> ToolFuture {
        (self.call)(args)
    }
}
