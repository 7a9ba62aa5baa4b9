//! The behaviours of [`RateLimits`](durably_core::store::RateLimits): grants up to the limit
//! then a refusal naming when to try again, tokens counted, settling with the real cost, blocks,
//! independent keys, racing acquirers that never exceed the limit, and invalid limits.
//!
//! A store may keep rate windows by its own clock (Redis and PostgreSQL use the server's, as
//! for leases and queue rates), so these tests pass the real time as `now_ms` and wait out
//! short windows for real.

// A test suite reports failure by panicking: the workspace's library lints do not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use durably_core::{Error, RateAcquire, RateCost, RateDecision, RateLimit, Store, now_ms};

const MINUTE: Duration = Duration::from_secs(60);

async fn acquire<S: Store + ?Sized>(
    store: &S,
    key: &str,
    id: &str,
    limit: RateLimit,
    cost: RateCost,
) -> RateDecision {
    store
        .acquire_rate(&RateAcquire::new(key, id, limit, cost, now_ms()))
        .await
        .unwrap_or_else(|e| panic!("acquire_rate(`{key}`, `{id}`) failed: {e}"))
}

fn requests(n: u32) -> RateLimit {
    RateLimit::per(MINUTE).requests(n)
}

fn one() -> RateCost {
    RateCost::new(1, 0)
}

/// The wait of a refusal, which must be one.
fn wait_of(decision: RateDecision, what: &str) -> Duration {
    match decision {
        RateDecision::RetryAt { wait, .. } => wait,
        other => panic!("{what}: expected a refusal with a retry time, got {other:?}"),
    }
}

/// Grants up to the limit, then refuses with a retry time within the period; acquiring a grant
/// id again answers `Granted` without counting it twice.
pub async fn rate_limit_grants_up_to_the_limit_then_refuses_with_a_retry_time<S: Store>(store: Arc<S>) {
    for i in 0..3 {
        let decision = acquire(&*store, "model:a", &format!("g{i}"), requests(3), one()).await;
        assert_eq!(decision, RateDecision::Granted, "grant {i} of a limit of 3");
    }
    let wait = wait_of(acquire(&*store, "model:a", "g3", requests(3), one()).await, "a 4th request of 3");
    assert!(
        wait > Duration::ZERO && wait <= MINUTE,
        "the retry time must fall within the period, not {wait:?} away"
    );
    assert_eq!(
        acquire(&*store, "model:a", "g1", requests(3), one()).await,
        RateDecision::Granted,
        "acquiring a recorded grant id again (a lost reply) is granted"
    );
    wait_of(
        acquire(&*store, "model:a", "g4", requests(3), one()).await,
        "a repeated grant id must not count twice",
    );
}

/// Tokens count: a cost that would take the window past the token limit is refused, a smaller
/// one that fits is granted.
pub async fn rate_limit_counts_tokens<S: Store>(store: Arc<S>) {
    let limit = RateLimit::per(MINUTE).tokens(100);
    assert_eq!(acquire(&*store, "k", "a", limit, RateCost::new(1, 60)).await, RateDecision::Granted);
    wait_of(acquire(&*store, "k", "b", limit, RateCost::new(1, 50)).await, "60 + 50 tokens of 100");
    assert_eq!(acquire(&*store, "k", "c", limit, RateCost::new(1, 40)).await, RateDecision::Granted);
    wait_of(acquire(&*store, "k", "d", limit, RateCost::new(1, 1)).await, "100 + 1 tokens of 100");
}

/// Settling a grant replaces its estimate with the real cost, down or up.
pub async fn settling_a_grant_counts_its_actual_tokens<S: Store>(store: Arc<S>) {
    let limit = RateLimit::per(MINUTE).tokens(100);
    assert_eq!(acquire(&*store, "k", "a", limit, RateCost::new(1, 90)).await, RateDecision::Granted);
    wait_of(acquire(&*store, "k", "b", limit, RateCost::new(1, 20)).await, "an estimate of 90 + 20 of 100");
    store.settle_rate("k", "a", RateCost::new(1, 10), now_ms()).await.unwrap();
    assert_eq!(
        acquire(&*store, "k", "c", limit, RateCost::new(1, 20)).await,
        RateDecision::Granted,
        "settled at 10 tokens, 20 more fit"
    );
    store.settle_rate("k", "a", RateCost::new(1, 75), now_ms()).await.unwrap();
    wait_of(
        acquire(&*store, "k", "d", limit, RateCost::new(1, 10)).await,
        "settled at 75, with 20: 10 more do not fit",
    );
    assert_eq!(acquire(&*store, "k", "e", limit, RateCost::new(1, 5)).await, RateDecision::Granted);
}

