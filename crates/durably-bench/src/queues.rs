//! The queue scenarios (rules 22, 23 and 25 of docs/design.md):
//!
//! - `queue_throughput_1w`, `queue_throughput_4w`: one-step runs enqueued in a queue, then
//!   executed by 1 or 4 worker engines in this process (each on a store object of its own
//!   where the store is shared, as separate processes would be); runs per second from the
//!   workers' start until the queue is empty.
//! - `enqueue_to_start`: an idle worker; another store object enqueues one run at a time, and
//!   the time from the `enqueue` call to the run's body starting is measured (p50, p99).
//! - `fan_out`: a parent run starts `n` children through the queue (each a step) and joins
//!   them all; the time from enqueuing the parent to its output.
//! - `parked_runs`: in a child process of its own, `n` runs enqueued that wait on a signal are
//!   parked by the worker (`park_after(0)`); the child's resident memory before the worker
//!   starts, once half and once every run is parked (the growth of the second half, per run,
//!   extrapolates to 1,000,000 runs), then the resume latency of a sample (from
//!   `complete()` to the run's body running again after its replay).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use durably::{Error, Queue, RunContext, Workflow};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::report::{Record, round};
use crate::stores::{Opened, StoreKind, Target, engine, open_store};
use crate::waiting::{run_child, status_mb};

/// The queue of every scenario here, without limits.
const QUEUE: &str = "bench";
/// Enqueue calls in flight at once when filling a queue.
const ENQUEUE_PARALLEL: usize = 128;
/// The longest any scenario waits for its runs.
const DEADLINE: Duration = Duration::from_secs(900);

/// The longest `parked_runs` may take for `runs` runs, each phase (parking them all, then
/// resuming them all): [`DEADLINE`], or 2 ms a run where that is longer, so that a run of
/// 1,000,000 is measured to its end instead of cut off at a fixed limit.
fn parked_deadline(runs: u64) -> Duration {
    DEADLINE.max(Duration::from_millis(runs.saturating_mul(2)))
}

/// An engine with the queue defined, and `register` applied.
fn queue_engine(app: &str, opened: &Opened, register: impl FnOnce(&Workflow)) -> anyhow::Result<Workflow> {
    let wf = engine(app, opened);
    wf.add_queue(Queue::new(QUEUE))?;
    register(&wf);
    Ok(wf)
}

/// A store object for another engine on `target`'s data: a new one where the store is shared,
/// the same one for the memory store.
async fn another(target: &Target, opened: &Opened) -> anyhow::Result<Opened> {
    if target.kind.shared() { open_store(target).await } else { Ok(opened.clone()) }
}

/// Enqueues runs `<prefix>-0..n` of `workflow` with input `i`, `ENQUEUE_PARALLEL` at a time.
async fn fill(wf: &Workflow, workflow: &str, prefix: &str, n: u64) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        if tasks.len() >= ENQUEUE_PARALLEL
            && let Some(r) = tasks.join_next().await
        {
            r??;
        }
        let (wf, workflow, rid) = (wf.clone(), workflow.to_owned(), format!("{prefix}-{i}"));
        tasks.spawn(async move { wf.enqueue(QUEUE, &workflow, &rid, &i).await.map(|_| ()) });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

/// The pause before asking for a queue's counts again, the last time asked at `asked`: `least`,
/// or longer where counting took long (it reads every run of the queue), so that with many
/// runs at most a tenth of the store's time goes to the bench's counting.
fn pause_after(asked: Instant, least: Duration) -> Duration {
    least.max(asked.elapsed() * 9)
}

/// Waits until the queue has no run enqueued, executing or parked.
async fn drained(wf: &Workflow, what: &str, deadline: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let asked = Instant::now();
        let stats = wf.queue_stats(QUEUE).await?;
        if stats.enqueued == 0 && stats.executing == 0 && stats.parked == 0 {
            return Ok(());
        }
        if started.elapsed() > deadline {
            bail!("{what}: the queue still had {stats:?} after {deadline:?}");
        }
        tokio::time::sleep(pause_after(asked, Duration::from_millis(2))).await;
    }
}

