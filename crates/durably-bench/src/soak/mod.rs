//! `soak`: a bounded soak of one engine per store under load, to catch leaks, slowdowns
//! and lost runs that a short benchmark does not show. It is a subcommand of its own, never part
//! of the normal benchmark, because it takes minutes:
//!
//! ```text
//! cargo run --release -p durably-bench --features redis,postgres -- soak --minutes 5 --rate 200 --stores sqlite-full,postgres
//! cargo run -p durably-bench --all-features -- soak --seconds 3 --stores sqlite-full,sqlite-normal,memory,redis,postgres
//! ```
//!
//! For the whole duration it keeps runs going on one engine, at most `--concurrency` open at
//! once: with `--rate N`, N runs start each second (a steady arrival rate, the usual soak);
//! without it, a new run starts as soon as one ends (saturation, a stress test: on SQLite with
//! `Durability::Full` runs then end faster than a purge, one commit per deleted run, deletes
//! them, and the store grows). Out of every 20 runs started:
//!
//! - 10 `steps`: three steps, then done;
//! - 2 `signal`: a step, then a wait on a signal that the same engine delivers 0–50 ms after the
//!   run was started (sometimes before the wait began);
//! - 2 `signal_other`: the same, delivered by a second engine on a second store object over the
//!   same data (the store's wake-up path: SQLite's poll, LISTEN/NOTIFY, pub/sub); the same
//!   engine on the memory store, which has nothing to share;
//! - 2 `sleep`: a step, a durable sleep of 20–200 ms, a step;
//! - 2 `retry`: a step that fails twice (retryable) and succeeds on its third attempt;
//! - 1 `fail_resume`: a step, then one that fails permanently, so the run is `failed`; executed
//!   again, the first step replays and the second succeeds;
//! - 1 `cancel`: a step, then a wait on a signal that never comes; cancelled once it waits.
//!
//! What each run must end as (status, output, the steps it executed) is known in memory; each
//! run is checked as it ends, by its result and by its stored record. Every `--purge-every-secs`
//! the admin API's `purge` deletes the finished runs older than `--purge-age-secs`, so that the
//! store holds about a steady number of runs instead of only growing.
//!
//! Every interval prints a line on stderr: elapsed time, runs ended in the interval, runs/s,
//! steps/s (step bodies executed), p50/p99 run latency (start to checked end, waits included),
//! RSS (`VmRSS`), open runs, runs in the store (as of the last purge), runs purged, errors and
//! the load average. At the end the soak waits for the open runs, checks that the store holds
//! only finished runs it started and that those and the purged ones add up to every run it
//! started (a last purge then empties it), and compares the first interval with the last:
//! throughput, p50, RSS and the RSS slope (MB/min, fitted after the first interval, which holds
//! the warm-up). One JSON line `soak` per store, then a markdown table of the intervals.
//!
//! The exit status is non-zero when a run was lost or any error occurred, never because of a
//! timing or of memory growth (reported as `rss_grew`, a hint to look).
//!
//! The parts: `runs.rs` (the mix of runs, what each does and how its end is checked),
//! `measure.rs` (latency histogram, intervals, the tally and the trends), `report.rs` (the
//! markdown table); this file drives the soak of one store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use durably::{RunFilter, Workflow};
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::report::{Record, round};
use crate::signals::Rng;
use crate::stores::{Target, engine, open_store};

mod measure;
mod report;
mod runs;
#[cfg(test)]
mod tests;

use measure::Tally;
pub(crate) use measure::{Interval, rss_trend};
pub(crate) use report::markdown;
use runs::{KINDS, Plan, one};

/// How long one run may take, from its start to its checked end, before it counts as lost.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// The most runs the last purge deletes; more are left to the store's cleanup.
const LAST_PURGE_MAX: u64 = 20_000;
/// Errors printed as they happen; later ones are only counted.
const PRINTED_ERRORS: u64 = 20;
/// Errors kept for the JSON line.
const KEPT_ERRORS: usize = 10;