/// A block refuses every acquire of its key until it ends; a shorter block changes nothing;
/// once it ended, acquires are granted again.
pub async fn block_rate_refuses_until_the_block_ends<S: Store>(store: Arc<S>) {
    store.block_rate("k", MINUTE, now_ms()).await.unwrap();
    let wait = wait_of(acquire(&*store, "k", "a", requests(10), one()).await, "a blocked key");
    assert!(
        wait > Duration::from_secs(50) && wait <= MINUTE,
        "the retry time is the block's end, not {wait:?} away"
    );
    store.block_rate("k", Duration::from_millis(1), now_ms()).await.unwrap();
    wait_of(
        acquire(&*store, "k", "b", requests(10), one()).await,
        "a shorter block must not shorten the block",
    );
    assert_eq!(
        acquire(&*store, "other", "a", requests(10), one()).await,
        RateDecision::Granted,
        "other keys are not blocked"
    );

    store.block_rate("short", Duration::from_millis(300), now_ms()).await.unwrap();
    let wait = wait_of(acquire(&*store, "short", "a", requests(10), one()).await, "a blocked key");
    tokio::time::sleep(wait + Duration::from_millis(50)).await;
    assert_eq!(
        acquire(&*store, "short", "a", requests(10), one()).await,
        RateDecision::Granted,
        "the block ended"
    );
}

/// A refused request is granted once the grants before it have aged out of the window, at the
/// time the refusal named.
pub async fn a_refused_request_fits_once_the_window_passed<S: Store>(store: Arc<S>) {
    let limit = RateLimit::per(Duration::from_millis(400)).requests(2);
    assert_eq!(acquire(&*store, "k", "a", limit, one()).await, RateDecision::Granted);
    assert_eq!(acquire(&*store, "k", "b", limit, one()).await, RateDecision::Granted);
    let wait = wait_of(acquire(&*store, "k", "c", limit, one()).await, "a 3rd request of 2");
    assert!(
        wait <= Duration::from_millis(400),
        "the retry time must fall within the period, not {wait:?} away"
    );
    tokio::time::sleep(wait + Duration::from_millis(50)).await;
    assert_eq!(
        acquire(&*store, "k", "c", limit, one()).await,
        RateDecision::Granted,
        "at the named time it fits"
    );
}

/// Each key has its own window and block.
pub async fn rate_limit_keys_are_independent<S: Store>(store: Arc<S>) {
    for key in ["model:openai/a", "model:openai/b", "model:other/a"] {
        assert_eq!(acquire(&*store, key, "x", requests(1), one()).await, RateDecision::Granted, "{key}");
        wait_of(acquire(&*store, key, "y", requests(1), one()).await, key);
    }
}

/// Many acquirers racing for one key are granted exactly the limit, never more.
pub async fn racing_acquires_never_exceed_the_limit<S: Store>(store: Arc<S>) {
    let limit = RateLimit::per(MINUTE).requests(5).tokens(1_000);
    let mut tasks = Vec::new();
    for i in 0..32 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            acquire(&*store, "k", &format!("g{i}"), limit, RateCost::new(1, 100)).await
                == RateDecision::Granted
        }));
    }
    let mut granted = 0;
    for task in tasks {
        granted += usize::from(task.await.expect("an acquire task panicked"));
    }
    assert_eq!(granted, 5, "32 racing acquires under a limit of 5 requests");
}

/// A limit of zero, a zero period or a cost above the limit is `Invalid`, and nothing is counted.
pub async fn invalid_rate_limits_are_refused<S: Store>(store: Arc<S>) {
    let invalid = [
        (RateLimit::per(MINUTE).requests(0), one(), "0 requests"),
        (RateLimit::per(MINUTE).tokens(0), one(), "0 tokens"),
        (RateLimit::per(Duration::ZERO).requests(1), one(), "a zero period"),
        (RateLimit::per(MINUTE).tokens(10), RateCost::new(1, 11), "a cost above the limit"),
        (requests(1), RateCost::new(2, 0), "more requests than the limit"),
    ];
    for (limit, cost, what) in invalid {
        let outcome = store.acquire_rate(&RateAcquire::new("k", "a", limit, cost, now_ms())).await;
        assert!(matches!(outcome, Err(Error::Invalid { .. })), "{what}: expected Invalid, got {outcome:?}");
    }
    assert_eq!(
        acquire(&*store, "k", "b", requests(1), one()).await,
        RateDecision::Granted,
        "nothing was counted"
    );
}
