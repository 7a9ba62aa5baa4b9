//! rig 0.44 agents made durable: [`DurableAgent`] runs a rig agent so that **each model request
//! and each tool call is its own step**.
//!
//! ```no_run
//! use durably_agent::rig::DurableAgent;
//! use durably_agent::rig::rig_core::providers::openai::OpenAIConfig;
//! use durably_core::Workflow;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let wf = Workflow::builder("my-app").build(); // with the facade: Workflow::open("my-app")
//! let model = OpenAIConfig::new(std::env::var("OPENAI_API_KEY")?).client().chat("gpt-4o-mini");
//! let agent = DurableAgent::new(model, &wf, |agent| agent.preamble("You are a terse researcher."))
//!     .name("researcher")
//!     .max_turns(8);
//! // Each model request and each tool call is a step of run "research-42".
//! let answer = agent.run_with_id("What is durable execution?", "research-42").await?;
//! println!("{} ({:?} tokens)", answer.output, answer.usage.total_tokens);
//! // After a crash, the same call replays what was recorded (no HTTP request) and goes on.
//! # Ok(()) }
//! ```
//!
//! Tools are added in the closure (`agent.tool(MyTool)`, any `rig_core::tool::Tool`); the
//! pinned rig crates are re-exported as [`rig_core`] and [`rig_agent`].
//!
//! # How it works
//!
//! The model is wrapped in a handler registered on the rig `AgentBuilder`
//! (`model_route_handler` + `using_model`): a completion request whose step is recorded is
//! answered from the store with no HTTP request; otherwise the model is called inside the step.
//! Tool calls go through an `AgentHook`: a recorded call is answered from its record and the
//! tool does not run; an unrecorded one runs inside its step (after an approval, when the tool
//! needs one). Because the handler has to be registered on the builder, [`DurableAgent::new`]
//! takes the model and a closure that configures the builder (preamble, tools, temperature…);
//! the agent is built afresh for every run, so concurrent runs never share rig state.
//!
//! # Steps
//!
//! | step id | value |
//! |---|---|
//! | `<agent>.input` | the prompt; its hash covers the prompt and the tool definitions |
//! | `<agent>.model#<n>` (n from 1) | the whole recorded `Outcome` of the n-th model request; the request's canonical hash is stored with it |
//! | `<agent>.tool.<tool>#<turn>.<call id>` | the tool's `Outcome` (its result, or its error) |
//!
//! Executing a run again replays what was recorded and continues live from the first call that
//! was not. A different prompt, tool set or request under the same run id fails with
//! [`Error::NonDeterminism`] naming the run and the step, instead of returning an answer to
//! another question. When one workflow run invokes the same agent again, the later invocations'
//! steps are prefixed `<agent>#1`, `<agent>#2`… in the order the calls were made (not the
//! order they finish), so `try_join_all` over several agent runs replays correctly.
//!
//! # Runs and run ids
//!
//! Inside a workflow (`wf.run` or `#[durably::workflow]`), [`DurableAgent::run`] is part of that
//! run. Outside one it is a run of its own whose id is `<agent>-<hash of the prompt>`: the same
//! prompt resumes the same run. In a server, pass the id with [`DurableAgent::run_with_id`]
//! (a request id, a conversation id): two users asking the same question must not share a run,
//! and a retried request must find the run it started.
//!
//! # Retries and errors
//!
//! rig 0.44 does not retry provider errors, so durably owns retries: the model
//! [`TaskConfig`] decides them (HTTP 429 and 5xx, timeouts and connection errors are retried
//! with its backoff; a 400 or 401 is not). A model call that fails for good records its error as
//! the JSON of a [`ModelError`](crate::ModelError) `{kind, message, retryable}` (see
//! [`model_error_of`]); a tool whose error is retryable is attempted again per the tool
//! `TaskConfig`, and its last error is recorded and shown to the model, as rig does. Nothing
//! stored contains the API key: requests are stored as a hash, and provider error messages are
//! redacted: the secrets given with [`DurableAgent::redact_secret`] (the agent cannot read the
//! key inside a rig client), the keys in the common providers' environment variables, bearer
//! tokens and `sk-…` keys are blanked out.
//!
//! # Approval
//!
//! [`DurableAgent::require_approval`] makes each call of a tool wait on the signal
//! `approve:<step id>` (the run's `waiting_on` names it) whose payload is an
//! [`Approval`](crate::Approval): approved, the tool runs; rejected, the model receives the
//! reason as the tool's error.
//!
//! # Streaming
//!
//! [`DurableAgent::stream`] yields the text of a model call as the provider sends it when the
//! call is live, and the recorded response as a stream when it is replayed (a completed run
//! yields its output as one chunk). A streaming attempt
//! that fails after some text was sent and is retried sends its text again from the start.

