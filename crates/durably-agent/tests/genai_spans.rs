//! Each model request of both agents is a `gen_ai.chat` span, child of its model step's span,
//! with the GenAI semantic-convention fields (provider, models, tokens, finish reasons) as
//! plain `tracing` fields: any subscriber sees them, OpenTelemetry or not. A model call
//! answered from the run's history sends no request and opens no such span.
#![cfg(all(feature = "rig", feature = "openai"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rig_support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use durably_agent::openai::OpenAiAgent;
use durably_agent::rig::{DurableAgent, rig_agent::AgentBuilder};
use durably_core::Error;
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use rig_support::*;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

#[derive(Default)]
struct Fields(HashMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}").trim_matches('"').to_owned());
    }
}

/// A closed `gen_ai.chat` span: its fields, and its parent's.
type Closed = (HashMap<String, String>, HashMap<String, String>);

/// Keeps the fields of every span, and hands over the `gen_ai.chat` ones when they close.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Closed>>>);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        attrs.record(&mut f);
        ctx.span(id).unwrap().extensions_mut().insert(f);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        values.record(ctx.span(id).unwrap().extensions_mut().get_mut::<Fields>().unwrap());
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let span = ctx.span(&id).unwrap();
        if span.name() != "gen_ai.chat" {
            return;
        }
        let own = span.extensions().get::<Fields>().unwrap().0.clone();
        let parent =
            span.parent().map(|p| p.extensions().get::<Fields>().unwrap().0.clone()).unwrap_or_default();
        self.0.lock().unwrap().push((own, parent));
    }
}

fn capture() -> (Capture, tracing::subscriber::DefaultGuard) {
    let capture = Capture::default();
    let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    (capture, guard)
}

#[tokio::test(flavor = "current_thread")]
async fn openai_model_requests_carry_the_genai_fields() {
    let (capture, _guard) = capture();
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::text("Sunny."));
    let wf = engine(memory());
    let agent = OpenAiAgent::builder(&wf)
        .name("weather")
        .model("gpt-test")
        .api_base(mock.base_url())
        .api_key(API_KEY)
        .build();

    let run = agent.run_with_id("Weather?", "genai-openai").await.unwrap();
    let spans = capture.0.lock().unwrap().clone();
    assert_eq!(spans.len(), 1, "one request, one span");
    let (chat, step) = &spans[0];
    assert_eq!(step["durably.step_id"], "weather.model#1");
    assert_eq!(chat["otel.name"], "chat gpt-test");
    assert_eq!(chat["otel.kind"], "client");
    assert_eq!(chat["gen_ai.operation.name"], "chat");
    assert_eq!(chat["gen_ai.provider.name"], "openai");
    assert_eq!(chat["gen_ai.system"], "openai");
    assert_eq!(chat["gen_ai.request.model"], "gpt-test");
    assert_eq!(chat["gen_ai.response.model"], "gpt-test");
    assert_eq!(chat["gen_ai.usage.input_tokens"], run.usage.prompt_tokens.to_string());
    assert_eq!(chat["gen_ai.usage.output_tokens"], run.usage.completion_tokens.to_string());
    assert_eq!(chat["gen_ai.response.finish_reasons"], "stop");
}

#[tokio::test(flavor = "current_thread")]
async fn rig_model_requests_carry_the_genai_fields_and_replays_open_none() {
    let (capture, _guard) = capture();
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("add", serde_json::json!({"x": 2, "y": 3}))]));
    mock.push(MockReply::text("5."));
    let wf = engine(memory());
    let add = Counter::default();
    let tool = add.clone();
    let agent = DurableAgent::new(model(&mock), &wf, move |b: AgentBuilder| b.tool(Add(tool.clone())))
        .name("calc")
        .model_config(quick(0));

    // The first execution fails after the agent; the second replays both model calls.
    let crash = AtomicBool::new(true);
    let execute = || {
        wf.run("genai-rig", |_| async {
            let answer = agent.run("2+3?").await?;
            if crash.swap(false, Ordering::SeqCst) {
                return Err(Error::Invalid { what: "test", detail: "crash after the agent".into() });
            }
            Ok(answer)
        })
    };
    execute().await.unwrap_err();
    let spans = capture.0.lock().unwrap().clone();
    assert_eq!(spans.len(), 2, "two requests, two spans");
    let steps: Vec<&str> = spans.iter().map(|(_, step)| step["durably.step_id"].as_str()).collect();
    assert_eq!(steps, ["calc.model#1", "calc.model#2"]);
    let reasons: Vec<&str> =
        spans.iter().map(|(chat, _)| chat["gen_ai.response.finish_reasons"].as_str()).collect();
    assert_eq!(reasons, ["tool_calls", "stop"]);
    let mut tokens = (0, 0);
    for (chat, _) in &spans {
        assert_eq!(chat["gen_ai.provider.name"], "openai");
        assert_eq!(chat["gen_ai.system"], "openai");
        assert_eq!(chat["gen_ai.request.model"], "gpt-4o-mini");
        assert_eq!(chat["otel.name"], "chat gpt-4o-mini");
        tokens.0 += chat["gen_ai.usage.input_tokens"].parse::<u64>().unwrap();
        tokens.1 += chat["gen_ai.usage.output_tokens"].parse::<u64>().unwrap();
    }

    let answer = execute().await.unwrap();
    assert_eq!(answer.output, "5.");
    assert_eq!(mock.requests(), 2);
    assert_eq!(capture.0.lock().unwrap().len(), 2, "a replayed model call opened a span");
    assert_eq!(Some(tokens.0), answer.usage.input_tokens);
    assert_eq!(Some(tokens.1), answer.usage.output_tokens);
}
