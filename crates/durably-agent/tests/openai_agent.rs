//! The durable OpenAI agent against the mock server: replay sends no request, approvals,
//! divergence, retries, errors, and no API key in the store.
#![cfg(feature = "openai")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use durably_agent::openai::async_openai::types::chat::{
    ChatCompletionRequestUserMessage, CreateChatCompletionRequest,
};
use durably_agent::openai::{AgentRun, OpenAiAgent, Tool, client, durable_chat, model_error_of};
use durably_agent::{Approval, TaskConfig};
use durably_core::backoff::constant;
use durably_core::{Error, MemoryStore, RunFilter, RunStatus, StepStatus, Workflow};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

const KEY: &str = "sk-test-0123456789abcdef";

fn engine() -> Workflow {
    Workflow::builder("agents").store(MemoryStore::new()).build()
}

/// Short backoff: 10 ms between attempts.
fn fast(retries: u32) -> TaskConfig {
    TaskConfig::new(retries, constant(0.01))
}

#[derive(Deserialize, JsonSchema)]
struct CityArgs {
    /// The city.
    city: String,
}

fn weather_tool(count: Arc<AtomicUsize>) -> Tool {
    Tool::new("get_weather", "Current weather of a city", move |a: CityArgs| {
        let count = count.clone();
        async move {
            count.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(format!("sunny in {}", a.city))
        }
    })
}

fn agent(wf: &Workflow, mock: &MockOpenAi, count: Arc<AtomicUsize>) -> OpenAiAgent {
    OpenAiAgent::builder(wf)
        .name("weather")
        .model("gpt-test")
        .system_prompt("You answer questions about the weather.")
        .api_base(mock.base_url())
        .api_key(KEY)
        .tool(weather_tool(count))
        .model_config(fast(0))
        .tool_config(fast(0))
        .build()
}

fn two_city_script(mock: &MockOpenAi) {
    mock.push(MockReply::tool_calls([
        ("get_weather", json!({"city": "Paris"})),
        ("get_weather", json!({"city": "Berlin"})),
    ]));
    mock.push(MockReply::text("Sunny in Paris and in Berlin."));
}

/// Runs the agent inside `run_id`, failing the run after the agent the first time (`crash`),
/// so that the next execution replays the agent's steps instead of returning a stored output.
async fn run_failing_once(
    wf: &Workflow,
    agent: &OpenAiAgent,
    run_id: &str,
    prompt: &str,
    crash: &AtomicBool,
) -> durably_core::Result<AgentRun> {
    wf.run(run_id, |_| async move {
        let run = agent.run(prompt).await?;
        if crash.swap(false, Ordering::SeqCst) {
            return Err(Error::Invalid { what: "test", detail: "crash after the agent".into() });
        }
        Ok(run)
    })
    .await
}

