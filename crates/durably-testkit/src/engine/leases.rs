//! One executor per run across engines (rule 9 of docs/design.md): each engine stands for a process with
//! its own lease owner id, sharing one store. A second engine gets `RunInProgress` (or waits,
//! if asked to), renewal keeps a run longer than its TTL owned, and an engine that lost its
//! lease stops at the next step boundary and records nothing more.
// A test suite reports failure by panicking, and each test's name is its documentation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use super::{Counter, Harness};
use crate::faults::{FaultStore, Op};
use durably::{Error, RunStatus, Workflow};
use tokio::sync::Semaphore;

/// A gate a step body waits at until the test opens it.
#[derive(Clone)]
struct Gate(Arc<Semaphore>);

impl Gate {
    fn new() -> Gate {
        Gate(Arc::new(Semaphore::new(0)))
    }
    fn open(&self) {
        self.0.add_permits(1_000);
    }
    async fn pass(&self) {
        drop(self.0.acquire().await.unwrap());
    }
}

/// An engine standing for another process on the harness's store, with a short lease.
fn engine(h: &Harness, ttl: Duration) -> Workflow {
    Workflow::builder("test-app")
        .shared_store(h.store())
        .default_backoff(durably::backoff::constant(0.0))
        .lease_ttl(ttl)
        .build()
}

/// Two steps; the first one's body waits at `gate` and counts its executions.
async fn gated_run(wf: &Workflow, run_id: &str, c: Counter, gate: Gate) -> durably::Result<u32> {
    wf.run(run_id, move |_| async move {
        let a = durably::step("first", move || {
            let (c, gate) = (c.clone(), gate.clone());
            async move {
                let n = c.hit();
                gate.pass().await;
                Ok::<_, std::io::Error>(n)
            }
        })
        .await?;
        let b = durably::step("second", || async { Ok::<_, std::io::Error>(10u32) }).await?;
        Ok::<_, Error>(a + b)
    })
    .await
}

