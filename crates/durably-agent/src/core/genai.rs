//! The span of one model request, with the attributes of the OpenTelemetry GenAI semantic
//! conventions (`gen_ai.*`): plain `tracing` fields, so that any subscriber sees them and the
//! `durably-otel` layer exports them unchanged. The span is opened inside the model step's
//! attempt: a recorded (replayed) model call sends no request and opens none, so its tokens
//! are never counted twice.

use tracing::field::Empty;

/// What a model call's request names: the provider (`gen_ai.provider.name`, when the adapter
/// knows it before the answer) and the model asked for (`gen_ai.request.model`).
#[derive(Debug, Clone, Default)]
pub(crate) struct ModelTarget {
    pub(crate) provider: Option<String>,
    pub(crate) model: Option<String>,
    /// The provider and model the adapter's client addresses when the request does not say
    /// (rig's model), for the model limits only.
    pub(crate) wire: Option<(String, Option<String>)>,
}

/// What a model's answer reports, as the GenAI conventions name it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReplyFacts {
    /// The provider, when only the answer says it (rig's `origin`).
    pub(crate) provider: Option<String>,
    /// The model the request named, when only the answer says it.
    pub(crate) request_model: Option<String>,
    pub(crate) response_model: Option<String>,
    pub(crate) input_tokens: Option<u64>,
    pub(crate) output_tokens: Option<u64>,
    pub(crate) finish_reasons: Vec<String>,
}

/// A model answer that can say what it reports.
pub(crate) trait ModelReply {
    fn facts(&self) -> ReplyFacts;
}

/// The `gen_ai.chat` span of one request of step `step_id`. Field names are the conventions'
/// (`gen_ai.system` is the older name of `gen_ai.provider.name`; both are set for backends
/// that know only one). `otel.name` and `otel.kind` are read by `tracing-opentelemetry`.
pub(crate) fn model_span(target: &ModelTarget, step_id: &str) -> tracing::Span {
    let span = tracing::info_span!(
        target: "durably",
        "gen_ai.chat",
        otel.name = Empty,
        otel.kind = "client",
        gen_ai.operation.name = "chat",
        gen_ai.system = Empty,
        gen_ai.provider.name = Empty,
        gen_ai.request.model = Empty,
        gen_ai.response.model = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        gen_ai.response.finish_reasons = Empty,
        error.type = Empty,
        durably.step_id = %step_id,
    );
    if let Some(provider) = &target.provider {
        record_provider(&span, provider);
    }
    if let Some(model) = &target.model {
        record_model(&span, model);
    }
    span
}

fn record_provider(span: &tracing::Span, provider: &str) {
    span.record("gen_ai.provider.name", provider);
    span.record("gen_ai.system", provider);
}

fn record_model(span: &tracing::Span, model: &str) {
    span.record("gen_ai.request.model", model);
    span.record("otel.name", format!("chat {model}"));
}

/// Records on `span` what the request's outcome reports: the answer's facts, or the error's
/// kind (`error.type`).
pub(crate) fn record_outcome<T: ModelReply>(
    span: &tracing::Span,
    target: &ModelTarget,
    outcome: &Result<T, crate::ModelError>,
) {
    let reply = match outcome {
        Ok(reply) => reply,
        Err(error) => {
            span.record("error.type", error.kind.as_str());
            return;
        }
    };
    let facts = reply.facts();
    if let (None, Some(provider)) = (&target.provider, &facts.provider) {
        record_provider(span, provider);
    }
    if let (None, Some(model)) = (&target.model, &facts.request_model) {
        record_model(span, model);
    }
    if let Some(model) = &facts.response_model {
        span.record("gen_ai.response.model", model.as_str());
    }
    if let Some(tokens) = facts.input_tokens {
        span.record("gen_ai.usage.input_tokens", tokens);
    }
    if let Some(tokens) = facts.output_tokens {
        span.record("gen_ai.usage.output_tokens", tokens);
    }
    if !facts.finish_reasons.is_empty() {
        // The conventions' value is a list of strings; a tracing field is one value, so the
        // list is written as its items separated by commas (`stop`, `tool_calls,stop`).
        span.record("gen_ai.response.finish_reasons", facts.finish_reasons.join(","));
    }
}