mod extract;
mod failure;
mod handoff;
mod hook;
mod invocation;
mod limits;
#[cfg(feature = "mcp")]
mod mcp;
mod model;
mod session;
mod stream;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use durably_core::{Error, Result, Workflow};
use futures::StreamExt;
use rig_agent::agent::{MultiTurnStreamItem, NoToolConfig, WithBuilderTools, WithToolServerHandle};
use rig_agent::{Agent, AgentBuilder};
use rig_core::DynModel;
use rig_core::completion::{Message, Usage};
use rig_core::operation::Completion;
use rig_core::serve::adapters::ModelAdapter;
use rig_core::streaming::{Item, StreamEvent};
use rig_core::tool::DynamicTool;

pub use crate::failure::model_error_of;
pub use rig_agent;
pub use rig_core;
pub use session::Session;
pub use stream::{AgentEvent, AgentStream};

use crate::TaskConfig;
use crate::core::ids::Step;
use crate::core::input::input_hash;
use crate::core::invocation::Invocation;
use crate::core::plan::{Plan, default_run_id, execute};
use crate::core::redact::RedactedError;
use crate::core::settings::{self, Settings};
use crate::core::stream::{Sink, run_stream};
use hook::DurableHook;
use invocation::RigInvocation;
use model::{DurableModel, ROUTE};
use stream::RunFuture;

/// The turns a run may take when [`DurableAgent::max_turns`] is not set (rig's own default is
/// one model call, which leaves no room for a tool loop).
pub const DEFAULT_MAX_TURNS: usize = settings::DEFAULT_MAX_TURNS as usize;

/// What an agent run returns: the agent response of the crate with rig's messages and usage.
/// It is the run's output too, so a completed run returns it from the store.
pub type AgentResponse = crate::AgentResponse<Message, Usage>;

/// A rig `AgentBuilder` in any of its tool states, ready to build (implemented for the
/// builder's three typestates; not meant to be implemented elsewhere).
pub trait BuildAgent: sealed::Sealed {
    /// Builds the agent.
    fn build_agent(self) -> Agent;

    /// Builds the agent with `extra` tools too (an MCP server's); a builder given a tool
    /// server handle keeps only the tools of that server.
    #[doc(hidden)]
    fn build_agent_with(self, extra: Vec<DynamicTool>) -> Agent
    where
        Self: Sized,
    {
        drop(extra);
        self.build_agent()
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for rig_agent::AgentBuilder<rig_agent::agent::NoToolConfig> {}
    impl Sealed for rig_agent::AgentBuilder<rig_agent::agent::WithBuilderTools> {}
    impl Sealed for rig_agent::AgentBuilder<rig_agent::agent::WithToolServerHandle> {}
}

impl BuildAgent for AgentBuilder<NoToolConfig> {
    fn build_agent(self) -> Agent {
        self.build()
    }

    fn build_agent_with(self, extra: Vec<DynamicTool>) -> Agent {
        if extra.is_empty() { self.build() } else { self.dynamic_tools(extra).build() }
    }
}

impl BuildAgent for AgentBuilder<WithBuilderTools> {
    fn build_agent(self) -> Agent {
        self.build()
    }

