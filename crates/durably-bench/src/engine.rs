//! The workflow scenarios of `python_durable_bench.py`, through durably's public API:
//! `steps_fresh`, `steps_replay`, `steps_replay_new_object`, `workflows_fresh` and
//! `concurrent_workflows`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use durably::{RunFilter, RunStatus, Workflow};
use serde::{Deserialize, Serialize};

use crate::report::Record;
use crate::stores::{Opened, StoreKind, Target, engine, open_store, writer_stats};

/// Task bodies executed, to check that a replay executes none.
static EXECUTED: AtomicU64 = AtomicU64::new(0);

/// What python-durable's `step` returns: `{"i": i, "ok": true}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StepOut {
    i: u64,
    ok: bool,
}

#[durably::task(retries = 0)]
async fn step(i: u64) -> anyhow::Result<StepOut> {
    EXECUTED.fetch_add(1, Ordering::Relaxed);
    Ok(StepOut { i, ok: true })
}

/// What python-durable's `t` returns: `{"k": k, "j": j}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KJ {
    k: u64,
    j: u64,
}

#[durably::task(retries = 0)]
async fn t(k: u64, j: u64) -> anyhow::Result<KJ> {
    Ok(KJ { k, j })
}

/// `tasks` calls of `t` with automatic step ids (`t`, `t#1`, `t#2`…), as python-durable's `flow`.
#[durably::workflow(id = "wf-{k}")]
async fn flow(k: u64, tasks: u64) -> anyhow::Result<u64> {
    let mut s = 0;
    for j in 0..tasks {
        s += t(k, j).await?.j;
    }
    Ok(s)
}

/// The error a steps run ends with on purpose, so that it stays resumable and the next
/// execution replays every step (a completed run would return its stored output at once).
const STOP: &str = "bench: stopping before completion so that the next execution replays";

/// What the body of a steps run saw: each step's latency, and the sum of their values.
type StepsSeen = (Vec<Duration>, u64);

/// One execution of the steps run: `n` sequential tasks with ids `i-0`…, then completion or
/// [`STOP`]. Returns the time, the latency of each step, and the sum of the step values.
async fn many(
    wf: &Workflow,
    run_id: &str,
    n: u64,
    stop: bool,
) -> anyhow::Result<(Duration, Vec<Duration>, u64)> {
    let sink: Arc<Mutex<Option<StepsSeen>>> = Arc::new(Mutex::new(None));
    let out = sink.clone();
    let started = Instant::now();
    let result = wf
        .run(run_id, move |_ctx| async move {
            let mut lat = Vec::with_capacity(n as usize);
            let mut total = 0;
            for i in 0..n {
                let t0 = Instant::now();
                let r = step(i).step_id(format!("i-{i}")).await?;
                lat.push(t0.elapsed());
                total += r.i;
            }
            if let Ok(mut slot) = out.lock() {
                *slot = Some((lat, total));
            }
            if stop {
                return Err(anyhow!(STOP));
            }
            Ok(total)
        })
        .await;
    let elapsed = started.elapsed();
    let body = sink.lock().map_err(|_| anyhow!("latency sink poisoned"))?.take();
    let Some((lat, total)) = body else {
        bail!("run {run_id} ended before its last step: {result:?}");
    };
    match result {
        Ok(_) => {}
        Err(e) if stop && format!("{e:#}").contains(STOP) => {}
        Err(e) => return Err(e).context(format!("run {run_id}")),
    }
    Ok((elapsed, lat, total))
}

