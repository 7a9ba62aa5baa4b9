//! Several real OS processes sharing one store (rules 9 and 12 of docs/design.md): two processes that
//! start the same run id at once execute each step body once in total, and a worker killed
//! with SIGKILL mid-run is recovered by another process, which re-executes at most the step
//! that was in flight.
//!
//! The scenarios take a [`StoreSpec`], so the same code runs on every store shared between
//! processes; this file runs them on one SQLite file. Children are this test binary itself,
//! re-executed on the ignored test `mp_child` with a role in `DURABLY_MP_ROLE`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/process.rs"]
mod process;

use std::path::Path;
use std::time::Duration;

use durably::Workflow;
use process::{ChildProcess, ExecLog, STORE_ENV, StoreSpec, wait_until};

const STEPS: u32 = 6;
const SAME_RUN: &str = "mp-same-run";

fn env(key: &'static str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("{key} is not set: started by a multiprocess test"))
}

#[durably::task(retries = 0)]
async fn mp_step(log: String, i: u32) -> Result<u32, std::io::Error> {
    ExecLog::new(log).append(&format!("step-{i}"))?;
    tokio::time::sleep(Duration::from_millis(60)).await;
    Ok(i * i)
}

#[durably::workflow(id = "mp-order-{order}")]
async fn mp_pipeline(order: u32, log: String) -> anyhow::Result<u32> {
    let mut total = 0;
    for i in 0..STEPS {
        total += mp_step(log.clone(), i).step_id(format!("step-{i}")).await?;
    }
    Ok(total + order)
}

fn expected_total(order: u32) -> u32 {
    (0..STEPS).map(|i| i * i).sum::<u32>() + order
}

/// The child side of every scenario.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs only as a child process of the multiprocess tests"]
async fn mp_child() {
    let store = StoreSpec::from_env().open().await;
    let log = env("DURABLY_MP_LOG");
    match env("DURABLY_MP_ROLE").as_str() {
        // Wait for the start signal, then execute SAME_RUN, waiting for the lease if the other
        // process holds it; write the output.
        "same-run" => {
            let wf = Workflow::builder("mp")
                .shared_store(store)
                .lease_ttl(Duration::from_secs(2))
                .wait_for_lease(true)
                .build();
            let go = env("DURABLY_MP_GO");
            ExecLog::new(env("DURABLY_MP_READY")).append(&std::process::id().to_string()).unwrap();
            wait_until("the start signal", Duration::from_secs(30), || Path::new(&go).exists());
            let out = mp_pipeline::with_id(&wf, SAME_RUN, 0, log).await.unwrap();
            std::fs::write(env("DURABLY_MP_OUT"), out.to_string()).unwrap();
        }
        // Execute a run until killed.
        "worker" => {
            let wf =
                Workflow::builder("mp").shared_store(store).lease_ttl(Duration::from_millis(1_500)).build();
            let order: u32 = env("DURABLY_MP_ORDER").parse().unwrap();
            mp_pipeline(&wf, order, log).await.unwrap();
            panic!("the worker should have been killed before finishing");
        }
        other => panic!("unknown role `{other}`"),
    }
}

/// Two processes start the same run id at the same moment: each step body executes once in
/// total, and both get the run's output.
pub fn two_processes_starting_one_run_execute_each_step_once(spec: &StoreSpec, dir: &Path) {
    let log = ExecLog::new(dir.join("exec.log"));
    let ready = ExecLog::new(dir.join("ready.log"));
    let go = dir.join("go");
    let children: Vec<ChildProcess> = (0..2)
        .map(|n| {
            ChildProcess::spawn(
                "mp_child",
                &format!("same-run-{n}"),
                dir,
                &[
                    (STORE_ENV, spec.to_env()),
                    ("DURABLY_MP_ROLE", "same-run".into()),
                    ("DURABLY_MP_LOG", log.0.display().to_string()),
                    ("DURABLY_MP_READY", ready.0.display().to_string()),
                    ("DURABLY_MP_GO", go.display().to_string()),
                    ("DURABLY_MP_OUT", dir.join(format!("out-{n}")).display().to_string()),
                ],
            )
        })
        .collect();
    wait_until("both children to be ready", Duration::from_secs(60), || ready.lines().len() == 2);
    std::fs::write(&go, "go").unwrap();
    for child in children {
        child.wait_success(Duration::from_secs(60));
    }
    for n in 0..2 {
        let out = std::fs::read_to_string(dir.join(format!("out-{n}"))).unwrap();
        assert_eq!(out, expected_total(0).to_string(), "process {n} got the run's output");
    }
    for i in 0..STEPS {
        assert_eq!(log.count(&format!("step-{i}")), 1, "step-{i} executed once in total: {:?}", log.lines());
    }
    assert_eq!(log.lines().len(), STEPS as usize);
}