/// The soak's settings after defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SoakConfig {
    pub(crate) duration: Duration,
    pub(crate) interval: Duration,
    pub(crate) concurrency: usize,
    pub(crate) purge_every: Duration,
    pub(crate) purge_age: Duration,
    pub(crate) seed: u64,
    /// Runs started per second at most; `None`: as fast as `concurrency` allows.
    pub(crate) rate: Option<f64>,
}

impl SoakConfig {
    /// Defaults: a progress line every 10 s, but at least three lines (one a second at most)
    /// for a short soak; a purge every 5 s (at most every interval) of the runs finished for
    /// more than 5 s (at most two intervals).
    pub(crate) fn new(
        duration: Duration,
        interval: Option<Duration>,
        concurrency: usize,
        purge_every: Option<Duration>,
        purge_age: Option<Duration>,
        seed: u64,
        rate: Option<f64>,
    ) -> SoakConfig {
        let interval = interval
            .unwrap_or_else(|| Duration::from_secs(10).min((duration / 3).max(Duration::from_secs(1))));
        let interval = interval.max(Duration::from_millis(100));
        SoakConfig {
            duration,
            interval,
            concurrency: concurrency.max(1),
            purge_every: purge_every
                .unwrap_or_else(|| Duration::from_secs(5).min(interval))
                .max(Duration::from_millis(100)),
            purge_age: purge_age.unwrap_or_else(|| Duration::from_secs(5).min(interval * 2)),
            seed,
            rate: rate.filter(|r| r.is_finite() && *r > 0.0),
        }
    }
}

/// What every run task shares.
struct Shared {
    wf: Workflow,
    /// A second engine on a second store object over the same data (the same engine on the
    /// memory store).
    other: Workflow,
    /// Step bodies executed.
    steps: Arc<AtomicU64>,
}

/// What the run tasks and the purger report to the driver.
#[derive(Debug)]
enum Event {
    Done {
        latency: Duration,
        error: Option<String>,
    },
    /// Runs deleted and runs left in the store, and how long the purge took.
    Purged(Result<(usize, usize), String>, Duration),
}

/// What the soak of one store found.
pub(crate) struct SoakResult {
    pub(crate) record: Record,
    pub(crate) intervals: Vec<Interval>,
}

