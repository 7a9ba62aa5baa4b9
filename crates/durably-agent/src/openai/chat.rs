//! A single chat-completions call as a step, for code that makes its own calls.

use async_openai::Client;
use async_openai::config::Config;
use async_openai::types::chat::{CreateChatCompletionRequest, CreateChatCompletionResponse};
use durably_core::TaskCall;

use super::failure::model_error;
use crate::core::redact::Secrets;
use crate::failure::attempt_error;
use crate::{TaskConfig, request_hash};

/// Makes `client.chat().create(request)` a step: see [`DurableChat::create`].
///
/// ```no_run
/// use async_openai::types::chat::CreateChatCompletionRequestArgs;
/// use durably_agent::openai::{client, durable_chat};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let client = client(async_openai::config::OpenAIConfig::new());
/// let request = CreateChatCompletionRequestArgs::default()
///     .model("gpt-4o-mini")
///     .messages(vec![async_openai::types::chat::ChatCompletionRequestUserMessage::from("Hi").into()])
///     .build()?;
/// // Inside a workflow run: one step `openai.chat`, replayed on the next execution.
/// let response = durable_chat(&client).create(request).await?;
/// # Ok(()) }
/// ```
pub fn durable_chat<C: Config + Clone + 'static>(client: &Client<C>) -> DurableChat<C> {
    DurableChat {
        client: client.clone(),
        name: "openai.chat".into(),
        config: None,
        secrets: Secrets::default(),
    }
}

/// Durable single chat-completions calls; from [`durable_chat`].
#[derive(Clone)]
pub struct DurableChat<C: Config> {
    client: Client<C>,
    name: String,
    config: Option<TaskConfig>,
    secrets: Secrets,
}

impl<C: Config> std::fmt::Debug for DurableChat<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableChat")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<C: Config + Clone + 'static> DurableChat<C> {
    /// The task name of the steps (`openai.chat` by default; ids `openai.chat`,
    /// `openai.chat#1`…).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Retries and backoff of the calls (otherwise the workflow's defaults).
    pub fn config(mut self, config: TaskConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// A secret (the API key) to blank out of provider error messages before they are recorded
    /// (the key of `client` and the provider keys in the environment are blanked anyway).
    pub fn redact(mut self, secret: impl Into<String>) -> Self {
        self.secrets = self.secrets.with([secret.into()]);
        self
    }

    /// One `chat().create(request)` as a step whose value is the whole response and whose
    /// request hash is the canonical hash of `request`: a replay with a different request
    /// under the same step id fails with `Error::NonDeterminism`. HTTP 429, 5xx and transport
    /// errors are retried; other errors are permanent and recorded as a
    /// [`ModelError`](crate::ModelError). Outside a run it is a plain call.
    ///
    /// The returned [`TaskCall`] takes the usual options (`.step_id(..)`, `.retries(..)`).
    pub fn create(&self, request: CreateChatCompletionRequest) -> TaskCall<CreateChatCompletionResponse>
    where
        C: Send + Sync,
    {
        let hash = request_hash(&request).ok();
        let client = self.client.clone();
        let secrets = self.secrets.with(super::client_secrets(self.client.config()));
        let mut call = durably_core::step(self.name.clone(), move || {
            let client = client.clone();
            let request = request.clone();
            let secrets = secrets.clone();
            async move {
                client
                    .chat()
                    .create(request)
                    .await
                    .map_err(|e| attempt_error(secrets.redact_model_error(model_error(&e))))
            }
        });
        if let Some(hash) = hash {
            call = call.request_hash(hash);
        }
        if let Some(config) = self.config {
            call = call.retries(config.retries).backoff(config.backoff);
        }
        call
    }
}
