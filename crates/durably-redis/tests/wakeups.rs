//! Cross-process wake-ups: a signal delivered through another connection (as by another
//! process) ends a `wait_for_signal` long before its `max_wait`, and waits survive a dropped
//! pub/sub connection. Likewise for `wait_for_work` (an unparked run) and `wait_for_events`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Cleanup, PrivateRedis, fresh_prefix, raw, server_or_skip};
use durably_core::store::prelude::*;
use durably_core::{Claim, NewEvent, QueuedRun, SignalRecord};
use durably_redis::RedisStore;

/// Far longer than any test waits: a wait that returns did not run into it.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// What the test allows before calling the wake-up lost (well under `MAX_WAIT`).
const GIVE_UP: Duration = Duration::from_secs(10);

async fn store(url: &str, prefix: &str) -> RedisStore {
    RedisStore::builder(url).prefix(prefix).connect().await.expect("connect to Redis")
}

/// Subscribers of channel `<prefix>:<kind>:<n>:<id>`, asked of the server.
fn subscribers_of(url: &str, prefix: &str, kind: &str, id: &str) -> i64 {
    let channel = format!("{prefix}:{kind}:{}:{id}", id.len());
    let reply: (String, i64) = redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query(&mut raw(url)).unwrap();
    reply.1
}

/// Subscribers of the wake channel of `run_id`.
fn subscribers(url: &str, prefix: &str, run_id: &str) -> i64 {
    subscribers_of(url, prefix, "wake", run_id)
}