#[tokio::test]
async fn first_run_sends_n_requests_and_the_replay_sends_none() {
    let mock = MockOpenAi::start().await;
    two_city_script(&mock);
    let wf = engine();
    let tools = Arc::new(AtomicUsize::new(0));
    let agent = agent(&wf, &mock, tools.clone());
    let crash = AtomicBool::new(true);

    let err = run_failing_once(&wf, &agent, "w1", "Weather in Paris and Berlin?", &crash).await.unwrap_err();
    assert!(err.to_string().contains("crash after the agent"), "{err}");
    assert_eq!(mock.requests(), 2);
    assert_eq!(tools.load(Ordering::SeqCst), 2);
    let ids: Vec<String> = wf.list_steps("w1").await.unwrap().into_iter().map(|s| s.step_id).collect();
    for id in [
        "weather.model#1",
        "weather.tool.get_weather#1.call_1",
        "weather.tool.get_weather#1.call_2",
        "weather.model#2",
    ] {
        assert!(ids.iter().any(|i| i == id), "{id} missing from {ids:?}");
    }

    // The run executes again: every model call and tool call comes from its step.
    let run = run_failing_once(&wf, &agent, "w1", "Weather in Paris and Berlin?", &crash).await.unwrap();
    assert_eq!(mock.requests(), 2, "the replay sent a request");
    assert_eq!(tools.load(Ordering::SeqCst), 2, "the replay ran a tool");
    assert_eq!(run.output, "Sunny in Paris and in Berlin.");
    assert_eq!(run.turns, 2);
    // system, user, assistant with two tool calls, two tool results, final assistant.
    assert_eq!(run.messages.len(), 6);
    let history = serde_json::to_value(&run.messages).unwrap();
    assert_eq!(history[3]["role"], "tool");
    assert_eq!(history[3]["content"], "sunny in Paris");
    assert!(run.usage.total_tokens > 0);
    assert_eq!(run.usage.total_tokens, run.usage.prompt_tokens + run.usage.completion_tokens);

    // What the model saw on its second call: the tool results, under the call ids.
    let second = &mock.received()[1];
    assert_eq!(second["messages"][3]["tool_call_id"], "call_1");
    assert_eq!(second["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(second["tools"][0]["function"]["parameters"]["properties"]["city"]["type"], "string");
}

#[tokio::test]
async fn run_with_id_twice_sends_requests_once() {
    let mock = MockOpenAi::start().await;
    two_city_script(&mock);
    let wf = engine();
    let tools = Arc::new(AtomicUsize::new(0));
    let agent = agent(&wf, &mock, tools.clone());
    let first = agent.run_with_id("Weather?", "w2").await.unwrap();
    assert_eq!(mock.requests(), 2);
    let again = agent.run_with_id("Weather?", "w2").await.unwrap();
    assert_eq!(mock.requests(), 2);
    assert_eq!(tools.load(Ordering::SeqCst), 2);
    assert_eq!(first, again);
}

#[tokio::test]
async fn run_outside_a_workflow_uses_an_id_from_name_and_prompt() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::text("Hello."));
    let wf = engine();
    let agent = agent(&wf, &mock, Arc::new(AtomicUsize::new(0)));
    let run = agent.run("Say hello").await.unwrap();
    assert_eq!(run.output, "Hello.");
    let id = agent.default_run_id("Say hello");
    assert!(id.starts_with("weather-"), "{id}");
    assert_ne!(id, agent.default_run_id("Say goodbye"));
    assert_eq!(wf.get_run(&id).await.unwrap().unwrap().status, RunStatus::Completed);
    // The same prompt is the same run: no new request.
    agent.run("Say hello").await.unwrap();
    assert_eq!(mock.requests(), 1);
}

#[derive(Deserialize, JsonSchema)]
struct EmailArgs {
    /// Recipient.
    to: String,
}

fn mailer(wf: &Workflow, mock: &MockOpenAi, sent: Arc<AtomicUsize>) -> OpenAiAgent {
    let send = Tool::new("send_email", "Send an email", move |a: EmailArgs| {
        let sent = sent.clone();
        async move {
            sent.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(format!("sent to {}", a.to))
        }
    })
    .requires_approval();
    OpenAiAgent::builder(wf)
        .name("mailer")
        .api_base(mock.base_url())
        .api_key(KEY)
        .tool(send)
        .model_config(fast(0))
        .build()
}

const APPROVAL: &str = "approve:mailer.tool.send_email#1.call_1";

async fn wait_until_waiting(wf: &Workflow, run_id: &str) -> String {
    // Up to 30 s: generous for a loaded machine; a healthy run waits within milliseconds.
    for _ in 0..3000 {
        if let Some(run) = wf.get_run(run_id).await.unwrap()
            && run.status == RunStatus::Waiting
        {
            return run.waiting_on.unwrap_or_default();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("run {run_id} never waited");
}

#[tokio::test]
async fn an_approved_tool_call_waits_for_the_signal_then_runs() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("send_email", json!({"to": "ceo@example.com"}))]));
    mock.push(MockReply::text("Done."));
    let wf = engine();
    let sent = Arc::new(AtomicUsize::new(0));
    let agent = mailer(&wf, &mock, sent.clone());
    let task = tokio::spawn({
        let agent = agent.clone();
        async move { agent.run_with_id("Email the CEO", "mail-1").await }
    });
    assert_eq!(wait_until_waiting(&wf, "mail-1").await, APPROVAL);
    // An operator finds the waiting run by its status.
    let waiting = wf.list_runs(&RunFilter::new().status(RunStatus::Waiting)).await.unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(sent.load(Ordering::SeqCst), 0, "the tool ran before its approval");
    assert!(wf.complete("mail-1", APPROVAL, &Approval::approve()).await.unwrap());
    let run = task.await.unwrap().unwrap();
    assert_eq!(run.output, "Done.");
    assert_eq!(sent.load(Ordering::SeqCst), 1);
    assert_eq!(mock.received()[1]["messages"][2]["content"], "sent to ceo@example.com");
}