    fn build_agent_with(self, extra: Vec<DynamicTool>) -> Agent {
        self.dynamic_tools(extra).build()
    }
}

impl BuildAgent for AgentBuilder<WithToolServerHandle> {
    fn build_agent(self) -> Agent {
        self.build()
    }
}

type Assemble = dyn Fn(AgentBuilder, DurableModel, DurableHook, Vec<DynamicTool>) -> Agent + Send + Sync;

/// Makes one tool for a run's agent (each run builds its agent afresh).
type MakeTool = dyn Fn() -> DynamicTool + Send + Sync;

/// A rig agent whose model calls and tool calls are checkpointed steps. See the
/// [module docs](self).
#[derive(Clone)]
pub struct DurableAgent {
    wf: Workflow,
    model: DynModel<Completion>,
    assemble: Arc<Assemble>,
    settings: Settings,
    approvals: BTreeSet<String>,
    /// Messages sent before the prompt: the history of a session turn or of `chat`.
    history: Vec<Message>,
    /// The structured output asked for (`extract`).
    output: Option<crate::core::extract::Output>,
    /// Tools added beside those of the configuration (an MCP server's).
    extra_tools: Vec<Arc<MakeTool>>,
    /// The agents this one may hand the conversation to, and what it says of itself to agents
    /// that may hand off to it.
    handoffs: Vec<DurableAgent>,
    description: Option<String>,
}

impl std::fmt::Debug for DurableAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableAgent")
            .field("app", &self.wf.app())
            .field("settings", &self.settings)
            .field("approvals", &self.approvals)
            .finish_non_exhaustive()
    }
}

impl DurableAgent {
    /// A durable agent on `model`, checkpointed by `wf`. `configure` sets up the rig
    /// `AgentBuilder` (`AgentBuilder::new(model)` named after the agent): preamble, tools,
    /// temperature… It is called for every run, since the durable model handler and hook
    /// are registered on the builder before it is built.
    ///
    /// The agent is named `agent` until [`name`](Self::name) says otherwise.
    pub fn new<S, F>(model: impl Into<DynModel<Completion>>, wf: &Workflow, configure: F) -> Self
    where
        F: Fn(AgentBuilder) -> AgentBuilder<S> + Send + Sync + 'static,
        AgentBuilder<S>: BuildAgent,
    {
        let assemble = move |builder: AgentBuilder, handler: DurableModel, hook: DurableHook, extra| {
            configure(builder).model_route_handler(ROUTE, handler).add_hook(hook).build_agent_with(extra)
        };
        DurableAgent {
            wf: wf.clone(),
            model: model.into(),
            assemble: Arc::new(assemble),
            settings: Settings::default(),
            approvals: BTreeSet::new(),
            history: Vec::new(),
            output: None,
            extra_tools: Vec::new(),
            handoffs: Vec::new(),
            description: None,
        }
    }

