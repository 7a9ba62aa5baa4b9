//! The engine on `PostgresStore`, end to end: a workflow whose second task fails is resumed by a
//! second engine (its own store and pool, as after a restart or on another machine) that
//! replays the first task from PostgreSQL without running it; a completed run returns its
//! stored output; a run waiting on a signal is woken by a `complete` from another engine.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::fresh;
use durably_core::{RunStatus, StepStatus, Workflow};

#[derive(Default)]
struct Counters {
    fetch: AtomicUsize,
    charge: AtomicUsize,
    body: AtomicUsize,
}

async fn order(counters: Arc<Counters>, fail_charge: Arc<AtomicBool>) -> durably_core::Result<u64> {
    counters.body.fetch_add(1, Ordering::SeqCst);
    let c = Arc::clone(&counters);
    let price: u64 = durably_core::step("fetch_price", move || {
        let c = Arc::clone(&c);
        async move {
            c.fetch.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(40)
        }
    })
    .await?;
    let c = Arc::clone(&counters);
    let charged: u64 = durably_core::step("charge", move || {
        let c = Arc::clone(&c);
        let fail = Arc::clone(&fail_charge);
        async move {
            c.charge.fetch_add(1, Ordering::SeqCst);
            if fail.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("card network down"));
            }
            Ok(price + 2)
        }
    })
    .retries(0)
    .await?;
    Ok(charged)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_resumes_on_a_second_engine_replaying_finished_steps_from_postgres() {
    let Some((builder, _guard)) = fresh().await else { return };
    let counters = Arc::new(Counters::default());
    let fail = Arc::new(AtomicBool::new(true));

    let first = Workflow::builder("shop").store(builder.clone().connect().await.unwrap()).build();
    let err = first
        .run("order-1", |_ctx| order(Arc::clone(&counters), Arc::clone(&fail)))
        .await
        .expect_err("charge fails on the first engine");
    assert!(err.to_string().contains("card network down"), "{err}");
    assert_eq!(first.get_run("order-1").await.unwrap().unwrap().status, RunStatus::Failed);
    assert_eq!((counters.fetch.load(Ordering::SeqCst), counters.charge.load(Ordering::SeqCst)), (1, 1));
    drop(first);

    // A new engine with its own store: only what PostgreSQL holds carries over.
    fail.store(false, Ordering::SeqCst);
    let second = Workflow::builder("shop").store(builder.clone().connect().await.unwrap()).build();
    let total = second.run("order-1", |_ctx| order(Arc::clone(&counters), Arc::clone(&fail))).await.unwrap();
    assert_eq!(total, 42);
    assert_eq!(counters.fetch.load(Ordering::SeqCst), 1, "fetch_price was replayed, not executed again");
    assert_eq!(counters.charge.load(Ordering::SeqCst), 2, "only the failed step ran again");

    let steps = second.list_steps("order-1").await.unwrap();
    let summary: Vec<(&str, StepStatus)> = steps.iter().map(|s| (s.name.as_str(), s.status)).collect();
    assert_eq!(summary, [("fetch_price", StepStatus::Completed), ("charge", StepStatus::Completed)]);
    assert_eq!(second.output::<u64>("order-1").await.unwrap(), Some(42));

    // A third engine gets the stored output without running the body.
    let third = Workflow::builder("shop").store(builder.connect().await.unwrap()).build();
    let bodies = counters.body.load(Ordering::SeqCst);
    assert_eq!(
        third.run("order-1", |_ctx| order(Arc::clone(&counters), Arc::clone(&fail))).await.unwrap(),
        42
    );
    assert_eq!(counters.body.load(Ordering::SeqCst), bodies, "a completed run does not run its body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_run_is_woken_by_a_signal_completed_on_another_engine() {
    let Some((builder, _guard)) = fresh().await else { return };
    let waiting_engine =
        Workflow::builder("approvals").store(builder.clone().connect().await.unwrap()).build();
    let other_engine = Workflow::builder("approvals").store(builder.connect().await.unwrap()).build();

    let run = tokio::spawn(async move {
        waiting_engine
            .run("expense-9", |_ctx| async move {
                let approved: bool = durably_core::signal("manager-approval").await?;
                Ok::<_, durably_core::Error>(approved)
            })
            .await
    });
    // Wait until the run is recorded as waiting, then approve from the other engine.
    let mut waiting = false;
    for _ in 0..1_200 {
        if let Some(r) = other_engine.get_run("expense-9").await.unwrap()
            && r.status == RunStatus::Waiting
        {
            waiting = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(waiting, "the run never reached `waiting`");
    assert!(other_engine.complete("expense-9", "manager-approval", &true).await.unwrap());
    // The engine's own wait is 60 s per store wait: finishing well before proves the wake-up.
    let approved = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the waiting run was not woken by the notification")
        .unwrap()
        .unwrap();
    assert!(approved);
    assert_eq!(other_engine.get_run("expense-9").await.unwrap().unwrap().status, RunStatus::Completed);
}
