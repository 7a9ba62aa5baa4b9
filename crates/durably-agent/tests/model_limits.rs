//! Model rate limits (rule 28 of docs/design.md), on every store: runs of several engines (each
//! standing for a worker process) under one limit never send more requests in any window of the
//! period than it allows, counted from the mock provider's arrival times; a 429 with a
//! `retry-after` holds back the other runs too; a replayed model call sends nothing and does not
//! wait for the limit. `on_store!` runs each on memory, SQLite, Redis and PostgreSQL.
//!
//! Redis and PostgreSQL are the servers at `DURABLY_REDIS_URL` and `DURABLY_POSTGRES_URL`
//! (defaults on 127.0.0.1); a test fails naming a server that does not answer, unless
//! `DURABLY_SKIP_SERVICES=1` asks to skip it.
#![cfg(feature = "openai")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod store_fixtures;

use std::sync::Arc;
use std::time::{Duration, Instant};

use durably_agent::openai::OpenAiAgent;
use durably_agent::{ModelLimit, ModelLimits, TaskConfig};
use durably_core::backoff::constant;
use durably_core::store::Store;
use durably_core::{RateAcquire, RateCost, RateDecision, Workflow, now_ms};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use store_fixtures::{Fixture, memory, postgres, redis, sqlite};

/// An engine on `store` (one per simulated worker process) with `limit` defined on it.
fn engine(store: &Arc<dyn Store>, limit: &ModelLimit) -> Workflow {
    let wf = Workflow::builder("limits").shared_store(store.clone()).default_backoff(constant(0.0)).build();
    wf.add_model_limit(limit.clone()).unwrap();
    wf
}

/// The OpenAI agent `bot` (model `gpt-4o-mini`) on `wf`, answering from `mock`.
fn bot(wf: &Workflow, mock: &MockOpenAi, retries: u32) -> OpenAiAgent {
    OpenAiAgent::builder(wf)
        .name("bot")
        .api_base(mock.base_url())
        .api_key("sk-test-model-limits")
        .model("gpt-4o-mini")
        .model_config(TaskConfig::new(retries, constant(0.0)))
        .build()
}

/// Fails unless every window of `period` holds at most `limit` of `arrivals`: sorted, the
/// arrival `limit` places after any arrival comes a whole period after it, or later.
fn assert_never_more_than(arrivals: &[Instant], limit: usize, period: Duration) {
    let mut sorted = arrivals.to_vec();
    sorted.sort();
    for (i, pair) in sorted.windows(limit + 1).enumerate() {
        let span = pair[limit] - pair[0];
        assert!(
            span >= period,
            "requests {i}..={} arrived within {span:?}: more than {limit} in a window of {period:?}",
            i + limit
        );
    }
}

/// Six runs on two engines under 3 requests per second: all complete, each sent its one
/// request, and no second of the provider's arrivals holds more than three.
async fn concurrent_runs_keep_the_limit_across_engines(store: Arc<dyn Store>) {
    let mock = MockOpenAi::responder(|_| MockReply::text("done")).await;
    let period = Duration::from_secs(1);
    let limit = ModelLimit::new("openai", "gpt-4o-mini").requests_per_minute(3).per(period);
    let engines = [engine(&store, &limit), engine(&store, &limit)];
    let mut runs = Vec::new();
    for i in 0..6 {
        let agent = bot(&engines[i % 2], &mock, 0);
        runs.push(tokio::spawn(async move { agent.run_with_id("Go", &format!("limited-{i}")).await }));
    }
    for run in runs {
        assert_eq!(run.await.unwrap().unwrap().output, "done");
    }
    assert_eq!(mock.requests(), 6, "one request per run");
    assert_never_more_than(&mock.arrivals(), 3, period);
}