#[tokio::test]
async fn a_rejected_tool_call_returns_the_reason_to_the_model() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("send_email", json!({"to": "all@example.com"}))]));
    mock.push(MockReply::text("I did not send it."));
    let wf = engine();
    let sent = Arc::new(AtomicUsize::new(0));
    let agent = mailer(&wf, &mock, sent.clone());
    let task = tokio::spawn({
        let agent = agent.clone();
        async move { agent.run_with_id("Email everyone", "mail-2").await }
    });
    assert_eq!(wait_until_waiting(&wf, "mail-2").await, APPROVAL);
    wf.complete("mail-2", APPROVAL, &Approval::reject("too many recipients")).await.unwrap();
    let run = task.await.unwrap().unwrap();
    assert_eq!(run.output, "I did not send it.");
    assert_eq!(sent.load(Ordering::SeqCst), 0, "a rejected tool ran");
    let tool_message = mock.received()[1]["messages"][2].clone();
    assert_eq!(tool_message["role"], "tool");
    let content = tool_message["content"].as_str().unwrap();
    assert!(content.contains("too many recipients"), "{content}");
    assert!(content.starts_with("Error:"), "{content}");
}

#[tokio::test]
async fn an_approval_delivered_before_the_wait_is_used_at_once() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("send_email", json!({"to": "a@example.com"}))]));
    mock.push(MockReply::text("Done."));
    let wf = engine();
    let sent = Arc::new(AtomicUsize::new(0));
    let agent = mailer(&wf, &mock, sent.clone());
    assert!(wf.complete("mail-3", APPROVAL, &Approval::approve()).await.unwrap());
    let run = agent.run_with_id("Email a", "mail-3").await.unwrap();
    assert_eq!(run.output, "Done.");
    assert_eq!(sent.load(Ordering::SeqCst), 1);
}

fn assert_non_determinism(err: &Error, run: &str, step: &str) {
    match err {
        Error::NonDeterminism { run_id, step_id, .. } => {
            assert_eq!(run_id, run);
            assert_eq!(step_id, step);
        }
        other => panic!("expected NonDeterminism, got {other}"),
    }
}

#[tokio::test]
async fn a_changed_prompt_under_the_same_run_id_is_non_determinism() {
    let mock = MockOpenAi::start().await;
    two_city_script(&mock);
    let wf = engine();
    let agent = agent(&wf, &mock, Arc::new(AtomicUsize::new(0)));
    let crash = AtomicBool::new(true);
    run_failing_once(&wf, &agent, "div-1", "Weather in Paris?", &crash).await.unwrap_err();
    let err = run_failing_once(&wf, &agent, "div-1", "Weather in Rome?", &crash).await.unwrap_err();
    assert_non_determinism(&err, "div-1", "weather.model#1");
    assert_eq!(mock.requests(), 2, "the diverging replay sent a request");
}

