//! Streaming plumbing: a streaming run is the run's future polled by whoever polls the stream
//! (so inside a workflow it stays part of the current run), with the events its model calls
//! send ([`Sink`]) yielded first, then the end. Live chunks come from the model calls; a run
//! that completed earlier does not run its body, and its recorded text is replayed as one chunk.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use durably_core::Result;
use futures::Stream;
use futures::channel::mpsc;

/// The events of one agent's stream, as the core makes them.
pub(crate) trait RunEvent: Sized {
    /// The response of a run.
    type Response: Clone + HasOutput;
    /// Recorded text, replayed.
    fn replayed_text(text: String) -> Self;
    /// Whether this event is text.
    fn is_text(&self) -> bool;
    /// The text of a chunk the model sends now (not replayed): what the run's event log gets.
    fn live_text(&self) -> Option<&str>;
    /// The last event of a run that succeeded.
    fn done(response: Self::Response) -> Self;
}

/// The final text of a response.
pub(crate) trait HasOutput {
    /// The model's final answer.
    fn output(&self) -> &str;
}

impl<M, U> HasOutput for super::response::AgentResponse<M, U> {
    fn output(&self) -> &str {
        &self.output
    }
}

/// Where an invocation sends its stream's events. Cheap to clone.
pub(crate) struct Sink<E> {
    events: mpsc::UnboundedSender<E>,
    body_ran: Arc<AtomicBool>,
}

impl<E> Clone for Sink<E> {
    fn clone(&self) -> Self {
        Sink { events: self.events.clone(), body_ran: self.body_ran.clone() }
    }
}

impl<E: RunEvent> Sink<E> {
    /// Sends `event`; a consumer that went away only stops hearing about the run. Live text
    /// also goes to the run's event log, buffered there (no store write per chunk).
    pub(crate) fn send(&self, event: E) {
        if let (Some(text), Some(ctx)) = (event.live_text(), durably_core::RunContext::current()) {
            let step_id = durably_core::current_step().map(|s| s.step_id);
            ctx.event("text", serde_json::json!({ "text": text, "step_id": step_id }));
        }
        let _ = self.events.unbounded_send(event);
    }

    /// Says that the run's body runs (the run was not completed before).
    pub(crate) fn body_runs(&self) {
        self.body_ran.store(true, Ordering::SeqCst);
    }
}

/// The stream of a run: `Ok(text…)`, then `Ok(done)` or the run's error, then the end.
#[must_use = "a stream does nothing until polled"]
pub(crate) struct RunStream<F, E: RunEvent> {
    run: Option<Pin<Box<F>>>,
    events: mpsc::UnboundedReceiver<E>,
    end: Option<Result<E::Response>>,
    body_ran: Arc<AtomicBool>,
    text_sent: bool,
    finished: bool,
}

// The run future is boxed and nothing is pinned in place: moving the stream is sound.
impl<F, E: RunEvent> Unpin for RunStream<F, E> {}

/// A sink for the run that `start(sink)` makes, and the stream that polls it.
pub(crate) fn run_stream<F, E: RunEvent>(start: impl FnOnce(Sink<E>) -> F) -> RunStream<F, E>
where
    F: Future<Output = Result<E::Response>>,
{
    let (tx, rx) = mpsc::unbounded();
    let body_ran = Arc::new(AtomicBool::new(false));
    let run = start(Sink { events: tx, body_ran: body_ran.clone() });
    RunStream { run: Some(Box::pin(run)), events: rx, end: None, body_ran, text_sent: false, finished: false }
}

impl<F, E> Stream for RunStream<F, E>
where
    F: Future<Output = Result<E::Response>>,
    E: RunEvent,
{
    type Item = Result<E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.finished {
                return Poll::Ready(None);
            }
            if let Poll::Ready(Some(event)) = Pin::new(&mut this.events).poll_next(cx) {
                this.text_sent |= event.is_text();
                return Poll::Ready(Some(Ok(event)));
            }
            if let Some(run) = this.run.as_mut() {
                match run.as_mut().poll(cx) {
                    Poll::Ready(end) => {
                        this.run = None;
                        this.end = Some(end);
                        // Events sent before the end are in the channel: drain them first.
                        continue;
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
            this.finished = true;
            return Poll::Ready(match this.end.take() {
                Some(Ok(response)) => {
                    // A completed run returned its stored output without running the body:
                    // replay its text as one chunk before the end.
                    let ran = this.body_ran.load(Ordering::SeqCst);
                    if !ran && !this.text_sent && !response.output().is_empty() {
                        this.finished = false;
                        this.text_sent = true;
                        let text = response.output().to_owned();
                        this.end = Some(Ok(response));
                        return Poll::Ready(Some(Ok(E::replayed_text(text))));
                    }
                    Some(Ok(E::done(response)))
                }
                Some(Err(error)) => Some(Err(error)),
                None => None,
            });
        }
    }
}
