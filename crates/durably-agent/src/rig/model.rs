//! The model handler: every completion request of an invocation is the core's model step,
//! recording the whole `Outcome`. A recorded step is answered from the store (no HTTP
//! request); an unrecorded one calls the wrapped model inside the step, streaming its events
//! to rig as they arrive when rig streams.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use durably_core::{Error, TaskCall};
use futures::StreamExt;
use futures::channel::mpsc;
use rig_core::completion::{CompletionRequest, FinishReason};
use rig_core::effect::{EffectKind, HandlerDescriptor, Outcome, family};
use rig_core::error::{ErrorKind, ErrorReport};
use rig_core::operation::Completion;
use rig_core::serve::adapters::ModelAdapter;
use rig_core::serve::{Dispatch, Reply, Serve, StreamTap, stream_truncated};
use rig_core::streaming::Relayed;

use super::failure::model_error;
use super::invocation::RigInvocation;
use crate::core::genai::{ModelReply, ModelTarget, ReplyFacts};
use crate::core::model::ModelCall;

/// The route label the durable handler is registered under (`using_model`).
pub(crate) const ROUTE: &str = "durably";

pub(crate) struct DurableModel {
    pub(crate) inner: Arc<ModelAdapter<Completion>>,
    pub(crate) inv: Arc<RigInvocation>,
    /// The provider and model the rig model's wire names, for the model limits (rule 28 of
    /// docs/design.md); the spans keep what the request and the answer say.
    pub(crate) wire: (String, Option<String>),
}

fn spend(inv: &RigInvocation, step_id: &str, outcome: &Outcome) -> Result<(), Error> {
    let Outcome::Completion(response) = outcome else { return Ok(()) };
    let usage = &response.usage;
    let (input, output) = (usage.input_tokens.unwrap_or(0), usage.output_tokens.unwrap_or(0));
    inv.add_usage(step_id, input, output, usage.total_tokens.unwrap_or(input + output))
}

/// The provider and the models are in the response's `origin`; rig names the provider only
/// there.
impl ModelReply for Outcome {
    fn facts(&self) -> ReplyFacts {
        let Outcome::Completion(response) = self else { return ReplyFacts::default() };
        let origin = &response.origin;
        ReplyFacts {
            provider: Some(origin.provider.clone()),
            request_model: Some(origin.model.clone()),
            response_model: origin.response_model.clone(),
            input_tokens: response.usage.input_tokens,
            output_tokens: response.usage.output_tokens,
            finish_reasons: response.finish_reason().map(|r| reason_name(&r)).into_iter().collect(),
        }
    }
}

/// A finish reason in the GenAI conventions' spelling, which is rig's wire spelling
/// (`stop`, `length`, `tool_calls`, `content_filter`, or the provider's own).
fn reason_name(reason: &FinishReason) -> String {
    match reason {
        FinishReason::Other(name) => name.clone(),
        other => serde_json::to_value(other)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{other:?}")),
    }
}

/// A durably error as rig sees it: a report that fails the turn without retries in rig.
pub(crate) fn report_of(error: &Error) -> ErrorReport {
    let kind = match error {
        Error::NonDeterminism { .. } => ErrorKind::Divergence,
        Error::Cancelled { .. } => ErrorKind::Cancelled,
        _ => ErrorKind::Other,
    };
    ErrorReport::new(kind, error.to_string()).with_retryable(false)
}

impl DurableModel {
    fn failed(&self, error: Error) -> Reply {
        let report = report_of(&error);
        self.inv.fail(error);
        Reply::Outcome(Err(report))
    }

    /// Counts a completion's tokens against the budget.
    fn spend(&self, step_id: &str, outcome: &Outcome) -> Result<(), Error> {
        spend(&self.inv, step_id, outcome)
    }