/// Waits until `c` reached `n` (a step body started).
async fn until_hits(c: &Counter, n: u32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while c.get() < n {
        assert!(tokio::time::Instant::now() < deadline, "the step body never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn a_second_engine_gets_run_in_progress_naming_the_owner(h: Harness) {
    let (a, b) = (h.wf(), h.wf());
    assert_ne!(a.owner_id(), b.owner_id(), "each engine has its own owner id");
    let (c, gate) = (Counter::new(), Gate::new());
    let first = tokio::spawn({
        let (a, c, gate) = (a.clone(), c.clone(), gate.clone());
        async move { gated_run(&a, "contested", c, gate).await }
    });
    until_hits(&c, 1).await;

    let err = gated_run(&b, "contested", c.clone(), gate.clone()).await.unwrap_err();
    match &err {
        Error::RunInProgress { run_id, owner } => {
            assert_eq!(run_id, "contested");
            assert_eq!(owner, a.owner_id(), "names the engine that holds the lease");
        }
        other => panic!("expected RunInProgress, got {other:?}"),
    }
    assert!(err.to_string().contains(a.owner_id()), "{err}");
    assert_eq!(c.get(), 1, "the refused engine ran no step");

    gate.open();
    assert_eq!(first.await.unwrap().unwrap(), 11);
    // The lease was released with the end of the execution: the run is free again, and
    // executing it returns the stored output without running anything.
    assert_eq!(gated_run(&b, "contested", c.clone(), gate).await.unwrap(), 11);
    assert_eq!(c.get(), 1);
}

pub async fn with_wait_for_lease_a_second_engine_gets_the_result(h: Harness) {
    let a = h.wf();
    let b = Workflow::builder("test-app").shared_store(h.store()).wait_for_lease(true).build();
    let (c, gate) = (Counter::new(), Gate::new());
    let first = tokio::spawn({
        let (a, c, gate) = (a.clone(), c.clone(), gate.clone());
        async move { gated_run(&a, "waited", c, gate).await }
    });
    until_hits(&c, 1).await;
    let second = tokio::spawn({
        let (b, c, gate) = (b.clone(), c.clone(), gate.clone());
        async move { gated_run(&b, "waited", c, gate).await }
    });
    // The waiting engine keeps waiting while the first one holds the run.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "the second engine must wait for the lease");
    gate.open();
    assert_eq!(first.await.unwrap().unwrap(), 11);
    assert_eq!(second.await.unwrap().unwrap(), 11, "the waiting engine gets the run's result");
    assert_eq!(c.get(), 1, "each step body ran once in total");

    // The per-handle option overrides the builder's.
    let (c2, gate2) = (Counter::new(), Gate::new());
    let held = tokio::spawn({
        let (a, c2, gate2) = (a.clone(), c2.clone(), gate2.clone());
        async move { gated_run(&a, "per-handle", c2, gate2).await }
    });
    until_hits(&c2, 1).await;
    let err = gated_run(&b.waiting_for_lease(false), "per-handle", c2.clone(), gate2.clone()).await;
    assert!(matches!(err, Err(Error::RunInProgress { .. })), "{err:?}");
    let waiter = tokio::spawn({
        let (a2, c2, gate2) =
            (Workflow::builder("test-app").shared_store(h.store()).build(), c2.clone(), gate2.clone());
        async move { gated_run(&a2.waiting_for_lease(true), "per-handle", c2, gate2).await }
    });
    gate2.open();
    assert_eq!(held.await.unwrap().unwrap(), 11);
    assert_eq!(waiter.await.unwrap().unwrap(), 11);
    assert_eq!(c2.get(), 1);
}

pub async fn renewal_keeps_a_run_longer_than_its_ttl_owned(h: Harness) {
    // A 300 ms lease, a step that takes 1.2 s: only renewal keeps other engines out.
    let a = engine(&h, Duration::from_millis(300));
    let b = engine(&h, Duration::from_millis(300));
    let c = Counter::new();
    let slow = |wf: Workflow, c: Counter| async move {
        wf.run("long", move |_| async move {
            durably::step("slow", move || {
                let c = c.clone();
                async move {
                    c.hit();
                    tokio::time::sleep(Duration::from_millis(1_200)).await;
                    Ok::<_, std::io::Error>(7u32)
                }
            })
            .await
        })
        .await
    };
    let first = tokio::spawn(slow(a.clone(), c.clone()));
    until_hits(&c, 1).await;
    for _ in 0..3 {
        // Each attempt comes after the first lease's TTL would have run out unrenewed.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let err = slow(b.clone(), c.clone()).await.unwrap_err();
        assert!(
            matches!(&err, Error::RunInProgress { owner, .. } if owner == a.owner_id()),
            "the renewed lease must keep the run owned: {err:?}"
        );
    }
    assert_eq!(first.await.unwrap().unwrap(), 7);
    assert_eq!(c.get(), 1, "the slow step ran once");
}

pub async fn renewal_keeps_a_run_waiting_on_a_signal_owned(h: Harness) {
    let a = engine(&h, Duration::from_millis(300));
    let b = engine(&h, Duration::from_millis(300));
    let waiting = tokio::spawn({
        let a = a.clone();
        async move { a.run("approval", |_| durably::signal::<bool>("ok")).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while a.get_run("approval").await.unwrap().map(|r| r.status) != Some(RunStatus::Waiting) {
        assert!(tokio::time::Instant::now() < deadline, "the run never started waiting");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(900)).await; // three TTLs
    let err = b.run("approval", |_| durably::signal::<bool>("ok")).await.unwrap_err();
    assert!(matches!(err, Error::RunInProgress { .. }), "a waiting run keeps its lease: {err:?}");
    let recoverable = h.store().recoverable_runs(durably::now_ms(), 10).await.unwrap();
    assert!(recoverable.is_empty(), "nor is it recoverable: {recoverable:?}");
    b.complete("approval", "ok", &true).await.unwrap();
    assert!(waiting.await.unwrap().unwrap());
}

pub async fn an_engine_that_lost_its_lease_stops_and_records_nothing_more(h: Harness) {
    // Engine A cannot reach the store's leases any more (cut off, frozen): it cannot renew,
    // its lease expires, and engine B takes the run over and finishes it.
    let faulty = Arc::new(FaultStore::new(h.store()));
    let a = Workflow::builder("test-app")
        .shared_store(faulty.clone())
        .lease_ttl(Duration::from_millis(300))
        .build();
    let b = engine(&h, Duration::from_millis(300)).waiting_for_lease(true);
    let run = |wf: Workflow, who: &'static str, gate: Option<Gate>| async move {
        wf.run("taken-over", move |_| async move {
            let first =
                durably::step("first", move || async move { Ok::<_, std::io::Error>(who.to_string()) })
                    .await?;
            let second = durably::step("second", move || {
                let gate = gate.clone();
                async move {
                    if let Some(gate) = gate {
                        gate.pass().await;
                    }
                    Ok::<_, std::io::Error>(who.to_string())
                }
            })
            .await?;
            let third =
                durably::step("third", move || async move { Ok::<_, std::io::Error>(who.to_string()) })
                    .await?;
            Ok::<_, Error>(format!("{first}{second}{third}"))
        })
        .await
    };
    let gate = Gate::new();
    let first = tokio::spawn(run(a.clone(), "a", Some(gate.clone())));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while a.list_steps("taken-over").await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "A never recorded its first step");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    faulty.fail_from(Op::AcquireLease, 1);
    faulty.fail_from(Op::ReleaseLease, 1);

    // B waits for A's lease to expire, replays A's first step and finishes the run.
    assert_eq!(run(b.clone(), "b", None).await.unwrap(), "abb");
    // A's second step body now returns: A must notice the lost lease and record nothing.
    gate.open();
    let err = first.await.unwrap().unwrap_err();
    assert!(matches!(&err, Error::LeaseLost { run_id, .. } if run_id == "taken-over"), "{err:?}");
    assert!(err.to_string().contains("lost its lease"), "{err}");

    let steps = h.wf().list_steps("taken-over").await.unwrap();
    let values: Vec<(&str, &str)> =
        steps.iter().map(|s| (s.step_id.as_str(), s.value.as_deref().unwrap_or(""))).collect();
    assert_eq!(
        values,
        [("first", "\"a\""), ("second", "\"b\""), ("third", "\"b\"")],
        "A wrote nothing after losing"
    );
    let stored = h.wf().get_run("taken-over").await.unwrap().unwrap();
    assert_eq!((stored.status, stored.output.as_deref()), (RunStatus::Completed, Some("\"abb\"")));
}

pub async fn a_lost_lease_wakes_a_waiting_run(h: Harness) {
    let faulty = Arc::new(FaultStore::new(h.store()));
    let a = Workflow::builder("test-app")
        .shared_store(faulty.clone())
        .lease_ttl(Duration::from_millis(200))
        .build();
    let waiting = tokio::spawn({
        let a = a.clone();
        async move { a.run("waits", |_| durably::signal::<u32>("never")).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while a.get_run("waits").await.unwrap().map(|r| r.status) != Some(RunStatus::Waiting) {
        assert!(tokio::time::Instant::now() < deadline, "the run never started waiting");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    faulty.fail_from(Op::AcquireLease, 1);
    faulty.fail_from(Op::ReleaseLease, 1);
    let err =
        tokio::time::timeout(Duration::from_secs(20), waiting).await.expect("the wait must end").unwrap();
    assert!(matches!(err, Err(Error::LeaseLost { .. })), "{err:?}");
    // Nothing was recorded on the way out: the run is still `waiting`, for a recovery to resume.
    let run = h.wf().get_run("waits").await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Waiting);
}

pub async fn a_dropped_execution_frees_the_run_for_another_engine(h: Harness) {
    let (a, b) = (h.wf(), h.wf());
    let (c, gate) = (Counter::new(), Gate::new());
    let first = tokio::spawn({
        let (a, c, gate) = (a.clone(), c.clone(), gate.clone());
        async move { gated_run(&a, "dropped", c, gate).await }
    });
    until_hits(&c, 1).await;
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    // At once, not after the 30 s TTL: the dropped execution's lease is abandoned.
    gate.open();
    assert_eq!(gated_run(&b, "dropped", c.clone(), gate).await.unwrap(), 12);
    assert_eq!(c.get(), 2, "the step cut short ran again (at-least-once)");
}

pub async fn engines_racing_for_one_run_execute_each_step_once(h: Harness) {
    // Eight engines of one process (eight owners) start the same run at the same moment, each
    // waiting for the lease: one executes, the others replay its outcome.
    let c = Counter::new();
    let start = Arc::new(tokio::sync::Barrier::new(8));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let wf = Workflow::builder("test-app").shared_store(h.store()).wait_for_lease(true).build();
        let (c, start) = (c.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            wf.run("raced", move |_| async move {
                let mut total = 0;
                for i in 0..3u32 {
                    let c = c.clone();
                    total += durably::step("work", move || {
                        let c = c.clone();
                        async move {
                            c.hit();
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            Ok::<_, std::io::Error>(i)
                        }
                    })
                    .await?;
                }
                Ok::<_, Error>(total)
            })
            .await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), 3);
    }
    assert_eq!(c.get(), 3, "each of the three step bodies ran once in total");
}

pub async fn renewing_many_leases_takes_one_store_call_per_period(h: Harness) {
    // Twenty runs wait on a signal under a 300 ms lease, renewed every 100 ms: the engine renews
    // them together, one store call per period, not one per run.
    const RUNS: u32 = 20;
    let faulty = Arc::new(FaultStore::new(h.store()));
    let wf = Workflow::builder("test-app")
        .shared_store(faulty.clone())
        .lease_ttl(Duration::from_millis(300))
        .build();
    let runners = super::start_waiting_runs(&h, &wf, "renewed", RUNS).await;
    let before = faulty.calls(Op::AcquireLease);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let renewals = faulty.calls(Op::AcquireLease) - before;
    assert!(renewals < RUNS, "{renewals} lease calls in about five renewal periods of {RUNS} runs");
    // The batched renewals kept every lease: each run takes its signal and completes.
    for i in 0..RUNS {
        assert!(wf.complete(&format!("renewed-{i}"), "go", &i).await.unwrap());
    }
    for (i, runner) in runners.into_iter().enumerate() {
        assert_eq!(runner.await.unwrap().unwrap(), i as u32);
    }
}
