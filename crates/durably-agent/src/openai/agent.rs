//! The durable chat-completions agent: its own tool loop, each model call and each tool call a
//! step of the current run.

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls, ChatCompletionRequestAssistantMessage,
    ChatCompletionRequestAssistantMessageContent, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessage, ChatCompletionRequestSystemMessageContent,
    ChatCompletionRequestToolMessage, ChatCompletionRequestToolMessageContent,
    ChatCompletionRequestUserMessage, ChatCompletionRequestUserMessageContent, ChatCompletionStreamOptions,
    CreateChatCompletionRequest, CreateChatCompletionResponse,
};
use durably_core::{Error, Result, RunContext, StepStatus, Workflow};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::client;
use super::failure::model_error;
use super::stream::{Accumulator, Sink, StreamEvent};
use super::tools::{Tool, ToolError};
use crate::core::completed::check_completed_run;
use crate::core::ids::{Step, ToolCall, approval_signal, step_id};
use crate::core::redact::Secrets;
use crate::core::stream::run_stream;
use crate::failure::{RecordedModelError, attempt_error};
use crate::{Approval, ModelError, TaskConfig, request_hash};

/// The default number of model calls an agent run may make.
pub const DEFAULT_MAX_TURNS: u32 = 10;

/// Token counts of a run, summed over its model calls (recorded calls included: this is what
/// the run cost, not what this execution sent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Usage {
    /// Tokens of the requests.
    pub prompt_tokens: u64,
    /// Tokens of the responses.
    pub completion_tokens: u64,
    /// Both.
    pub total_tokens: u64,
}

/// The result of an agent run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AgentRun {
    /// The model's final answer.
    pub output: String,
    /// The whole conversation: system prompt, user prompt, assistant messages (with their tool
    /// calls) and tool results, in order.
    pub messages: Vec<ChatCompletionRequestMessage>,
    /// Token usage over the run's model calls.
    pub usage: Usage,
    /// How many model calls the run made.
    pub turns: u32,
}

/// What a tool step records: the tool's value, or the error the model was shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ToolOutcome {
    Ok(Value),
    Error(String),
}

impl ToolOutcome {
    fn to_message(&self) -> String {
        match self {
            ToolOutcome::Ok(Value::String(s)) => s.clone(),
            ToolOutcome::Ok(v) => v.to_string(),
            ToolOutcome::Error(e) => format!("Error: {e}"),
        }
    }
}

/// A tool error on an attempt that will be retried.
#[derive(Debug)]
struct ToolAttemptError(String);

impl std::fmt::Display for ToolAttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ToolAttemptError {}

/// A durable OpenAI chat-completions agent. See the [module docs](super) for the steps it
/// records and how runs and run ids work.
#[derive(Clone)]
pub struct OpenAiAgent {
    wf: Workflow,
    client: Client<OpenAIConfig>,
    secrets: Secrets,
    name: String,
    model: String,
    system_prompt: Option<String>,
    tools: Vec<Tool>,
    max_turns: u32,
    temperature: Option<f32>,
    model_config: TaskConfig,
    tool_config: TaskConfig,
}

impl std::fmt::Debug for OpenAiAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiAgent")
            .field("name", &self.name)
            .field("model", &self.model)
            .field("tools", &self.tools)
            .field("max_turns", &self.max_turns)
            .field("model_config", &self.model_config)
            .field("tool_config", &self.tool_config)
            .finish_non_exhaustive()
    }
}

/// Builds an [`OpenAiAgent`]; from [`OpenAiAgent::builder`].
#[must_use = "a builder does nothing until .build() is called"]
pub struct OpenAiAgentBuilder {
    agent: OpenAiAgent,
    api_base: Option<String>,
    api_key: Option<String>,
    client_set: bool,
}

impl std::fmt::Debug for OpenAiAgentBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiAgentBuilder").field("agent", &self.agent).finish_non_exhaustive()
    }
}

