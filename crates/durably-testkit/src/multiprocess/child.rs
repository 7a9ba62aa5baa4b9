//! The child side: the pipeline the children run, and what each role does.

// A child reports what it got on stdout, for the parent to read.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use durably::{Error, Queue, RunContext, Store, Workflow, now_ms};

use super::{
    APP, DEADLINE, INPUT, JOB_PAUSE, KILLED_LEASE, Log, OpenStore, QUEUE, QUEUE_LEASE, QUEUE_POLL,
    STEP_PAUSE, STEPS, queue_limits, var,
};

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: a child started by a multi-process test"))
}

/// The entry of a child process: runs the role its parent set, on the store `open` gives for
/// the parent's namespace. Started by hand (`-- --ignored`), it does nothing.
pub fn child_main(open: OpenStore) {
    let Ok(role) = std::env::var(var::ROLE) else {
        eprintln!("multiprocess_child runs only as a child of the multi-process tests");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    runtime.block_on(async move {
        let store = open(env(var::NAMESPACE)).await;
        child(&role, store).await;
    });
}

/// An engine on `store` with the pipeline registered: each step logs `start <step> <pid>`,
/// works a little, then logs `done <step> <pid>`; the step named by [`var::HANG_AT`] hangs
/// after logging its start, so the parent can kill the process there.
fn engine(store: Arc<dyn Store>, lease: Duration) -> Workflow {
    let wf = Workflow::builder(APP).shared_store(store).lease_ttl(lease).wait_for_lease(true).build();
    let log = Arc::new(Log(env(var::LOG).into()));
    let hang_at = std::env::var(var::HANG_AT).ok();
    wf.register_fn("pipeline", move |ctx: RunContext, input: u64| {
        let (log, hang_at) = (log.clone(), hang_at.clone());
        async move {
            let mut total = input;
            for name in STEPS {
                let (log, hang) = (log.clone(), hang_at.as_deref() == Some(name));
                total += ctx
                    .step(name, move || {
                        let log = log.clone();
                        async move {
                            let pid = std::process::id();
                            log.append(&format!("start {name} {pid}"));
                            if hang {
                                tokio::time::sleep(Duration::from_secs(3_600)).await;
                            }
                            tokio::time::sleep(STEP_PAUSE).await;
                            log.append(&format!("done {name} {pid}"));
                            Ok::<_, std::io::Error>(name.len() as u64)
                        }
                    })
                    .step_id(name)
                    .retries(0)
                    .await?;
            }
            Ok::<_, Error>(total)
        }
    });
    wf
}

/// An engine on `store` with queue [`QUEUE`] defined (see [`queue_limits`]) and workflow `job`
/// registered, in the parent (to enqueue) and in the queue workers alike. Each execution of a
/// `job` run logs `exec <run> <pid> <ms>` on entry and `claim <run> <pid> <ms>` with the claim
/// time the store recorded for the claim that started it, then its step `work` (the side
/// effect) works [`JOB_PAUSE`] and returns twice the input, then it logs `end <run> <pid> <ms>`
/// just before returning (its lease is still held then).
pub(crate) fn queue_engine(store: Arc<dyn Store>, log: Log) -> Workflow {
    let wf = Workflow::builder(APP).shared_store(store.clone()).lease_ttl(QUEUE_LEASE).build();
    wf.add_queue(queue_limits(Queue::new(QUEUE))).expect("the queue's limits are valid");
    let log = Arc::new(log);
    wf.register_fn("job", move |ctx: RunContext, n: u64| {
        let (log, store) = (log.clone(), store.clone());
        async move {
            let (run_id, pid) = (ctx.run_id().to_owned(), std::process::id());
            log.append(&format!("exec {run_id} {pid} {}", now_ms()));
            // This execution holds the lease its claim took, so the run's claim time is that
            // claim's (or, had the lease lapsed meanwhile, a later claim's: the parent counts
            // each pair of run and claim time once).
            if let Some(claimed) = store.get_run(&run_id).await?.and_then(|run| run.claimed_at_ms) {
                log.append(&format!("claim {run_id} {pid} {claimed}"));
            }
            let doubled = ctx
                .step("work", move || async move {
                    tokio::time::sleep(JOB_PAUSE).await;
                    Ok::<_, std::io::Error>(n * 2)
                })
                .step_id("work")
                .retries(0)
                .await?;
            log.append(&format!("end {run_id} {pid} {}", now_ms()));
            Ok::<_, Error>(doubled)
        }
    });
    wf
}

async fn child(role: &str, store: Arc<dyn Store>) {
    if role == "queue-worker" {
        // Claims and executes runs of the queue until the parent kills it.
        let wf = queue_engine(store, Log(env(var::LOG).into()));
        let worker = wf.queue_worker([QUEUE]).concurrency(3).poll_interval(QUEUE_POLL).start().unwrap();
        Log(env(var::LOG).into()).append(&format!("worker {}", std::process::id()));
        tokio::time::sleep(DEADLINE).await;
        worker.shutdown().await;
        panic!("the queue worker was supposed to be killed or stopped within {DEADLINE:?}");
    }
    let run_id = env(var::RUN_ID);
    // A killed worker's run is recoverable this long after its last renewal; the others hold
    // theirs long enough that no load on the machine makes them lose it mid-step.
    let lease = if matches!(role, "doomed" | "recover") { KILLED_LEASE } else { Duration::from_secs(30) };
    let wf = engine(store, lease);
    match role {
        // Waits for the go file, then executes the run (or waits for the other process's
        // lease, then replays it) and prints the output.
        "start" => {
            Log(env(var::LOG).into()).append(&format!("ready {}", std::process::id()));
            let go = env(var::GO);
            let deadline = Instant::now() + DEADLINE;
            while !Path::new(&go).exists() {
                assert!(Instant::now() < deadline, "no go file within {DEADLINE:?}");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let out: u64 = wf.start("pipeline", run_id.as_str(), &INPUT).await.unwrap();
            println!("OUTPUT {out}");
        }
        // Executes the run until the parent kills it inside the step it hangs in.
        "doomed" => {
            let _: u64 = wf.start("pipeline", run_id.as_str(), &INPUT).await.unwrap();
            panic!("the doomed worker was supposed to be killed mid-run");
        }
        // Recovers as a worker would, until the dead worker's lease has expired and the run
        // is resumed here; prints its output.
        "recover" => {
            let deadline = Instant::now() + DEADLINE;
            let report = loop {
                let report = wf.recover().await.unwrap();
                if !report.resumed.is_empty() {
                    break report;
                }
                assert!(Instant::now() < deadline, "run `{run_id}` never became recoverable");
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            assert_eq!(report.resumed, std::slice::from_ref(&run_id), "only the killed run is resumed");
            let results = report.join().await;
            let (id, out) = &results[0];
            assert_eq!(id, &run_id);
            println!("OUTPUT {}", out.as_deref().unwrap());
        }
        // Waits on signal `approval`, logs when it woke (ms since the epoch), prints the payload.
        "wait-signal" => {
            let log = Log(env(var::LOG).into());
            let payload: u64 = wf
                .run(run_id.as_str(), |ctx| async move {
                    let payload: u64 = ctx.signal("approval").await?;
                    log.append(&format!("woken {}", now_ms()));
                    Ok::<_, Error>(payload)
                })
                .await
                .unwrap();
            println!("OUTPUT {payload}");
        }
        // Delivers `approval`, as an operator's tool or an HTTP handler would; prints when.
        "deliver" => {
            let payload: u64 = env(var::PAYLOAD).parse().unwrap();
            println!("SENT {}", now_ms());
            let delivered = wf.complete(&run_id, "approval", &payload).await.unwrap();
            println!("DELIVERED {delivered}");
        }
        other => panic!("unknown child role `{other}`"),
    }
}
