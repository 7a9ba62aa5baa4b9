//! Conversations with the OpenAI agent: [`Session`] is the core's session engine with the
//! chat-completions messages, and [`OpenAiAgent::chat`] the stateless form, a run whose
//! history the caller keeps.

use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestAssistantMessageContent,
    ChatCompletionRequestMessage, ChatCompletionRequestUserMessage, ChatCompletionRequestUserMessageContent,
};
use durably_core::{Result, Workflow};
use futures::future::BoxFuture;
use futures::stream::BoxStream;

use super::stream::StreamEvent;
use super::{AgentRun, OpenAiAgent, Usage};
use crate::core::plan::{Plan, default_run_id};
use crate::core::session::{
    ChatMessage, Conversational, Role, SessionAgent, SessionInfo, TurnStart, sessions_of,
};
use crate::core::settings::Settings;
use crate::core::stream::{Sink, run_stream};

impl SessionAgent for OpenAiAgent {
    type Message = ChatCompletionRequestMessage;
    type Usage = Usage;
    type Stream = BoxStream<'static, Result<StreamEvent>>;
}

impl Conversational for OpenAiAgent {
    type Event = StreamEvent;
    fn stream_of(start: TurnStart<Self>) -> Self::Stream {
        Box::pin(run_stream(start))
    }

    fn engine(&self) -> &Workflow {
        OpenAiAgent::engine(self)
    }

    fn settings(&self) -> &Settings {
        self.agent_settings()
    }

    fn message(message: &ChatMessage) -> ChatCompletionRequestMessage {
        match message.role {
            Role::User => ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage {
                content: ChatCompletionRequestUserMessageContent::Text(message.content.clone()),
                name: None,
            }),
            Role::Assistant => {
                ChatCompletionRequestMessage::Assistant(ChatCompletionRequestAssistantMessage {
                    content: Some(ChatCompletionRequestAssistantMessageContent::Text(
                        message.content.clone(),
                    )),
                    ..Default::default()
                })
            }
        }
    }

    fn invoke_with(
        &self,
        prefix: String,
        history: Vec<ChatCompletionRequestMessage>,
        prompt: String,
        sink: Option<Sink<StreamEvent>>,
    ) -> BoxFuture<'static, Result<AgentRun>> {
        let this = self.with_history(history);
        Box::pin(async move { this.invoke(prefix, &prompt, sink.as_ref()).await })
    }
}

/// A durable conversation with an [`OpenAiAgent`]; from [`OpenAiAgent::session`]: see
/// [`sessions::Session`](crate::sessions::Session) for its methods. Its replies are
/// [`AgentRun`]s and its streams yield [`StreamEvent`]s.
pub type Session = crate::core::session::Session<OpenAiAgent>;

impl OpenAiAgent {
    /// The conversation `id` (chosen by the caller: a conversation id, a user id): see
    /// [`Session`]. The id must be 1 to 256 bytes without control characters, whitespace or
    /// `/ \ # : ?`; a bad one fails the first call with `Error::Invalid` naming it.
    ///
    /// ```no_run
    /// # async fn demo(wf: durably_core::Workflow) -> durably_core::Result<()> {
    /// use durably_agent::openai::OpenAiAgent;
    ///
    /// let agent = OpenAiAgent::builder(&wf).name("support").system_prompt("You are terse.").build();
    /// let session = agent.session("conv-42").history_limit(20);
    /// // A retried HTTP request passes its request id: a completed turn returns its recorded
    /// // answer with no model request, an unfinished one resumes where it stopped.
    /// let reply = session.send_with_id("req-7f3a", "Where is my order?").await?;
    /// println!("{}", reply.output);
    /// let conversation = session.messages().await?; // every turn's message and answer
    /// # let _ = conversation;
    /// # Ok(()) }
    /// ```
    pub fn session(&self, id: impl Into<String>) -> Session {
        Session::new(self.clone(), id.into())
    }

    /// This agent's sessions in the engine's store, most recently active first.
    pub async fn sessions(&self) -> Result<Vec<SessionInfo>> {
        sessions_of(self).await
    }

    /// The stateless form of a conversation, like rig's `chat`: `history` (which the caller
    /// keeps: earlier user and assistant messages) is sent after the system prompt and before
    /// `prompt`. Inside a workflow run it is part of that run; outside one it is a run of its
    /// own whose id is `<agent>-<hash of the history and prompt>`.
    pub async fn chat(
        &self,
        prompt: impl Into<String>,
        history: Vec<ChatCompletionRequestMessage>,
    ) -> Result<AgentRun> {
        let prompt = prompt.into();
        let name = self.name();
        let plan = Plan::now(self.agent_settings(), || default_run_id(name, &(name, &history, &prompt)));
        self.with_history(history).run_plan(plan, prompt, None).await
    }
}
