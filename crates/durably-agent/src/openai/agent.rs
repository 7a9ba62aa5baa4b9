//! The durable chat-completions agent: its own tool loop over the core's model and tool steps,
//! translating between async-openai's types and the core's.

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
use async_openai::types::chat::{ResponseFormat, ResponseFormatJsonSchema};
use durably_core::{Error, Result, Workflow};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client;
use super::failure::model_error;
use super::stream::{Accumulator, Sink, StreamEvent};
use super::tools::{Tool, ToolError};
use crate::TaskConfig;
use crate::core::extract::Output;
use crate::core::genai::{ModelReply, ModelTarget, ReplyFacts};
use crate::core::ids::Step;
use crate::core::invocation::Invocation;
use crate::core::plan::{Plan, default_run_id, execute};
use crate::core::settings::{self, Settings};
use crate::core::stream::run_stream;
use crate::core::tool::{Attempt, ToolCallRef};
use crate::failure::RecordedModelError;
use crate::{ModelError, request_hash};

/// The default number of model calls an agent run may make.
pub const DEFAULT_MAX_TURNS: u32 = settings::DEFAULT_MAX_TURNS;

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

/// The result of an agent run: the agent response of the crate with the chat-completions
/// messages (system prompt, user prompt, assistant messages with their tool calls, and tool
/// results, in order) and [`Usage`].
pub type AgentRun = crate::AgentResponse<ChatCompletionRequestMessage, Usage>;

/// What a tool step records: the tool's value, or the error the model was shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum ToolOutcome {
    Ok(Value),
    Error(String),
}

impl crate::core::tool::TimedOut for ToolOutcome {
    fn timed_out(message: String) -> Self {
        ToolOutcome::Error(message)
    }
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

/// A durable OpenAI chat-completions agent. See the [module docs](super) for the steps it
/// records and how runs and run ids work.
#[derive(Clone)]
pub struct OpenAiAgent {
    wf: Workflow,
    client: Client<OpenAIConfig>,
    pub(super) settings: Settings,
    model: String,
    pub(super) system_prompt: Option<String>,
    tools: Vec<Tool>,
    temperature: Option<f32>,
    /// Messages sent between the system prompt and the prompt: the history of a session turn
    /// or of `chat`.
    history: Vec<ChatCompletionRequestMessage>,
    /// The structured output asked for (`extract`).
    pub(super) output: Option<Output>,
    /// The agents this one may hand the conversation to, and what it says of itself to agents
    /// that may hand off to it.
    pub(super) handoffs: super::handoff::Handoffs,
}

impl std::fmt::Debug for OpenAiAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiAgent")
            .field("settings", &self.settings)
            .field("model", &self.model)
            .field("tools", &self.tools)
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
    /// The settings being built, for the builder methods of the other modules.
    pub(super) fn settings_mut(&mut self) -> &mut Settings {
        &mut self.agent.settings
    }

    /// The agent being built, for the builder methods of the other modules.
    pub(super) fn agent_mut(&mut self) -> &mut OpenAiAgent {
        &mut self.agent
    }