    /// Names the agent: the base of its step ids and of its default run id.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.settings.name = name.into();
        self
    }

    /// Retries and backoff of model calls (default: 3 retries, 2 s, 4 s, 8 s).
    pub fn model_config(mut self, config: TaskConfig) -> Self {
        self.settings.model_config = config;
        self
    }

    /// Retries and backoff of tool calls (default: 3 retries, 2 s, 4 s, 8 s).
    pub fn tool_config(mut self, config: TaskConfig) -> Self {
        self.settings.tool_config = config;
        self
    }

    /// The most model calls one run may make (default [`DEFAULT_MAX_TURNS`]).
    pub fn max_turns(mut self, turns: usize) -> Self {
        self.settings.max_turns = u32::try_from(turns).unwrap_or(u32::MAX);
        self
    }

    /// Makes every call of the tool `tool` wait for an [`Approval`](crate::Approval) delivered
    /// as the signal `approve:<step id>`; see the [module docs](self#approval).
    pub fn require_approval(mut self, tool: impl Into<String>) -> Self {
        self.approvals.insert(tool.into());
        self
    }

    /// A secret to blank out of provider error messages before they are stored or returned:
    /// the API key of the model's client, which the agent cannot read from it. Keys in the
    /// common providers' environment variables (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`,
    /// `GROQ_API_KEY`…), bearer tokens and `sk-…` keys are blanked without being told.
    pub fn redact_secret(mut self, secret: impl Into<String>) -> Self {
        self.settings.secrets = self.settings.secrets.with([secret.into()]);
        self
    }

    /// Secrets to blank out; see [`redact_secret`](Self::redact_secret).
    pub fn secrets<S: Into<String>>(mut self, secrets: impl IntoIterator<Item = S>) -> Self {
        self.settings.secrets = self.settings.secrets.with(secrets.into_iter().map(Into::into));
        self
    }

    /// The agent's name.
    pub fn agent_name(&self) -> &str {
        &self.settings.name
    }

    /// The run id [`run`](Self::run) uses outside a workflow: `<agent>-<first 16 hex digits of
    /// the prompt's hash>`.
    pub fn default_run_id(&self, prompt: &str) -> String {
        default_run_id(&self.settings.name, prompt)
    }

    /// The signal a call of an approval-gated tool waits on, given its step id.
    pub fn approval_signal(step_id: &str) -> String {
        crate::core::ids::approval_signal(step_id)
    }

    /// Runs the agent on `prompt`. Inside a workflow the run is part of that run (its steps are
    /// `<agent>…`, or `<agent>#k…` for the k-th further invocation in the run, counted when
    /// this is called); outside one it is the run [`default_run_id`](Self::default_run_id).
    pub fn run(
        &self,
        prompt: impl Into<String>,
    ) -> impl Future<Output = Result<AgentResponse>> + Send + 'static {
        let prompt = prompt.into();
        self.run_plan(self.plan(&prompt), prompt, None)
    }

    /// Runs the agent on `prompt` as the run `run_id` (a run of its own, also inside a
    /// workflow). Executing the same id again returns recorded calls without repeating them.
    pub fn run_with_id(
        &self,
        prompt: impl Into<String>,
        run_id: impl Into<String>,
    ) -> impl Future<Output = Result<AgentResponse>> + Send + 'static {
        self.run_plan(Plan::Own { run_id: run_id.into() }, prompt.into(), None)
    }

    /// Like [`run`](Self::run), streaming: live chunks when the model is called, the recorded
    /// response as a stream when a call is replayed.
    pub fn stream(&self, prompt: impl Into<String>) -> AgentStream {
        let prompt = prompt.into();
        let plan = self.plan(&prompt);
        AgentStream::new(run_stream(|sink| self.run_plan(plan, prompt, Some(sink))))
    }

    /// Like [`run_with_id`](Self::run_with_id), streaming.
    pub fn stream_with_id(&self, prompt: impl Into<String>, run_id: impl Into<String>) -> AgentStream {
        let plan = Plan::Own { run_id: run_id.into() };
        AgentStream::new(run_stream(|sink| self.run_plan(plan, prompt.into(), Some(sink))))
    }

    fn plan(&self, prompt: &str) -> Plan {
        Plan::now(&self.settings, || self.default_run_id(prompt))
    }

    fn run_plan(&self, plan: Plan, prompt: String, sink: Option<Sink<AgentEvent>>) -> RunFuture {
        let this = self.clone();
        // Boxed: rig's run futures are large, and debug builds keep them on the stack.
        Box::pin(async move {
            let (wf, settings) = (&this.wf, &this.settings);
            let hash = |run_id: &str, step_id: &str| {
                let inv = this.invocation(Invocation::new(
                    settings.clone(),
                    settings.name.clone(),
                    settings.name.clone(),
                    run_id.to_owned(),
                ));
                input_hash(&prompt, tool_defs(&this.build(&inv)), run_id, step_id)
            };
            execute(wf, settings, plan, Step::Input, hash, |prefix| {
                Box::pin(this.invoke(prefix, &prompt, sink))
            })
            .await
        })
    }

    fn invocation(&self, core: Invocation) -> Arc<RigInvocation> {
        let mut inv = RigInvocation::new(core, self.approvals.clone());
        inv.handoffs = self
            .handoffs
            .iter()
            .map(|t| (handoff::tool_name(t.agent_name()), t.agent_name().to_owned()))
            .collect();
        Arc::new(inv)
    }

    /// Builds the rig agent of one invocation, with the durable handler and hook.
    fn build(&self, inv: &Arc<RigInvocation>) -> Agent {
        let handler = DurableModel {
            inner: Arc::new(ModelAdapter::new(ROUTE, self.model.clone())),
            inv: inv.clone(),
            wire: (self.model.name().to_owned(), self.model.id().map(str::to_owned)),
        };
        let hook = DurableHook { inv: inv.clone() };
        let mut builder = AgentBuilder::new(self.model.clone()).name(self.settings.name.clone());
        if let Some(schema) =
            self.output.as_ref().and_then(|o| schemars::Schema::try_from(o.schema.clone()).ok())
        {
            builder = builder.output_schema_raw(schema).output_mode(rig_agent::run::OutputMode::Native);
        }
        let mut extra: Vec<DynamicTool> = self.extra_tools.iter().map(|make| make()).collect();
        extra.extend(self.handoffs.iter().filter_map(handoff::tool));
        let agent = (self.assemble)(builder, handler, hook, extra);
        inv.set_tools(agent.tool_server_handle().clone());
        agent
    }

    /// One invocation of the agent inside the current run.
    async fn invoke(
        &self,
        prefix: String,
        prompt: &str,
        sink: Option<Sink<AgentEvent>>,
    ) -> Result<AgentResponse> {
        if let Some(sink) = &sink {
            sink.body_runs();
        }
        let inv = self.invocation(Invocation::here(&self.settings, prefix)?);
        let agent = self.build(&inv);
        inv.record_input(prompt, tool_defs(&agent)).await?;

        let max_turns = usize::try_from(self.settings.max_turns).unwrap_or(usize::MAX);
        let mut runner = agent.prompt(prompt.to_owned());
        if !self.history.is_empty() {
            runner = runner.history(self.history.clone());
        }
        let runner = runner.using_model(ROUTE).max_turns(max_turns);
        let fail = |error: rig_agent::completion::PromptError| {
            inv.take_failure().unwrap_or_else(|| Error::Workflow {
                run_id: inv.run_id.clone(),
                source: Box::new(RedactedError::new(&error, &self.settings.secrets)),
            })
        };
        let Some(sink) = sink else {
            let response = match Box::pin(runner.run()).await {
                Ok(response) => response,
                Err(error) => match inv.handed_to() {
                    Some(target) => return self.taken_over(&target, prompt, inv.model_calls()).await,
                    None => return Err(fail(error)),
                },
            };
            let (output, messages, usage) = self.checked_answer(&agent, &inv, response, fail).await?;
            return Ok(AgentResponse::new(output, messages, usage, inv.model_calls()));
        };
        let mut events = runner.stream();
        let mut last = None;
        while let Some(item) = events.next().await {
            match item.map_err(fail)? {
                MultiTurnStreamItem::StreamAssistantItem(Item::Event(StreamEvent::Text { text, .. })) => {
                    sink.send(AgentEvent::Text(text));
                }
                MultiTurnStreamItem::ToolCall { tool_call } => {
                    sink.send(AgentEvent::ToolCall {
                        name: tool_call.function.name.to_string(),
                        arguments: serde_json::Value::Object(tool_call.function.arguments).to_string(),
                    });
                }
                MultiTurnStreamItem::FinalResponse(response) => last = Some(response),
                _ => {}
            }
        }
        let response = last.ok_or_else(|| {
            inv.take_failure().unwrap_or_else(|| Error::Invalid {
                what: "agent stream",
                detail: format!("run `{}`: the rig stream ended without a final response", inv.run_id),
            })
        })?;
        let (output, messages) = (response.output(), response.messages().to_vec());
        Ok(AgentResponse::new(output, messages, response.usage(), inv.model_calls()))
    }
}

/// The tool definitions of a built agent, as the input hash takes them.
fn tool_defs(agent: &Agent) -> Vec<serde_json::Value> {
    agent
        .tool_server_handle()
        .static_tool_defs()
        .iter()
        .map(|d| serde_json::to_value(d).unwrap_or_default())
        .collect()
}
