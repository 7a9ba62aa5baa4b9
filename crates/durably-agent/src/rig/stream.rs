//! Streaming runs of the rig agent: [`AgentStream`] is the core's run stream with rig's events,
//! the text of each model turn as it arrives (live) or as the recorded response replays, then
//! the final [`AgentResponse`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use durably_core::Result;
use futures::Stream;

use super::AgentResponse;
use crate::core::stream::{RunEvent, RunStream};

/// One item of a streaming agent run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AgentEvent {
    /// A fragment of the model's text: a live chunk from the provider, or a piece of the
    /// recorded response when the model call is replayed (a completed run yields its output).
    Text(String),
    /// A tool call the model made, once its turn is complete.
    ToolCall {
        /// The tool's name.
        name: String,
        /// The arguments, as JSON text.
        arguments: String,
    },
    /// The end of the run: the same value `DurableAgent::run` returns.
    Done(AgentResponse),
}

impl RunEvent for AgentEvent {
    type Response = AgentResponse;

    fn replayed_text(text: String) -> Self {
        AgentEvent::Text(text)
    }

    fn is_text(&self) -> bool {
        matches!(self, AgentEvent::Text(_))
    }

    fn live_text(&self) -> Option<&str> {
        // Replayed text never goes through a sink: the core replays it at the stream's end.
        match self {
            AgentEvent::Text(text) => Some(text),
            _ => None,
        }
    }

    fn done(response: AgentResponse) -> Self {
        AgentEvent::Done(response)
    }
}

pub(crate) type RunFuture = Pin<Box<dyn Future<Output = Result<AgentResponse>> + Send>>;

/// The stream `DurableAgent::stream` returns. Consume it where you would have awaited
/// `DurableAgent::run`: inside the workflow body when the agent is part of a run.
///
/// Items are `Ok(AgentEvent::Text(..))`… then `Ok(AgentEvent::Done(response))`, or an `Err`
/// (the same error `run` would return), after which the stream ends.
#[must_use = "a stream does nothing until polled"]
pub struct AgentStream {
    inner: RunStream<RunFuture, AgentEvent>,
}

impl std::fmt::Debug for AgentStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentStream").finish_non_exhaustive()
    }
}

impl AgentStream {
    pub(crate) fn new(inner: RunStream<RunFuture, AgentEvent>) -> Self {
        AgentStream { inner }
    }
}

impl Stream for AgentStream {
    type Item = Result<AgentEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}