impl OpenAiAgentBuilder {
    /// The agent's name: the prefix of its step ids and of its default run ids. Default
    /// `"agent"`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.agent.name = name.into();
        self
    }

    /// The model, e.g. `"gpt-4o-mini"` (the default).
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.agent.model = model.into();
        self
    }

    /// The system prompt, sent first in every request.
    pub fn system_prompt(mut self, prompt: impl Into<String>) -> Self {
        self.agent.system_prompt = Some(prompt.into());
        self
    }

    /// Adds a tool.
    pub fn tool(mut self, tool: Tool) -> Self {
        self.agent.tools.push(tool);
        self
    }

    /// Adds tools.
    pub fn tools(mut self, tools: impl IntoIterator<Item = Tool>) -> Self {
        self.agent.tools.extend(tools);
        self
    }

    /// The most model calls one run may make before it fails with a `max_turns` model error.
    /// Default [`DEFAULT_MAX_TURNS`].
    pub fn max_turns(mut self, n: u32) -> Self {
        self.agent.max_turns = n;
        self
    }

    /// The sampling temperature sent with each request.
    pub fn temperature(mut self, t: f32) -> Self {
        self.agent.temperature = Some(t);
        self
    }

    /// Retries and backoff of model calls (HTTP 429, 5xx, timeouts and connection errors are
    /// retried; a 400 is not).
    pub fn model_config(mut self, config: TaskConfig) -> Self {
        self.agent.model_config = config;
        self
    }

    /// Retries and backoff of tool calls.
    pub fn tool_config(mut self, config: TaskConfig) -> Self {
        self.agent.tool_config = config;
        self
    }

    /// The API base, e.g. `https://api.openai.com/v1` or a mock server's
    /// [`base_url`](https://docs.rs/durably-testkit). Ignored when [`client`](Self::client)
    /// is set.
    pub fn api_base(mut self, base: impl Into<String>) -> Self {
        self.api_base = Some(base.into());
        self
    }

    /// The API key (otherwise `OPENAI_API_KEY`). It is sent as a header and never stored; it
    /// is also blanked out of any provider error message before that is recorded.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        let key = key.into();
        self.agent.secrets = self.agent.secrets.with([key.clone()]);
        self.api_key = Some(key);
        self
    }

    /// A secret to blank out of provider error messages before they are stored or returned.
    /// The key the client sends (given here, read from `OPENAI_API_KEY`, or set on a
    /// [`client`](Self::client)) and the keys in the common providers' environment variables
    /// are blanked without being told; this is for any other.
    pub fn redact_secret(mut self, secret: impl Into<String>) -> Self {
        self.agent.secrets = self.agent.secrets.with([secret.into()]);
        self
    }

    /// Secrets to blank out; see [`redact_secret`](Self::redact_secret).
    pub fn secrets<S: Into<String>>(mut self, secrets: impl IntoIterator<Item = S>) -> Self {
        self.agent.secrets = self.agent.secrets.with(secrets.into_iter().map(Into::into));
        self
    }

    /// An async-openai client to use as it is. Build it with [`client`](super::client) so that
    /// async-openai's own retries are off (its default client retries 429 and 5xx by itself,
    /// out of sight of the step records).
    pub fn client(mut self, client: Client<OpenAIConfig>) -> Self {
        self.agent.client = client;
        self.client_set = true;
        self
    }

    /// The agent.
    pub fn build(self) -> OpenAiAgent {
        let mut agent = self.agent;
        if !self.client_set {
            let mut config = OpenAIConfig::new();
            if let Some(base) = self.api_base {
                config = config.with_api_base(base);
            }
            if let Some(key) = self.api_key {
                config = config.with_api_key(key);
            }
            agent.client = client(config);
        }
        agent.secrets = agent.secrets.with(super::client_secrets(agent.client.config()));
        agent
    }
}

impl OpenAiAgent {
    /// A builder for an agent whose runs outside a workflow are runs of `wf`.
    pub fn builder(wf: &Workflow) -> OpenAiAgentBuilder {
        OpenAiAgentBuilder {
            agent: OpenAiAgent {
                wf: wf.clone(),
                client: client(OpenAIConfig::new()),
                secrets: Secrets::default(),
                name: "agent".into(),
                model: "gpt-4o-mini".into(),
                system_prompt: None,
                tools: Vec::new(),
                max_turns: DEFAULT_MAX_TURNS,
                temperature: None,
                model_config: TaskConfig::default(),
                tool_config: TaskConfig::default(),
            },
            api_base: None,
            api_key: None,
            client_set: false,
        }
    }

    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The run id [`run`](Self::run) uses outside a workflow: `<name>-<hash of the prompt>`.
    pub fn default_run_id(&self, prompt: &str) -> String {
        let hash = request_hash(&(&self.name, prompt)).unwrap_or_default();
        format!("{}-{}", self.name, &hash[..hash.len().min(16)])
    }

