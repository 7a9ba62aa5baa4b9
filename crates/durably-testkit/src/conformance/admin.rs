//! The behaviours of the operating methods of [`Store`]: `list_signals`, `delete_run` and
//! `update_run_unless_cancelled` (export, purge and cancellation across processes). Re-exported
//! from [`conformance`](crate::conformance), so [`store_conformance_tests!`] lists them with the
//! rest.
//!
//! [`store_conformance_tests!`]: crate::store_conformance_tests

// A test suite reports failure by panicking: the workspace's library lints do not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use durably_core::{
    Error, LeaseOutcome, NewRun, RunFilter, RunStatus, RunUpdate, SignalRecord, StepRecord, StepStatus, Store,
};

const WF: &str = "conformance-workflow";

async fn open<S: Store>(store: &S, run_id: &str, now_ms: i64) {
    store
        .open_run(NewRun::new(run_id, WF, Some(r#"{"x":1}"#.to_owned()), now_ms))
        .await
        .unwrap_or_else(|e| panic!("open_run(`{run_id}`) failed: {e}"));
}

async fn save<S: Store>(store: &S, run_id: &str, step_id: &str, at_ms: i64) {
    let mut step = StepRecord::new(step_id, "task", StepStatus::Completed, at_ms);
    step.value = Some("1".to_owned());
    step.attempts = 1;
    store.save_step(run_id, &step).await.unwrap_or_else(|e| panic!("save_step(`{run_id}`) failed: {e}"));
}

async fn deliver<S: Store>(store: &S, run_id: &str, name: &str, payload: &str, at_ms: i64) {
    store
        .deliver_signal(run_id, &SignalRecord::new(name, payload, at_ms))
        .await
        .unwrap_or_else(|e| panic!("deliver_signal(`{run_id}`, `{name}`) failed: {e}"));
}

/// `list_signals` returns every signal of the run with payload and time, oldest first, then by
/// name, and nothing of other runs.
pub async fn list_signals_returns_every_signal_oldest_first<S: Store>(store: Arc<S>) {
    open(&*store, "run-a", 1_000).await;
    deliver(&*store, "run-a", "b-second", r#"{"approved":true}"#, 2_000).await;
    deliver(&*store, "run-a", "z-first", "\"early\"", 1_500).await;
    deliver(&*store, "run-a", "a-second", "null", 2_000).await;
    deliver(&*store, "run-b", "other", "1", 1_000).await;
    let signals = store.list_signals("run-a").await.unwrap();
    assert_eq!(
        signals,
        vec![
            SignalRecord::new("z-first", "\"early\"", 1_500),
            SignalRecord::new("a-second", "null", 2_000),
            SignalRecord::new("b-second", r#"{"approved":true}"#, 2_000),
        ]
    );
}

/// `list_signals` of a run without signals (or an unknown run) is empty, and it changes
/// nothing: the run keeps its status.
pub async fn list_signals_of_a_run_without_signals_is_empty_and_changes_nothing<S: Store>(store: Arc<S>) {
    assert!(store.list_signals("nope").await.unwrap().is_empty());
    open(&*store, "run-a", 1_000).await;
    store.update_run("run-a", &RunUpdate::new(RunStatus::Waiting, 1_100).waiting_on("go")).await.unwrap();
    assert!(store.list_signals("run-a").await.unwrap().is_empty());
    let run = store.get_run("run-a").await.unwrap().unwrap();
    assert_eq!((run.status, run.waiting_on.as_deref()), (RunStatus::Waiting, Some("go")));
}

/// `list_signals` finds signals delivered before the run existed.
pub async fn list_signals_includes_signals_delivered_before_the_run<S: Store>(store: Arc<S>) {
    deliver(&*store, "run-a", "early", "1", 500).await;
    open(&*store, "run-a", 1_000).await;
    assert_eq!(store.list_signals("run-a").await.unwrap(), vec![SignalRecord::new("early", "1", 500)]);
}

/// `delete_run` removes the run, its steps, its signals and its lease, and returns true.
pub async fn delete_run_removes_the_run_steps_signals_and_lease<S: Store>(store: Arc<S>) {
    open(&*store, "run-a", 1_000).await;
    save(&*store, "run-a", "s1", 1_001).await;
    save(&*store, "run-a", "s2", 1_002).await;
    deliver(&*store, "run-a", "approval", "true", 1_003).await;
    let now = durably_core::now_ms();
    let lease = store.acquire_lease("run-a", "owner-1", Duration::from_secs(60), now).await.unwrap();
    assert_eq!(lease, LeaseOutcome::Acquired);
    assert!(store.delete_run("run-a").await.unwrap());
    assert_eq!(store.get_run("run-a").await.unwrap(), None);
    assert!(store.list_steps("run-a").await.unwrap().is_empty());
    assert!(store.list_signals("run-a").await.unwrap().is_empty());
    assert_eq!(store.get_signal("run-a", "approval").await.unwrap(), None);
    assert!(store.list_runs(&RunFilter::new()).await.unwrap().is_empty());
    // The lease went with it: another owner takes the id at once.
    let other = store.acquire_lease("run-a", "owner-2", Duration::from_secs(60), now).await.unwrap();
    assert_eq!(other, LeaseOutcome::Acquired);
    // A new run under the same id starts empty.
    open(&*store, "run-a", 2_000).await;
    let history = store.open_run(NewRun::new("run-a", WF, None, 2_001)).await.unwrap();
    assert!(history.steps.is_empty() && history.signals.is_empty());
}

/// `delete_run` of an unknown run returns false; it touches no other run.
pub async fn delete_run_of_an_unknown_run_is_false_and_leaves_others<S: Store>(store: Arc<S>) {
    open(&*store, "run-a", 1_000).await;
    save(&*store, "run-a", "s1", 1_001).await;
    deliver(&*store, "run-a", "approval", "true", 1_003).await;
    assert!(!store.delete_run("run-b").await.unwrap());
    assert!(!store.delete_run("run-").await.unwrap());
    assert!(store.get_run("run-a").await.unwrap().is_some());
    assert_eq!(store.list_steps("run-a").await.unwrap().len(), 1);
    assert_eq!(store.list_signals("run-a").await.unwrap().len(), 1);
}

/// `update_run_unless_cancelled` applies the update to a run that is not cancelled and
/// returns true.
pub async fn update_run_unless_cancelled_updates_an_active_run<S: Store>(store: Arc<S>) {
    open(&*store, "run-a", 1_000).await;
    let update = RunUpdate::new(RunStatus::Completed, 1_500).output("42");
    assert!(store.update_run_unless_cancelled("run-a", &update).await.unwrap());
    let run = store.get_run("run-a").await.unwrap().unwrap();
    assert_eq!(
        (run.status, run.output.as_deref(), run.updated_at_ms),
        (RunStatus::Completed, Some("42"), 1_500)
    );
}

/// `update_run_unless_cancelled` leaves a cancelled run exactly as it was and returns false.
pub async fn update_run_unless_cancelled_keeps_a_cancelled_run<S: Store>(store: Arc<S>) {
    open(&*store, "run-a", 1_000).await;
    store.update_run("run-a", &RunUpdate::new(RunStatus::Cancelled, 1_200)).await.unwrap();
    let before = store.get_run("run-a").await.unwrap().unwrap();
    for status in [RunStatus::Running, RunStatus::Waiting, RunStatus::Completed, RunStatus::Failed] {
        let update = RunUpdate::new(status, 1_500).output("1").error("e").waiting_on("w");
        assert!(!store.update_run_unless_cancelled("run-a", &update).await.unwrap(), "{status}");
    }
    assert_eq!(store.get_run("run-a").await.unwrap().unwrap(), before);
}

/// `update_run_unless_cancelled` of an unknown run is `RunNotFound` and creates nothing.
pub async fn update_run_unless_cancelled_of_an_unknown_run_is_run_not_found<S: Store>(store: Arc<S>) {
    let err = store
        .update_run_unless_cancelled("nope", &RunUpdate::new(RunStatus::Completed, 1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RunNotFound { ref run_id } if run_id == "nope"), "{err}");
    assert_eq!(store.get_run("nope").await.unwrap(), None);
}
