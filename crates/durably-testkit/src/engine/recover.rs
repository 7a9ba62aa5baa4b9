//! Recovery (rule 12 of docs/design.md): registered workflows are resumed by `recover` from their
//! checkpoints with their stored input, with no caller involved, once their executor's lease
//! has expired; runs of unregistered workflows are skipped and reported; a worker keeps
//! recovering until shut down.
// A test suite reports failure by panicking, and each test's name is its documentation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Harness;
use crate::faults::{FaultStore, Op};
use durably::{Error, RunStatus, Workflow};

/// Which step bodies ran, in order, across every engine of the test binary (one run id per
/// test, so tests do not see each other's entries).
static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn log(entry: String) {
    LOG.lock().unwrap().push(entry);
}

fn logged(prefix: &str) -> Vec<String> {
    LOG.lock().unwrap().iter().filter(|e| e.starts_with(prefix)).cloned().collect()
}

/// Set by a test to make `hang` block (the crashed engine), cleared for the recovering one.
static HANG: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[durably::task(retries = 0)]
async fn record(order: String, what: String) -> Result<String, std::io::Error> {
    log(format!("{order}/{what}"));
    Ok(format!("{what}({order})"))
}

#[durably::task(retries = 0)]
async fn hang(order: String) -> Result<String, std::io::Error> {
    log(format!("{order}/hang"));
    while HANG.lock().unwrap().contains(&order) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(format!("hang({order})"))
}

#[durably::workflow(id = "ship-{order}")]
async fn ship(order: String, copies: u32) -> anyhow::Result<String> {
    let a = record(order.clone(), "pick".into()).await?;
    let b = hang(order.clone()).await?;
    let c = record(order.clone(), "pack".into()).await?;
    Ok(format!("{a} {b} {c} x{copies}"))
}

#[durably::workflow(name = "billing")]
async fn bill(order: String) -> anyhow::Result<u32> {
    record(order, "bill".into()).await?;
    Ok(1)
}

#[durably::workflow(id = "approve-{tag}")]
async fn approve(tag: String) -> anyhow::Result<String> {
    let pre = record(tag, "pre".into()).await?;
    let ok: bool = durably::signal("ok").await?;
    Ok(format!("{pre} {ok}"))
}

/// A workflow whose argument cannot be rebuilt from JSON (it serializes, but does not
/// deserialize).
#[derive(serde::Serialize, Clone)]
struct WriteOnly(String);

#[durably::workflow(id = "write-only-{tag}")]
async fn write_only(tag: String, w: WriteOnly) -> anyhow::Result<String> {
    let _ = hang(tag).await?;
    Ok(w.0)
}

/// An engine on the harness's store whose leases can be cut (a process that froze or lost the
/// store): with a 300 ms TTL, its runs become recoverable soon after the cut.
fn crashing_engine(h: &Harness) -> (Workflow, Arc<FaultStore<Arc<dyn durably::Store>>>) {
    let faulty = Arc::new(FaultStore::new(h.store()));
    let wf = Workflow::builder("test-app")
        .shared_store(faulty.clone())
        .lease_ttl(Duration::from_millis(300))
        .build();
    (wf, faulty)
}