/// Soaks the store of `target` for `cfg.duration`.
pub(crate) async fn soak(target: &Target, cfg: &SoakConfig) -> anyhow::Result<SoakResult> {
    let label = target.kind.label();
    let opened = open_store(target).await?;
    let wf = engine("bench-soak", &opened);
    let other = if target.kind.shared() {
        engine("bench-soak", &open_store(target).await.context("opening the second store object")?)
    } else {
        wf.clone()
    };
    let shared = Arc::new(Shared { wf: wf.clone(), other, steps: Arc::new(AtomicU64::new(0)) });
    let permits = Arc::new(Semaphore::new(cfg.concurrency));
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let mut rng = Rng::new(cfg.seed);

    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + cfg.duration);
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::from_std(start + cfg.interval), cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut purge_tick =
        tokio::time::interval_at(tokio::time::Instant::from_std(start + cfg.purge_every), cfg.purge_every);
    purge_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let mut started = 0u64;
    let mut by_kind = [0u64; KINDS.len()];
    let mut purges = 0u64;
    let mut t = Tally::new(label, start);

    eprintln!(
        "durably-bench: soak {label}: {:.0} s, {} runs/s, at most {} open at once, a line every {:.1} s, \
         purge every {:.1} s of runs finished {:.1} s ago",
        cfg.duration.as_secs_f64(),
        cfg.rate.map_or_else(|| "as many".to_owned(), |r| format!("{r}")),
        cfg.concurrency,
        cfg.interval.as_secs_f64(),
        cfg.purge_every.as_secs_f64(),
        cfg.purge_age.as_secs_f64()
    );
    loop {
        // With a rate, run `n` starts at `n / rate` seconds into the soak.
        let next_at = cfg
            .rate
            .map(|r| tokio::time::Instant::from_std(start + Duration::from_secs_f64(started as f64 / r)));
        let paced = next_at.is_some_and(|at| at > tokio::time::Instant::now());
        tokio::select! {
            biased;
            Some(ev) = rx.recv() => t.on_event(ev),
            _ = tokio::time::sleep_until(deadline) => break,
            _ = tick.tick() => {
                t.close(started, shared.steps.load(Ordering::Relaxed));
            }
            _ = purge_tick.tick(), if !t.purging => {
                t.purging = true;
                purges += 1;
                spawn_purge(wf.clone(), cfg.purge_age, tx.clone());
            }
            _ = tokio::time::sleep_until(next_at.unwrap_or(deadline)), if paced => {}
            permit = permits.clone().acquire_owned(), if !paced => {
                let Ok(permit) = permit else { break };
                let plan = Plan::new(started, &mut rng);
                started += 1;
                by_kind[plan.kind.index()] += 1;
                spawn_run(shared.clone(), plan, permit, tx.clone());
            }
        }
    }
    // The last, partial interval, unless it is too short to say anything.
    if t.cur.since.elapsed() >= cfg.interval / 4 || t.intervals.is_empty() {
        t.close(started, shared.steps.load(Ordering::Relaxed));
    }
    let soaked = start.elapsed();
    let steps_in_soak = shared.steps.load(Ordering::Relaxed);

    // Drain: every started run reports (its own timeout bounds it), and the purge in flight.
    let drain_start = Instant::now();
    let drain_limit = RUN_TIMEOUT + Duration::from_secs(30);
    while t.ended < started || t.purging {
        match tokio::time::timeout(drain_limit.saturating_sub(drain_start.elapsed()), rx.recv()).await {
            Ok(Some(ev)) => t.on_event(ev),
            Ok(None) | Err(_) => break,
        }
    }
    let drain = drain_start.elapsed();
    let mut lost = started - t.ended;
    if lost > 0 {
        t.note(format!(
            "{lost} runs never reported an end within {} s of the soak's end",
            drain_limit.as_secs()
        ));
    }

    // Audit: the store holds only finished runs that the soak started, and those plus the
    // purged ones are every run it started.
    let remaining = wf.list_runs(&RunFilter::new()).await.context("listing the runs left at the end")?;
    let mut unfinished = 0u64;
    for run in &remaining {
        let known =
            run.run_id.strip_prefix("soak-").and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n < started);
        if !known {
            t.note(format!("run {} is in the store but the soak never started it", run.run_id));
        } else if !run.status.is_final() {
            unfinished += 1;
            if unfinished <= 3 {
                t.note(format!("run {} is still {} at the end", run.run_id, run.status));
            }
        }
    }
    if unfinished > 3 {
        t.note(format!("{} more runs are not finished at the end", unfinished - 3));
    }
    let remaining = remaining.len() as u64;
    let accounted = remaining + t.purged;
    if accounted < started {
        let missing = started - accounted;
        lost = lost.max(missing);
        let purged = t.purged;
        t.note(format!(
            "{missing} runs are missing: {started} started, {remaining} in the store, {purged} purged"
        ));
    } else if accounted > started {
        let purged = t.purged;
        t.note(format!(
            "more runs than started: {started} started, {remaining} in the store, {purged} purged"
        ));
    }
    // A last purge of everything finished leaves the store empty (unless it holds so many runs
    // that deleting them one by one would outlast the soak: the store goes with its
    // namespace or file anyway).
    let last_purge = Instant::now();
    let mut last = None;
    if remaining <= LAST_PURGE_MAX {
        let deleted = wf.purge(Duration::ZERO, &[]).await.context("the last purge")? as u64;
        if deleted != remaining - unfinished.min(remaining) {
            t.note(format!("the last purge deleted {deleted} runs of the {remaining} left"));
        }
        let left =
            wf.list_runs(&RunFilter::new()).await.context("listing the runs after the last purge")?.len();
        if left as u64 != unfinished {
            t.note(format!("{left} runs are left after the last purge"));
        }
        last = Some(deleted);
    } else {
        eprintln!("durably-bench: soak {label}: {remaining} runs left in the store; no last purge of them");
    }
    let last_purge = last_purge.elapsed();

    let intervals = std::mem::take(&mut t.intervals);
    let first = intervals.first();
    let last_iv = intervals.last();
    let (rss_slope, rss_grew) = rss_trend(&intervals);
    let mix: serde_json::Map<String, Value> =
        KINDS.iter().map(|k| (k.name().to_owned(), json!(by_kind[k.index()]))).collect();
    let mut rec = Record::throughput("soak", label, t.ended, soaked)
        .errors(t.errors)
        .with("duration_s", round(soaked.as_secs_f64(), 1))
        .with("started", started)
        .with("lost", lost)
        .with("steps", steps_in_soak)
        .with("steps_per_s", round(steps_in_soak as f64 / soaked.as_secs_f64().max(1e-9), 1))
        .with("concurrency", cfg.concurrency as u64)
        .with("rate", cfg.rate)
        .with("mix", Value::Object(mix))
        .with("purges", purges)
        .with("purged", t.purged)
        .with("purge_ms_max", t.purge_ms_max)
        .with("last_purge_runs", last)
        .with("last_purge_ms", round(last_purge.as_secs_f64() * 1e3, 1))
        .with("drain_ms", round(drain.as_secs_f64() * 1e3, 1))
        .with("runs_per_s_first", first.map_or(0.0, |iv| iv.runs_per_s))
        .with("runs_per_s_last", last_iv.map_or(0.0, |iv| iv.runs_per_s))
        .with("steps_per_s_first", first.map_or(0.0, |iv| iv.steps_per_s))
        .with("steps_per_s_last", last_iv.map_or(0.0, |iv| iv.steps_per_s))
        .with("p50_ms_first", first.and_then(|iv| iv.p50_ms))
        .with("p50_ms_last", last_iv.and_then(|iv| iv.p50_ms))
        .with("rss_first_mb", first.map_or(0.0, |iv| iv.rss_mb))
        .with("rss_last_mb", last_iv.map_or(0.0, |iv| iv.rss_mb))
        .with("rss_max_mb", intervals.iter().map(|iv| iv.rss_mb).fold(0.0, f64::max))
        .with("sqlite_heap_first_mb", first.map_or(0.0, |iv| iv.sqlite_heap_mb))
        .with("sqlite_heap_last_mb", last_iv.map_or(0.0, |iv| iv.sqlite_heap_mb))
        .with("rss_slope_mb_per_min", rss_slope.map(|s| round(s, 3)))
        .with("rss_grew", rss_grew)
        .with("intervals", serde_json::to_value(&intervals)?);
    rec.p50_us = t.total.percentile_us(50.0).map(|v| round(v, 1));
    rec.p99_us = t.total.percentile_us(99.0).map(|v| round(v, 1));
    if !t.kept_errors.is_empty() {
        rec = rec.with("first_errors", t.kept_errors);
    }
    Ok(SoakResult { record: rec, intervals })
}

