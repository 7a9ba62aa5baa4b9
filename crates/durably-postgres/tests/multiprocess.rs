//! Several worker processes on one PostgreSQL schema, with real OS processes: this test binary
//! runs itself again as the workers (the ignored `worker_process` entry, steered by
//! environment variables). Each step body appends a line to a shared log file, so the parent
//! counts how often every body ran across all processes.
//!
//! - Two processes start the same run id at once: each step body runs exactly once in total,
//!   and both get the run's output.
//! - A worker is SIGKILLed in the middle of a step; another process recovers the run with
//!   `recover()` and finishes it, re-executing at most that in-flight step.
//! - A run waiting on a signal in one process is woken by a delivery from another process; the
//!   latency is printed (no timing assertion).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{SchemaGuard, fresh};
use durably_core::store::prelude::*;
use durably_core::{RunStatus, Workflow, now_ms};
use durably_postgres::PostgresStore;

const WORKFLOW: &str = "pipeline";
const STEPS: [&str; 4] = ["extract", "transform", "load", "report"];

// ---------------------------------------------------------------------------------------------
// The worker side

/// Appends one line to the shared log (one `write` of a short line with O_APPEND: lines of
/// concurrent processes do not interleave).
fn log_line(log: &Path, line: &str) {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    file.write_all(format!("{line}\n").as_bytes()).unwrap();
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("worker: {name} is not set"))
}

/// An engine on the schema named by the parent, with `pipeline` registered: four steps, each
/// logging `start <step> <pid>` then `done <step> <pid>`; the step named by
/// `DURABLY_TEST_HANG_AT` hangs after logging its start (so the parent can kill it there).
async fn worker_engine(lease_ttl: Duration) -> Workflow {
    let store = PostgresStore::builder(common::url())
        .schema(env("DURABLY_TEST_SCHEMA"))
        .pool_size(2)
        .connect()
        .await
        .unwrap();
    let wf = Workflow::builder("multiprocess").store(store).lease_ttl(lease_ttl).wait_for_lease(true).build();
    let log = PathBuf::from(env("DURABLY_TEST_LOG"));
    let hang_at = std::env::var("DURABLY_TEST_HANG_AT").ok();
    let step_pause = Duration::from_millis(env("DURABLY_TEST_STEP_MS").parse().unwrap());
    wf.register_fn(WORKFLOW, move |_ctx, n: u64| {
        let (log, hang_at) = (log.clone(), hang_at.clone());
        async move {
            let mut total = n;
            for name in STEPS {
                let (log, hang) = (log.clone(), hang_at.as_deref() == Some(name));
                let add: u64 = durably_core::step(name, move || {
                    let log = log.clone();
                    async move {
                        let pid = std::process::id();
                        log_line(&log, &format!("start {name} {pid}"));
                        if hang {
                            tokio::time::sleep(Duration::from_secs(3_600)).await;
                        }
                        tokio::time::sleep(step_pause).await;
                        log_line(&log, &format!("done {name} {pid}"));
                        Ok::<_, std::io::Error>(name.len() as u64)
                    }
                })
                .retries(0)
                .await?;
                total += add;
            }
            Ok::<_, durably_core::Error>(total)
        }
    });
    wf
}

