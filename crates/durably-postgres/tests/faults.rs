//! Backends killed under the store (`pg_terminate_backend` on this store's connections only,
//! found by their `application_name`): the store recovers through its pool, an operation cut
//! off mid-way fails with a transient `Error::Store` (which the engine retries when that is safe), and
//! nothing recorded is lost. The listener reconnects too.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{fresh, raw, start, step, terminate_backends};
use durably_core::store::prelude::*;
use durably_core::{Error, RunStatus, RunUpdate, SignalRecord, StoreErrorKind, Workflow};
use durably_postgres::PostgresStore;

/// Waits until one of `app`'s backends is blocked on a lock, and returns its pid.
async fn blocked_backend(app: &str) -> i32 {
    let client = raw().await;
    for _ in 0..1_200 {
        let row = client
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
                &[&app],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            return row.get(0);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no backend of `{app}` ever waited on the lock");
}

async fn terminate(pid: i32) {
    let killed: bool =
        raw().await.query_one("SELECT pg_terminate_backend($1)", &[&pid]).await.unwrap().get(0);
    assert!(killed, "backend {pid} was not terminated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_every_pooled_backend_loses_nothing_and_the_next_operations_succeed() {
    let Some((builder, guard)) = fresh().await else { return };
    let store = builder.connect().await.unwrap();
    let app = guard.0.clone();
    start(&store, "r").await;
    store.save_step("r", &step("before", 1_000)).await.unwrap();
    assert!(store.deliver_signal("r", &SignalRecord::new("go", "1", 1_000)).await.unwrap());
    assert!(terminate_backends(&app).await >= 1, "the store had a pooled connection to kill");

    // Each operation now runs on a connection that was cut: it either recovers on a fresh one
    // or fails naming itself, and then the same operation succeeds.
    let mut failures = Vec::new();
    for attempt in 0..2 {
        match store.save_step("r", &step("after", 2_000)).await {
            Ok(()) => break,
            Err(e @ Error::Store { op: "save_step", .. }) if attempt == 0 => {
                assert_eq!(e.kind(), Some(StoreErrorKind::Transient), "a lost connection is transient: {e}");
                failures.push(e.to_string())
            }
            Err(e) => panic!("save_step after the kill: {e:?}"),
        }
    }
    let history = store.open_run(common::new_run("r")).await.expect("open_run after the kill");
    let ids: Vec<&str> = history.steps.iter().map(|s| s.step_id.as_str()).collect();
    assert_eq!(ids, ["before", "after"], "nothing recorded is lost (failures seen: {failures:?})");
    assert_eq!(history.signals.len(), 1);
}

/// Locks run `r`'s row from another session, runs `update` (whose UPDATE waits on the lock),
/// kills the backend it waits on, then lets the lock go. Returns what `update` returned.
async fn cut_off_while_updating<T: Send + 'static>(
    schema: &str,
    update: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    let mut locker = raw().await;
    let tx = locker.transaction().await.unwrap();
    tx.execute(&format!("SELECT 1 FROM \"{schema}\".runs WHERE run_id = 'r' FOR UPDATE"), &[]).await.unwrap();
    let updating = tokio::spawn(update);
    terminate(blocked_backend(schema).await).await;
    tx.commit().await.unwrap();
    updating.await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_cut_off_mid_statement_is_transient_and_the_engine_retries_it() {
    let Some((builder, guard)) = fresh().await else { return };
    let store = Arc::new(builder.pool_size(2).connect().await.unwrap());
    start(&*store, "r").await;

    // The store itself does not retry: it reports the cut as transient, naming the call.
    let err = cut_off_while_updating(&guard.0, {
        let store = Arc::clone(&store);
        async move { store.update_run("r", &RunUpdate::new(RunStatus::Waiting, 2_000)).await }
    })
    .await
    .expect_err("the store reports the cut-off update");
    assert!(matches!(&err, Error::Store { op: "update_run", .. }), "{err:?}");
    assert_eq!(err.kind(), Some(StoreErrorKind::Transient));

    // The engine makes the same call again on a fresh connection.
    let wf = Workflow::builder("faults").shared_store(store.clone()).build();
    cut_off_while_updating(&guard.0, async move { wf.cancel("r").await })
        .await
        .expect("the engine retried the update on a fresh connection");
    assert_eq!(store.get_run("r").await.unwrap().unwrap().status, RunStatus::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_cut_off_mid_statement_fails_naming_it_and_the_next_one_succeeds() {
    let Some((builder, guard)) = fresh().await else { return };
    let store = Arc::new(builder.pool_size(2).connect().await.unwrap());

    // Another session inserts the same signal without committing: the store's insert waits.
    let mut locker = raw().await;
    let tx = locker.transaction().await.unwrap();
    tx.execute(
        &format!(
            "INSERT INTO \"{}\".signals (run_id, name, payload_text, delivered_at_ms) VALUES ('r', 'go', '0', 0)",
            guard.0
        ),
        &[],
    )
    .await
    .unwrap();
    let delivering = tokio::spawn({
        let store = Arc::clone(&store);
        async move { store.deliver_signal("r", &SignalRecord::new("go", "\"first\"", 1_000)).await }
    });
    terminate(blocked_backend(&guard.0).await).await;
    tx.rollback().await.unwrap();

    // Not retried: whether the insert committed before the cut would be unknowable.
    let err = delivering.await.unwrap().expect_err("the cut-off delivery fails");
    match &err {
        Error::Store { op, run_id, .. } => {
            assert_eq!(*op, "deliver_signal");
            assert_eq!(run_id.as_deref(), Some("r"));
        }
        other => panic!("expected Error::Store, got {other:?}"),
    }
    assert!(err.to_string().contains("deliver_signal"), "{err}");
    assert_eq!(store.get_signal("r", "go").await.unwrap(), None, "the cut-off delivery did not commit");
    assert!(store.deliver_signal("r", &SignalRecord::new("go", "\"second\"", 1_100)).await.unwrap());
    assert_eq!(store.get_signal("r", "go").await.unwrap().as_deref(), Some("\"second\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_reconnects_after_its_backend_is_killed_and_wakes_waiters_again() {
    let Some((builder, guard)) = fresh().await else { return };
    let waiter = Arc::new(builder.clone().connect().await.unwrap());
    let sender = PostgresStore::builder(common::url()).schema(&guard.0).connect().await.unwrap();
    assert!(waiter.is_listening());
    assert_eq!(terminate_backends(&format!("{} listener", guard.0)).await, 1, "one listener per store");
    // It notices the loss and comes back.
    let mut came_back = false;
    for _ in 0..1_200 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        if waiter.is_listening() {
            came_back = true;
            break;
        }
    }
    assert!(came_back, "the listener did not reconnect within 30 s");
    let listeners: i64 = raw()
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&format!("{} listener", guard.0)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(listeners, 1, "exactly one listener connection after the reconnect");

    // A delivery from another store still wakes a waiter well before its 30 s max_wait.
    let waiting = tokio::spawn({
        let waiter = Arc::clone(&waiter);
        async move {
            let started = std::time::Instant::now();
            waiter.wait_for_signal("r", "go", Duration::from_secs(30)).await;
            started.elapsed()
        }
    });
    while waiter.runs_waited_on() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(sender.deliver_signal("r", &SignalRecord::new("go", "1", 1_000)).await.unwrap());
    let waited = waiting.await.unwrap();
    assert!(waited < Duration::from_secs(15), "woken after {waited:?}, not by the notification");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_whose_backends_are_killed_mid_run_finishes_without_losing_or_repeating_steps() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    let Some((builder, guard)) = fresh().await else { return };
    let wf = durably_core::Workflow::builder("faults").store(builder.connect().await.unwrap()).build();
    let executed = Arc::new(AtomicUsize::new(0));
    let body = |executed: Arc<AtomicUsize>, app: String| async move {
        let mut sum = 0u64;
        for i in 0..10u64 {
            let (executed, app) = (Arc::clone(&executed), app.clone());
            sum += durably_core::step("work", move || {
                let (executed, app) = (Arc::clone(&executed), app.clone());
                async move {
                    executed.fetch_add(1, Ordering::SeqCst);
                    if i == 4 {
                        // Every connection of the store, the listener's too, dies mid-run.
                        let killed = terminate_backends(&app).await;
                        let listener = terminate_backends(&format!("{app} listener")).await;
                        assert!(killed >= 1 && listener == 1, "killed {killed} pooled, {listener} listener");
                    }
                    Ok::<_, std::io::Error>(i)
                }
            })
            .step_id(format!("work-{i}"))
            .await?;
        }
        Ok::<_, durably_core::Error>(sum)
    };
    // The run either rides over the lost connections (retried on fresh ones) or stops with a
    // store error; executing it again then finishes it from its checkpoints.
    let first = wf.run("r", |_ctx| body(Arc::clone(&executed), guard.0.clone())).await;
    let total = match first {
        Ok(total) => total,
        Err(e @ Error::Store { .. }) => {
            eprintln!("first execution stopped: {e}");
            wf.run("r", |_ctx| body(Arc::clone(&executed), guard.0.clone())).await.unwrap()
        }
        Err(other) => panic!("unexpected error: {other:?}"),
    };
    assert_eq!(total, 45);
    let steps = wf.list_steps("r").await.unwrap();
    assert_eq!(steps.len(), 10, "every step is recorded once: {steps:?}");
    // A step whose checkpoint write was cut off may run again; nothing else does.
    let runs = executed.load(Ordering::SeqCst);
    assert!((10..=11).contains(&runs), "step bodies ran {runs} times for 10 steps");
    assert_eq!(wf.get_run("r").await.unwrap().unwrap().status, RunStatus::Completed);
}
