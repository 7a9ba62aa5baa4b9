//! The parent side of each scenario: the children it starts and what it checks.
// Each scenario's name is its documentation; the measured latencies are printed, not asserted.
#![allow(missing_docs, clippy::print_stdout)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use durably::{EnqueueOptions, RunStatus, StepStatus, now_ms};

use super::child::queue_engine;
use super::{
    Child, DEADLINE, INPUT, KILLED_LEASE, Processes, QUEUE, QUEUE_CONCURRENCY, QUEUE_LEASE, QUEUE_PER_KEY,
    RATE_PERIOD, RATE_STARTS, STEPS, tagged, var,
};

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

/// How many runs the kill scenario enqueues, how many worker processes it keeps, and how many
/// of them it kills (each while it executes a run).
const QUEUED_RUNS: usize = 60;
const WORKERS: usize = 3;
const KILLS: usize = 5;

/// The concurrency key of run `i`: runs come in blocks of three of one key, so the per-key
/// limit holds back the rest of a block.
fn key_of(i: usize) -> String {
    format!("tenant-{}", (i / 3) % 5)
}

/// One execution of a queued run, as the shared log and the parent's kills recorded it: from
/// the body's first line to its last line, or, for an execution cut off by SIGKILL, to the
/// lapse of its lease (see the scenario).
#[derive(Debug, Clone)]
struct Execution {
    run: String,
    pid: u32,
    start: i64,
    end: i64,
    killed: bool,
}

/// The largest number of `intervals` (half-open `[start, end)`) that overlap at one instant.
fn max_overlap(intervals: impl Iterator<Item = (i64, i64)>) -> usize {
    let mut events: Vec<(i64, i32)> = intervals.flat_map(|(s, e)| [(s, 1), (e, -1)]).collect();
    // At one instant, ends come before starts.
    events.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        max = max.max(now);
    }
    usize::try_from(max).unwrap_or(0)
}

