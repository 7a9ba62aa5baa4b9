//! Traces and metrics reach a real OTLP/HTTP receiver (an axum server in this test decoding
//! the protobuf requests): one trace per run across two executions on two engines, a span per
//! step with `durably.replayed`, the GenAI attributes of a model call, and the metrics, of
//! which replayed steps and replayed model calls are not part.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use common::{attrs, point, spans, start_receiver};
use durably_agent::TaskConfig;
use durably_agent::openai::{OpenAiAgent, Tool};
use durably_core::backoff::constant;
use durably_core::{Error, MemoryStore, Store, Workflow};
use durably_otel::{OtelConfig, Telemetry, run_trace_id};
use durably_testkit::mock_openai::{MockOpenAi, fixtures_dir};
use opentelemetry_proto::tonic::trace::v1::Span;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

const APP: &str = "otel-app";
const RUN: &str = "trip-1";

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct CityArgs {
    /// The city.
    city: String,
}

fn agent(wf: &Workflow, mock: &MockOpenAi) -> OpenAiAgent {
    let weather = Tool::new("get_weather", "Current weather of a city", |a: CityArgs| async move {
        Ok::<_, std::io::Error>(format!("sunny in {}", a.city))
    });
    OpenAiAgent::builder(wf)
        .name("guide")
        .model("gpt-test")
        .api_base(mock.base_url())
        .api_key("sk-test-0123456789abcdef")
        .tool(weather)
        .model_config(TaskConfig::new(0, constant(0.0)))
        .build()
}

/// One execution of the run: two steps (the second fails its first attempt ever, then is
/// retried), an agent's turn (two model calls around two tool calls, from the fixture), and,
/// while `crash` is set, a failure after all of them.
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
        let answer = agent.run("Weather in Paris and Berlin?").await?;
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

    let mock = MockOpenAi::from_fixture(fixtures_dir().join("weather_agent.json")).await.unwrap();
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
    assert_eq!(output, "It is sunny in Paris and raining in Berlin.");
    assert_eq!(mock.requests(), 2, "the second execution sent a model request");
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
    for id in ["plan", "book", "guide.model#1", "guide.model#2"] {
        assert_eq!(step(&failed, id)["durably.replayed"], "false", "{id} in the first execution");
        assert_eq!(step(&completed, id)["durably.replayed"], "true", "{id} in the second execution");
    }
    assert_eq!(step(&failed, "book")["durably.attempt"], "2");

    // The model requests: one span each, under the first execution's model steps, with the
    // GenAI attributes; the replayed model steps sent nothing and have none.
    let chats: Vec<&Span> = spans.iter().filter(|s| s.name == "chat gpt-test").collect();
    assert_eq!(chats.len(), 2, "one span per model request");
    let mut reasons = Vec::new();
    let (mut input, mut output) = (0, 0);
    for (n, chat_span) in chats.iter().enumerate() {
        let chat = attrs(&chat_span.attributes);
        let model_step = spans.iter().find(|s| s.span_id == chat_span.parent_span_id).unwrap();
        assert_eq!(model_step.parent_span_id, failed, "a model request outside the first execution");
        let step_id = attrs(&model_step.attributes)["durably.step_id"].clone();
        assert_eq!(chat["durably.step_id"], step_id);
        assert!(step_id == "guide.model#1" || step_id == "guide.model#2", "{step_id} (request {n})");
        assert_eq!(chat_span.trace_id, trace_id);
        assert_eq!(chat_span.kind, 3, "a client span"); // SPAN_KIND_CLIENT
        assert_eq!(chat["gen_ai.operation.name"], "chat");
        assert_eq!(chat["gen_ai.provider.name"], "openai");
        assert_eq!(chat["gen_ai.system"], "openai");
        assert_eq!(chat["gen_ai.request.model"], "gpt-test");
        assert_eq!(chat["gen_ai.response.model"], "gpt-test");
        input += chat["gen_ai.usage.input_tokens"].parse::<u64>().unwrap();
        output += chat["gen_ai.usage.output_tokens"].parse::<u64>().unwrap();
        reasons.push((step_id, chat["gen_ai.response.finish_reasons"].clone()));
    }
    reasons.sort();
    assert_eq!(
        reasons,
        [
            ("guide.model#1".to_owned(), "tool_calls".to_owned()),
            ("guide.model#2".to_owned(), "stop".to_owned())
        ]
    );
    assert_eq!((input, output), (input_tokens, output_tokens), "the spans' tokens are the turn's usage");

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
