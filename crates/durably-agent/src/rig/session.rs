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
use crate::core::session::{
    ChatMessage, Conversational, Role, SessionAgent, SessionInfo, TurnStart, sessions_of,
};
use crate::core::settings::Settings;
use crate::core::stream::{Sink, run_stream};

impl SessionAgent for DurableAgent {
    type Message = Message;
    type Usage = Usage;
    type Stream = AgentStream;
}

impl Conversational for DurableAgent {
    type Event = AgentEvent;
    fn stream_of(start: TurnStart<Self>) -> AgentStream {
        AgentStream::new(run_stream(start))
    }

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

/// A durable conversation with a [`DurableAgent`]; from [`DurableAgent::session`]: see
/// [`sessions::Session`](crate::sessions::Session) for its methods. Its replies are
/// [`AgentResponse`]s and its streams [`AgentStream`]s.
pub type Session = crate::core::session::Session<DurableAgent>;

impl DurableAgent {
    /// The conversation `id` (chosen by the caller: a conversation id, a user id): see
    /// [`Session`]. The id must be 1 to 256 bytes without control characters, whitespace or
    /// `/ \ # : ?`; a bad one fails the first call with `Error::Invalid` naming it.
    pub fn session(&self, id: impl Into<String>) -> Session {
        Session::new(self.clone(), id.into())
    }

    /// This agent's sessions in the engine's store, most recently active first.
    pub async fn sessions(&self) -> Result<Vec<SessionInfo>> {
        sessions_of(self).await
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
