//! Observability: a span per run and per step with stable field names, and events for run
//! start and finish and for steps executed, replayed, retried and failed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use common::{Counter, boom};
use durably::{Error, Workflow};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// Collects "message [step_id=… replayed=…]" lines for every durably event.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}").trim_matches('"').to_owned()));
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        attrs.record(&mut f);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(f);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(f) = ext.get_mut::<Fields>() {
                values.record(f);
            }
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target() != "durably" {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        let msg = f.0.iter().find(|(k, _)| k == "message").map(|(_, v)| v.clone()).unwrap_or_default();
        let mut line = msg;
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                if let Some(fields) = span.extensions().get::<Fields>() {
                    for (k, v) in &fields.0 {
                        if k == "durably.step_id" || k == "durably.replayed" || k == "durably.run_id" {
                            line.push_str(&format!(" {k}={v}"));
                        }
                    }
                }
            }
        }
        self.0.lock().unwrap().push(line);
    }
}

#[durably::task(retries = 1, backoff = constant(0.0))]
async fn flaky(c: Counter) -> Result<u32, common::Boom> {
    if c.hit() == 1 { Err(boom("first attempt fails")) } else { Ok(1) }
}

#[durably::task(retries = 0)]
async fn broken() -> Result<u32, common::Boom> {
    Err(boom("always"))
}

#[test]
fn runs_and_steps_emit_spans_and_events() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let wf = Workflow::builder("t").build();
        let c = Counter::new();
        wf.run("traced", |_| async {
            flaky(c.clone()).await?;
            common::crash::<u32>("stop")
        })
        .await
        .unwrap_err();
        wf.run("traced", |_| async {
            flaky(c.clone()).await?;
            broken().await
        })
        .await
        .unwrap_err();
        wf.run("traced-ok", |_| async { Ok::<_, Error>(1) }).await.unwrap();
    });
    let lines = capture.0.lock().unwrap().clone();
    // Each expected line: every word of it appears in one captured line.
    let has = |needle: &str| lines.iter().any(|l| needle.split(' ').all(|word| l.contains(word)));
    assert!(has("run started durably.run_id=traced"), "{lines:#?}");
    assert!(has("step attempt failed; retrying durably.step_id=flaky"), "{lines:#?}");
    assert!(has("step executed durably.step_id=flaky durably.replayed=false"), "{lines:#?}");
    assert!(has("step replayed durably.step_id=flaky durably.replayed=true"), "{lines:#?}");
    assert!(has("step failed durably.step_id=broken"), "{lines:#?}");
    assert!(has("run failed durably.run_id=traced"), "{lines:#?}");
    assert!(has("run completed durably.run_id=traced-ok"), "{lines:#?}");
}
