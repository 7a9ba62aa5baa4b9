//! Signals: first-write-wins delivery, delivery before the run exists, round trips, and a
//! bounded `wait_for_signal`.

// A test suite reports failure by panicking: the workspace's library lints do not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use durably_core::{SignalRecord, Store};

use super::support::*;

// ---------------------------------------------------------------------------------------------
// Signals

/// The first delivery wins: a second one returns `false` and changes nothing.
pub async fn deliver_signal_first_write_wins<S: Store>(store: Arc<S>) {
    open(&*store, new_run("r", None, 1_000)).await;
    assert!(
        deliver(&*store, "r", "approval", r#"{"approved":true}"#, 1_100).await,
        "first delivery returns true"
    );
    assert!(
        !deliver(&*store, "r", "approval", r#"{"approved":false}"#, 1_200).await,
        "a duplicate returns false"
    );
    assert!(
        !deliver(&*store, "r", "approval", r#"{"approved":true}"#, 1_300).await,
        "even with the same payload"
    );
    assert_eq!(get_signal(&*store, "r", "approval").await.as_deref(), Some(r#"{"approved":true}"#));
    let history = open(&*store, new_run("r", None, 2_000)).await;
    assert_eq!(history.signals, vec![SignalRecord::new("approval", r#"{"approved":true}"#, 1_100)]);
}

/// A signal may be delivered to a run that does not exist yet; that does not create the run.
pub async fn deliver_signal_works_before_the_run_exists<S: Store>(store: Arc<S>) {
    assert!(deliver(&*store, "future-run", "go", "\"now\"", 1_000).await);
    assert_eq!(get_signal(&*store, "future-run", "go").await.as_deref(), Some("\"now\""));
    assert_eq!(get_run(&*store, "future-run").await, None, "delivering a signal must not create the run");
    assert!(
        !deliver(&*store, "future-run", "go", "\"later\"", 1_100).await,
        "first write wins before the run too"
    );
}

/// `get_signal` is `None` for an unknown name, an unknown run, and a name delivered elsewhere.
pub async fn get_signal_of_an_undelivered_signal_is_none<S: Store>(store: Arc<S>) {
    assert_eq!(get_signal(&*store, "nobody", "nothing").await, None);
    assert!(deliver(&*store, "r", "delivered", "1", 1_000).await);
    assert_eq!(get_signal(&*store, "r", "other").await, None);
    assert_eq!(get_signal(&*store, "other-run", "delivered").await, None);
    assert_eq!(get_signal(&*store, "r", "delivered").await.as_deref(), Some("1"));
}

/// The same signal name in two runs is two signals.
pub async fn signals_of_the_same_name_in_different_runs_are_separate<S: Store>(store: Arc<S>) {
    assert!(deliver(&*store, "a", "approval", "\"a\"", 1_000).await);
    assert!(
        deliver(&*store, "b", "approval", "\"b\"", 1_000).await,
        "a signal in another run is not a duplicate"
    );
    assert_eq!(get_signal(&*store, "a", "approval").await.as_deref(), Some("\"a\""));
    assert_eq!(get_signal(&*store, "b", "approval").await.as_deref(), Some("\"b\""));
}

/// Payloads come back byte for byte, 1 MiB included.
pub async fn signal_payloads_round_trip_verbatim<S: Store>(store: Arc<S>) {
    let mut payloads = awkward_json();
    payloads.push(one_megabyte_json());
    for (i, payload) in payloads.iter().enumerate() {
        let name = format!("signal-{i}");
        assert!(deliver(&*store, "r", &name, payload, 1_000 + i as i64).await);
        let got = get_signal(&*store, "r", &name).await;
        assert!(got.as_deref() == Some(payload.as_str()), "payload {} must be verbatim", show(payload));
    }
    let history = open(&*store, new_run("r", None, 5_000)).await;
    let expected: Vec<SignalRecord> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| SignalRecord::new(format!("signal-{i}"), p.clone(), 1_000 + i as i64))
        .collect();
    assert!(by_name(history.signals) == by_name(expected), "open_run must return every payload verbatim");
}

/// Of many concurrent deliveries of one signal exactly one wins, and its payload is kept.
pub async fn concurrent_deliveries_of_one_signal_have_one_winner<S: Store>(store: Arc<S>) {
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let payload = format!("{{\"sender\":{i}}}");
            (payload.clone(), deliver(&*store, "r", "race", &payload, 1_000).await)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (payload, won) = task.await.expect("a delivery task panicked");
        if won {
            winners.push(payload);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one delivery must return true: {winners:?}");
    assert_eq!(get_signal(&*store, "r", "race").await, winners.pop(), "the winner's payload is the one kept");
}
