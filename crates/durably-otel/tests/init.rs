//! `durably_otel::init` reads the standard environment variables: with only
//! `OTEL_EXPORTER_OTLP_ENDPOINT` and `OTEL_SERVICE_NAME` set, a run's spans and durably's
//! `debug` events (the queue-depth hook) reach the receiver, under that service name.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{attrs, point, spans, start_receiver};
use durably_core::{Error, MemoryStore, Workflow};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_exports_to_the_endpoint_named_in_the_environment() {
    let (url, got) = start_receiver();
    // SAFETY: the only test of this binary, and no other thread of it reads the environment
    // yet (the receiver's thread does not).
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &url);
        std::env::set_var("OTEL_SERVICE_NAME", "from-env");
    }
    let telemetry = durably_otel::init(durably_otel::OtelConfig::default()).unwrap();

    let wf = Workflow::builder("init-app").store(MemoryStore::new()).build();
    let n: u32 = wf
        .run("init-1", |ctx| async move { ctx.step("count", || async { Ok::<_, Error>(7) }).await })
        .await
        .unwrap();
    assert_eq!(n, 7);
    let (queue, depth) = ("mail", 12u64);
    tracing::event!(target: "durably", tracing::Level::DEBUG, durably.queue = %queue, durably.queue.depth = depth);

    tokio::task::spawn_blocking(move || telemetry.shutdown().unwrap()).await.unwrap();

    let spans = spans(&got);
    let run = spans.iter().find(|s| s.name == "durably.run").expect("the run span");
    assert_eq!(run.trace_id, durably_otel::run_trace_id("init-app", "init-1").to_bytes().to_vec());
    assert_eq!(attrs(&run.attributes)["durably.status"], "completed");
    assert!(spans.iter().any(|s| s.name == "durably.step" && s.parent_span_id == run.span_id));
    let services: Vec<String> = got
        .traces
        .lock()
        .unwrap()
        .iter()
        .flat_map(|r| &r.resource_spans)
        .filter_map(|r| r.resource.as_ref())
        .map(|r| attrs(&r.attributes)["service.name"].clone())
        .collect();
    assert!(!services.is_empty() && services.iter().all(|s| s == "from-env"), "{services:?}");
    assert_eq!(point(&got, "durably.queue.depth", &[("durably.queue", "mail")]), Some(12.0));
    assert_eq!(point(&got, "durably.runs", &[("durably.status", "completed")]), Some(1.0));
}