    /// The agent's name: the prefix of its step ids and of its default run ids. Default
    /// `"agent"`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.agent.settings.name = name.into();
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
        self.agent.settings.max_turns = n;
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
        self.agent.settings.model_config = config;
        self
    }

    /// Retries and backoff of tool calls.
    pub fn tool_config(mut self, config: TaskConfig) -> Self {
        self.agent.settings.tool_config = config;
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
        self.agent.settings.secrets = self.agent.settings.secrets.with([key.clone()]);
        self.api_key = Some(key);
        self
    }

    /// A secret to blank out of provider error messages before they are stored or returned.
    /// The key the client sends (given here, read from `OPENAI_API_KEY`, or set on a
    /// [`client`](Self::client)) and the keys in the common providers' environment variables
    /// are blanked without being told; this is for any other.
    pub fn redact_secret(mut self, secret: impl Into<String>) -> Self {
        self.agent.settings.secrets = self.agent.settings.secrets.with([secret.into()]);
        self
    }

    /// Secrets to blank out; see [`redact_secret`](Self::redact_secret).
    pub fn secrets<S: Into<String>>(mut self, secrets: impl IntoIterator<Item = S>) -> Self {
        self.agent.settings.secrets = self.agent.settings.secrets.with(secrets.into_iter().map(Into::into));
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
        agent.settings.secrets = agent.settings.secrets.with(super::client_secrets(agent.client.config()));
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
                settings: Settings::default(),
                model: "gpt-4o-mini".into(),
                system_prompt: None,
                tools: Vec::new(),
                temperature: None,
                history: Vec::new(),
                output: None,
                handoffs: super::handoff::Handoffs::default(),
            },
            api_base: None,
            api_key: None,
            client_set: false,
        }
    }

    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    pub(super) fn engine(&self) -> &Workflow {
        &self.wf
    }

    pub(super) fn agent_settings(&self) -> &Settings {
        &self.settings
    }

    /// This agent with `history` sent before each prompt.
    pub(super) fn with_history(&self, history: Vec<ChatCompletionRequestMessage>) -> OpenAiAgent {
        OpenAiAgent { history, ..self.clone() }
    }

    /// The run id [`run`](Self::run) uses outside a workflow: `<name>-<hash of the prompt>`.
    pub fn default_run_id(&self, prompt: &str) -> String {
        default_run_id(&self.settings.name, &(&self.settings.name, prompt))
    }

    /// Runs the agent on `prompt`.
    ///
    /// Inside a workflow run (a `#[durably::workflow]` body, `wf.run(..)`, a
    /// `#[durably::durable_pipeline]`) the agent's steps are part of that run. Outside one, the
    /// agent executes a run of its own with id [`default_run_id`](Self::default_run_id), so the
    /// same prompt resumes the same run; prefer [`run_with_id`](Self::run_with_id) in a server.
    pub async fn run(&self, prompt: impl Into<String>) -> Result<AgentRun> {
        let prompt = prompt.into();
        self.run_plan(self.plan(&prompt), prompt, None).await
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
        self.run_plan(Plan::Own { run_id: run_id.into() }, prompt.into(), None).await
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
        let plan = self.plan(&prompt);
        run_stream(move |sink| self.run_plan(plan, prompt, Some(sink)))
    }

    /// Like [`run_with_id`](Self::run_with_id), as a stream: see [`stream`](Self::stream).
    pub fn stream_with_id(
        &self,
        prompt: impl Into<String>,
        run_id: impl Into<String>,
    ) -> impl Stream<Item = Result<StreamEvent>> + '_ {
        let plan = Plan::Own { run_id: run_id.into() };
        run_stream(move |sink| self.run_plan(plan, prompt.into(), Some(sink)))
    }

    pub(super) fn plan(&self, prompt: &str) -> Plan {
        Plan::now(&self.settings, || self.default_run_id(prompt))
    }

    pub(super) async fn run_plan(&self, plan: Plan, prompt: String, sink: Option<Sink>) -> Result<AgentRun> {
        // The first model step's request covers the prompt, system prompt, model and tools.
        let hash = |run_id: &str, step_id: &str| {
            request_hash(&self.request(&self.messages_for(&prompt))).map_err(|source| Error::Serialize {
                run_id: run_id.to_owned(),
                step_id: step_id.to_owned(),
                what: "model request",
                type_name: REQUEST,
                source,
            })
        };
        execute(&self.wf, &self.settings, plan, Step::Model(1), hash, |prefix| {
            self.invoke(prefix, &prompt, sink.as_ref())
        })
        .await
    }

    pub(super) fn messages_for(&self, prompt: &str) -> Vec<ChatCompletionRequestMessage> {
        let mut messages = Vec::new();
        if let Some(system) = &self.system_prompt {
            messages.push(ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage {
                content: ChatCompletionRequestSystemMessageContent::Text(system.clone()),
                name: None,
            }));
        }
        messages.extend(self.history.iter().cloned());
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
            tools: if self.tools.is_empty() && self.handoffs.is_empty() {
                None
            } else {
                Some(self.tools.iter().map(Tool::definition).chain(self.handoffs.definitions()).collect())
            },
            temperature: self.temperature,
            response_format: self.output.as_ref().map(|output| ResponseFormat::JsonSchema {
                json_schema: ResponseFormatJsonSchema {
                    description: None,
                    name: output.name.clone(),
                    schema: output.schema.clone(),
                    strict: None,
                },
            }),
            ..Default::default()
        }
    }

    pub(super) async fn invoke(&self, prefix: String, prompt: &str, sink: Option<&Sink>) -> Result<AgentRun> {
        if let Some(sink) = sink {
            sink.body_runs();
        }
        let mut inv = Invocation::here(&self.settings, prefix)?;
        // This agent has always recorded its task names under the invocation's prefix.
        inv.task_base = inv.prefix.clone();
        self.converse(&inv, self.messages_for(prompt), sink).await
    }

    /// The tool loop of an invocation, from `messages`.
    pub(super) async fn converse(
        &self,
        inv: &Invocation,
        mut messages: Vec<ChatCompletionRequestMessage>,
        sink: Option<&Sink>,
    ) -> Result<AgentRun> {
        let mut usage = Usage::default();
        let mut rejected = 0;
        for _ in 0..self.settings.max_turns {
            let (step_id, response) = self.call_model(inv, &messages, sink).await?;
            let turn = inv.model_calls();
            if let Some(u) = &response.usage {
                usage.prompt_tokens += u64::from(u.prompt_tokens);
                usage.completion_tokens += u64::from(u.completion_tokens);
                usage.total_tokens += u64::from(u.total_tokens);
                let (p, c, t) = (u.prompt_tokens, u.completion_tokens, u.total_tokens);
                inv.add_usage(&step_id, p.into(), c.into(), t.into())?;
            }
            let Some(choice) = response.choices.into_iter().next() else {
                return Err(Error::permanent(RecordedModelError(ModelError::new(
                    "empty_response",
                    format!("model step {step_id} of run `{}` has no choices", inv.run_id),
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
                let text = message.content.unwrap_or_default();
                // Structured output: an answer that does not fit is sent back to the model.
                if let Some(output) = &self.output
                    && let Some(feedback) = inv.review(output, &step_id, &text, &mut rejected)?
                {
                    messages.push(ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage {
                        content: ChatCompletionRequestUserMessageContent::Text(feedback),
                        name: None,
                    }));
                    continue;
                }
                return Ok(AgentRun::new(text, messages, usage, turn));
            }
            let mut handoff = None;
            for call in calls {
                let (id, outcome) = match call {
                    ChatCompletionMessageToolCalls::Function(call)
                        if handoff.is_none() && self.handoffs.target(&call.function.name).is_some() =>
                    {
                        let (target, outcome) = self.hand_off(inv, turn, &call).await?;
                        handoff = Some(target);
                        (call.id, outcome)
                    }
                    ChatCompletionMessageToolCalls::Function(call) => {
                        let outcome = self.call_tool(inv, turn, &call).await?;
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
            if let Some(target) = handoff {
                return self.taken_over(&target, messages, usage, turn, sink).await;
            }
        }
        Err(Error::permanent(RecordedModelError(ModelError::new(
            "max_turns",
            format!(
                "agent `{}` in run `{}` made {} model calls without a final answer (max_turns)",
                inv.prefix, inv.run_id, self.settings.max_turns
            ),
            false,
        ))))
    }

    /// One model call, streamed to `sink` when there is one.
    async fn call_model(
        &self,
        inv: &Invocation,
        messages: &[ChatCompletionRequestMessage],
        sink: Option<&Sink>,
    ) -> Result<(String, CreateChatCompletionResponse)> {
        let request = self.request(messages);
        let client = self.client.clone();
        let attempt_request = request.clone();
        let attempt_sink = sink.cloned();
        let target =
            ModelTarget { provider: Some(PROVIDER.into()), model: Some(request.model.clone()), wire: None };
        let model = inv.model_call(&request, REQUEST, target, move || {
            let client = client.clone();
            let request = attempt_request.clone();
            let sink = attempt_sink.clone();
            async move {
                let Some(sink) = sink else {
                    return client.chat().create(request).await.map_err(|e| model_error(&e));
                };
                let mut request = request;
                request.stream = Some(true);
                request.stream_options = Some(ChatCompletionStreamOptions {
                    include_usage: Some(true),
                    include_obfuscation: None,
                });
                let mut chunks = client.chat().create_stream(request).await.map_err(|e| model_error(&e))?;
                let mut whole = Accumulator::default();
                while let Some(chunk) = chunks.next().await {
                    if let Some(text) = whole.add(chunk.map_err(|e| model_error(&e))?) {
                        sink.send(StreamEvent::Text { text, replayed: false });
                    }
                }
                Ok(whole.finish())
            }
        })?;
        let response = model.call.await?;
        if let Some(sink) = sink
            && model.recorded
            && let Some(text) =
                response.choices.first().and_then(|c| c.message.content.clone()).filter(|t| !t.is_empty())
        {
            sink.send(StreamEvent::Text { text, replayed: true });
        }
        Ok((model.step_id, response))
    }

    /// One tool call: a core tool step, unless there is no such tool or the arguments are not
    /// JSON (the model is told so, and nothing is recorded).
    async fn call_tool(
        &self,
        inv: &Invocation,
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
        let step = ToolCallRef {
            tool: tool_name,
            turn: turn as usize,
            // The provider's call id as it is, even empty: recorded runs replay by these ids.
            call_id: Some(&call.id),
            args: &call.function.arguments,
            needs_approval: tool.needs_approval(),
        };
        let rejected =
            |reason| ToolOutcome::Error(format!("the call was rejected by a human reviewer: {reason}"));
        let tool = tool.clone();
        let run = move || {
            let (tool, args) = (tool.clone(), args.clone());
            async move {
                match tool.invoke(args).await {
                    Ok(value) => Attempt::Answer(ToolOutcome::Ok(value)),
                    Err(ToolError::Arguments(message)) => Attempt::Answer(ToolOutcome::Error(message)),
                    Err(ToolError::Failed(message)) => {
                        Attempt::Retryable { answer: ToolOutcome::Error(message.clone()), message }
                    }
                    Err(ToolError::Fatal(error)) => Attempt::Fatal(error),
                }
            }
        };
        inv.tool_call(step, "async_openai::types::chat::FunctionCall", rejected, run).await
    }
}

/// The type name of the requests, for errors.
const REQUEST: &str = "async_openai::types::chat::CreateChatCompletionRequest";

/// `gen_ai.provider.name` of the OpenAI chat API (an OpenAI-compatible server speaks it too).
const PROVIDER: &str = "openai";

impl ModelReply for CreateChatCompletionResponse {
    fn facts(&self) -> ReplyFacts {
        ReplyFacts {
            provider: None,
            request_model: None,
            response_model: Some(self.model.clone()),
            input_tokens: self.usage.as_ref().map(|u| u64::from(u.prompt_tokens)),
            output_tokens: self.usage.as_ref().map(|u| u64::from(u.completion_tokens)),
            finish_reasons: self
                .choices
                .iter()
                .filter_map(|c| c.finish_reason.as_ref())
                .filter_map(|r| serde_json::to_value(r).ok()?.as_str().map(str::to_owned))
                .collect(),
        }
    }
}