/// `queue_throughput_<workers>w`: `runs` one-step runs through `workers` worker engines.
pub(crate) async fn throughput(target: &Target, runs: u64, workers: usize) -> anyhow::Result<Record> {
    let scenario = format!("queue_throughput_{workers}w");
    let opened = open_store(target).await?;
    let done = Arc::new(AtomicU64::new(0));
    let register = |wf: &Workflow| {
        let done = done.clone();
        wf.register_fn("one", move |ctx: RunContext, n: u64| {
            let done = done.clone();
            async move {
                let v = ctx.step("work", move || async move { Ok::<_, std::io::Error>(n) }).await?;
                done.fetch_add(1, Ordering::Relaxed);
                Ok::<_, Error>(v)
            }
        });
    };
    let producer = queue_engine("bench-queue", &opened, register)?;
    fill(&producer, "one", "one", runs).await?;
    let mut engines = Vec::new();
    for _ in 0..workers {
        engines.push(queue_engine("bench-queue", &another(target, &opened).await?, register)?);
    }
    let started = Instant::now();
    let mut handles = Vec::new();
    for wf in &engines {
        handles.push(wf.queue_worker([QUEUE]).start()?);
    }
    drained(&producer, &scenario, DEADLINE).await?;
    let total = started.elapsed();
    for h in handles {
        h.shutdown().await;
    }
    let executed = done.load(Ordering::Relaxed);
    let completed =
        producer.list_runs(&durably::RunFilter::new().status(durably::RunStatus::Completed)).await?.len()
            as u64;
    Ok(Record::throughput(&scenario, target.kind.label(), runs, total)
        .errors(runs.saturating_sub(completed))
        .with("workers", workers as u64)
        .with("executions", executed))
}

/// `enqueue_to_start`: `trials` runs enqueued one at a time to an idle worker.
pub(crate) async fn enqueue_to_start(target: &Target, trials: u64) -> anyhow::Result<Record> {
    let opened = open_store(target).await?;
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, Instant)>();
    let worker_wf = queue_engine("bench-queue", &opened, |wf| {
        wf.register_fn("mark", move |ctx: RunContext, _n: u64| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((ctx.run_id().to_owned(), Instant::now()));
                Ok::<_, Error>(0u64)
            }
        });
    })?;
    let producer = queue_engine("bench-queue", &another(target, &opened).await?, |wf| {
        wf.register_fn("mark", |_ctx: RunContext, _n: u64| async move { Ok::<_, Error>(0u64) });
    })?;
    let worker = worker_wf.queue_worker([QUEUE]).start()?;
    let started = Instant::now();
    let mut samples = Vec::with_capacity(trials as usize);
    for i in 0..trials {
        // Let the worker go idle, waiting for work.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let rid = format!("mark-{i}");
        let t0 = Instant::now();
        producer.enqueue(QUEUE, "mark", &rid, &i).await?;
        let (got, at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .map_err(|_| anyhow!("run `{rid}` did not start within 30 s of its enqueue"))?
            .context("the worker's channel closed")?;
        if got != rid {
            bail!("run `{got}` started, expected `{rid}`");
        }
        samples.push(at.duration_since(t0));
    }
    let total = started.elapsed();
    worker.shutdown().await;
    Ok(Record::latency("enqueue_to_start", target.kind.label(), &samples, total))
}

