//! One trace per run: the trace id is a hash of the app and the run id, so every execution of
//! a run — the first, a resume after a crash, a recovery on another worker — opens its
//! `durably.run` span in the same trace, with nothing stored and nothing passed between
//! processes.
//!
//! [`RunTraces`] wraps the `tracing-opentelemetry` layer: when a `durably.run` span is created
//! it shows that layer a parent context whose span context is the run's ([`run_span_context`]),
//! a remote parent that every execution shares. The span's tracing parent (a caller's request
//! span, a worker's loop) is not its trace parent: a run outlives the request that started it.

use std::marker::PhantomData;

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use sha2::{Digest, Sha256};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The name of the engine's span of one execution of a run.
pub(crate) const RUN_SPAN: &str = "durably.run";

/// The trace id of run `run_id` of app `app`: the first 16 bytes of a SHA-256 of both. The
/// same in every process, so that a run's executions share one trace.
///
/// ```
/// let a = durably_otel::run_trace_id("shop", "order-42");
/// assert_eq!(a, durably_otel::run_trace_id("shop", "order-42"));
/// assert_ne!(a, durably_otel::run_trace_id("shop", "order-43"));
/// assert_ne!(a, durably_otel::run_trace_id("billing", "order-42"));
/// ```
pub fn run_trace_id(app: &str, run_id: &str) -> TraceId {
    let digest = run_digest(app, run_id);
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    // An all-zero id is invalid in OpenTelemetry; a hash that gives one is as good as unique.
    if id == [0u8; 16] {
        id[15] = 1;
    }
    TraceId::from_bytes(id)
}

/// The span context every execution of the run hangs under: the run's trace id, a span id
/// from the same hash, sampled, remote (no process emits that span).
pub fn run_span_context(app: &str, run_id: &str) -> SpanContext {
    let digest = run_digest(app, run_id);
    let mut span = [0u8; 8];
    span.copy_from_slice(&digest[16..24]);
    if span == [0u8; 8] {
        span[7] = 1;
    }
    SpanContext::new(
        run_trace_id(app, run_id),
        SpanId::from_bytes(span),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    )
}

fn run_digest(app: &str, run_id: &str) -> [u8; 32] {
    // Lengths first, so that ("ab", "c") and ("a", "bc") differ.
    let mut hash = Sha256::new();
    hash.update(b"durably.run\0");
    hash.update((app.len() as u64).to_le_bytes());
    hash.update(app.as_bytes());
    hash.update((run_id.len() as u64).to_le_bytes());
    hash.update(run_id.as_bytes());
    hash.finalize().into()
}

/// The app and run id of a `durably.run` span, read from its fields.
#[derive(Default)]
struct RunNames {
    app: Option<String>,
    run_id: Option<String>,
}

impl Visit for RunNames {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // The engine records both with `%`: their `Debug` here is their `Display`.
        self.set(field, format!("{value:?}"));
    }
}

impl RunNames {
    fn set(&mut self, field: &Field, value: String) {
        match field.name() {
            "durably.app" => self.app = Some(value),
            "durably.run_id" => self.run_id = Some(value),
            _ => {}
        }
    }
}

/// The `tracing-opentelemetry` layer `L`, with each `durably.run` span put in its run's trace.
/// Every other call goes to `L` unchanged (`downcast_raw` too, so that
/// `OpenTelemetrySpanExt` still finds it).
pub struct RunTraces<L, S> {
    inner: L,
    _subscriber: PhantomData<fn(S)>,
}

impl<L, S> RunTraces<L, S> {
    /// Wraps the OpenTelemetry layer `inner`, which must activate contexts
    /// (`with_context_activation(true)`, its default).
    pub fn new(inner: L) -> Self {
        RunTraces { inner, _subscriber: PhantomData }
    }
}

impl<L, S> std::fmt::Debug for RunTraces<L, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunTraces").finish_non_exhaustive()
    }
}

impl<L, S> Layer<S> for RunTraces<L, S>
where
    L: Layer<S>,
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.inner.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.inner.on_layer(subscriber);
    }

    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        self.inner.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.enabled(metadata, ctx)
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() == RUN_SPAN {
            let mut names = RunNames::default();
            attrs.record(&mut names);
            if let Some(run_id) = names.run_id {
                let app = names.app.unwrap_or_default();
                let parent = opentelemetry::Context::current()
                    .with_remote_span_context(run_span_context(&app, &run_id));
                // The layer takes a contextual span's parent from the current context: make the
                // run's the current one while it builds the span, and hide the tracing parent.
                let _current = parent.attach();
                let contextual = Attributes::new(attrs.metadata(), attrs.values());
                self.inner.on_new_span(&contextual, id, ctx);
                return;
            }
        }
        self.inner.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, span: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        self.inner.on_record(span, values, ctx);
    }

    fn on_follows_from(&self, span: &Id, follows: &Id, ctx: Context<'_, S>) {
        self.inner.on_follows_from(span, follows, ctx);
    }

    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.event_enabled(event, ctx)
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        self.inner.on_event(event, ctx);
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        self.inner.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        self.inner.on_exit(id, ctx);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        self.inner.on_close(id, ctx);
    }

    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        self.inner.on_id_change(old, new, ctx);
    }

    unsafe fn downcast_raw(&self, id: std::any::TypeId) -> Option<*const ()> {
        if id == std::any::TypeId::of::<Self>() {
            return Some(self as *const Self as *const ());
        }
        // SAFETY: forwarded to the wrapped layer, which upholds `downcast_raw`'s contract.
        unsafe { self.inner.downcast_raw(id) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_execution_of_a_run_hangs_under_one_sampled_remote_parent() {
        let a = run_span_context("shop", "order-42");
        assert_eq!(a, run_span_context("shop", "order-42"));
        assert!(a.is_valid() && a.is_remote() && a.is_sampled());
        assert_eq!(a.trace_id(), run_trace_id("shop", "order-42"));
        assert_ne!(a.span_id(), run_span_context("shop", "order-43").span_id());
    }

    #[test]
    fn app_and_run_id_do_not_run_together() {
        assert_ne!(run_trace_id("ab", "c"), run_trace_id("a", "bc"));
        assert_ne!(run_trace_id("", "x"), run_trace_id("x", ""));
    }
}
