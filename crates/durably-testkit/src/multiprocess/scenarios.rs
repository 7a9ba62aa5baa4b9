//! The parent side of each scenario: the children it starts and what it checks.
// Each scenario's name is its documentation; the measured latencies are printed, not asserted.
#![allow(missing_docs, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use durably::{RunStatus, StepStatus};

use super::{DEADLINE, INPUT, KILLED_LEASE, Processes, STEPS, tagged, var};

/// What the pipeline returns.
fn expected_output() -> String {
    (INPUT + STEPS.iter().map(|s| s.len() as u64).sum::<u64>()).to_string()
}

/// Each of `steps` once.
fn once(steps: &[&str]) -> BTreeMap<String, usize> {
    steps.iter().map(|s| ((*s).to_owned(), 1)).collect()
}

/// Two processes, ready at once, start the same run id at the same moment (rule 9): each step
/// body starts and finishes once in total, both get the run's output, and the run is stored
/// completed.
pub async fn two_processes_starting_one_run_execute_each_step_once(p: Processes) {
    // Opened before the children: a store that creates its schema does it once, here.
    let wf = p.engine().await;
    let run_id = "order-1";
    let go = p.path("go").display().to_string();
    let mut a = p.spawn("start", "process-a", run_id, &[(var::GO, go.clone())]);
    let mut b = p.spawn("start", "process-b", run_id, &[(var::GO, go.clone())]);
    p.wait_for_log("both processes ready", &mut [&mut a, &mut b], |log| log.count("ready") == 2).await;
    std::fs::write(&go, "go").unwrap();

    let (out_a, out_b) = (a.finish().await, b.finish().await);
    let log = p.log();
    assert_eq!(tagged(&out_a, "OUTPUT"), expected_output(), "process a gets the run's output");
    assert_eq!(tagged(&out_b, "OUTPUT"), expected_output(), "process b gets the run's output");
    assert_eq!(log.counts("start"), once(&STEPS), "each step body started once in total: {:?}", log.lines());
    assert_eq!(log.counts("done"), once(&STEPS), "each step body finished once in total: {:?}", log.lines());
    assert_eq!(log.lines().len(), 2 + 2 * STEPS.len(), "nothing else ran: {:?}", log.lines());
    assert_eq!(wf.get_run(run_id).await.unwrap().unwrap().status, RunStatus::Completed);
    assert_eq!(wf.output::<u64>(run_id).await.unwrap().map(|n| n.to_string()), Some(expected_output()));
}

/// A worker is killed with SIGKILL inside its third step, its lease unreleased (rule 12):
/// the run stays `running` with the two finished steps recorded, and another process's
/// `recover()` finishes it once the lease expires, replaying the finished steps and running
/// again only the step that was in flight.
pub async fn a_worker_killed_mid_step_is_recovered_by_another_process_rerunning_only_that_step(p: Processes) {
    let wf = p.engine().await;
    let run_id = "order-2";
    let mut doomed = p.spawn("doomed", "doomed", run_id, &[(var::HANG_AT, "load".into())]);
    p.wait_for_log("the worker inside step `load`", &mut [&mut doomed], |log| {
        log.counts("start").contains_key("load")
    })
    .await;
    let status = doomed.sigkill();
    let killed_at = Instant::now();
    assert!(!status.success(), "the worker was killed: {status}");

    let log = p.log();
    assert_eq!(log.counts("start"), once(&["extract", "transform", "load"]), "{:?}", log.lines());
    assert_eq!(log.counts("done"), once(&["extract", "transform"]), "{:?}", log.lines());
    let run = wf.get_run(run_id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Running, "a killed worker leaves its run `running`");
    let mut committed: Vec<String> = wf
        .list_steps(run_id)
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.status == StepStatus::Completed)
        .map(|s| s.step_id)
        .collect();
    committed.sort();
    assert_eq!(committed, ["extract", "transform"], "the steps that finished before the kill are recorded");

    let rescuer = p.spawn("recover", "rescuer", run_id, &[]);
    let out = rescuer.finish().await;
    assert_eq!(tagged(&out, "OUTPUT"), expected_output(), "the recovered run's output");
    println!("{}: recovered {:?} after the kill (lease TTL {KILLED_LEASE:?})", p.name, killed_at.elapsed());

    let mut starts = once(&STEPS);
    starts.insert("load".into(), 2);
    assert_eq!(log.counts("start"), starts, "only the in-flight step `load` ran again: {:?}", log.lines());
    assert_eq!(log.counts("done"), once(&STEPS), "every step finished once: {:?}", log.lines());
    assert_eq!(wf.get_run(run_id).await.unwrap().unwrap().status, RunStatus::Completed);
    assert_eq!(wf.output::<u64>(run_id).await.unwrap().map(|n| n.to_string()), Some(expected_output()));
}

/// A run waits on a signal in one process; another process delivers it (rule 10): the
/// delivery is accepted, the waiting run wakes with the payload and completes. The latency
/// from delivery to the run resuming is printed.
pub async fn a_signal_from_another_process_wakes_the_waiting_run(p: Processes) {
    let wf = p.engine().await;
    let run_id = "expense-3";
    let mut waiter = p.spawn("wait-signal", "waiter", run_id, &[]);
    let deadline = Instant::now() + DEADLINE;
    while !wf.get_run(run_id).await.unwrap().is_some_and(|r| r.status == RunStatus::Waiting) {
        assert!(waiter.is_running(), "the waiting process exited\n{}", waiter.output());
        assert!(Instant::now() < deadline, "the run never started waiting");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let the waiter settle into its wait, so that what is measured is the wake-up, not a
    // first look at the signal.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(waiter.is_running(), "the run ended without its signal\n{}", waiter.output());

    let deliverer = p.spawn("deliver", "deliverer", run_id, &[(var::PAYLOAD, "4242".into())]);
    let delivered = deliverer.finish().await;
    assert_eq!(tagged(&delivered, "DELIVERED"), "true", "the first delivery is accepted");
    let sent: i64 = tagged(&delivered, "SENT").parse().unwrap();
    assert_eq!(tagged(&waiter.finish().await, "OUTPUT"), "4242", "the run woke with the payload");
    let woken: i64 = p
        .log()
        .lines()
        .iter()
        .find_map(|l| l.strip_prefix("woken ").map(|t| t.parse().unwrap()))
        .expect("the waiting process logged its wake-up");
    println!(
        "{}: signal latency across processes {} ms (delivery to the run resuming)",
        p.name,
        woken - sent
    );
    assert_eq!(wf.get_run(run_id).await.unwrap().unwrap().status, RunStatus::Completed);
    assert_eq!(wf.output::<u64>(run_id).await.unwrap(), Some(4242));
}
