//! Traces and metrics reach a real OTLP/HTTP receiver (an axum server in this test decoding
//! the protobuf requests): one trace per run across two executions on two engines, a span per
//! step with `durably.replayed`, the GenAI attributes of a model call, and the metrics, of
//! which replayed steps and replayed model calls are not part.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use durably_agent::TaskConfig;
use durably_agent::openai::OpenAiAgent;
use durably_core::backoff::constant;
use durably_core::{Error, MemoryStore, Store, Workflow};
use durably_otel::{OtelConfig, Telemetry, run_trace_id};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

const APP: &str = "otel-app";
const RUN: &str = "trip-1";

/// What the receiver decoded.
#[derive(Clone, Default)]
struct Received {
    traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
}

async fn traces(State(got): State<Received>, body: Bytes) -> Vec<u8> {
    let request = ExportTraceServiceRequest::decode(body).expect("a protobuf ExportTraceServiceRequest");
    got.traces.lock().unwrap().push(request);
    Vec::new() // an empty ExportTraceServiceResponse
}

async fn metrics(State(got): State<Received>, body: Bytes) -> Vec<u8> {
    let request = ExportMetricsServiceRequest::decode(body).expect("a protobuf ExportMetricsServiceRequest");
    got.metrics.lock().unwrap().push(request);
    Vec::new()
}

/// The OTLP/HTTP receiver, on a thread and runtime of its own: the exporters send from their
/// own threads and block on the answer, whatever the test's runtime is doing.
fn start_receiver() -> (String, Received) {
    let got = Received::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(metrics))
        .with_state(got.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (url, got)
}

fn text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attrs(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter().map(|kv| (kv.key.clone(), text(&kv.value))).collect()
}

fn spans(got: &Received) -> Vec<Span> {
    let traces = got.traces.lock().unwrap();
    traces
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| s.spans.clone())
        .collect()
}

/// The last exported value of each data point of metric `name`, by its attributes.
fn points(got: &Received, name: &str) -> Vec<(HashMap<String, String>, f64)> {
    let metrics = got.metrics.lock().unwrap();
    let Some(last) = metrics
        .iter()
        .rev()
        .flat_map(|r| &r.resource_metrics)
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .find(|m| m.name == name)
    else {
        return Vec::new();
    };
    let number = |p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint| match p.value {
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        Some(number_data_point::Value::AsDouble(d)) => d,
        None => f64::NAN,
    };
    match &last.data {
        Some(Data::Sum(sum)) => sum.data_points.iter().map(|p| (attrs(&p.attributes), number(p))).collect(),
        Some(Data::Gauge(gauge)) => {
            gauge.data_points.iter().map(|p| (attrs(&p.attributes), number(p))).collect()
        }
        // A histogram's value here is its count.
        Some(Data::Histogram(h)) => {
            h.data_points.iter().map(|p| (attrs(&p.attributes), p.count as f64)).collect()
        }
        other => panic!("metric {name}: unexpected data {other:?}"),
    }
}

fn point(got: &Received, name: &str, with: &[(&str, &str)]) -> Option<f64> {
    points(got, name)
        .into_iter()
        .find(|(a, _)| with.iter().all(|(k, v)| a.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, v)| v)
}

fn agent(wf: &Workflow, mock: &MockOpenAi) -> OpenAiAgent {
    OpenAiAgent::builder(wf)
        .name("guide")
        .model("gpt-test")
        .api_base(mock.base_url())
        .api_key("sk-test-0123456789abcdef")
        .model_config(TaskConfig::new(0, constant(0.0)))
        .build()
}

