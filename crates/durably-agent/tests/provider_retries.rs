//! Retries follow the provider, for both agents: a `retry-after` on a 429 or 503 replaces the
//! backoff delay (bounded by `max_retry_after`), and an error whose body code says it will not
//! clear (a spent quota) is sent once, whatever its status.
#![cfg(all(feature = "openai", feature = "rig"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rig_support;

use std::time::{Duration, Instant};

use durably_agent::openai::OpenAiAgent;
use durably_agent::rig::DurableAgent;
use durably_agent::rig::rig_agent::AgentBuilder;
use durably_agent::{TaskConfig, model_error_of};
use durably_core::backoff::constant;
use durably_core::{MemoryStore, Workflow};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use rig_support::{memory, model};

/// A backoff far longer than any test: a run that finishes quickly did not wait it.
fn slow_backoff(retries: u32) -> TaskConfig {
    TaskConfig::new(retries, constant(30.0))
}

fn openai(wf: &Workflow, mock: &MockOpenAi, config: TaskConfig) -> OpenAiAgent {
    OpenAiAgent::builder(wf)
        .name("bot")
        .api_base(mock.base_url())
        .api_key("sk-test-1")
        .model_config(config)
        .build()
}

fn rig(wf: &Workflow, mock: &MockOpenAi, config: TaskConfig) -> DurableAgent {
    DurableAgent::new(model(mock), wf, |b: AgentBuilder| b.preamble("terse")).name("bot").model_config(config)
}

fn engine() -> Workflow {
    Workflow::builder("retries").store(MemoryStore::new()).build()
}

fn rate_limited(after_ms: &str) -> MockReply {
    MockReply::status(429, "Rate limit reached for requests")
        .with_code("rate_limit_exceeded")
        .with_header("retry-after-ms", after_ms)
}

fn quota() -> MockReply {
    MockReply::status(429, "You exceeded your current quota").with_code("insufficient_quota")
}

#[tokio::test]
async fn openai_waits_what_retry_after_says_instead_of_the_backoff() {
    let mock = MockOpenAi::start().await;
    mock.push(rate_limited("300")).push(MockReply::text("done"));
    let wf = engine();
    let started = Instant::now();
    let run = openai(&wf, &mock, slow_backoff(2)).run_with_id("hi", "r1").await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(run.output, "done");
    assert_eq!(mock.requests(), 2);
    // The provider's 300 ms, not the 30 s backoff.
    assert!(elapsed >= Duration::from_millis(250), "waited {elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "waited {elapsed:?}");
    assert_eq!(wf.list_steps("r1").await.unwrap()[0].attempts, 2);
}

#[tokio::test]
async fn openai_a_503_retry_after_in_seconds_is_honoured_and_bounded() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::status(503, "overloaded").with_header("retry-after", "3600"))
        .push(MockReply::text("up"));
    let wf = engine();
    let agent = OpenAiAgent::builder(&wf)
        .name("bot")
        .api_base(mock.base_url())
        .api_key("sk-test-1")
        .model_config(slow_backoff(1))
        .max_retry_after(Duration::from_millis(200))
        .build();
    let started = Instant::now();
    assert_eq!(agent.run_with_id("hi", "r1").await.unwrap().output, "up");
    let elapsed = started.elapsed();
    assert_eq!(mock.requests(), 2);
    assert!(elapsed >= Duration::from_millis(150) && elapsed < Duration::from_secs(10), "waited {elapsed:?}");
}

#[tokio::test]
async fn openai_a_spent_quota_is_not_retried_though_it_is_a_429() {
    let mock = MockOpenAi::start().await;
    mock.push(quota()).push(MockReply::text("never"));
    let wf = engine();
    let err =
        openai(&wf, &mock, TaskConfig::new(3, constant(0.0))).run_with_id("hi", "r1").await.unwrap_err();
    assert_eq!(mock.requests(), 1);
    let model_error = model_error_of(&err).expect("a model error");
    assert_eq!(model_error.kind, "http_429");
    assert_eq!(model_error.code.as_deref(), Some("insufficient_quota"));
    assert!(!model_error.retryable);
    // The same status with a rate-limit code is retried.
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::status(429, "slow down").with_code("rate_limit_exceeded"))
        .push(MockReply::text("ok"));
    let run = openai(&wf, &mock, TaskConfig::new(3, constant(0.0))).run_with_id("hi", "r2").await.unwrap();
    assert_eq!((run.output.as_str(), mock.requests()), ("ok", 2));
}

#[tokio::test]
async fn rig_waits_what_retry_after_says_instead_of_the_backoff() {
    let mock = MockOpenAi::start().await;
    mock.push(rate_limited("300")).push(MockReply::text("done"));
    let wf = rig_support::engine(memory());
    let started = Instant::now();
    let run = rig(&wf, &mock, slow_backoff(2)).run_with_id("hi", "r1").await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(run.output, "done");
    assert_eq!(mock.requests(), 2);
    assert!(elapsed >= Duration::from_millis(250), "waited {elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "waited {elapsed:?}");
}

#[tokio::test]
async fn rig_a_spent_quota_is_not_retried_though_it_is_a_429() {
    let mock = MockOpenAi::start().await;
    mock.push(quota()).push(MockReply::text("never"));
    let wf = rig_support::engine(memory());
    let err = rig(&wf, &mock, TaskConfig::new(3, constant(0.0))).run_with_id("hi", "r1").await.unwrap_err();
    assert_eq!(mock.requests(), 1);
    let model_error = model_error_of(&err).expect("a model error");
    assert_eq!(model_error.code.as_deref(), Some("insufficient_quota"));
    assert!(!model_error.retryable);
}