    /// The core's model step for this completion; `live` receives the provider's events.
    fn call(
        &self,
        kind: &EffectKind,
        request: &CompletionRequest,
        dispatch: &Dispatch,
        live: Option<mpsc::UnboundedSender<Relayed>>,
    ) -> Result<ModelCall<Outcome>, Error> {
        let inner = self.inner.clone();
        let kind = kind.clone();
        let id = dispatch.id();
        let context = dispatch.adapter_context();
        let target =
            ModelTarget { provider: None, model: request.model.clone(), wire: Some(self.wire.clone()) };
        self.inv.model_call(request, "rig_core::completion::CompletionRequest", target, move || {
            let inner = inner.clone();
            let kind = kind.clone();
            let context = context.clone();
            let live = live.clone();
            async move {
                let mut dispatch = Dispatch::new(id, live.is_some());
                if let Some(context) = context {
                    dispatch = dispatch.with_adapter_context(context);
                }
                let reply = inner.serve(kind, dispatch).await;
                let Some(live) = live else {
                    return reply.into_outcome().await.map_err(|r| model_error(&r));
                };
                // Streaming: hand every event to the consumer as it comes; the response the
                // stream ends with is the step's value (the consumer gets it once recorded).
                let mut events = reply.into_stream();
                let mut tap = StreamTap::new();
                while let Some(item) = events.next().await {
                    if let Some(outcome) = tap.observe(&item) {
                        return outcome.map_err(|r| model_error(&r));
                    }
                    if let Ok(event) = item {
                        let _ = live.unbounded_send(event);
                    }
                }
                Err(model_error(&stream_truncated()))
            }
        })
    }

    /// A live streaming call: the provider's events flow to rig as they arrive, and the
    /// recorded response ends the stream once the step is saved.
    fn live_stream(
        &self,
        call: TaskCall<Outcome>,
        step_id: String,
        events: mpsc::UnboundedReceiver<Relayed>,
    ) -> Reply {
        let inv = self.inv.clone();
        let mut call: Option<Pin<Box<TaskCall<Outcome>>>> = Some(Box::pin(call));
        let mut events = events;
        let mut result: Option<Result<Outcome, Error>> = None;
        let mut ended = false;
        Reply::Stream(Box::pin(futures::stream::poll_fn(move |cx| {
            loop {
                if ended {
                    return Poll::Ready(None);
                }
                if let Poll::Ready(Some(event)) = events.poll_next_unpin(cx) {
                    return Poll::Ready(Some(Ok(event)));
                }
                if let Some(step) = call.as_mut() {
                    match step.as_mut().poll(cx) {
                        Poll::Ready(done) => {
                            call = None;
                            result = Some(
                                done.and_then(|outcome| spend(&inv, &step_id, &outcome).map(|()| outcome)),
                            );
                            // The attempt closure (and its sender) is gone: drain what is left.
                            continue;
                        }
                        Poll::Pending => return Poll::Pending,
                    }
                }
                ended = true;
                return Poll::Ready(Some(match result.take() {
                    Some(Ok(Outcome::Completion(response))) => Ok(Relayed::Done(Box::new(response))),
                    Some(Ok(other)) => Err(ErrorReport::new(
                        ErrorKind::Internal,
                        format!("a completion step recorded a {} outcome", other.family()),
                    )),
                    Some(Err(error)) => {
                        let report = report_of(&error);
                        inv.fail(error);
                        Err(report)
                    }
                    None => Err(stream_truncated()),
                }));
            }
        })))
    }
}

impl Serve for DurableModel {
    type Family = family::Completion;

    fn descriptor(&self) -> HandlerDescriptor {
        self.inner.descriptor()
    }

    async fn serve(&self, kind: EffectKind, dispatch: Dispatch) -> Reply {
        let EffectKind::Completion { request, .. } = &kind else {
            return self.inner.serve(kind, dispatch).await;
        };
        let (tx, rx) = mpsc::unbounded();
        let live = dispatch.is_stream().then_some(tx);
        let model = match self.call(&kind, request, &dispatch, live) {
            Ok(model) => model,
            Err(e) => return self.failed(e),
        };
        if dispatch.is_stream() && !model.recorded {
            return self.live_stream(model.call, model.step_id, rx);
        }
        // Unary, or a recorded response: the driver turns an outcome into stream events when
        // the consumer streams.
        let step_id = model.step_id;
        match model.call.await {
            Ok(outcome) => match self.spend(&step_id, &outcome) {
                Ok(()) => Reply::Outcome(Ok(outcome)),
                Err(e) => self.failed(e),
            },
            Err(e) => self.failed(e),
        }
    }
}