/// `steps_fresh`, `steps_replay` (same engine) and `steps_replay_new_object` (a new store object
/// and engine on the same data, as after a restart): the best of `repeat` rounds of each.
pub(crate) async fn steps(
    kind: StoreKind,
    target_of: impl Fn(u32) -> anyhow::Result<Target>,
    n: u64,
    repeat: u32,
) -> Vec<Record> {
    let mut best: BTreeMap<&'static str, Record> = BTreeMap::new();
    let mut failures = Vec::new();
    for round in 0..repeat.max(1) {
        match steps_round(kind, &target_of, round, n).await {
            Ok(recs) => {
                for rec in recs {
                    let name = match rec.scenario.as_str() {
                        "steps_fresh" => "steps_fresh",
                        "steps_replay" => "steps_replay",
                        _ => "steps_replay_new_object",
                    };
                    match best.get(name) {
                        Some(old) if old.total_ms <= rec.total_ms => {}
                        _ => {
                            best.insert(name, rec);
                        }
                    }
                }
            }
            Err(e) => failures.push(e),
        }
    }
    let label = kind.label();
    let mut out: Vec<Record> = ["steps_fresh", "steps_replay", "steps_replay_new_object"]
        .iter()
        .filter_map(|name| best.remove(name))
        .map(|r| r.with("repeat", repeat))
        .collect();
    if let Some(e) = failures.first() {
        out.push(Record::failed("steps_fresh", label, e).with("failed_rounds", failures.len()));
    }
    out
}

async fn steps_round_on(kind: StoreKind, target: &Target, n: u64) -> anyhow::Result<Vec<Record>> {
    let label = kind.label();
    let expected = n * n.saturating_sub(1) / 2;
    let run_id = "steps-r1".to_owned();
    let opened = open_store(target).await?;
    let wf = engine("bench-steps", &opened);
    let mut out = Vec::new();

    let executed = EXECUTED.load(Ordering::Relaxed);
    let (elapsed, lat, total) = many(&wf, &run_id, n, true).await?;
    let ran = EXECUTED.load(Ordering::Relaxed) - executed;
    let errors = u64::from(total != expected) + u64::from(ran != n);
    let mut rec = Record::throughput("steps_fresh", label, n, elapsed).percentiles(&lat).errors(errors);
    if let Some((commits, writes)) = writer_stats(&opened) {
        rec = rec.with("commits", commits).with("writes", writes);
    }
    out.push(rec);

    let executed = EXECUTED.load(Ordering::Relaxed);
    let (elapsed, lat, total) = many(&wf, &run_id, n, true).await?;
    let ran = EXECUTED.load(Ordering::Relaxed) - executed;
    let errors = u64::from(total != expected) + ran;
    out.push(Record::throughput("steps_replay", label, n, elapsed).percentiles(&lat).errors(errors));

    if kind.shared() {
        // A new store object and engine on the same data, as a restarted process has. Opening
        // the store is outside the timed region, as python-durable's `Workflow(...)` is.
        let reopened = open_store(target).await?;
        let wf2 = engine("bench-steps", &reopened);
        drop(wf);
        drop(opened);
        let executed = EXECUTED.load(Ordering::Relaxed);
        let (elapsed, lat, total) = many(&wf2, &run_id, n, false).await?;
        let ran = EXECUTED.load(Ordering::Relaxed) - executed;
        let errors = u64::from(total != expected) + ran;
        out.push(
            Record::throughput("steps_replay_new_object", label, n, elapsed).percentiles(&lat).errors(errors),
        );
    }
    Ok(out)
}

/// One round of the steps scenarios, then the server's data is removed.
async fn steps_round(
    kind: StoreKind,
    target_of: &impl Fn(u32) -> anyhow::Result<Target>,
    round: u32,
    n: u64,
) -> anyhow::Result<Vec<Record>> {
    let target = target_of(round)?;
    let result = steps_round_on(kind, &target, n).await;
    if let Err(e) = target.cleanup().await {
        eprintln!("durably-bench: could not clean up {}: {e:#}", target.namespace);
    }
    result
}