#[tokio::test]
async fn a_changed_tool_set_under_the_same_run_id_is_non_determinism() {
    let mock = MockOpenAi::start().await;
    two_city_script(&mock);
    let wf = engine();
    let count = Arc::new(AtomicUsize::new(0));
    let before = agent(&wf, &mock, count.clone());
    let crash = AtomicBool::new(true);
    run_failing_once(&wf, &before, "div-2", "Weather?", &crash).await.unwrap_err();
    let after = OpenAiAgent::builder(&wf)
        .name("weather")
        .model("gpt-test")
        .system_prompt("You answer questions about the weather.")
        .api_base(mock.base_url())
        .tool(weather_tool(count.clone()))
        .tool(Tool::new("get_time", "Local time", |_: CityArgs| async { Ok::<_, std::io::Error>("noon") }))
        .build();
    let err = run_failing_once(&wf, &after, "div-2", "Weather?", &crash).await.unwrap_err();
    assert_non_determinism(&err, "div-2", "weather.model#1");
    assert!(err.to_string().contains("div-2") && err.to_string().contains("weather.model#1"), "{err}");
}

#[tokio::test]
async fn http_429_and_500_are_retried_with_backoff() {
    let mock = MockOpenAi::start().await;
    mock.push_all([
        MockReply::status(429, "Rate limit reached"),
        MockReply::status(500, "boom"),
        MockReply::text("ok"),
    ]);
    let wf = engine();
    let agent = OpenAiAgent::builder(&wf)
        .name("retry")
        .api_base(mock.base_url())
        .api_key(KEY)
        .model_config(fast(3))
        .build();
    let run = agent.run_with_id("hi", "retry-1").await.unwrap();
    assert_eq!(run.output, "ok");
    assert_eq!(mock.requests(), 3);
    let steps = wf.list_steps("retry-1").await.unwrap();
    assert_eq!(steps[0].step_id, "retry.model#1");
    assert_eq!(steps[0].attempts, 3);
}

#[tokio::test]
async fn exhausted_retries_record_the_model_error() {
    let mock = MockOpenAi::start().await;
    mock.push_all([MockReply::status(503, "overloaded"), MockReply::status(503, "overloaded")]);
    let wf = engine();
    let agent = OpenAiAgent::builder(&wf)
        .name("busy")
        .api_base(mock.base_url())
        .api_key(KEY)
        .model_config(fast(1))
        .build();
    let err = agent.run_with_id("hi", "busy-1").await.unwrap_err();
    assert_eq!(mock.requests(), 2);
    let model = model_error_of(&err).expect("a model error");
    assert_eq!((model.kind.as_str(), model.retryable), ("http_503", true));
    let step = &wf.list_steps("busy-1").await.unwrap()[0];
    assert_eq!(step.status, StepStatus::Failed);
    let recorded: serde_json::Value = serde_json::from_str(step.error.as_deref().unwrap()).unwrap();
    assert_eq!(recorded["kind"], "http_503");
    assert_eq!(recorded["retryable"], true);
    assert!(recorded["message"].as_str().unwrap().contains("overloaded"));
}

