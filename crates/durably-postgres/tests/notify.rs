//! Cross-process wake-ups by LISTEN/NOTIFY: a signal delivered through a second
//! `PostgresStore` (as another process would) wakes a `wait_for_signal` caller long before its
//! 30 s `max_wait`. The bounds asserted are far from the expected latency (milliseconds): they
//! only tell a notification from the timeout.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fresh;
use durably_core::SignalRecord;
use durably_core::store::prelude::*;
use durably_postgres::PostgresStore;
use tokio::task::JoinHandle;

const MAX_WAIT: Duration = Duration::from_secs(30);
/// Half the max wait: returning before it means a notification, not the timeout, woke the waiter.
const WOKEN_BEFORE: Duration = Duration::from_secs(15);

/// Two stores on one fresh schema: the waiter's and another "process"'s.
async fn pair() -> Option<(Arc<PostgresStore>, PostgresStore, common::SchemaGuard)> {
    let (builder, guard) = fresh().await?;
    let waiter = builder.connect().await.unwrap();
    let sender = PostgresStore::builder(common::url()).schema(&guard.0).pool_size(1).connect().await.unwrap();
    Some((Arc::new(waiter), sender, guard))
}

/// Starts a wait on `(run_id, name)` and returns once the waiter is registered.
async fn wait_in_background(store: &Arc<PostgresStore>, run_id: &str, name: &str) -> JoinHandle<Duration> {
    let before = store.runs_waited_on();
    let task = tokio::spawn({
        let store = Arc::clone(store);
        let (run_id, name) = (run_id.to_owned(), name.to_owned());
        async move {
            let started = Instant::now();
            store.wait_for_signal(&run_id, &name, MAX_WAIT).await;
            started.elapsed()
        }
    });
    while store.runs_waited_on() == before {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_delivered_by_another_store_wakes_the_waiter_promptly() {
    let Some((waiter, sender, _guard)) = pair().await else { return };
    let waiting = wait_in_background(&waiter, "order-7", "approval").await;
    let sent = Instant::now();
    assert!(sender.deliver_signal("order-7", &SignalRecord::new("approval", "true", 1_000)).await.unwrap());
    let waited = waiting.await.unwrap();
    println!("wake-up latency across stores: {:?} after delivery", sent.elapsed());
    assert!(waited < WOKEN_BEFORE, "woken after {waited:?}: the notification did not arrive");
    assert_eq!(waiter.runs_waited_on(), 0, "a finished wait leaves no registration behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_id_too_long_for_a_notification_payload_still_wakes_its_waiter() {
    let Some((waiter, sender, _guard)) = pair().await else { return };
    // 8 KB does not fit in a NOTIFY payload: the notification wakes every waiter instead.
    let long_id = "r".repeat(8 * 1024);
    let waiting = wait_in_background(&waiter, &long_id, "go").await;
    assert!(sender.deliver_signal(&long_id, &SignalRecord::new("go", "1", 1_000)).await.unwrap());
    let waited = waiting.await.unwrap();
    assert!(waited < WOKEN_BEFORE, "woken after {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_delivered_before_the_wait_returns_at_once() {
    let Some((waiter, sender, _guard)) = pair().await else { return };
    assert!(sender.deliver_signal("r", &SignalRecord::new("go", "1", 1_000)).await.unwrap());
    let started = Instant::now();
    waiter.wait_for_signal("r", "go", MAX_WAIT).await;
    assert!(started.elapsed() < WOKEN_BEFORE, "an already delivered signal must not wait for max_wait");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_delivery_sends_no_wake_up() {
    let Some((waiter, sender, _guard)) = pair().await else { return };
    // The first delivery's notification must be consumed before the real waiter registers:
    // a first waiter returns once it has been.
    let first = wait_in_background(&waiter, "r", "go").await;
    assert!(sender.deliver_signal("r", &SignalRecord::new("go", "1", 1_000)).await.unwrap());
    assert!(first.await.unwrap() < WOKEN_BEFORE);
    // The waiter asks about another signal of the run; only a delivery that records
    // something may wake it, and the duplicate below records nothing.
    let waiting = wait_in_background(&waiter, "r", "other").await;
    assert!(!sender.deliver_signal("r", &SignalRecord::new("go", "2", 1_100)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "a duplicate delivery woke the waiter");
    // A real delivery of the awaited signal does.
    assert!(sender.deliver_signal("r", &SignalRecord::new("other", "3", 1_200)).await.unwrap());
    assert!(waiting.await.unwrap() < WOKEN_BEFORE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_on_other_schemas_do_not_wake_each_other() {
    let Some((waiter, _sender, _guard)) = pair().await else { return };
    let Some((other_builder, _other_guard)) = fresh().await else { return };
    let other = other_builder.connect().await.unwrap();
    assert_ne!(other.channel(), waiter.channel());
    let waiting = wait_in_background(&waiter, "r", "go").await;
    assert!(other.deliver_signal("r", &SignalRecord::new("go", "1", 1_000)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "a delivery in another schema woke the waiter");
    waiting.abort();
}

/// Runs `wait` in the background and gives it time to register; its task returns how long it
/// waited. (A write that lands before the registration is found by the wait's own look, so the
/// pause only keeps the test meaningful, never makes it fail.)
async fn in_background<F>(wait: F) -> JoinHandle<Duration>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let task = tokio::spawn(async move {
        let started = Instant::now();
        wait.await;
        started.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_enqueued_or_unparked_by_another_store_wakes_a_worker_waiting_for_work() {
    let Some((waiter, sender, _guard)) = pair().await else { return };
    let queues = vec!["q".to_owned()];
    let wait = {
        let (store, queues) = (Arc::clone(&waiter), queues.clone());
        async move { store.wait_for_work(&queues, MAX_WAIT).await }
    };
    let waiting = in_background(wait).await;
    sender.enqueue(&durably_core::QueuedRun::new("job", "wf", None, "q", 1_000)).await.unwrap();
    let waited = waiting.await.unwrap();
    assert!(waited < WOKEN_BEFORE, "woken after {waited:?}: the enqueue did not notify");

    let claim = durably_core::Claim::new("q", "w", MAX_WAIT, durably_core::now_ms(), 1);
    assert_eq!(waiter.claim_runs(&claim).await.unwrap().len(), 1);
    assert!(waiter.park_run("job", "w", "go", None, durably_core::now_ms()).await.unwrap());
    let wait = {
        let store = Arc::clone(&waiter);
        async move { store.wait_for_work(&queues, MAX_WAIT).await }
    };
    let waiting = in_background(wait).await;
    assert!(
        sender.deliver_signal("job", &SignalRecord::new("go", "true", durably_core::now_ms())).await.unwrap()
    );
    let waited = waiting.await.unwrap();
    assert!(waited < WOKEN_BEFORE, "woken after {waited:?}: the unparking delivery did not notify");
    assert_eq!(waiter.claim_runs(&claim).await.unwrap().len(), 1, "the unparked run is claimable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_appended_by_another_store_wake_a_reader() {
    let Some((waiter, sender, _guard)) = pair().await else { return };
    let wait = {
        let store = Arc::clone(&waiter);
        async move { store.wait_for_events("r", 0, MAX_WAIT).await }
    };
    let waiting = in_background(wait).await;
    sender.append_events("r", &[durably_core::NewEvent::new("text", "\"hi\"", 1)], u64::MAX).await.unwrap();
    let waited = waiting.await.unwrap();
    assert!(waited < WOKEN_BEFORE, "woken after {waited:?}: the append did not notify");
}