/// Queue workers in three processes execute 60 runs of a queue with concurrency 3, per-key 1
/// and a rate limit, over five keys; the test SIGKILLs a worker in the middle of a run five
/// times at random (a random worker, at random gaps, while it executes a run) and starts
/// another each time. Rule 22: every run completes once, with its
/// side-effect step recorded completed once and within one of its executions; no run executes
/// in two workers at once; and no limit is ever exceeded.
///
/// The check uses the times the executions recorded, not the workers' counters: each
/// execution logs its first line (`exec`) after its claim and its last line (`end`) while it
/// still holds the run's lease, so `[exec, end)` lies inside a span a live lease covers. An
/// execution cut off by SIGKILL holds its lease until the lease lapses, and a limit counts
/// live leases: it keeps counting past the kill, until `kill + TTL/3`, a lower bound of the
/// lapse (the last renewal, every third of the TTL, came at most a third of the TTL before
/// the kill, so the lease lasts at least two thirds of it after). Counting less than the
/// store does never fails a correct store; and among executions overlapping at one instant,
/// the last one claimed saw every other's lease live at its claim, so more than a limit
/// overlapping means the store broke it. The rate limit counts claims per period: it is checked
/// on the claim times the store recorded (`RunRecord::claimed_at_ms`, by the clock the store
/// counts with), which each execution logs (`claim`), in windows of exactly the period. A
/// claim whose execution was killed before it logged is missing, which again only counts less
/// than the store does.
pub async fn queue_workers_killed_at_random_run_every_run_once_within_the_queue_limits(p: Processes) {
    let wf = queue_engine(p.store().await, p.log());
    let mut keys = HashMap::new();
    for i in 0..QUEUED_RUNS {
        let run_id = format!("job-{i:02}");
        let options = EnqueueOptions::new().key(key_of(i));
        wf.enqueue_with(QUEUE, "job", &run_id, &(i as u64), options).await.unwrap();
        keys.insert(run_id, key_of(i));
    }
    let mut spawned = 0;
    let mut spawn = |p: &Processes| {
        spawned += 1;
        p.spawn("queue-worker", &format!("worker-{spawned}"), "-", &[])
    };
    let mut workers: Vec<Child> = (0..WORKERS).map(|_| spawn(&p)).collect();

    // A small xorshift generator, seeded from the clock and printed, for the kills.
    let seed = (now_ms() as u64) | 1;
    println!("{}: kill seed {seed}", p.name);
    let mut state = seed;
    let mut random = move |bound: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % bound
    };
    let log = p.log();
    // The executions that started and have not ended, by pid.
    let open_by = |pid: u32| {
        let mut open = 0i64;
        for line in log.lines() {
            let words: Vec<&str> = line.split(' ').collect();
            if words.len() == 4 && words[2] == pid.to_string() {
                open += match words[0] {
                    "exec" => 1,
                    "end" => -1,
                    _ => 0,
                };
            }
        }
        open > 0
    };
    let mut kills: HashMap<u32, i64> = HashMap::new();
    let deadline = Instant::now() + DEADLINE;
    while kills.len() < KILLS {
        assert!(Instant::now() < deadline, "no worker was ever inside a run to kill: {:?}", log.lines());
        let victim = random(WORKERS as u64) as usize;
        let worker = &mut workers[victim];
        assert!(worker.is_running(), "a queue worker exited\n{}", worker.output());
        if !open_by(worker.id()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let pid = worker.id();
        worker.sigkill();
        kills.insert(pid, now_ms());
        workers[victim] = spawn(&p);
        tokio::time::sleep(Duration::from_millis(100 + random(400))).await;
    }

    let finished =
        |runs: &[durably::RunRecord]| runs.iter().filter(|r| r.status == RunStatus::Completed).count();
    loop {
        let runs = wf.list_runs(&durably::RunFilter::new()).await.unwrap();
        if finished(&runs) == QUEUED_RUNS {
            break;
        }
        for worker in &mut workers {
            assert!(worker.is_running(), "a queue worker exited\n{}", worker.output());
        }
        assert!(
            Instant::now() < deadline,
            "{} of {QUEUED_RUNS} runs completed within {DEADLINE:?}: {:?}",
            finished(&runs),
            log.lines()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for mut worker in workers {
        worker.sigkill();
    }

    // The executions, from the log and the kills.
    let lapse = i64::try_from(QUEUE_LEASE.as_millis() / 3).unwrap();
    let mut executions: Vec<Execution> = Vec::new();
    for line in log.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        let [kind, run, pid, at] = words[..] else { continue };
        let (pid, at): (u32, i64) = (pid.parse().unwrap(), at.parse().unwrap());
        match kind {
            "exec" => {
                let killed = kills.get(&pid).map(|k| k + lapse);
                executions.push(Execution {
                    run: run.into(),
                    pid,
                    start: at,
                    end: killed.unwrap_or(i64::MAX),
                    killed: killed.is_some(),
                });
            }
            "end" => {
                let open = executions
                    .iter_mut()
                    .rev()
                    .find(|e| e.run == run && e.pid == pid)
                    .unwrap_or_else(|| panic!("`{line}` without its start: {:?}", log.lines()));
                (open.end, open.killed) = (at, false);
            }
            _ => {}
        }
    }
    for e in &executions {
        assert!(e.end != i64::MAX, "execution {e:?} neither ended nor was killed");
    }
    let cut_off = executions.iter().filter(|e| e.killed).count();
    // Each kill aimed at a worker inside a run; the run may have ended just before.
    assert!(cut_off >= 1, "no kill cut off an execution: {executions:?}");

    // Every run completed once, its side effect recorded once, inside one of its executions.
    for i in 0..QUEUED_RUNS {
        let run_id = format!("job-{i:02}");
        assert_eq!(wf.output::<u64>(&run_id).await.unwrap(), Some(2 * i as u64), "run `{run_id}`'s output");
        let steps = wf.list_steps(&run_id).await.unwrap();
        let work: Vec<_> = steps.iter().filter(|s| s.step_id == "work").collect();
        assert_eq!(work.len(), 1, "run `{run_id}` has one record of its side-effect step: {steps:?}");
        assert_eq!(work[0].status, StepStatus::Completed, "run `{run_id}`'s side effect is completed");
        let (started, done) = (work[0].started_at_ms, work[0].finished_at_ms.unwrap());
        let mine: Vec<&Execution> = executions.iter().filter(|e| e.run == run_id).collect();
        assert!(
            mine.iter().any(|e| e.start <= started && done <= e.end),
            "run `{run_id}`'s step ran {started}..{done}, inside none of its executions {mine:?}"
        );
        assert!(mine.iter().any(|e| !e.killed), "run `{run_id}` finished in an execution: {mine:?}");
        // No run executed in two workers at once.
        assert_eq!(
            max_overlap(mine.iter().map(|e| (e.start, e.end))),
            1,
            "run `{run_id}` executed in two workers at once: {mine:?}"
        );
    }

    // No limit exceeded.
    let overall = max_overlap(executions.iter().map(|e| (e.start, e.end)));
    assert!(
        overall <= QUEUE_CONCURRENCY as usize,
        "{overall} runs executed at once, over the concurrency {QUEUE_CONCURRENCY}: {executions:?}"
    );
    let mut per_key = 0;
    for key in (0..QUEUED_RUNS).map(key_of) {
        let of_key = executions.iter().filter(|e| keys[&e.run] == key).map(|e| (e.start, e.end));
        per_key = per_key.max(max_overlap(of_key));
    }
    assert!(
        per_key <= QUEUE_PER_KEY as usize,
        "{per_key} runs of one key executed at once, over {QUEUE_PER_KEY}: {executions:?}"
    );
    // The rate, from the claim times the store recorded (each claim once, however many of its
    // executions logged it): the window each claim counts is the period before it, its end
    // included, as the store counts it.
    let log_lines = log.lines();
    let claims: BTreeSet<(&str, i64)> = log_lines
        .iter()
        .filter_map(|line| match line.split(' ').collect::<Vec<_>>()[..] {
            ["claim", run, _, at] => Some((run, at.parse().unwrap())),
            _ => None,
        })
        .collect();
    let mut starts: Vec<i64> = claims.iter().map(|&(_, at)| at).collect();
    starts.sort_unstable();
    assert!(starts.len() >= QUEUED_RUNS, "fewer claim times than runs: {starts:?}");
    let window = i64::try_from(RATE_PERIOD.as_millis()).unwrap();
    let mut rate = 0;
    for &t in &starts {
        rate = rate.max(starts.iter().filter(|&&s| t - window < s && s <= t).count());
    }
    assert!(
        rate <= RATE_STARTS as usize,
        "{rate} claims within {window} ms, over the rate {RATE_STARTS} per {RATE_PERIOD:?}: {starts:?}"
    );
    println!(
        "{}: {} executions ({cut_off} cut off by {KILLS} kills); at most {overall} at once, {per_key} per key, {rate} starts per {window} ms",
        p.name,
        executions.len()
    );
}