#[tokio::test]
async fn http_400_is_not_retried() {
    let mock = MockOpenAi::start().await;
    mock.push_all([MockReply::status(400, "Invalid 'messages'"), MockReply::text("never sent")]);
    let wf = engine();
    let agent = OpenAiAgent::builder(&wf)
        .name("bad")
        .api_base(mock.base_url())
        .api_key(KEY)
        .model_config(fast(5))
        .build();
    let err = agent.run_with_id("hi", "bad-1").await.unwrap_err();
    assert_eq!(mock.requests(), 1, "a 400 was sent again");
    let model = model_error_of(&err).expect("a model error");
    assert_eq!(model.kind, "http_400");
    assert!(!model.retryable);
    let step = &wf.list_steps("bad-1").await.unwrap()[0];
    assert_eq!(step.attempts, 1);
    assert!(step.error.as_deref().unwrap().contains(r#""retryable":false"#));
    assert_eq!(wf.get_run("bad-1").await.unwrap().unwrap().status, RunStatus::Failed);
}

#[tokio::test]
async fn no_stored_record_contains_the_api_key() {
    let mock = MockOpenAi::start().await;
    two_city_script(&mock);
    // A provider that echoes the key in an error message.
    mock.push(MockReply::status(401, format!("Incorrect API key provided: {KEY}")));
    let wf = engine();
    let agent = agent(&wf, &mock, Arc::new(AtomicUsize::new(0)));
    agent.run_with_id("Weather?", "key-1").await.unwrap();
    agent.run_with_id("Other question", "key-2").await.unwrap_err();
    // The key was sent, as a header only.
    let auth = mock.headers()[0].iter().find(|(k, _)| k == "authorization").cloned().unwrap();
    assert_eq!(auth.1, format!("Bearer {KEY}"));

    let mut everything = String::new();
    for run in wf.list_runs(&RunFilter::new()).await.unwrap() {
        everything.push_str(&format!("{run:?}\n"));
        for step in wf.list_steps(&run.run_id).await.unwrap() {
            everything.push_str(&format!("{step:?}\n"));
        }
    }
    assert!(everything.contains("Incorrect API key provided"), "the 401 was recorded: {everything}");
    assert!(!everything.contains(KEY), "the API key is stored: {everything}");
    assert!(!everything.to_lowercase().contains("authorization"), "a header is stored");
}

#[tokio::test]
async fn a_failing_tool_is_retried_then_its_error_goes_to_the_model() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("flaky", json!({"city": "Oslo"}))]));
    mock.push(MockReply::text("The tool failed."));
    let wf = engine();
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = attempts.clone();
    let flaky = Tool::new("flaky", "Always fails", move |_: CityArgs| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Err::<String, _>(std::io::Error::other("weather service down"))
        }
    });
    let agent = OpenAiAgent::builder(&wf)
        .name("f")
        .api_base(mock.base_url())
        .tool(flaky)
        .model_config(fast(0))
        .tool_config(fast(2))
        .build();
    let run = agent.run_with_id("Weather in Oslo?", "flaky-1").await.unwrap();
    assert_eq!(run.output, "The tool failed.");
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    let content = mock.received()[1]["messages"][2]["content"].as_str().unwrap().to_owned();
    assert!(content.contains("weather service down"), "{content}");
}

#[tokio::test]
async fn max_turns_stops_a_run_that_keeps_calling_tools() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("get_weather", json!({"city": "A"}))]));
    let wf = engine();
    let agent = OpenAiAgent::builder(&wf)
        .name("loop")
        .api_base(mock.base_url())
        .tool(weather_tool(Arc::new(AtomicUsize::new(0))))
        .max_turns(1)
        .build();
    let err = agent.run_with_id("go", "loop-1").await.unwrap_err();
    assert_eq!(model_error_of(&err).unwrap().kind, "max_turns");
    assert!(err.to_string().contains("loop-1"), "{err}");
    assert_eq!(mock.requests(), 1);
}

#[tokio::test]
async fn durable_chat_makes_one_call_a_step() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::text("pong"));
    let wf = engine();
    let config = durably_agent::openai::async_openai::config::OpenAIConfig::new()
        .with_api_base(mock.base_url())
        .with_api_key(KEY);
    let client = client(config);
    let request = CreateChatCompletionRequest {
        model: "gpt-test".into(),
        messages: vec![ChatCompletionRequestUserMessage::from("ping").into()],
        ..Default::default()
    };
    let crash = AtomicBool::new(true);
    let call = |request: CreateChatCompletionRequest| {
        let client = client.clone();
        let crash = &crash;
        wf.run("chat-1", move |_| async move {
            let response = durable_chat(&client).config(fast(0)).create(request).await?;
            if crash.swap(false, Ordering::SeqCst) {
                return Err(Error::Invalid { what: "test", detail: "crash".into() });
            }
            Ok(response)
        })
    };
    call(request.clone()).await.unwrap_err();
    assert_eq!(mock.requests(), 1);
    let response = call(request.clone()).await.unwrap();
    assert_eq!(mock.requests(), 1, "the replay sent a request");
    assert_eq!(response.choices[0].message.content.as_deref(), Some("pong"));
    let steps = wf.list_steps("chat-1").await.unwrap();
    assert_eq!(steps[0].step_id, "openai.chat");
    assert!(steps[0].request_hash.is_some());
}
