//! A durable OpenAI chat-completions agent on async-openai: **each model call and each tool
//! call is its own step** of the current run, so that executing the run again after a crash
//! sends no request for the calls already recorded and runs no recorded tool again.
//!
//! ```no_run
//! use durably_agent::openai::{OpenAiAgent, Tool};
//! use durably_agent::TaskConfig;
//! use durably_core::{Workflow, backoff::exponential};
//! use schemars::JsonSchema;
//! use serde::Deserialize;
//!
//! #[derive(Deserialize, JsonSchema)]
//! struct WeatherArgs {
//!     /// The city.
//!     city: String,
//! }
//!
//! # async fn demo() -> durably_core::Result<()> {
//! let wf = Workflow::builder("my-app").build(); // or Workflow::open("my-app") with the facade
//! let agent = OpenAiAgent::builder(&wf)
//!     .name("weather")
//!     .model("gpt-4o-mini")
//!     .system_prompt("You answer questions about the weather.")
//!     .tool(Tool::new("get_weather", "Current weather of a city", |a: WeatherArgs| async move {
//!         Ok::<_, std::io::Error>(format!("sunny in {}", a.city))
//!     }))
//!     .max_turns(6)
//!     .model_config(TaskConfig::new(5, exponential(2.0, 30.0)))
//!     .build();
//! let run = agent.run_with_id("Weather in Paris?", "weather-42").await?;
//! println!("{} ({} tokens)", run.output, run.usage.total_tokens);
//! # Ok(()) }
//! ```
//!
//! # Steps
//!
//! | step id | value |
//! |---|---|
//! | `<agent>.model#<turn>` (turn from 1) | the whole `CreateChatCompletionResponse`; the canonical hash of the request is stored with it |
//! | `<agent>.tool.<tool>#<turn>.<call id>` | `{"ok": <the tool's value>}` or `{"error": "<what the model was told>"}` |
//!
//! Executing a run again replays what was recorded and continues live from the first call
//! that was not. A changed prompt, system prompt, model or tool set under the same run id
//! changes the request, so the replay fails with `Error::NonDeterminism` naming the run and
//! the step instead of returning an answer to another question. When one workflow run invokes
//! the same agent again, later invocations' steps are prefixed `<agent>#1`, `<agent>#2`… in
//! call order.
//!
//! # Runs and run ids
//!
//! Inside a workflow run (`wf.run`, `#[durably::workflow]`, `#[durably::durable_pipeline]`),
//! [`OpenAiAgent::run`] is part of that run: a multi-agent pipeline is one run. Outside one, it
//! is a run of its own whose id is `<agent>-<hash of the prompt>`, so the same prompt resumes
//! the same run. In a server, pass the id with [`OpenAiAgent::run_with_id`] (a request id, a
//! conversation id): two users asking the same question must not share one run, and a retried
//! request must find the run it started.
//!
//! # Retries and errors
//!
//! async-openai's own retry layer is left out ([`client`] builds a client without it), so
//! durably owns retries: the model [`TaskConfig`](crate::TaskConfig) decides them. HTTP 429
//! and 5xx, timeouts and connection errors are retried with its backoff; a 400 or 401 is sent
//! once. A model call that fails for good records its error as the JSON of a
//! [`ModelError`](crate::ModelError) `{kind, message, retryable}` ([`model_error_of`] gets it
//! back from the returned error). A tool's error is retried per the tool `TaskConfig`; the
//! last one is recorded and shown to the model. Nothing stored contains the API key: requests
//! are stored as a hash, responses do not carry it, and provider error messages are redacted:
//! the key the client sends (given to the builder, read from `OPENAI_API_KEY`, or set on a
//! client), the keys in the common providers' environment variables, the secrets given with
//! [`OpenAiAgentBuilder::redact_secret`], bearer tokens and `sk-…` keys are blanked out.
//!
//! # Approval
//!
//! A tool built with [`Tool::requires_approval`] makes each of its calls wait on the signal
//! `approve:<step id>` (the run's `waiting_on` names it, so an operator finds it) whose payload
//! is an [`Approval`](crate::Approval): approved, the tool runs; rejected, the model receives
//! the reason as the tool's error. An approval delivered before the wait is found at once.

mod agent;
mod chat;
mod extract;
mod failure;
mod handoff;
mod http;
mod limits;
#[cfg(feature = "mcp")]
mod mcp;
mod session;
mod stream;
mod tools;

pub use crate::failure::model_error_of;
pub use agent::{AgentRun, DEFAULT_MAX_TURNS, OpenAiAgent, OpenAiAgentBuilder, Usage};
pub use chat::{DurableChat, durable_chat};
pub use session::Session;
pub use stream::StreamEvent;
pub use tools::Tool;

/// async-openai, for its request and response types.
pub use async_openai;

use async_openai::Client;
use async_openai::config::Config;

/// An async-openai client for `config` **without async-openai's retry layer** (its default
/// client retries 429 and 5xx three times by itself, unseen by the step records). Use it with
/// [`OpenAiAgentBuilder::client`] and [`durable_chat`].
pub fn client<C: Config>(config: C) -> Client<C> {
    // One reqwest client per async-openai client: a client shared across tokio runtimes could
    // hand out a pooled connection whose runtime is gone.
    Client::with_config(config).with_http_service(http::Transport::new(reqwest::Client::new()))
}

/// The credentials a client sends (its `Authorization` bearer token or `api-key` header), to
/// be blanked out of what is recorded: whether the key was given, read from `OPENAI_API_KEY`
/// or set on a client built elsewhere, this is the key in use.
pub(crate) fn client_secrets<C: Config>(config: &C) -> Vec<String> {
    let headers = config.headers();
    ["authorization", "api-key", "x-api-key"]
        .iter()
        .flat_map(|name| headers.get_all(*name))
        .filter_map(|value| value.to_str().ok())
        .map(|value| value.strip_prefix("Bearer ").unwrap_or(value).trim().to_owned())
        .filter(|value| !value.is_empty())
        .collect()
}
