//! The model-call step: each request an invocation makes is the step `<prefix>.model#<n>`,
//! its canonical request hash recorded with it, retried per the model `TaskConfig`. A recorded
//! step answers with no request; a failed attempt is recorded as a redacted `ModelError`.
//! Each request runs in a `gen_ai.chat` span (see [`super::genai`]). Under a model limit
//! (rule 28 of docs/design.md) each attempt first waits for a grant from the store, then
//! settles it with the usage the answer reports; a 429 blocks the limit for its `retry-after`.

use std::future::Future;

use std::time::Duration;

use durably_core::journal::RunContext;
use durably_core::{Error, RateCost, RateGrant, TaskCall};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use super::genai::{self, ModelReply, ModelTarget};
use super::invocation::Invocation;
use crate::failure::attempt_error_within;
use crate::{ModelError, request_hash};

/// A model call's step, not yet awaited.
pub(crate) struct ModelCall<T> {
    pub(crate) call: TaskCall<T>,
    /// Whether the step is recorded: awaiting it sends no request.
    pub(crate) recorded: bool,
    pub(crate) step_id: String,
}

impl Invocation {
    /// The next model call: `attempt()` is one request (of type `type_name`) to `target`,
    /// made only when the step is not recorded.
    pub(crate) fn model_call<T, R, F, Fut>(
        &self,
        request: &R,
        type_name: &'static str,
        target: ModelTarget,
        attempt: F,
    ) -> Result<ModelCall<T>, Error>
    where
        T: Serialize + DeserializeOwned + ModelReply + Send + 'static,
        R: Serialize + ?Sized,
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, ModelError>> + Send + 'static,
    {
        let ctx = self.context()?;
        let step = self.next_model_step();
        // The hash is of the plain request: streaming or not, it is the same question.
        let hash = request_hash(request).map_err(|source| Error::Serialize {
            run_id: self.run_id.clone(),
            step_id: step.id.clone(),
            what: "model request",
            type_name,
            source,
        })?;
        let recorded = self.completed(&ctx, &step.id);
        if !recorded {
            self.check_model_budget(&step.id)?;
        }
        // Only a request that will really be sent waits for the limit (rule 28): a recorded
        // step returns its record without calling the closure.
        let limit = if recorded { None } else { model_limit(&ctx, &target, request) };
        let secrets = self.settings.secrets.clone();
        let config = self.settings.model_config;
        let (timeout, max_wait) = (self.settings.limits.model_timeout, self.settings.limits.max_retry_after);
        let span_step = step.id.clone();
        let call = durably_core::step(step.task, move || {
            let attempt = attempt();
            let secrets = secrets.clone();
            let target = target.clone();
            let span = genai::model_span(&target, &span_step);
            let recorder = span.clone();
            let limit = limit.clone();
            let ctx = ctx.clone();
            async move {
                // The wait for the limit is outside the request's span: it is no part of the
                // request's duration.
                let grant = match &limit {
                    Some((key, estimate)) => ctx
                        .acquire_rate(key, RateCost::new(1, *estimate))
                        .await
                        .map_err(|e| -> durably_core::BoxError { Box::new(Error::permanent(e)) })?,
                    None => None,
                };
                let request = async {
                    let outcome = match timeout {
                        // A hung request is an attempt that failed: it is retried like a timeout.
                        Some(limit) => tokio::time::timeout(limit, attempt).await.unwrap_or_else(|_| {
                            Err(ModelError::new(
                                "timeout",
                                format!("no answer within the per-attempt timeout of {limit:?}"),
                                true,
                            ))
                        }),
                        None => attempt.await,
                    };
                    genai::record_outcome(&recorder, &target, &outcome);
                    outcome
                };
                let outcome = request.instrument(span).await;
                if let (Some(grant), Some((_, estimate))) = (grant, &limit) {
                    let (tokens, block) = cost_of(&outcome, *estimate, max_wait);
                    settle(&grant, tokens, block).await;
                }
                outcome.map_err(|e| attempt_error_within(secrets.redact_model_error(e), max_wait))
            }
        })
        .step_id(step.id.clone())
        .request_hash(hash)
        .retries(config.retries)
        .backoff(config.backoff);
        Ok(ModelCall { call, recorded, step_id: step.id })
    }
}

/// The limit covering a request to `target` on the engine executing `ctx`, with the request's
/// token estimate: its JSON text at four bytes a token (the answer's tokens are not known
/// before it comes), at most the limit's tokens per period so that it can be granted.
fn model_limit<R: Serialize + ?Sized>(
    ctx: &RunContext,
    target: &ModelTarget,
    request: &R,
) -> Option<(String, u64)> {
    let keys = ctx.rate_limit_keys();
    if keys.is_empty() {
        return None;
    }
    let wire = target.wire.as_ref();
    let provider = target.provider.as_deref().or_else(|| wire.map(|(p, _)| p.as_str()));
    let model = target.model.as_deref().or_else(|| wire.and_then(|(_, m)| m.as_deref()));
    let key = crate::model_limit::covering_key(&keys, provider, model)?;
    let limit = ctx.rate_limit(&key)?;
    let bytes = serde_json::to_vec(request).map_or(0, |json| json.len() as u64);
    let estimate = bytes.div_ceil(4).max(1);
    Some((key, limit.tokens.map_or(estimate, |max| estimate.min(max))))
}

/// What a request cost: the tokens the answer reports (the estimate when it reports none), none
/// for a failed request; and, for a 429 that will clear by waiting, how long to block the limit
/// for everyone: its `retry-after` (one second without one), at most `max_wait`.
fn cost_of<T: ModelReply>(
    outcome: &Result<T, ModelError>,
    estimate: u64,
    max_wait: Duration,
) -> (u64, Option<Duration>) {
    match outcome {
        Ok(reply) => {
            let facts = reply.facts();
            let tokens = match (facts.input_tokens, facts.output_tokens) {
                (None, None) => estimate,
                (input, output) => input.unwrap_or(0).saturating_add(output.unwrap_or(0)),
            };
            (tokens, None)
        }
        Err(error) if error.kind == "http_429" && error.retryable => {
            let wait = error.retry_after_ms.map_or(Duration::from_secs(1), Duration::from_millis);
            (0, Some(wait.min(max_wait)))
        }
        Err(_) => (0, None),
    }
}

/// Blocks the limit of `grant` when a 429 asked for it, then settles the grant with `tokens`.
/// A store failure here is logged: the answer is already in hand.
async fn settle(grant: &RateGrant, tokens: u64, block: Option<Duration>) {
    if let Some(wait) = block
        && let Err(e) = grant.block(wait).await
    {
        tracing::warn!(target: "durably", rate_limit = %grant.key(), error = %e, "could not block the model limit after a 429");
    }
    if let Err(e) = grant.settle(RateCost::new(1, tokens)).await {
        tracing::warn!(target: "durably", rate_limit = %grant.key(), error = %e, "could not settle a model limit grant");
    }
}