    /// Runs the agent on `prompt`.
    ///
    /// Inside a workflow run (a `#[durably::workflow]` body, `wf.run(..)`, a
    /// `#[durably::durable_pipeline]`) the agent's steps are part of that run. Outside one, the
    /// agent executes a run of its own with id [`default_run_id`](Self::default_run_id), so the
    /// same prompt resumes the same run; prefer [`run_with_id`](Self::run_with_id) in a server.
    pub async fn run(&self, prompt: impl Into<String>) -> Result<AgentRun> {
        let prompt = prompt.into();
        if RunContext::current().is_some() {
            self.run_here(&prompt, None).await
        } else {
            let run_id = self.default_run_id(&prompt);
            self.run_with_id(prompt, run_id).await
        }
    }

    /// Runs the agent on `prompt` as the run `run_id` of the agent's workflow engine: the same
    /// run id again returns the recorded result, or resumes from the last recorded call. A
    /// completed run asked another question (another prompt, system prompt, model or tool set)
    /// fails with `Error::NonDeterminism` at its first model step.
    pub async fn run_with_id(
        &self,
        prompt: impl Into<String>,
        run_id: impl Into<String>,
    ) -> Result<AgentRun> {
        self.own_run(prompt.into(), run_id.into(), None).await
    }

    /// Like [`run`](Self::run), as a stream: the text of each model call as the provider sends
    /// it when the call is live ([`StreamEvent::Text`] with `replayed: false`), the recorded
    /// text at once when it replays (`replayed: true`; a completed run yields its output so),
    /// then [`StreamEvent::Done`] with the result. The steps recorded are the same as
    /// [`run`](Self::run)'s (the whole response of each model call, assembled from its chunks),
    /// so a run may be streamed on one execution and run plainly on the next. A live attempt
    /// that fails after some text was sent and is retried sends its text again from the start.
    pub fn stream(&self, prompt: impl Into<String>) -> impl Stream<Item = Result<StreamEvent>> + '_ {
        let prompt = prompt.into();
        let in_run = RunContext::current().is_some();
        run_stream(move |sink: Sink| async move {
            if in_run {
                self.run_here(&prompt, Some(&sink)).await
            } else {
                let run_id = self.default_run_id(&prompt);
                self.own_run(prompt, run_id, Some(sink)).await
            }
        })
    }

    /// Like [`run_with_id`](Self::run_with_id), as a stream: see [`stream`](Self::stream).
    pub fn stream_with_id(
        &self,
        prompt: impl Into<String>,
        run_id: impl Into<String>,
    ) -> impl Stream<Item = Result<StreamEvent>> + '_ {
        let (prompt, run_id) = (prompt.into(), run_id.into());
        run_stream(move |sink: Sink| self.own_run(prompt, run_id, Some(sink)))
    }

    /// The run `run_id` of the agent's engine, on `prompt`.
    async fn own_run(&self, prompt: String, run_id: String, sink: Option<Sink>) -> Result<AgentRun> {
        // The first model step's request covers the prompt, system prompt, model and tools.
        let first = step_id(&self.name, &self.name, Step::Model(1)).id;
        check_completed_run(&self.wf, &run_id, &first, || {
            request_hash(&self.request(&self.messages_for(&prompt))).map_err(|source| Error::Serialize {
                run_id: run_id.clone(),
                step_id: first.clone(),
                what: "model request",
                type_name: "async_openai::types::chat::CreateChatCompletionRequest",
                source,
            })
        })
        .await?;
        self.wf.run(run_id, |_ctx| async { self.run_here(&prompt, sink.as_ref()).await }).await
    }

    fn messages_for(&self, prompt: &str) -> Vec<ChatCompletionRequestMessage> {
        let mut messages = Vec::new();
        if let Some(system) = &self.system_prompt {
            messages.push(ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage {
                content: ChatCompletionRequestSystemMessageContent::Text(system.clone()),
                name: None,
            }));
        }
        messages.push(ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage {
            content: ChatCompletionRequestUserMessageContent::Text(prompt.to_owned()),
            name: None,
        }));
        messages
    }

    fn request(&self, messages: &[ChatCompletionRequestMessage]) -> CreateChatCompletionRequest {
        CreateChatCompletionRequest {
            model: self.model.clone(),
            messages: messages.to_vec(),
            tools: if self.tools.is_empty() {
                None
            } else {
                Some(self.tools.iter().map(Tool::definition).collect())
            },
            temperature: self.temperature,
            ..Default::default()
        }
    }

    async fn run_here(&self, prompt: &str, sink: Option<&Sink>) -> Result<AgentRun> {
        if let Some(sink) = sink {
            sink.body_runs();
        }
        let ctx = RunContext::current().ok_or_else(|| Error::Invalid {
            what: "agent run",
            detail: format!("agent `{}` must run inside a workflow run", self.name),
        })?;
        // The n-th invocation of this agent in the run prefixes its steps `<name>#n`, fixed in
        // call order, so several agent runs in one workflow replay onto their own steps.
        let prefix = step_id(&self.name, "", Step::Invocation(&ctx)).id;

        let mut messages = self.messages_for(prompt);
        let mut usage = Usage::default();
        for turn in 1..=self.max_turns {
            let response = self.call_model(&prefix, turn, &messages, sink).await?;
            if let Some(u) = &response.usage {
                usage.prompt_tokens += u64::from(u.prompt_tokens);
                usage.completion_tokens += u64::from(u.completion_tokens);
                usage.total_tokens += u64::from(u.total_tokens);
            }
            let Some(choice) = response.choices.into_iter().next() else {
                return Err(Error::permanent(RecordedModelError(ModelError::new(
                    "empty_response",
                    format!("model step {prefix}.model#{turn} of run `{}` has no choices", ctx.run_id()),
                    false,
                ))));
            };
            let message = choice.message;
            let calls = message.tool_calls.clone().unwrap_or_default();
            messages.push(ChatCompletionRequestMessage::Assistant(ChatCompletionRequestAssistantMessage {
                content: message.content.clone().map(ChatCompletionRequestAssistantMessageContent::Text),
                tool_calls: message.tool_calls.clone(),
                ..Default::default()
            }));
            if calls.is_empty() {
                return Ok(AgentRun {
                    output: message.content.unwrap_or_default(),
                    messages,
                    usage,
                    turns: turn,
                });
            }
            for call in calls {
                let (id, outcome) = match call {
                    ChatCompletionMessageToolCalls::Function(call) => {
                        let outcome = self.call_tool(&ctx, &prefix, turn, &call).await?;
                        (call.id, outcome)
                    }
                    ChatCompletionMessageToolCalls::Custom(call) => {
                        (call.id, ToolOutcome::Error("custom tools are not supported by this agent".into()))
                    }
                };
                messages.push(ChatCompletionRequestMessage::Tool(ChatCompletionRequestToolMessage {
                    content: ChatCompletionRequestToolMessageContent::Text(outcome.to_message()),
                    tool_call_id: id,
                }));
            }
        }
        Err(Error::permanent(RecordedModelError(ModelError::new(
            "max_turns",
            format!(
                "agent `{prefix}` in run `{}` made {} model calls without a final answer (max_turns)",
                ctx.run_id(),
                self.max_turns
            ),
            false,
        ))))
    }

    async fn call_model(
        &self,
        prefix: &str,
        turn: u32,
        messages: &[ChatCompletionRequestMessage],
        sink: Option<&Sink>,
    ) -> Result<CreateChatCompletionResponse> {
        // The hash is of the plain request: streaming or not, it is the same question.
        let request = self.request(messages);
        let hash = request_hash(&request).map_err(|e| Error::Invalid {
            what: "model request",
            detail: format!("agent `{prefix}` turn {turn}: the request does not serialize: {e}"),
        })?;
        let client = self.client.clone();
        let secrets = self.secrets.clone();
        let live = Arc::new(AtomicBool::new(false));
        let attempt_live = live.clone();
        let attempt_sink = sink.cloned();
        let step = step_id(prefix, prefix, Step::Model(turn));
        let response: CreateChatCompletionResponse = durably_core::step(step.task, move || {
            let client = client.clone();
            let request = request.clone();
            let secrets = secrets.clone();
            let sink = attempt_sink.clone();
            attempt_live.store(true, Ordering::SeqCst);
            async move {
                let fail = |e: async_openai::error::OpenAIError| attempt_error(model_error(&e, &secrets));
                let Some(sink) = sink else {
                    return client.chat().create(request).await.map_err(fail);
                };
                let mut request = request;
                request.stream = Some(true);
                request.stream_options = Some(ChatCompletionStreamOptions {
                    include_usage: Some(true),
                    include_obfuscation: None,
                });
                let mut chunks = client.chat().create_stream(request).await.map_err(fail)?;
                let mut whole = Accumulator::default();
                while let Some(chunk) = chunks.next().await {
                    if let Some(text) = whole.add(chunk.map_err(fail)?) {
                        // A consumer that went away only stops hearing about the run.
                        sink.send(StreamEvent::Text { text, replayed: false });
                    }
                }
                Ok(whole.finish())
            }
        })
        .step_id(step.id)
        .retries(self.model_config.retries)
        .backoff(self.model_config.backoff)
        .request_hash(hash)
        .await?;
        if let Some(sink) = sink
            && !live.load(Ordering::SeqCst)
            && let Some(text) =
                response.choices.first().and_then(|c| c.message.content.clone()).filter(|t| !t.is_empty())
        {
            sink.send(StreamEvent::Text { text, replayed: true });
        }
        Ok(response)
    }

    async fn call_tool(
        &self,
        ctx: &RunContext,
        prefix: &str,
        turn: u32,
        call: &ChatCompletionMessageToolCall,
    ) -> Result<ToolOutcome> {
        let tool_name = &call.function.name;
        let Some(tool) = self.tools.iter().find(|t| t.name() == tool_name.as_str()) else {
            return Ok(ToolOutcome::Error(format!("there is no tool named `{tool_name}`")));
        };
        let args: Value = match serde_json::from_str(&call.function.arguments) {
            Ok(args) => args,
            Err(e) => return Ok(ToolOutcome::Error(format!("the arguments are not JSON: {e}"))),
        };
        // The provider's call id as it is, even empty: recorded runs replay by these ids.
        let call_id = ToolCall::Id(&call.id);
        let step =
            step_id(prefix, prefix, Step::Tool { tool: tool_name, turn: turn as usize, call: call_id });
        let (step_name, step_id) = (step.task, step.id);
        let recorded = ctx.recorded_step(&step_id).is_some_and(|r| r.status == StepStatus::Completed);
        let rejection = if tool.needs_approval() && !recorded {
            let approval: Approval = durably_core::signal(&approval_signal(&step_id)).await?;
            (!approval.approved).then(|| approval.reason.unwrap_or_else(|| "no reason given".into()))
        } else {
            None
        };
        // The same hash as the rig agent's tool steps: the tool and its arguments' text.
        let hash = request_hash(&serde_json::json!({ "tool": tool_name, "args": call.function.arguments }))
            .map_err(|source| Error::Serialize {
            run_id: ctx.run_id().to_owned(),
            step_id: step_id.clone(),
            what: "tool call",
            type_name: "async_openai::types::chat::FunctionCall",
            source,
        })?;
        let tool = tool.clone();
        let retries = self.tool_config.retries;
        durably_core::step(step_name, move || {
            let tool = tool.clone();
            let args = args.clone();
            let rejection = rejection.clone();
            async move {
                if let Some(reason) = rejection {
                    return Ok(ToolOutcome::Error(format!(
                        "the call was rejected by a human reviewer: {reason}"
                    )));
                }
                match tool.invoke(args).await {
                    Ok(value) => Ok(ToolOutcome::Ok(value)),
                    Err(ToolError::Arguments(message)) => Ok(ToolOutcome::Error(message)),
                    Err(ToolError::Failed(message)) => {
                        let attempt = durably_core::current_step().map_or(1, |s| s.attempt);
                        // The last attempt's error is the tool's answer, recorded like a value.
                        if attempt > retries {
                            Ok(ToolOutcome::Error(message))
                        } else {
                            Err(ToolAttemptError(message))
                        }
                    }
                }
            }
        })
        .step_id(step_id)
        .request_hash(hash)
        .retries(retries)
        .backoff(self.tool_config.backoff)
        .await
    }
}