/// Waits for the parent's go file, so that several workers start at the same moment.
async fn wait_for_go() {
    if let Ok(go) = std::env::var("DURABLY_TEST_GO") {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !Path::new(&go).exists() {
            assert!(Instant::now() < deadline, "worker: no go signal within 60 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// The worker process entry: not a test of its own; the tests below run it in child processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the worker process of the multi-process tests, run by them"]
async fn worker_process() {
    // Run by hand (`-- --ignored`) there is nothing to do.
    let Ok(role) = std::env::var("DURABLY_TEST_ROLE") else {
        println!("worker_process runs only as a child of the multi-process tests");
        return;
    };
    let run_id = env("DURABLY_TEST_RUN_ID");
    match role.as_str() {
        // Executes the run (or waits for its lease, then replays it) and prints the output.
        "start" => {
            let wf = worker_engine(Duration::from_secs(30)).await;
            log_line(&PathBuf::from(env("DURABLY_TEST_LOG")), &format!("ready {}", std::process::id()));
            wait_for_go().await;
            let out: u64 = wf.start(WORKFLOW, &run_id, &100u64).await.unwrap();
            println!("OUTPUT {out}");
        }
        // Starts the run with a short lease and hangs in the step the parent kills it in.
        "doomed" => {
            let wf = worker_engine(Duration::from_millis(1_500)).await;
            let _: u64 = wf.start(WORKFLOW, &run_id, &100u64).await.unwrap();
            panic!("the doomed worker was supposed to be killed mid-run");
        }
        // Recovers runs until the given one has completed here.
        "recover" => {
            let wf = worker_engine(Duration::from_millis(1_500)).await;
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let report = wf.recover().await.unwrap();
                let mine = report.resumed.contains(&run_id);
                for (id, result) in report.join().await {
                    if id == run_id {
                        println!("OUTPUT {}", result.unwrap());
                    }
                }
                if mine {
                    break;
                }
                assert!(Instant::now() < deadline, "worker: run `{run_id}` never became recoverable");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        // Waits on a signal, then logs when it woke (ms since the epoch).
        "wait-signal" => {
            let wf = worker_engine(Duration::from_secs(30)).await;
            let log = PathBuf::from(env("DURABLY_TEST_LOG"));
            let approved: bool = wf
                .run(&run_id, |_ctx| async move {
                    let approved: bool = durably_core::signal("approval").await?;
                    log_line(&log, &format!("woken {}", now_ms()));
                    Ok::<_, durably_core::Error>(approved)
                })
                .await
                .unwrap();
            println!("OUTPUT {approved}");
        }
        other => panic!("worker: unknown role {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The parent side

struct Setup {
    guard: SchemaGuard,
    dir: tempfile::TempDir,
    store: PostgresStore,
}

impl Setup {
    async fn new() -> Option<Setup> {
        let (builder, guard) = fresh().await?;
        let store = builder.connect().await.unwrap();
        Some(Setup { guard, dir: tempfile::tempdir().unwrap(), store })
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("steps.log")
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.log()).unwrap_or_default().lines().map(str::to_owned).collect()
    }

    /// How many times each step body started and finished, across processes.
    fn counts(&self, kind: &str) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for line in self.lines() {
            let mut parts = line.split(' ');
            if parts.next() == Some(kind) {
                *counts.entry(parts.next().unwrap().to_owned()).or_default() += 1;
            }
        }
        counts
    }

    fn spawn(&self, role: &str, run_id: &str, extra: &[(&str, &str)]) -> Child {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["worker_process", "--exact", "--ignored", "--nocapture", "--test-threads", "1"])
            .env("DURABLY_TEST_ROLE", role)
            .env("DURABLY_TEST_RUN_ID", run_id)
            .env("DURABLY_TEST_SCHEMA", &self.guard.0)
            .env("DURABLY_TEST_LOG", self.log())
            .env("DURABLY_TEST_STEP_MS", "150")
            .env("DURABLY_POSTGRES_URL", common::url())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.spawn().expect("spawn a worker process")
    }

    async fn wait_for_line(&self, pred: impl Fn(&str) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.lines().iter().any(|l| pred(l)) {
            assert!(Instant::now() < deadline, "never saw {what} in the log: {:?}", self.lines());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Waits for a worker to exit successfully and returns what it printed after `OUTPUT `.
fn output_of(child: Child, who: &str) -> String {
    let out = child.wait_with_output().expect("wait for a worker");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{who} failed ({}): {stdout}", out.status);
    stdout
        .lines()
        // The test harness may print `test worker_process ... ` before it on the same line.
        .find_map(|l| l.split_once("OUTPUT ").map(|(_, out)| out.trim()))
        .unwrap_or_else(|| panic!("{who} printed no output: {stdout}"))
        .to_owned()
}

/// 100 plus the lengths of the step names: what the pipeline returns.
fn expected_output() -> String {
    (100 + STEPS.iter().map(|s| s.len() as u64).sum::<u64>()).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_starting_one_run_at_once_execute_each_step_once() {
    let Some(setup) = Setup::new().await else { return };
    let go = setup.dir.path().join("go");
    let go_env = go.to_str().unwrap();
    let a = setup.spawn("start", "order-1", &[("DURABLY_TEST_GO", go_env)]);
    let b = setup.spawn("start", "order-1", &[("DURABLY_TEST_GO", go_env)]);
    setup.wait_for_line(|l| l.starts_with("ready"), "the first worker ready").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while setup.lines().iter().filter(|l| l.starts_with("ready")).count() < 2 {
        assert!(Instant::now() < deadline, "both workers must get ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    std::fs::write(&go, "").unwrap();

    let (out_a, out_b) = (output_of(a, "worker a"), output_of(b, "worker b"));
    assert_eq!(out_a, expected_output());
    assert_eq!(out_b, expected_output(), "the second worker gets the same output");
    let once: BTreeMap<String, usize> = STEPS.iter().map(|s| ((*s).to_owned(), 1)).collect();
    assert_eq!(
        setup.counts("start"),
        once,
        "each step body started exactly once in total: {:?}",
        setup.lines()
    );
    assert_eq!(setup.counts("done"), once);
    let run = setup.store.get_run("order-1").await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_step_is_recovered_by_another_process_rerunning_only_that_step() {
    let Some(setup) = Setup::new().await else { return };
    let mut doomed = setup.spawn("doomed", "order-2", &[("DURABLY_TEST_HANG_AT", "load")]);
    setup.wait_for_line(|l| l.starts_with("start load"), "the doomed worker in step `load`").await;
    doomed.kill().expect("SIGKILL the worker");
    let status = doomed.wait().unwrap();
    assert!(!status.success(), "the worker was killed: {status}");
    assert_eq!(
        setup.store.get_run("order-2").await.unwrap().unwrap().status,
        RunStatus::Running,
        "a killed worker leaves its run `running`"
    );

    let rescuer = setup.spawn("recover", "order-2", &[]);
    assert_eq!(output_of(rescuer, "the recovering worker"), expected_output());

    let starts = setup.counts("start");
    let dones = setup.counts("done");
    println!("step bodies started: {starts:?}; finished: {dones:?}");
    for step in ["extract", "transform"] {
        assert_eq!(starts.get(step), Some(&1), "`{step}` finished before the kill: replayed, not re-run");
    }
    assert_eq!(starts.get("load"), Some(&2), "only the in-flight step `load` ran again");
    assert_eq!(starts.get("report"), Some(&1));
    assert!(dones.values().all(|&n| n == 1), "every step finished exactly once: {dones:?}");
    assert_eq!(setup.store.get_run("order-2").await.unwrap().unwrap().status, RunStatus::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_from_another_process_wakes_the_waiting_run() {
    let Some(setup) = Setup::new().await else { return };
    let waiter = setup.spawn("wait-signal", "expense-3", &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = setup.store.get_run("expense-3").await.unwrap();
        if run.is_some_and(|r| r.status == RunStatus::Waiting) {
            break;
        }
        assert!(Instant::now() < deadline, "the run never started waiting");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // This process delivers, as an operator's tool or an HTTP handler would.
    let wf = Workflow::builder("multiprocess")
        .shared_store(std::sync::Arc::new(
            PostgresStore::builder(common::url())
                .schema(&setup.guard.0)
                .pool_size(1)
                .connect()
                .await
                .unwrap(),
        ))
        .build();
    let delivered_at = now_ms();
    assert!(wf.complete("expense-3", "approval", &true).await.unwrap());
    assert_eq!(output_of(waiter, "the waiting worker"), "true");
    let woken: i64 = setup
        .lines()
        .iter()
        .find_map(|l| l.strip_prefix("woken ").map(|t| t.parse().unwrap()))
        .expect("the worker logged its wake-up");
    println!(
        "signal wake-up latency across processes: {} ms (from `complete` to `signal` returning)",
        woken - delivered_at
    );
    assert_eq!(setup.store.get_run("expense-3").await.unwrap().unwrap().status, RunStatus::Completed);
}