async fn until_subscribed(url: &str, prefix: &str, kind: &str, id: &str, n: i64) {
    let deadline = Instant::now() + GIVE_UP;
    while subscribers_of(url, prefix, kind, id) != n {
        assert!(Instant::now() < deadline, "the {kind} channel of `{id}` never had {n} subscriber(s)");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn until_subscribers(url: &str, prefix: &str, run_id: &str, n: i64) {
    until_subscribed(url, prefix, "wake", run_id, n).await;
}

#[tokio::test]
async fn a_delivery_from_another_connection_wakes_the_waiter() {
    let Some(url) = server_or_skip() else { return };
    let prefix = fresh_prefix();
    let _cleanup = Cleanup { url: url.clone(), prefix: prefix.clone() };
    let waiter = Arc::new(store(&url, &prefix).await);
    let sender = store(&url, &prefix).await;
    let run_id = "run:with {awkward} id*";
    let started = Instant::now();
    let wait = tokio::spawn({
        let waiter = Arc::clone(&waiter);
        async move { waiter.wait_for_signal(run_id, "approval", MAX_WAIT).await }
    });
    // Deliver only once the waiter listens, so that the wake-up (not the waiter's first look)
    // is what ends the wait.
    until_subscribers(&url, &prefix, run_id, 1).await;
    let sent = Instant::now();
    assert!(sender.deliver_signal(run_id, &SignalRecord::new("approval", "true", 1)).await.unwrap());
    tokio::time::timeout(GIVE_UP, wait).await.expect("the wait did not end on the delivery").unwrap();
    println!("wake-up after delivery: {:?} (wait started {:?} before)", sent.elapsed(), sent - started);
    until_subscribers(&url, &prefix, run_id, 0).await;
}

#[tokio::test]
async fn a_signal_delivered_before_the_wait_ends_it_at_once() {
    let Some(url) = server_or_skip() else { return };
    let prefix = fresh_prefix();
    let _cleanup = Cleanup { url: url.clone(), prefix: prefix.clone() };
    let store = store(&url, &prefix).await;
    assert!(store.deliver_signal("r", &SignalRecord::new("go", "1", 1)).await.unwrap());
    tokio::time::timeout(GIVE_UP, store.wait_for_signal("r", "go", MAX_WAIT))
        .await
        .expect("a wait for a signal already delivered must not wait for a wake-up");
}

#[tokio::test]
async fn waiters_of_one_run_share_a_subscription_and_a_cancelled_wait_leaves_it() {
    let Some(url) = server_or_skip() else { return };
    let prefix = fresh_prefix();
    let _cleanup = Cleanup { url: url.clone(), prefix: prefix.clone() };
    let waiter = Arc::new(store(&url, &prefix).await);
    let sender = store(&url, &prefix).await;
    let spawn_wait = |name: &'static str| {
        let waiter = Arc::clone(&waiter);
        tokio::spawn(async move { waiter.wait_for_signal("r", name, MAX_WAIT).await })
    };
    let first = spawn_wait("a");
    until_subscribers(&url, &prefix, "r", 1).await;
    let (second, cancelled) = (spawn_wait("a"), spawn_wait("c"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    cancelled.abort();
    let _ = cancelled.await;
    assert_eq!(subscribers(&url, &prefix, "r"), 1, "the other two still wait, on one subscription");
    assert!(sender.deliver_signal("r", &SignalRecord::new("a", "1", 1)).await.unwrap());
    tokio::time::timeout(GIVE_UP, first).await.expect("waiter 1 not woken").unwrap();
    tokio::time::timeout(GIVE_UP, second).await.expect("waiter 2 not woken").unwrap();
    // Every waiter left, the cancelled one included: the subscription is gone.
    until_subscribers(&url, &prefix, "r", 0).await;
}

#[tokio::test]
async fn a_dropped_pubsub_connection_wakes_waiters_and_the_next_wait_reconnects() {
    // A server of our own, so that killing its pub/sub clients disturbs no one else.
    let Some(server) = PrivateRedis::start() else { return };
    let (url, prefix) = (server.url(), fresh_prefix());
    let waiter = Arc::new(store(&url, &prefix).await);
    let sender = store(&url, &prefix).await;
    let wait = |name: &'static str| {
        let waiter = Arc::clone(&waiter);
        tokio::spawn(async move { waiter.wait_for_signal("r", name, MAX_WAIT).await })
    };
    let first = wait("go");
    until_subscribers(&url, &prefix, "r", 1).await;
    let killed: i64 =
        redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub").query(&mut raw(&url)).unwrap();
    assert_eq!(killed, 1, "the store's one pub/sub connection");
    tokio::time::timeout(GIVE_UP, first)
        .await
        .expect("a waiter must wake when its connection drops")
        .unwrap();
    // The engine waits again: on a new connection, and a delivery wakes it.
    let second = wait("go");
    until_subscribers(&url, &prefix, "r", 1).await;
    assert!(sender.deliver_signal("r", &SignalRecord::new("go", "1", 1)).await.unwrap());
    tokio::time::timeout(GIVE_UP, second)
        .await
        .expect("the wait on the new connection was not woken")
        .unwrap();
}

#[tokio::test]
async fn delivering_the_awaited_signal_to_a_parked_run_wakes_wait_for_work_elsewhere() {
    let Some(url) = server_or_skip() else { return };
    let prefix = fresh_prefix();
    let _cleanup = Cleanup { url: url.clone(), prefix: prefix.clone() };
    let worker = Arc::new(store(&url, &prefix).await);
    let other = store(&url, &prefix).await;
    let queue = "q:{awkward}";
    let now = durably_core::now_ms();
    other.enqueue(&QueuedRun::new("job", "wf", None, queue, now)).await.unwrap();
    let claim = Claim::new(queue, "w", MAX_WAIT, now, 1);
    assert_eq!(worker.claim_runs(&claim).await.unwrap().len(), 1);
    assert!(worker.park_run("job", "w", "approval", None, now).await.unwrap());
    // Nothing to claim now, so the wait waits: for the wake-up, not for its first look.
    let wait = tokio::spawn({
        let worker = Arc::clone(&worker);
        async move { worker.wait_for_work(&["elsewhere".to_owned(), queue.to_owned()], MAX_WAIT).await }
    });
    until_subscribed(&url, &prefix, "work", queue, 1).await;
    assert!(other.deliver_signal("job", &SignalRecord::new("unrelated", "1", now)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!wait.is_finished(), "a signal the run does not await must not wake the queue");
    assert!(other.deliver_signal("job", &SignalRecord::new("approval", "1", now)).await.unwrap());
    tokio::time::timeout(GIVE_UP, wait).await.expect("the unpark did not wake wait_for_work").unwrap();
    let claimed =
        worker.claim_runs(&Claim::new(queue, "w", MAX_WAIT, durably_core::now_ms(), 1)).await.unwrap();
    assert_eq!(claimed.len(), 1, "the woken run is claimable");
    until_subscribed(&url, &prefix, "work", queue, 0).await;
}

#[tokio::test]
async fn an_append_from_another_connection_wakes_wait_for_events() {
    let Some(url) = server_or_skip() else { return };
    let prefix = fresh_prefix();
    let _cleanup = Cleanup { url: url.clone(), prefix: prefix.clone() };
    let reader = Arc::new(store(&url, &prefix).await);
    let writer = store(&url, &prefix).await;
    let run_id = "run:{with} events*";
    writer.append_events(run_id, &[NewEvent::new("text", "0", 1)], u64::MAX).await.unwrap();
    let wait = tokio::spawn({
        let reader = Arc::clone(&reader);
        async move { reader.wait_for_events(run_id, 1, MAX_WAIT).await }
    });
    until_subscribed(&url, &prefix, "appended", run_id, 1).await;
    assert_eq!(writer.append_events(run_id, &[NewEvent::new("text", "1", 2)], u64::MAX).await.unwrap(), 1);
    tokio::time::timeout(GIVE_UP, wait).await.expect("the append did not wake wait_for_events").unwrap();
    // A wait for what is already there returns at once.
    tokio::time::timeout(GIVE_UP, reader.wait_for_events(run_id, 1, MAX_WAIT))
        .await
        .expect("events at the offset exist: no need to wait");
}