/// `workflows_fresh`: `runs` runs of `tasks` tasks, one after another.
pub(crate) async fn workflows(target: &Target, runs: u64, tasks: u64) -> anyhow::Result<Record> {
    let opened = open_store(target).await?;
    let wf = engine("bench-wfs", &opened);
    let mut lat = Vec::with_capacity(runs as usize);
    let mut errors = 0;
    let started = Instant::now();
    for k in 0..runs {
        let t0 = Instant::now();
        match flow(&wf, k, tasks).await {
            Ok(s) if s == tasks * tasks.saturating_sub(1) / 2 => {}
            _ => errors += 1,
        }
        lat.push(t0.elapsed());
    }
    let elapsed = started.elapsed();
    let steps = runs * tasks;
    let secs = elapsed.as_secs_f64();
    let mut rec = Record::throughput("workflows_fresh", target.kind.label(), steps, elapsed)
        .errors(errors)
        .with("runs", runs)
        .with("tasks_per_run", tasks)
        .with("runs_per_s", crate::report::round(runs as f64 / secs, 1))
        .with("run_p50_us", p(&lat, 50.0))
        .with("run_p99_us", p(&lat, 99.0));
    if let Some((commits, writes)) = writer_stats(&opened) {
        rec = rec.with("commits", commits).with("writes", writes);
    }
    Ok(rec)
}

fn p(samples: &[Duration], pct: f64) -> f64 {
    let mut us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    us.sort_by(f64::total_cmp);
    crate::report::percentile(&us, pct).map(|v| crate::report::round(v, 1)).unwrap_or(0.0)
}

/// `concurrent_workflows`: `runs` runs of `tasks` tasks, all started at once on the runtime.
pub(crate) async fn concurrent(target: &Target, runs: u64, tasks: u64) -> anyhow::Result<Record> {
    let opened: Opened = open_store(target).await?;
    let wf = engine("bench-conc", &opened);
    let started = Instant::now();
    let mut handles = Vec::with_capacity(runs as usize);
    for k in 0..runs {
        let wf = wf.clone();
        let id = format!("cwf-{k}");
        handles.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let r = flow::with_id(&wf, id, k, tasks).await;
            (r, t0.elapsed())
        }));
    }
    let mut lat = Vec::with_capacity(handles.len());
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for h in handles {
        match h.await {
            Ok((Ok(s), d)) if s == tasks * tasks.saturating_sub(1) / 2 => lat.push(d),
            Ok((Ok(s), _)) => *kinds.entry(format!("wrong sum {s}")).or_default() += 1,
            Ok((Err(e), _)) => *kinds.entry(short(&e.to_string())).or_default() += 1,
            Err(e) => *kinds.entry(format!("task panicked: {e}")).or_default() += 1,
        }
    }
    let elapsed = started.elapsed();
    // Every run must be recorded as completed: nothing lost.
    let completed = wf
        .list_runs(&RunFilter::new().status(RunStatus::Completed))
        .await
        .context("listing completed runs")?
        .len() as u64;
    if completed != runs {
        *kinds
            .entry(format!("{} runs not recorded as completed", runs.saturating_sub(completed)))
            .or_default() += 1;
    }
    let errors: u64 = kinds.values().sum();
    let steps = runs * tasks;
    let secs = elapsed.as_secs_f64();
    let mut rec = Record::throughput("concurrent_workflows", target.kind.label(), steps, elapsed)
        .errors(errors)
        .with("runs", runs)
        .with("tasks_per_run", tasks)
        .with("ok", runs.saturating_sub(errors.min(runs)))
        .with("runs_per_s", crate::report::round(runs as f64 / secs, 1))
        .with("run_p50_us", p(&lat, 50.0))
        .with("run_p99_us", p(&lat, 99.0))
        .with("recorded_completed", completed);
    if !kinds.is_empty() {
        rec = rec.with("error_kinds", serde_json::to_value(&kinds).unwrap_or_default());
    }
    if let Some((commits, writes)) = writer_stats(&opened) {
        rec = rec.with("commits", commits).with("writes", writes);
    }
    Ok(rec)
}

fn short(s: &str) -> String {
    s.chars().take(160).collect()
}
