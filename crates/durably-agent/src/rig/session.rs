//! Conversations with the rig agent: [`Session`] is the core's session engine with rig's
//! messages, and [`DurableAgent::chat`] the stateless form, a run whose history the caller
//! keeps.

use std::future::Future;

use durably_core::{Result, Workflow};
use futures::future::BoxFuture;
use rig_core::completion::{Message, Usage};

use super::stream::{AgentEvent, AgentStream};
use super::{AgentResponse, DurableAgent};
use crate::core::plan::{Plan, default_run_id};
use crate::core::session::{ChatMessage, Conversational, Role, SessionCore, SessionInfo, list_sessions};
use crate::core::settings::Settings;
use crate::core::stream::{Sink, run_stream};

impl Conversational for DurableAgent {
    type Message = Message;
    type Usage = Usage;
    type Event = AgentEvent;

    fn engine(&self) -> &Workflow {
        &self.wf
    }

    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn message(message: &ChatMessage) -> Message {
        match message.role {
            Role::User => Message::user(message.content.clone()),
            Role::Assistant => Message::assistant(message.content.clone()),
        }
    }

    fn invoke_with(
        &self,
        prefix: String,
        history: Vec<Message>,
        prompt: String,
        sink: Option<Sink<AgentEvent>>,
    ) -> BoxFuture<'static, Result<AgentResponse>> {
        let this = DurableAgent { history, ..self.clone() };
        Box::pin(async move { this.invoke(prefix, &prompt, sink).await })
    }
}

/// A durable conversation with a [`DurableAgent`]; from [`DurableAgent::session`]. Cheap to
/// clone.
///
/// Each [`send`](Self::send) is one turn, a run of its own (`<agent>:<session>#<n>`) whose
/// model and tool calls are steps; the history sent with it is rebuilt from the earlier turns'
/// messages and answers. See [the crate's sessions module](crate::sessions) for how turns are
/// stored, and the README's "Conversations" section.
#[derive(Debug, Clone)]
pub struct Session {
    core: SessionCore<DurableAgent>,
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
    pub async fn send(&self, message: impl Into<String>) -> Result<AgentResponse> {
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
    ) -> Result<AgentResponse> {
        self.core.send(Some(turn_id.into()), message.into(), None).await
    }

    /// Like [`send`](Self::send), streaming the answer (see [`DurableAgent::stream`]).
    pub fn stream(&self, message: impl Into<String>) -> AgentStream {
        let (core, message) = (self.core.clone(), message.into());
        AgentStream::new(run_stream(move |sink| {
            Box::pin(async move { core.send(None, message, Some(sink)).await }) as super::RunFuture
        }))
    }

    /// Like [`send_with_id`](Self::send_with_id), streaming the answer.
    pub fn stream_with_id(&self, turn_id: impl Into<String>, message: impl Into<String>) -> AgentStream {
        let (core, turn_id, message) = (self.core.clone(), turn_id.into(), message.into());
        AgentStream::new(run_stream(move |sink| {
            Box::pin(async move { core.send(Some(turn_id), message, Some(sink)).await }) as super::RunFuture
        }))
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

impl DurableAgent {
    /// The conversation `id` (chosen by the caller: a conversation id, a user id): see
    /// [`Session`]. The id must be 1 to 256 bytes without control characters, whitespace or
    /// `/ \ # : ?`; a bad one fails the first call with `Error::Invalid` naming it.
    pub fn session(&self, id: impl Into<String>) -> Session {
        Session { core: SessionCore::new(self.clone(), id.into()) }
    }

    /// This agent's sessions in the engine's store, most recently active first.
    pub async fn sessions(&self) -> Result<Vec<SessionInfo>> {
        let mut all = list_sessions(&self.wf).await?;
        all.retain(|s| s.agent == self.settings.name);
        Ok(all)
    }

    /// The stateless form of a conversation, like rig's `chat`: `history` (which the caller
    /// keeps) is sent before `prompt`. Inside a workflow run it is part of that run; outside
    /// one it is a run of its own whose id is `<agent>-<hash of the history and prompt>`.
    pub fn chat(
        &self,
        prompt: impl Into<String>,
        history: Vec<Message>,
    ) -> impl Future<Output = Result<AgentResponse>> + Send + 'static {
        let prompt = prompt.into();
        let name = &self.settings.name;
        let plan = Plan::now(&self.settings, || default_run_id(name, &(name, &history, &prompt)));
        DurableAgent { history, ..self.clone() }.run_plan(plan, prompt, None)
    }
}
