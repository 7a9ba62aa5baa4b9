//! Streaming runs: [`AgentStream`] yields the text of each model turn as it arrives (live) or
//! as the recorded response replays, then the final [`AgentResponse`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use durably_core::Result;
use futures::Stream;
use futures::channel::mpsc;

use super::AgentResponse;

/// One item of a streaming agent run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AgentEvent {
    /// A fragment of the model's text: a live chunk from the provider, or a piece of the
    /// recorded response when the model call is replayed.
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

type RunFuture = Pin<Box<dyn Future<Output = Result<AgentResponse>> + Send>>;

/// The stream `DurableAgent::stream` returns. Consume it where you would have awaited
/// `DurableAgent::run`: inside the workflow body when the agent is part of a run.
///
/// Items are `Ok(AgentEvent::Text(..))`… then `Ok(AgentEvent::Done(response))`, or an `Err`
/// (the same error `run` would return), after which the stream ends.
#[must_use = "a stream does nothing until polled"]
pub struct AgentStream {
    run: Option<RunFuture>,
    events: mpsc::UnboundedReceiver<AgentEvent>,
    end: Option<Result<AgentResponse>>,
    /// Whether the invocation body ran (false when a completed run returned its stored output).
    body_ran: std::sync::Arc<std::sync::atomic::AtomicBool>,
    text_sent: bool,
    finished: bool,
}

impl std::fmt::Debug for AgentStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentStream").field("finished", &self.finished).finish_non_exhaustive()
    }
}

impl AgentStream {
    pub(crate) fn new(
        run: RunFuture,
        events: mpsc::UnboundedReceiver<AgentEvent>,
        body_ran: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        AgentStream { run: Some(run), events, end: None, body_ran, text_sent: false, finished: false }
    }
}

impl Stream for AgentStream {
    type Item = Result<AgentEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.finished {
                return Poll::Ready(None);
            }
            if let Poll::Ready(Some(event)) = Pin::new(&mut this.events).poll_next(cx) {
                if matches!(event, AgentEvent::Text(_)) {
                    this.text_sent = true;
                }
                return Poll::Ready(Some(Ok(event)));
            }
            if let Some(run) = this.run.as_mut() {
                match run.as_mut().poll(cx) {
                    Poll::Ready(end) => {
                        this.run = None;
                        this.end = Some(end);
                        continue;
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
            this.finished = true;
            return Poll::Ready(match this.end.take() {
                Some(Ok(response)) => {
                    // A completed run returns its stored output without running the body:
                    // replay its text as one chunk before the end.
                    let ran = this.body_ran.load(std::sync::atomic::Ordering::SeqCst);
                    if !ran && !this.text_sent && !response.output.is_empty() {
                        this.finished = false;
                        this.text_sent = true;
                        this.end = Some(Ok(response.clone()));
                        return Poll::Ready(Some(Ok(AgentEvent::Text(response.output))));
                    }
                    Some(Ok(AgentEvent::Done(response)))
                }
                Some(Err(error)) => Some(Err(error)),
                None => None,
            });
        }
    }
}