/// A worker process is killed with SIGKILL in the middle of a run; another process's
/// `recover()` finishes the run once the lease expires, re-executing at most the step that
/// was in flight.
pub async fn a_killed_worker_is_recovered_by_another_process(spec: &StoreSpec, dir: &Path) {
    let log = ExecLog::new(dir.join("exec.log"));
    let order = 7;
    let mut worker = ChildProcess::spawn(
        "mp_child",
        "worker",
        dir,
        &[
            (STORE_ENV, spec.to_env()),
            ("DURABLY_MP_ROLE", "worker".into()),
            ("DURABLY_MP_LOG", log.0.display().to_string()),
            ("DURABLY_MP_ORDER", order.to_string()),
        ],
    );
    wait_until("three steps in the worker", Duration::from_secs(60), || {
        assert!(worker.is_running(), "the worker exited early\n{}", worker.output());
        log.lines().len() >= 3
    });
    worker.sigkill();
    let before = log.lines();

    let wf = Workflow::builder("mp").shared_store(spec.open().await).build();
    wf.register::<mp_pipeline>();
    let run_id = format!("mp-order-{order}");
    let committed: Vec<String> = wf
        .list_steps(&run_id)
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.status == durably::StepStatus::Completed)
        .map(|s| s.step_id)
        .collect();
    assert!(committed.len() >= 2 && committed.len() < STEPS as usize, "killed mid-run: {committed:?}");

    // Recover as a worker would: try until the dead worker's lease has expired.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let report = loop {
        let report = wf.recover().await.unwrap();
        if !report.resumed.is_empty() {
            break report;
        }
        assert!(tokio::time::Instant::now() < deadline, "the run never became recoverable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(report.resumed, std::slice::from_ref(&run_id));
    let results = report.join().await;
    assert_eq!(results[0].1.as_deref().unwrap(), expected_total(order).to_string());

    let after = log.lines()[before.len()..].to_vec();
    for entry in &after {
        assert!(!committed.contains(entry), "{entry} had committed and ran again: {after:?}");
    }
    let ran_twice: Vec<&String> = after.iter().filter(|e| before.contains(e)).collect();
    assert!(ran_twice.len() <= 1, "more than the in-flight step ran again: {ran_twice:?}");
    for i in 0..STEPS {
        assert!(log.count(&format!("step-{i}")) >= 1, "step-{i} never ran");
    }
    let run = wf.get_run(&run_id).await.unwrap().unwrap();
    assert_eq!(run.status, durably::RunStatus::Completed);
    eprintln!(
        "killed after {} bodies ({} committed); recovery executed {after:?}",
        before.len(),
        committed.len()
    );
}

#[test]
fn sqlite_two_processes_starting_one_run_execute_each_step_once() {
    let dir = tempfile::tempdir().unwrap();
    let spec = StoreSpec::Sqlite(dir.path().join("shared.db"));
    two_processes_starting_one_run_execute_each_step_once(&spec, dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_killed_worker_is_recovered_by_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let spec = StoreSpec::Sqlite(dir.path().join("shared.db"));
    a_killed_worker_is_recovered_by_another_process(&spec, dir.path()).await;
}