/// A 429 with `retry-after` blocks the limit for everyone: runs started after it send nothing
/// before the wait it asked for, counted from the 429's arrival; the run that got it retries.
async fn a_429_holds_back_the_other_runs(store: Arc<dyn Store>) {
    let mock = MockOpenAi::responder(|_| MockReply::text("done")).await;
    mock.push(
        MockReply::status(429, "Rate limit reached for requests")
            .with_code("rate_limit_exceeded")
            .with_header("retry-after-ms", "800"),
    );
    let limit = ModelLimit::new("openai", "gpt-4o-mini").requests_per_minute(100);
    let (a, b) = (engine(&store, &limit), engine(&store, &limit));
    let first = bot(&a, &mock, 2);
    let first = tokio::spawn(async move { first.run_with_id("Go", "limited-first").await });
    // The others start once the 429 is recorded in the store: the limit's key is blocked.
    let probe = |n: u32| {
        RateAcquire::new(limit.key(), format!("probe-{n}"), limit.rate_limit(), RateCost::new(1, 0), now_ms())
    };
    let mut n = 0;
    while store.acquire_rate(&probe(n)).await.unwrap() == RateDecision::Granted {
        n += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut others = Vec::new();
    for (i, wf) in [&a, &b, &b].into_iter().enumerate() {
        let agent = bot(wf, &mock, 0);
        others
            .push(tokio::spawn(async move { agent.run_with_id("Go", &format!("limited-other-{i}")).await }));
    }
    assert_eq!(first.await.unwrap().unwrap().output, "done");
    for run in others {
        assert_eq!(run.await.unwrap().unwrap().output, "done");
    }
    assert_eq!(mock.requests(), 5, "the 429, its retry and one request per other run");
    assert!(n < 100, "the probes never saw the block");
    let arrivals = mock.arrivals();
    for (i, at) in arrivals.iter().enumerate().skip(1) {
        // The block ends 800 ms after the store's millisecond of the 429's answer.
        let after = *at - arrivals[0];
        assert!(after >= Duration::from_millis(799), "request {i} was sent {after:?} after the 429");
    }
}

/// Completed runs executed again return their recorded answers with no request, and do not
/// wait for a limit whose window their first execution filled for a minute.
async fn replayed_runs_send_nothing_and_do_not_wait(store: Arc<dyn Store>) {
    let mock = MockOpenAi::responder(|_| MockReply::text("done")).await;
    let limit = ModelLimit::new("openai", "gpt-4o-mini").requests_per_minute(3);
    let wf = engine(&store, &limit);
    for i in 0..3 {
        assert_eq!(
            bot(&wf, &mock, 0).run_with_id("Go", &format!("replayed-{i}")).await.unwrap().output,
            "done"
        );
    }
    assert_eq!(mock.requests(), 3);
    // Another process replays them; waiting for the full window would take a minute.
    let other = engine(&store, &limit);
    let replays = async {
        for i in 0..3 {
            let run = bot(&other, &mock, 0).run_with_id("Go", &format!("replayed-{i}")).await.unwrap();
            assert_eq!(run.output, "done");
        }
    };
    tokio::time::timeout(Duration::from_secs(30), replays).await.expect("a replay waited for the limit");
    assert_eq!(mock.requests(), 3, "a replay sends no request");
    // The window holds the three first requests and nothing of the replays: under a limit of
    // four, one more is granted, and then no other.
    let four = limit.clone().requests_per_minute(4).rate_limit();
    let probe = |id: &str| RateAcquire::new(limit.key(), id, four, RateCost::new(1, 0), now_ms());
    assert_eq!(
        store.acquire_rate(&probe("a")).await.unwrap(),
        RateDecision::Granted,
        "a replay took a grant"
    );
    assert!(matches!(store.acquire_rate(&probe("b")).await.unwrap(), RateDecision::RetryAt { .. }));
}

/// One test per behaviour and store.
macro_rules! on_store {
    ($($behaviour:ident),* $(,)?) => {
        mod on {
            $(
                mod $behaviour {
                    async fn on(make: impl std::future::Future<Output = Option<super::super::Fixture>>) {
                        let Some(fixture) = make.await else { return };
                        super::super::$behaviour(fixture.store.clone()).await;
                    }
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn memory() { on(super::super::memory()).await }
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn sqlite() { on(super::super::sqlite()).await }
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn redis() { on(super::super::redis()).await }
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn postgres() { on(super::super::postgres()).await }
                }
            )*
        }
    };
}

on_store!(
    concurrent_runs_keep_the_limit_across_engines,
    a_429_holds_back_the_other_runs,
    replayed_runs_send_nothing_and_do_not_wait,
);