/// Starts `start` in engine A until `hang` of `order` is executing, then "crashes" A: its
/// lease calls fail from then on and the execution is dropped, so the lease is neither renewed
/// nor released and expires 300 ms later.
async fn crash_mid_run<F>(h: &Harness, order: &str, start: F)
where
    F: FnOnce(Workflow) -> tokio::task::JoinHandle<()>,
{
    HANG.lock().unwrap().push(order.to_owned());
    let (a, faulty) = crashing_engine(h);
    let task = start(a);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !logged(order).iter().any(|e| e.ends_with("/hang")) {
        assert!(tokio::time::Instant::now() < deadline, "the run never reached its hanging step");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    faulty.fail_from(Op::AcquireLease, 1);
    faulty.fail_from(Op::ReleaseLease, 1);
    task.abort();
    let _ = task.await;
    HANG.lock().unwrap().retain(|o| o != order);
}

async fn wait_past_ttl() {
    tokio::time::sleep(Duration::from_millis(700)).await;
}

pub async fn a_crashed_run_is_recovered_without_re_executing_completed_steps(h: Harness) {
    let order = format!("o1-{}", h.kind);
    crash_mid_run(&h, &order, |a| {
        let order = order.clone();
        tokio::spawn(async move {
            let _ = ship(&a, order, 2).await;
        })
    })
    .await;
    let run_id = format!("ship-{order}");
    let b = h.wf();
    b.register::<ship>();

    // While the crashed engine's lease is live, the run is not recoverable.
    let early = b.recover().await.unwrap();
    assert!(!early.resumed.contains(&run_id), "recovered under a live lease: {early:?}");

    wait_past_ttl().await;
    let report = b.recover().await.unwrap();
    assert_eq!(report.resumed, std::slice::from_ref(&run_id), "{report:?}");
    let results = report.join().await;
    assert_eq!(results.len(), 1);
    let output: String = serde_json::from_str(results[0].1.as_ref().unwrap()).unwrap();
    assert_eq!(output, format!("pick({order}) hang({order}) pack({order}) x2"), "the stored input was used");

    assert_eq!(
        logged(&order),
        [format!("{order}/pick"), format!("{order}/hang"), format!("{order}/hang"), format!("{order}/pack")],
        "the completed step is replayed; only the step in flight at the crash runs again"
    );
    let run = b.get_run(&run_id).await.unwrap().unwrap();
    assert_eq!((run.status, run.workflow.as_str()), (RunStatus::Completed, "ship"));
    // Nothing left to recover.
    assert!(b.recover().await.unwrap().resumed.is_empty());
}

pub async fn unregistered_workflows_are_skipped_and_reported(h: Harness) {
    let order = format!("o2-{}", h.kind);
    crash_mid_run(&h, &order, |a| {
        let order = order.clone();
        tokio::spawn(async move {
            let _ = ship(&a, order, 1).await;
        })
    })
    .await;
    wait_past_ttl().await;
    let b = h.wf();
    b.register::<bill>();
    assert_eq!(b.registered(), ["billing"]);
    let report = b.recover().await.unwrap();
    assert!(report.resumed.is_empty(), "{report:?}");
    assert_eq!(report.unregistered, [(format!("ship-{order}"), "ship".to_owned())]);
    let run = b.get_run(&format!("ship-{order}")).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Running, "a skipped run is left as it was");
}

