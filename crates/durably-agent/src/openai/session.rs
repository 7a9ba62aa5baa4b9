//! Conversations with the OpenAI agent: [`Session`] is the core's session engine with the
//! chat-completions messages, and [`OpenAiAgent::chat`] the stateless form, a run whose
//! history the caller keeps.

use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestAssistantMessageContent,
    ChatCompletionRequestMessage, ChatCompletionRequestUserMessage, ChatCompletionRequestUserMessageContent,
};
use durably_core::{Result, Workflow};
use futures::Stream;
use futures::future::BoxFuture;

use super::stream::StreamEvent;
use super::{AgentRun, OpenAiAgent, Usage};
use crate::core::plan::{Plan, default_run_id};
use crate::core::session::{ChatMessage, Conversational, Role, SessionCore, SessionInfo, list_sessions};
use crate::core::settings::Settings;
use crate::core::stream::{Sink, run_stream};

impl Conversational for OpenAiAgent {
    type Message = ChatCompletionRequestMessage;
    type Usage = Usage;
    type Event = StreamEvent;

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

/// A durable conversation with a [`OpenAiAgent`]; from [`OpenAiAgent::session`]. Cheap to
/// clone.
///
/// Each [`send`](Self::send) is one turn, a run of its own (`<agent>:<session>#<n>`) whose
/// model and tool calls are steps; the history sent with it is rebuilt from the earlier turns'
/// messages and answers. See [the crate's sessions module](crate::sessions) for how turns are
/// stored, and the README's "Conversations" section.
#[derive(Debug, Clone)]
pub struct Session {
    core: SessionCore<OpenAiAgent>,
}

impl Session {
    /// The session id.
    pub fn id(&self) -> &str {
        &self.core.id
    }

    /// Sends at most the last `n` messages of the earlier turns (user messages and answers)
    /// with each turn (after the summary, when there is one). Default: all of them.
    pub fn history_limit(mut self, n: usize) -> Self {
        self.core.options.history_limit = Some(n);
        self
    }

    /// Once `turns` turns are not covered by a summary, the next turn first asks the model to
    /// summarize them (a model call recorded as a step of that turn, not repeated on replay),
    /// and sends the summary in their place from then on. Default: never.
    pub fn compact_after(mut self, turns: usize) -> Self {
        self.core.options.compact_after = Some(turns);
        self
    }

    /// Whether a send waits while another turn of the session executes (in this process or
    /// another): `true` waits for it; `false` (the default) fails at once with
    /// `Error::RunInProgress` naming the session's busy turn.
    pub fn wait(mut self, wait: bool) -> Self {
        self.core.options.wait = wait;
        self
    }

    /// Sends `message` as a new turn and returns the answer. Its `messages` are the history
    /// sent, the message and the answer.
    pub async fn send(&self, message: impl Into<String>) -> Result<AgentRun> {
        self.core.send(None, message.into(), None).await
    }

    /// Sends `message` as the turn `turn_id` (a request id, say): the same turn id again
    /// returns the recorded answer with no model request, or resumes the turn where it stopped
    /// if it did not finish. The same turn id with another message fails with
    /// `Error::NonDeterminism`.
    pub async fn send_with_id(
        &self,
        turn_id: impl Into<String>,
        message: impl Into<String>,
    ) -> Result<AgentRun> {
        self.core.send(Some(turn_id.into()), message.into(), None).await
    }

    /// Like [`send`](Self::send), streaming the answer (see [`OpenAiAgent::stream`]).
    pub fn stream(
        &self,
        message: impl Into<String>,
    ) -> impl Stream<Item = Result<StreamEvent>> + Send + 'static {
        let (core, message) = (self.core.clone(), message.into());
        run_stream(move |sink| async move { core.send(None, message, Some(sink)).await })
    }

    /// Like [`send_with_id`](Self::send_with_id), streaming the answer.
    pub fn stream_with_id(
        &self,
        turn_id: impl Into<String>,
        message: impl Into<String>,
    ) -> impl Stream<Item = Result<StreamEvent>> + Send + 'static {
        let (core, turn_id, message) = (self.core.clone(), turn_id.into(), message.into());
        run_stream(move |sink| async move { core.send(Some(turn_id), message, Some(sink)).await })
    }

    /// The conversation so far: each completed turn's message and answer, in order, read
    /// from the store.
    pub async fn messages(&self) -> Result<Vec<ChatMessage>> {
        self.core.messages().await
    }

    /// Deletes the session (every turn's run); returns how many turns were deleted.
    pub async fn delete(&self) -> Result<usize> {
        self.core.delete().await
    }
}

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
        Session { core: SessionCore::new(self.clone(), id.into()) }
    }

    /// This agent's sessions in the engine's store, most recently active first.
    pub async fn sessions(&self) -> Result<Vec<SessionInfo>> {
        let mut all = list_sessions(OpenAiAgent::engine(self)).await?;
        all.retain(|s| s.agent == self.name());
        Ok(all)
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
