//! Metrics read from the engine's and the agents' spans (the table is in `metrics.md`, shown
//! in the crate's docs).

use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::run_trace::RUN_SPAN;

/// The engine's span of one step.
const STEP_SPAN: &str = "durably.step";
/// The agents' span of one model request.
const MODEL_SPAN: &str = "gen_ai.chat";
/// The field of a queue-depth event.
const QUEUE_DEPTH: &str = "durably.queue.depth";

/// Step durations from a millisecond to five minutes, in seconds.
const STEP_BUCKETS: &[f64] =
    &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

/// The instruments, and the layer that feeds them.
#[derive(Debug, Clone)]
pub(crate) struct RunMetrics {
    runs: Counter<u64>,
    step_duration: Histogram<f64>,
    retries: Counter<u64>,
    replayed: Counter<u64>,
    tokens: Counter<u64>,
    queue_depth: Gauge<u64>,
}

impl RunMetrics {
    pub(crate) fn new(meter: &Meter) -> Self {
        RunMetrics {
            runs: meter
                .u64_counter("durably.runs")
                .with_description("Runs that finished, by workflow and status")
                .with_unit("{run}")
                .build(),
            step_duration: meter
                .f64_histogram("durably.step.duration")
                .with_description(
                    "Time of each executed step, its retries included (replayed steps excluded)",
                )
                .with_unit("s")
                .with_boundaries(STEP_BUCKETS.to_vec())
                .build(),
            retries: meter
                .u64_counter("durably.step.retries")
                .with_description("Attempts of executed steps after their first")
                .with_unit("{retry}")
                .build(),
            replayed: meter
                .u64_counter("durably.steps.replayed")
                .with_description("Steps answered from the run's history instead of executed")
                .with_unit("{step}")
                .build(),
            tokens: meter
                .u64_counter("durably.tokens")
                .with_description("Tokens of model requests sent (replayed model calls excluded)")
                .with_unit("{token}")
                .build(),
            queue_depth: meter
                .u64_gauge("durably.queue.depth")
                .with_description("Runs waiting in a queue")
                .with_unit("{run}")
                .build(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Run,
    Step,
    Model,
}

/// What a span's fields said so far, kept in the span's extensions until it closes.
#[derive(Debug)]
struct Facts {
    kind: Kind,
    opened: Instant,
    workflow: Option<String>,
    status: Option<String>,
    task: Option<String>,
    replayed: Option<bool>,
    attempt: u64,
    provider: Option<String>,
    model: Option<String>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

impl Facts {
    fn new(kind: Kind) -> Self {
        Facts {
            kind,
            opened: Instant::now(),
            workflow: None,
            status: None,
            task: None,
            replayed: None,
            attempt: 1,
            provider: None,
            model: None,
            input_tokens: None,
            output_tokens: None,
        }
    }

    fn text(&mut self, field: &Field, value: String) {
        match field.name() {
            "durably.workflow" => self.workflow = Some(value),
            "durably.status" => self.status = Some(value),
            "durably.task" => self.task = Some(value),
            "gen_ai.provider.name" => self.provider = Some(value),
            "gen_ai.request.model" => self.model = Some(value),
            _ => {}
        }
    }
}

impl Visit for Facts {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // Fields recorded with `%` arrive here; their `Debug` is their `Display`.
        self.text(field, format!("{value:?}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "durably.replayed" {
            self.replayed = Some(value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "durably.attempt" => self.attempt = value,
            "gen_ai.usage.input_tokens" => self.input_tokens = Some(value),
            "gen_ai.usage.output_tokens" => self.output_tokens = Some(value),
            _ => {}
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if let Ok(value) = u64::try_from(value) {
            self.record_u64(field, value);
        }
    }
}

/// A queue-depth event's queue and depth.
#[derive(Default)]
struct QueueDepth {
    queue: Option<String>,
    depth: Option<u64>,
}

impl Visit for QueueDepth {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "durably.queue" {
            self.queue = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "durably.queue" {
            self.queue = Some(format!("{value:?}"));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == QUEUE_DEPTH {
            self.depth = Some(value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if let Ok(value) = u64::try_from(value) {
            self.record_u64(field, value);
        }
    }
}

fn attr(key: &'static str, value: &Option<String>) -> KeyValue {
    KeyValue::new(key, value.clone().unwrap_or_default())
}

impl RunMetrics {
    fn closed(&self, facts: Facts) {
        match facts.kind {
            Kind::Run => {
                // A run span without a status did not finish the run (a lease lost, a run
                // completed earlier answered from the store, the caller dropped it).
                if facts.status.is_some() {
                    self.runs.add(
                        1,
                        &[attr("durably.workflow", &facts.workflow), attr("durably.status", &facts.status)],
                    );
                }
            }
            Kind::Step => {
                let task = [attr("durably.task", &facts.task)];
                match facts.replayed {
                    Some(true) => self.replayed.add(1, &task),
                    Some(false) => {
                        self.step_duration.record(facts.opened.elapsed().as_secs_f64(), &task);
                        if facts.attempt > 1 {
                            self.retries.add(facts.attempt - 1, &task);
                        }
                    }
                    // Stopped before its history was read (cancelled): neither.
                    None => {}
                }
            }
            Kind::Model => {
                let model = attr("gen_ai.request.model", &facts.model);
                let provider = attr("gen_ai.provider.name", &facts.provider);
                for (kind, tokens) in [("input", facts.input_tokens), ("output", facts.output_tokens)] {
                    if let Some(tokens) = tokens {
                        self.tokens.add(
                            tokens,
                            &[KeyValue::new("gen_ai.token.type", kind), model.clone(), provider.clone()],
                        );
                    }
                }
            }
        }
    }
}

impl<S> Layer<S> for RunMetrics
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let kind = match attrs.metadata().name() {
            RUN_SPAN => Kind::Run,
            STEP_SPAN => Kind::Step,
            MODEL_SPAN => Kind::Model,
            _ => return,
        };
        let Some(span) = ctx.span(id) else { return };
        let mut facts = Facts::new(kind);
        attrs.record(&mut facts);
        span.extensions_mut().insert(facts);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if let Some(facts) = span.extensions_mut().get_mut::<Facts>() {
            values.record(facts);
        }
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().fields().field(QUEUE_DEPTH).is_none() {
            return;
        }
        let mut depth = QueueDepth::default();
        event.record(&mut depth);
        if let Some(n) = depth.depth {
            self.queue_depth.record(n, &[attr("durably.queue", &depth.queue)]);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let facts = span.extensions_mut().remove::<Facts>();
        if let Some(facts) = facts {
            self.closed(facts);
        }
    }
}