pub async fn finished_and_live_runs_are_left_alone(h: Harness) {
    let a = h.wf();
    a.register::<bill>();
    // Completed and failed runs are not recoverable.
    assert_eq!(bill(&a, "done".into()).await.unwrap(), 1);
    a.run("failed", |_| async { super::crash::<u32>("gave up") }).await.unwrap_err();
    // A run executing in another engine (its lease live) is not either.
    let order = format!("o3-{}", h.kind);
    HANG.lock().unwrap().push(order.clone());
    let other = h.wf();
    let live = tokio::spawn({
        let order = order.clone();
        async move { ship(&other, order, 1).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !logged(&order).iter().any(|e| e.ends_with("/hang")) {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let b = h.wf();
    b.register::<bill>().register::<ship>();
    let report = b.recover().await.unwrap();
    assert!(report.resumed.is_empty() && report.unregistered.is_empty(), "{report:?}");
    HANG.lock().unwrap().retain(|o| o != &order);
    live.await.unwrap().unwrap();
    assert_eq!(logged(&order).len(), 3, "the live run's steps ran once each");
}

pub async fn a_closure_workflow_registered_with_register_fn_is_recovered(h: Harness) {
    let tag = format!("squares-{}", h.kind);
    let register = |wf: &Workflow| {
        let tag = tag.clone();
        wf.register_fn("squares", move |_ctx, n: u32| {
            let tag = tag.clone();
            async move {
                let mut total = 0;
                for i in 0..n {
                    let tag = tag.clone();
                    total += durably::step("square", move || {
                        let tag = tag.clone();
                        async move {
                            log(format!("{tag}/{i}"));
                            if i == 2 && HANG.lock().unwrap().contains(&tag) {
                                std::future::pending::<()>().await;
                            }
                            Ok::<_, std::io::Error>(i * i)
                        }
                    })
                    .step_id(format!("square-{i}"))
                    .await?;
                }
                Ok::<_, Error>(total)
            }
        });
    };
    // Started through `start`, which stores the input; the engine "crashes" at i = 2.
    let (a, faulty) = crashing_engine(&h);
    register(&a);
    HANG.lock().unwrap().push(tag.clone());
    let run_id = format!("run-{tag}");
    let task = tokio::spawn({
        let (a, run_id) = (a.clone(), run_id.clone());
        async move { a.start::<_, u32>("squares", run_id, &4u32).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while logged(&format!("{tag}/2")).is_empty() {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    faulty.fail_from(Op::AcquireLease, 1);
    faulty.fail_from(Op::ReleaseLease, 1);
    task.abort();
    let _ = task.await;
    HANG.lock().unwrap().retain(|o| o != &tag);
    wait_past_ttl().await;

    let b = h.wf();
    register(&b);
    let before = logged(&format!("{tag}/")).len();
    let report = b.recover().await.unwrap();
    assert_eq!(report.resumed, std::slice::from_ref(&run_id));
    let results = report.join().await;
    assert_eq!(results[0].1.as_deref().unwrap(), "14", "0 + 1 + 4 + 9 from the stored input n = 4");
    assert_eq!(
        logged(&format!("{tag}/"))[before..],
        [format!("{tag}/2"), format!("{tag}/3")],
        "squares 0 and 1 replayed"
    );
    // `start` on a completed run returns its stored output.
    assert_eq!(b.start::<_, u32>("squares", run_id, &4u32).await.unwrap(), 14);
    let err = b.start::<_, u32>("cubes", "c-1", &1u32).await.unwrap_err();
    assert!(err.to_string().contains("no workflow is registered as `cubes`"), "{err}");
}

pub async fn an_argument_that_cannot_be_deserialized_is_reported_not_executed(h: Harness) {
    let tag = format!("wo-{}", h.kind);
    crash_mid_run(&h, &tag, |a| {
        let tag = tag.clone();
        tokio::spawn(async move {
            let _ = write_only(&a, tag, WriteOnly("x".into())).await;
        })
    })
    .await;
    wait_past_ttl().await;
    let b = h.wf();
    b.register::<write_only>();
    let report = b.recover().await.unwrap();
    assert_eq!(report.resumed, [format!("write-only-{tag}")]);
    let results = report.join().await;
    let err = results[0].1.as_ref().unwrap_err();
    assert!(
        err.to_string().contains("argument `w`") && err.to_string().contains("Deserialize"),
        "the error names the argument and why: {err}"
    );
    assert_eq!(logged(&tag).len(), 1, "nothing ran again");
}

pub async fn a_run_that_was_waiting_on_a_signal_is_recovered_and_waits_again(h: Harness) {
    let tag = format!("w1-{}", h.kind);
    let run_id = format!("approve-{tag}");
    let (a, faulty) = crashing_engine(&h);
    let task = tokio::spawn({
        let (a, tag) = (a.clone(), tag.clone());
        async move {
            let _ = approve(&a, tag).await;
        }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while a.get_run(&run_id).await.unwrap().map(|r| r.status) != Some(RunStatus::Waiting) {
        assert!(tokio::time::Instant::now() < deadline, "the run never started waiting");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    faulty.fail_from(Op::AcquireLease, 1);
    faulty.fail_from(Op::ReleaseLease, 1);
    task.abort();
    let _ = task.await;
    wait_past_ttl().await;

    let b = h.wf();
    b.register::<approve>();
    let report = b.recover().await.unwrap();
    assert_eq!(report.resumed, std::slice::from_ref(&run_id));
    // The resumed run waits for its signal again, under B's lease.
    let waiting = tokio::spawn(report.join());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while b.get_run(&run_id).await.unwrap().map(|r| r.status) != Some(RunStatus::Waiting) {
        assert!(tokio::time::Instant::now() < deadline, "the recovered run never waited again");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!waiting.is_finished());
    assert!(b.complete(&run_id, "ok", &true).await.unwrap());
    let results = waiting.await.unwrap();
    assert_eq!(results[0].1.as_deref().unwrap(), format!("\"pre({tag}) true\""));
    assert_eq!(logged(&tag), [format!("{tag}/pre")], "the step before the wait replayed");
}

pub async fn a_worker_recovers_runs_until_shut_down(h: Harness) {
    let order = format!("o4-{}", h.kind);
    crash_mid_run(&h, &order, |a| {
        let order = order.clone();
        tokio::spawn(async move {
            let _ = ship(&a, order, 3).await;
        })
    })
    .await;
    let b = h.wf();
    b.register::<ship>();
    // The worker starts while the lease is still live, and picks the run up once it expires.
    let worker = b.worker(Duration::from_millis(50));
    let run_id = format!("ship-{order}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let run = b.get_run(&run_id).await.unwrap().unwrap();
        if run.status == RunStatus::Completed {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the worker never finished the run: {run:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown().await;
    assert_eq!(logged(&order).iter().filter(|e| e.ends_with("/pick")).count(), 1);

    // After shutdown a new crashed run stays unrecovered.
    let order2 = format!("o5-{}", h.kind);
    crash_mid_run(&h, &order2, |a| {
        let order2 = order2.clone();
        tokio::spawn(async move {
            let _ = ship(&a, order2, 1).await;
        })
    })
    .await;
    wait_past_ttl().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let run = b.get_run(&format!("ship-{order2}")).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Running, "a stopped worker recovers nothing");
}

pub async fn run_worker_stops_when_its_shutdown_future_resolves(h: Harness) {
    let b = h.wf();
    b.register::<bill>();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn({
        let b = b.clone();
        async move {
            b.run_worker(Duration::from_millis(20), async move {
                let _ = rx.await;
            })
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!worker.is_finished(), "the worker keeps going until told to stop");
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), worker).await.expect("the worker stops").unwrap();
}