/// `fan_out`: a parent starting `children` children through the queue and joining them.
pub(crate) async fn fan_out(target: &Target, children: u64) -> anyhow::Result<Record> {
    let opened = open_store(target).await?;
    let wf = queue_engine("bench-queue", &opened, |wf| {
        wf.register_fn("leaf", |_ctx: RunContext, n: u64| async move { Ok::<_, Error>(n) });
        wf.register_fn("parent", |_ctx: RunContext, n: u64| async move {
            let mut handles = Vec::with_capacity(n as usize);
            for i in 0..n {
                handles.push(durably::child("leaf", &i).start().await?);
            }
            let mut sum = 0u64;
            for h in handles {
                sum += h.join::<u64>().await?;
            }
            Ok::<_, Error>(sum)
        });
    })?;
    let worker = wf.queue_worker([QUEUE]).concurrency(64).start()?;
    let started = Instant::now();
    let handle = wf.enqueue(QUEUE, "parent", "parent", &children).await?;
    let sum: u64 = tokio::time::timeout(DEADLINE, handle.result())
        .await
        .map_err(|_| anyhow!("the parent of {children} children did not finish within {DEADLINE:?}"))??;
    let total = started.elapsed();
    worker.shutdown().await;
    let expected = children * children.saturating_sub(1) / 2;
    Ok(Record::throughput("fan_out", target.kind.label(), children, total)
        .errors(u64::from(sum != expected))
        .with("children", children))
}

/// What the parked child reports.
#[derive(Debug, Serialize, Deserialize)]
struct ParkedReport {
    runs: u64,
    baseline_rss_mb: f64,
    /// Once half the runs were parked.
    rss_half_mb: f64,
    rss_mb: f64,
    hwm_mb: f64,
    enqueue_ms: f64,
    park_all_ms: f64,
    resume_us: Vec<f64>,
    errors: u64,
    #[serde(default)]
    first_error: Option<String>,
}

/// `parked_runs`: runs the `parked-child` and turns its report into the record.
pub(crate) async fn parked(target: &Target, runs: u64) -> anyhow::Result<Record> {
    // The child runs two phases of at most `parked_deadline` each, plus its enqueues.
    let (status, line) = run_child("parked-child", target, runs, parked_deadline(runs) * 3).await?;
    let line = line.as_str();
    let r: ParkedReport =
        serde_json::from_str(line).with_context(|| format!("parked child said {line:?}"))?;
    let samples: Vec<Duration> = r.resume_us.iter().map(|us| Duration::from_secs_f64(us / 1e6)).collect();
    let grown = r.rss_mb - r.baseline_rss_mb;
    // What the second half of the runs added, per run: the first half also pays the
    // allocator's and the store's one-time growth, which does not recur.
    let marginal_kb = (r.rss_mb - r.rss_half_mb).max(0.0) * 1024.0 / (r.runs - r.runs / 2).max(1) as f64;
    let to_1m = 1_000_000u64.saturating_sub(r.runs) as f64;
    let mut rec = Record::throughput(
        "parked_runs",
        target.kind.label(),
        r.runs,
        Duration::from_secs_f64(r.park_all_ms / 1e3),
    )
    .percentiles(&samples)
    .errors(r.errors)
    .with("baseline_rss_mb", round(r.baseline_rss_mb, 1))
    .with("rss_mb", round(r.rss_mb, 1))
    .with("hwm_mb", round(r.hwm_mb, 1))
    .with("kb_per_run", round(grown * 1024.0 / r.runs.max(1) as f64, 3))
    .with("rss_half_mb", round(r.rss_half_mb, 1))
    .with("marginal_kb_per_run", round(marginal_kb, 3))
    .with("rss_1m_extrapolated_mb", round(r.rss_mb + marginal_kb * to_1m / 1024.0, 0))
    .with("enqueue_ms", round(r.enqueue_ms, 1))
    .with("resume_samples", samples.len() as u64);
    if let Some(e) = r.first_error {
        rec = rec.with("first_error", e);
    }
    if !status.success() {
        let errors = rec.errors.max(1);
        rec = rec.errors(errors).with("child_status", status.to_string());
    }
    Ok(rec)
}

/// Runs whose resume latency the parked child measures, one at a time.
const RESUME_SAMPLES: u64 = 200;

