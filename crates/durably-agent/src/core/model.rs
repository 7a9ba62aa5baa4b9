//! The model-call step: each request an invocation makes is the step `<prefix>.model#<n>`,
//! its canonical request hash recorded with it, retried per the model `TaskConfig`. A recorded
//! step answers with no request; a failed attempt is recorded as a redacted `ModelError`.
//! Each request runs in a `gen_ai.chat` span (see [`super::genai`]).

use std::future::Future;

use durably_core::{Error, TaskCall};
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
            async move {
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
                outcome.map_err(|e| attempt_error_within(secrets.redact_model_error(e), max_wait))
            }
            .instrument(span)
        })
        .step_id(step.id.clone())
        .request_hash(hash)
        .retries(config.retries)
        .backoff(config.backoff);
        Ok(ModelCall { call, recorded, step_id: step.id })
    }
}