/// One execution of the run: two steps (the second fails its first attempt ever, then is
/// retried), an agent's model call, and, while `crash` is set, a failure after all of them.
async fn execute(
    wf: &Workflow,
    agent: &OpenAiAgent,
    flaky: Arc<AtomicU32>,
    crash: &AtomicBool,
) -> durably_core::Result<(String, u64, u64)> {
    wf.run(RUN, |ctx| async move {
        let days: u32 = ctx.step("plan", || async { Ok::<_, Error>(3) }).await?;
        let _: u32 = ctx
            .step("book", move || {
                let flaky = flaky.clone();
                async move {
                    if flaky.fetch_add(1, Ordering::SeqCst) == 0 {
                        return Err(Error::Invalid {
                            what: "test",
                            detail: "first booking attempt fails".into(),
                        });
                    }
                    Ok(days)
                }
            })
            .retries(2)
            .backoff(constant(0.0))
            .await?;
        let answer = agent.run("Where should I go?").await?;
        if crash.swap(false, Ordering::SeqCst) {
            return Err(Error::Invalid { what: "test", detail: "crash after the agent".into() });
        }
        Ok((answer.output, answer.usage.prompt_tokens, answer.usage.completion_tokens))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_reach_an_otlp_receiver_with_one_trace_per_run() {
    let (url, got) = start_receiver();
    let telemetry = Telemetry::new(OtelConfig::default().endpoint(&url).service_name("otel-test")).unwrap();
    tracing_subscriber::registry().with(telemetry.layer()).try_init().unwrap();

    let mock = MockOpenAi::start().await;
    mock.push(MockReply::text("Go to Lisbon."));
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let flaky = Arc::new(AtomicU32::new(0));
    let crash = AtomicBool::new(true);

    // The first execution fails after every step; a second engine (another worker) executes
    // the run again, under a caller's span of another trace, and replays them.
    let first = Workflow::builder(APP).shared_store(store.clone()).build();
    let err = execute(&first, &agent(&first, &mock), flaky.clone(), &crash).await.unwrap_err();
    assert!(err.to_string().contains("crash after the agent"), "{err}");
    let second = Workflow::builder(APP).shared_store(store).build();
    let (output, input_tokens, output_tokens) =
        execute(&second, &agent(&second, &mock), flaky.clone(), &crash)
            .instrument(tracing::info_span!("caller"))
            .await
            .unwrap();
    assert_eq!(output, "Go to Lisbon.");
    assert_eq!(mock.requests(), 1, "the second execution sent a model request");
    assert_eq!(flaky.load(Ordering::SeqCst), 2, "`book` ran again on replay");
    assert!(input_tokens > 0 && output_tokens > 0);
    let (queue, depth) = ("default", 3u64);
    tracing::event!(target: "durably", tracing::Level::DEBUG, durably.queue = %queue, durably.queue.depth = depth);

    let flushed = tokio::task::spawn_blocking(move || {
        telemetry.force_flush().unwrap();
        telemetry
    });
    let telemetry = flushed.await.unwrap();

    // Traces: both executions' run spans in the run's trace, whatever their caller's trace.
    let spans = spans(&got);
    let trace_id = run_trace_id(APP, RUN).to_bytes().to_vec();
    let runs: Vec<&Span> = spans.iter().filter(|s| s.name == "durably.run").collect();
    assert_eq!(
        runs.len(),
        2,
        "one run span per execution: {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    for run in &runs {
        assert_eq!(run.trace_id, trace_id, "a run span outside its run's trace");
        let a = attrs(&run.attributes);
        assert_eq!(a["durably.run_id"], RUN);
        assert_eq!(a["durably.app"], APP);
    }
    let statuses: Vec<String> = runs.iter().map(|r| attrs(&r.attributes)["durably.status"].clone()).collect();
    assert!(
        statuses.contains(&"failed".to_owned()) && statuses.contains(&"completed".to_owned()),
        "{statuses:?}"
    );
    let caller = spans.iter().find(|s| s.name == "caller").expect("the caller's span");
    assert_ne!(caller.trace_id, trace_id, "the caller's span is in a trace of its own");

    // Steps: children of their execution's run span; replayed ones marked.
    let execution = |status: &str| {
        runs.iter()
            .find(|r| attrs(&r.attributes)["durably.status"] == status)
            .map(|r| r.span_id.clone())
            .unwrap()
    };
    let (failed, completed) = (execution("failed"), execution("completed"));
    let step = |run: &Vec<u8>, id: &str| -> HashMap<String, String> {
        let found: Vec<&Span> = spans
            .iter()
            .filter(|s| s.name == "durably.step" && &s.parent_span_id == run)
            .filter(|s| attrs(&s.attributes)["durably.step_id"] == id)
            .collect();
        assert_eq!(found.len(), 1, "step {id} of one execution: {found:?}");
        assert_eq!(found[0].trace_id, trace_id);
        attrs(&found[0].attributes)
    };
    for id in ["plan", "book", "guide.model#1"] {
        assert_eq!(step(&failed, id)["durably.replayed"], "false", "{id} in the first execution");
        assert_eq!(step(&completed, id)["durably.replayed"], "true", "{id} in the second execution");
    }
    assert_eq!(step(&failed, "book")["durably.attempt"], "2");

    // The model request: one span, under the first execution's model step, with the GenAI
    // attributes; the replayed model step sent nothing and has none.
    let chats: Vec<&Span> = spans.iter().filter(|s| s.name == "chat gpt-test").collect();
    assert_eq!(chats.len(), 1, "one model request span");
    let chat = attrs(&chats[0].attributes);
    let model_step = spans
        .iter()
        .find(|s| s.span_id == chats[0].parent_span_id)
        .map(|s| attrs(&s.attributes)["durably.step_id"].clone());
    assert_eq!(model_step.as_deref(), Some("guide.model#1"));
    assert_eq!(chats[0].trace_id, trace_id);
    assert_eq!(chats[0].kind, 3, "a client span"); // SPAN_KIND_CLIENT
    assert_eq!(chat["gen_ai.operation.name"], "chat");
    assert_eq!(chat["gen_ai.provider.name"], "openai");
    assert_eq!(chat["gen_ai.system"], "openai");
    assert_eq!(chat["gen_ai.request.model"], "gpt-test");
    assert_eq!(chat["gen_ai.response.model"], "gpt-test");
    assert_eq!(chat["gen_ai.usage.input_tokens"], input_tokens.to_string());
    assert_eq!(chat["gen_ai.usage.output_tokens"], output_tokens.to_string());
    assert_eq!(chat["gen_ai.response.finish_reasons"], "stop");

    // Metrics: finished runs by status; executed steps timed once, replayed ones counted
    // apart; the retry; the tokens of the one request; the queue-depth hook.
    assert_eq!(point(&got, "durably.runs", &[("durably.status", "failed")]), Some(1.0));
    assert_eq!(point(&got, "durably.runs", &[("durably.status", "completed")]), Some(1.0));
    assert_eq!(point(&got, "durably.step.duration", &[("durably.task", "plan")]), Some(1.0));
    assert_eq!(point(&got, "durably.step.duration", &[("durably.task", "book")]), Some(1.0));
    assert_eq!(point(&got, "durably.steps.replayed", &[("durably.task", "plan")]), Some(1.0));
    assert_eq!(point(&got, "durably.step.retries", &[("durably.task", "book")]), Some(1.0));
    let tokens = |kind| {
        point(&got, "durably.tokens", &[("gen_ai.token.type", kind), ("gen_ai.request.model", "gpt-test")])
    };
    assert_eq!(tokens("input"), Some(input_tokens as f64));
    assert_eq!(tokens("output"), Some(output_tokens as f64));
    assert_eq!(point(&got, "durably.queue.depth", &[("durably.queue", "default")]), Some(3.0));

    tokio::task::spawn_blocking(move || telemetry.shutdown().unwrap()).await.unwrap();
}