/// The `parked-child`: enqueues `runs` runs waiting on signal `go`, reads its memory, starts a
/// worker that parks them at once, reads its memory again once all are parked, then resumes a
/// sample one at a time and finally all the others; prints one JSON [`ParkedReport`] line.
pub(crate) async fn parked_child(
    kind: StoreKind,
    location: PathBuf,
    runs: u64,
    poll: Duration,
    namespace: String,
) -> anyhow::Result<()> {
    let target = Target { kind, location, namespace, poll };
    let opened = open_store(&target).await?;
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, Instant)>();
    let wf = queue_engine("bench-parked", &opened, |wf| {
        wf.register_fn("waiter", move |ctx: RunContext, _n: u64| {
            let tx = tx.clone();
            async move {
                let v: u64 = durably::signal("go").await?;
                let _ = tx.send((ctx.run_id().to_owned(), Instant::now()));
                Ok::<_, Error>(v)
            }
        });
    })?;
    let t = Instant::now();
    fill(&wf, "waiter", "wait", runs).await?;
    let enqueue_ms = t.elapsed().as_secs_f64() * 1e3;
    let baseline = status_mb("VmRSS:").unwrap_or(0.0);
    let started = Instant::now();
    let worker = wf.queue_worker([QUEUE]).concurrency(256).park_after(Duration::ZERO).start()?;
    let mut rss_half = None;
    loop {
        let asked = Instant::now();
        let stats = wf.queue_stats(QUEUE).await?;
        let pause = pause_after(asked, Duration::from_millis(50));
        if stats.parked >= runs {
            break;
        }
        if rss_half.is_none() && stats.parked >= runs / 2 {
            rss_half = status_mb("VmRSS:");
        }
        if started.elapsed() > parked_deadline(runs) {
            bail!("only {} of {runs} runs were parked after {:?}", stats.parked, parked_deadline(runs));
        }
        tokio::time::sleep(pause).await;
    }
    let park_all = started.elapsed();
    // Settle, then read what the parked runs cost the worker's process.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = status_mb("VmRSS:").unwrap_or(0.0);
    let hwm = status_mb("VmHWM:").unwrap_or(0.0);

    let (mut errors, mut first_error) = (0u64, None);
    let mut note = |e: String| {
        errors += 1;
        if first_error.is_none() {
            first_error = Some(e);
        }
    };
    let mut resume_us = Vec::new();
    let sample = runs.min(RESUME_SAMPLES);
    for i in 0..sample {
        let rid = format!("wait-{i}");
        tokio::time::sleep(Duration::from_millis(10)).await;
        let t0 = Instant::now();
        match wf.complete(&rid, "go", &i).await {
            Ok(true) => {}
            Ok(false) => note(format!("the signal of `{rid}` was taken as a duplicate")),
            Err(e) => note(e.to_string()),
        }
        match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
            Ok(Some((got, at))) if got == rid => resume_us.push(at.duration_since(t0).as_secs_f64() * 1e6),
            Ok(Some((got, _))) => note(format!("`{got}` resumed, expected `{rid}`")),
            Ok(None) | Err(_) => note(format!("`{rid}` did not resume within 30 s")),
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in sample..runs {
        if tasks.len() >= ENQUEUE_PARALLEL {
            let _ = tasks.join_next().await;
        }
        let wf = wf.clone();
        tasks.spawn(async move { wf.complete(&format!("wait-{i}"), "go", &i).await });
    }
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => note(e.to_string()),
            Err(e) => note(e.to_string()),
        }
    }
    drained(&wf, "parked_runs", parked_deadline(runs)).await?;
    worker.shutdown().await;
    let completed =
        wf.list_runs(&durably::RunFilter::new().status(durably::RunStatus::Completed)).await?.len() as u64;
    if completed != runs {
        note(format!("{completed} of {runs} runs completed after every signal"));
    }
    let report = ParkedReport {
        runs,
        baseline_rss_mb: baseline,
        rss_half_mb: rss_half.unwrap_or(baseline),
        rss_mb: rss,
        hwm_mb: hwm,
        enqueue_ms,
        park_all_ms: park_all.as_secs_f64() * 1e3,
        resume_us,
        errors,
        first_error,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