fn spawn_purge(wf: Workflow, age: Duration, tx: mpsc::UnboundedSender<Event>) {
    tokio::spawn(async move {
        let t0 = Instant::now();
        let result = async {
            let deleted = wf.purge(age, &[]).await.map_err(|e| format!("purge: {e}"))?;
            let in_store = wf
                .list_runs(&RunFilter::new())
                .await
                .map_err(|e| format!("listing runs after a purge: {e}"))?;
            Ok((deleted, in_store.len()))
        }
        .await;
        let _ = tx.send(Event::Purged(result, t0.elapsed()));
    });
}

fn spawn_run(
    shared: Arc<Shared>,
    plan: Plan,
    permit: OwnedSemaphorePermit,
    tx: mpsc::UnboundedSender<Event>,
) {
    tokio::spawn(async move {
        let t0 = Instant::now();
        let error = match tokio::time::timeout(RUN_TIMEOUT, one(&shared, plan)).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("run {} ({}): {e}", plan.run_id(), plan.kind.name())),
            Err(_) => Some(format!(
                "run {} ({}) did not end within {} s",
                plan.run_id(),
                plan.kind.name(),
                RUN_TIMEOUT.as_secs()
            )),
        };
        drop(permit);
        let _ = tx.send(Event::Done { latency: t0.elapsed(), error });
    });
}
