//! `soak`: a bounded soak of one engine per store (issue 6, "Load"), to catch leaks, slowdowns
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

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use durably::{RunFilter, RunStatus, Workflow};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::report::{Record, round};
use crate::signals::Rng;
use crate::stores::{Target, engine, open_store};
use crate::waiting::status_mb;

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

/// The kinds of run in the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Steps,
    Signal,
    SignalOther,
    Sleep,
    Retry,
    FailResume,
    Cancel,
}

const KINDS: [Kind; 7] =
    [Kind::Steps, Kind::Signal, Kind::SignalOther, Kind::Sleep, Kind::Retry, Kind::FailResume, Kind::Cancel];

/// Run `i` is of kind `MIX[i % 20]`.
const MIX: [Kind; 20] = [
    Kind::Steps,
    Kind::Signal,
    Kind::Steps,
    Kind::Sleep,
    Kind::Steps,
    Kind::Retry,
    Kind::Steps,
    Kind::SignalOther,
    Kind::Steps,
    Kind::Cancel,
    Kind::Steps,
    Kind::Signal,
    Kind::Steps,
    Kind::Sleep,
    Kind::Steps,
    Kind::Retry,
    Kind::Steps,
    Kind::SignalOther,
    Kind::Steps,
    Kind::FailResume,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Steps => "steps",
            Kind::Signal => "signal",
            Kind::SignalOther => "signal_other",
            Kind::Sleep => "sleep",
            Kind::Retry => "retry",
            Kind::FailResume => "fail_resume",
            Kind::Cancel => "cancel",
        }
    }

    fn index(self) -> usize {
        KINDS.iter().position(|k| *k == self).unwrap_or(0)
    }

    /// What a run of this kind must end as: its status and output.
    fn expected(self, i: u64) -> (RunStatus, Option<u64>) {
        match self {
            Kind::Steps => (RunStatus::Completed, Some(30 * i + 3)),
            Kind::Signal | Kind::SignalOther => (RunStatus::Completed, Some(2 * i + 7)),
            Kind::Sleep => (RunStatus::Completed, Some(i + 1)),
            Kind::Retry => (RunStatus::Completed, Some(i)),
            Kind::FailResume => (RunStatus::Completed, Some(i + 2)),
            Kind::Cancel => (RunStatus::Cancelled, None),
        }
    }
}

/// One run to start.
#[derive(Debug, Clone, Copy)]
struct Plan {
    i: u64,
    kind: Kind,
    /// The signal's delivery delay, the sleep, or the wait before cancelling.
    delay: Duration,
}

impl Plan {
    fn new(i: u64, rng: &mut Rng) -> Plan {
        let kind = MIX[(i % MIX.len() as u64) as usize];
        let ms = |lo: f64, hi: f64, rng: &mut Rng| {
            Duration::from_secs_f64((lo + (hi - lo) * rng.next_f64()) / 1e3)
        };
        let delay = match kind {
            Kind::Signal | Kind::SignalOther | Kind::Cancel => ms(0.0, 50.0, rng),
            Kind::Sleep => ms(20.0, 200.0, rng),
            _ => Duration::ZERO,
        };
        Plan { i, kind, delay }
    }

    fn run_id(&self) -> String {
        format!("soak-{}", self.i)
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

/// Latencies in buckets 2 % wide (from 1 µs to about 80 min), so that the soak's own memory
/// does not grow with the runs it measures.
#[derive(Debug, Clone)]
struct Histogram {
    counts: Vec<u64>,
    n: u64,
}

const GROWTH: f64 = 1.02;
const BUCKETS: usize = 1200;

impl Histogram {
    fn new() -> Histogram {
        Histogram { counts: vec![0; BUCKETS], n: 0 }
    }

    fn record(&mut self, d: Duration) {
        let us = d.as_secs_f64() * 1e6;
        let b = if us < 1.0 { 0 } else { (us.ln() / GROWTH.ln()) as usize };
        self.counts[b.min(BUCKETS - 1)] += 1;
        self.n += 1;
    }

    /// The nearest-rank percentile, as its bucket's upper bound in microseconds (at most 2 %
    /// above the true value).
    fn percentile_us(&self, p: f64) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        let rank = ((p / 100.0) * self.n as f64).ceil().clamp(1.0, self.n as f64) as u64;
        let mut seen = 0;
        for (b, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(GROWTH.powi(b as i32 + 1));
            }
        }
        None
    }

    fn reset(&mut self) {
        self.counts.fill(0);
        self.n = 0;
    }
}

/// One progress line.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Interval {
    pub(crate) elapsed_s: f64,
    pub(crate) secs: f64,
    pub(crate) runs: u64,
    pub(crate) runs_per_s: f64,
    pub(crate) steps_per_s: f64,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    pub(crate) rss_mb: f64,
    /// Of which SQLite's own heap (page caches, statements), process-wide.
    pub(crate) sqlite_heap_mb: f64,
    pub(crate) open: u64,
    /// Runs in the store as of the last purge.
    pub(crate) stored: Option<u64>,
    pub(crate) purged: u64,
    /// The longest purge that ended in the interval.
    pub(crate) purge_ms: Option<f64>,
    pub(crate) errors: u64,
    pub(crate) load: String,
}

impl Interval {
    fn line(&self, store: &str) -> String {
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1} ms"));
        format!(
            "durably-bench: soak {store}: t={:>5.0}s runs {:>6} ({:>7.1}/s) steps {:>8.1}/s p50 {} p99 {} \
             rss {:.1} MB (sqlite {:.1}) open {} stored {} purged {} (purge {}) errors {} load {}",
            self.elapsed_s,
            self.runs,
            self.runs_per_s,
            self.steps_per_s,
            ms(self.p50_ms),
            ms(self.p99_ms),
            self.rss_mb,
            self.sqlite_heap_mb,
            self.open,
            self.stored.map_or_else(|| "-".to_owned(), |s| s.to_string()),
            self.purged,
            ms(self.purge_ms),
            self.errors,
            self.load,
        )
    }
}

/// The interval being measured.
struct Current {
    since: Instant,
    runs: u64,
    errors: u64,
    purged: u64,
    purge_ms: Option<f64>,
    steps_before: u64,
    hist: Histogram,
}

/// The heap SQLite holds in this process (page caches, prepared statements), in MB: the part
/// of RSS that is SQLite's own.
fn sqlite_heap_mb() -> f64 {
    // SAFETY: `sqlite3_memory_used` only reads SQLite's global memory counter; it has no
    // preconditions and is safe to call from any thread at any time.
    let bytes = unsafe { rusqlite::ffi::sqlite3_memory_used() };
    bytes as f64 / (1024.0 * 1024.0)
}

/// What the driver counts: runs ended, errors, purges, the interval being measured.
struct Tally {
    label: &'static str,
    start: Instant,
    ended: u64,
    errors: u64,
    kept_errors: Vec<String>,
    purged: u64,
    /// Runs in the store as of the last purge.
    stored: Option<u64>,
    purging: bool,
    purge_ms_max: f64,
    total: Histogram,
    cur: Current,
    intervals: Vec<Interval>,
}

impl Tally {
    fn new(label: &'static str, start: Instant) -> Tally {
        Tally {
            label,
            start,
            ended: 0,
            errors: 0,
            kept_errors: Vec::new(),
            purged: 0,
            stored: None,
            purging: false,
            purge_ms_max: 0.0,
            total: Histogram::new(),
            cur: Current {
                since: start,
                runs: 0,
                errors: 0,
                purged: 0,
                purge_ms: None,
                steps_before: 0,
                hist: Histogram::new(),
            },
            intervals: Vec::new(),
        }
    }

    fn note(&mut self, e: String) {
        self.errors += 1;
        self.cur.errors += 1;
        if self.errors <= PRINTED_ERRORS {
            eprintln!("durably-bench: soak {}: {e}", self.label);
        }
        if self.kept_errors.len() < KEPT_ERRORS {
            self.kept_errors.push(e);
        }
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Done { latency, error } => {
                self.ended += 1;
                self.cur.runs += 1;
                self.cur.hist.record(latency);
                self.total.record(latency);
                if let Some(e) = error {
                    self.note(e);
                }
            }
            Event::Purged(result, took) => {
                self.purging = false;
                let ms = round(took.as_secs_f64() * 1e3, 1);
                self.cur.purge_ms = Some(self.cur.purge_ms.unwrap_or(0.0).max(ms));
                self.purge_ms_max = self.purge_ms_max.max(ms);
                match result {
                    Ok((deleted, in_store)) => {
                        self.purged += deleted as u64;
                        self.cur.purged += deleted as u64;
                        self.stored = Some(in_store as u64);
                    }
                    Err(e) => self.note(e),
                }
            }
        }
    }

    /// Ends the current interval: prints its line and keeps it.
    fn close(&mut self, started: u64, steps: u64) {
        let now = Instant::now();
        let cur = &mut self.cur;
        let secs = now.duration_since(cur.since).as_secs_f64();
        let per_s = |v: u64| if secs > 0.0 { round(v as f64 / secs, 1) } else { 0.0 };
        let iv = Interval {
            elapsed_s: round(now.duration_since(self.start).as_secs_f64(), 1),
            secs: round(secs, 2),
            runs: cur.runs,
            runs_per_s: per_s(cur.runs),
            steps_per_s: per_s(steps.saturating_sub(cur.steps_before)),
            p50_ms: cur.hist.percentile_us(50.0).map(|v| round(v / 1e3, 2)),
            p99_ms: cur.hist.percentile_us(99.0).map(|v| round(v / 1e3, 2)),
            rss_mb: round(status_mb("VmRSS:").unwrap_or(0.0), 1),
            sqlite_heap_mb: round(sqlite_heap_mb(), 1),
            open: started - self.ended,
            stored: self.stored,
            purged: cur.purged,
            purge_ms: cur.purge_ms,
            errors: cur.errors,
            load: crate::summary::load(),
        };
        cur.since = now;
        cur.runs = 0;
        cur.errors = 0;
        cur.purged = 0;
        cur.purge_ms = None;
        cur.steps_before = steps;
        cur.hist.reset();
        eprintln!("{}", iv.line(self.label));
        self.intervals.push(iv);
    }
}

/// The least-squares slope of `y` over `x`; `None` without two distinct `x`.
pub(crate) fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    Some(sxy / sxx)
}

/// The RSS trend: the slope (MB/min) over the intervals after the first (the warm-up) when
/// there are three or more, and whether the fitted rise over that span exceeds both 2 MB and
/// 5 % of the RSS where it starts.
pub(crate) fn rss_trend(intervals: &[Interval]) -> (Option<f64>, bool) {
    let span = if intervals.len() >= 3 { &intervals[1..] } else { intervals };
    let points: Vec<(f64, f64)> = span.iter().map(|iv| (iv.elapsed_s / 60.0, iv.rss_mb)).collect();
    let Some(s) = slope(&points) else { return (None, false) };
    let (Some(first), Some(last)) = (span.first(), span.last()) else { return (Some(s), false) };
    let rise = s * (last.elapsed_s - first.elapsed_s) / 60.0;
    (Some(s), rise > 2.0_f64.max(first.rss_mb * 0.05))
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

/// A step named `name` that returns `v`, counting its executions.
fn work(steps: &Arc<AtomicU64>, name: &str, v: u64) -> durably::TaskCall<u64> {
    let steps = steps.clone();
    durably::step(name, move || {
        steps.fetch_add(1, Ordering::Relaxed);
        async move { Ok::<u64, std::io::Error>(v) }
    })
}

/// Polls the run until it has `status`.
async fn wait_status(wf: &Workflow, run_id: &str, status: RunStatus) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let run = wf.get_run(run_id).await.map_err(|e| format!("reading the run: {e}"))?;
        if run.as_ref().is_some_and(|r| r.status == status) {
            return Ok(());
        }
        if started.elapsed() > RUN_TIMEOUT / 2 {
            let now = run.map_or_else(|| "absent".to_owned(), |r| r.status.to_string());
            return Err(format!("not {status} after {} s (it is {now})", (RUN_TIMEOUT / 2).as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Checks what a run returned against what it should have.
fn check_output(got: durably::Result<u64>, want: u64) -> Result<(), String> {
    match got {
        Ok(v) if v == want => Ok(()),
        Ok(v) => Err(format!("returned {v}, expected {want}")),
        Err(e) => Err(format!("failed: {e}")),
    }
}

/// Checks the run's stored record against what it should be.
async fn check_stored(
    wf: &Workflow,
    run_id: &str,
    status: RunStatus,
    output: Option<u64>,
) -> Result<(), String> {
    let run = wf.get_run(run_id).await.map_err(|e| format!("reading its record: {e}"))?.ok_or_else(|| {
        "its record is gone before it was checked (purged too early? raise --purge-age-secs)".to_owned()
    })?;
    if run.status != status {
        return Err(format!("stored as {}, expected {status}", run.status));
    }
    if let Some(want) = output {
        let got: Option<u64> = run.output.as_deref().and_then(|o| serde_json::from_str(o).ok());
        if got != Some(want) {
            return Err(format!("stored output {:?}, expected {want}", run.output));
        }
    }
    Ok(())
}

/// Executes one run of the mix and checks how it ended.
async fn one(s: &Shared, p: Plan) -> Result<(), String> {
    let rid = p.run_id();
    let i = p.i;
    let wf = &s.wf;
    let (status, output) = p.kind.expected(i);
    match p.kind {
        Kind::Steps => {
            let steps = s.steps.clone();
            let got = wf
                .run(rid.as_str(), |_| async move {
                    let mut total = 0;
                    for k in 0..3 {
                        total += work(&steps, "work", 10 * i + k).await?;
                    }
                    Ok::<u64, durably::Error>(total)
                })
                .await;
            check_output(got, 30 * i + 3)?;
        }
        Kind::Signal | Kind::SignalOther => {
            let deliverer = if p.kind == Kind::SignalOther { s.other.clone() } else { wf.clone() };
            let (to, delay) = (rid.clone(), p.delay);
            let delivery = tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                deliverer.complete(&to, "go", &(i + 7)).await
            });
            let steps = s.steps.clone();
            let got = wf
                .run(rid.as_str(), |_| async move {
                    let a = work(&steps, "prepare", i).await?;
                    let b: u64 = durably::signal("go").await?;
                    Ok::<u64, durably::Error>(a + b)
                })
                .await;
            let delivered = delivery
                .await
                .map_err(|e| format!("the delivering task failed: {e}"))?
                .map_err(|e| format!("delivering its signal: {e}"))?;
            if !delivered {
                return Err("its signal was reported as a duplicate".to_owned());
            }
            check_output(got, 2 * i + 7)?;
        }
        Kind::Sleep => {
            let (steps, nap) = (s.steps.clone(), p.delay);
            let got = wf
                .run(rid.as_str(), |_| async move {
                    let a = work(&steps, "before", i).await?;
                    durably::sleep(nap).await?;
                    let b = work(&steps, "after", 1).await?;
                    Ok::<u64, durably::Error>(a + b)
                })
                .await;
            check_output(got, i + 1)?;
        }
        Kind::Retry => {
            let steps = s.steps.clone();
            let tries = Arc::new(AtomicU32::new(0));
            let attempts = tries.clone();
            let got = wf
                .run(rid.as_str(), |_| async move {
                    durably::step("flaky", move || {
                        steps.fetch_add(1, Ordering::Relaxed);
                        let n = attempts.fetch_add(1, Ordering::Relaxed) + 1;
                        async move {
                            if n < 3 {
                                Err(std::io::Error::other(format!("soak: planned transient failure {n}")))
                            } else {
                                Ok(i)
                            }
                        }
                    })
                    .retries(3)
                    .backoff(durably::backoff::constant(0.01))
                    .await
                })
                .await;
            check_output(got, i)?;
            let bodies = tries.load(Ordering::Relaxed);
            if bodies != 3 {
                return Err(format!("its flaky step ran {bodies} times, expected 3"));
            }
            let recorded = wf.list_steps(&rid).await.map_err(|e| format!("listing its steps: {e}"))?;
            match recorded.iter().find(|st| st.step_id == "flaky") {
                Some(st) if st.attempts == 3 => {}
                Some(st) => {
                    return Err(format!("step flaky is recorded with {} attempts, expected 3", st.attempts));
                }
                None => return Err("step flaky is not recorded".to_owned()),
            }
        }
        Kind::FailResume => {
            let first_bodies = Arc::new(AtomicU32::new(0));
            let body = |fail: bool| {
                let (steps, first_bodies) = (s.steps.clone(), first_bodies.clone());
                move |_| async move {
                    let a: u64 = durably::step("first", move || {
                        steps.fetch_add(1, Ordering::Relaxed);
                        first_bodies.fetch_add(1, Ordering::Relaxed);
                        async move { Ok::<u64, std::io::Error>(i) }
                    })
                    .await?;
                    let b: u64 = durably::step("second", move || async move {
                        if fail {
                            Err(durably::Error::permanent(std::io::Error::other("soak: planned failure")))
                        } else {
                            Ok(2)
                        }
                    })
                    .await?;
                    Ok::<u64, durably::Error>(a + b)
                }
            };
            match wf.run(rid.as_str(), body(true)).await {
                Err(durably::Error::Task { .. }) => {}
                Ok(v) => return Err(format!("returned {v} where its second step was to fail")),
                Err(e) => return Err(format!("failed with an unexpected error: {e}")),
            }
            check_stored(wf, &rid, RunStatus::Failed, None).await?;
            // Executed again, the first step replays and the second runs again and succeeds.
            check_output(wf.run(rid.as_str(), body(false)).await, i + 2)?;
            let bodies = first_bodies.load(Ordering::Relaxed);
            if bodies != 1 {
                return Err(format!("its first step ran {bodies} times over two executions, expected 1"));
            }
        }
        Kind::Cancel => {
            let (canceller_wf, to, delay) = (wf.clone(), rid.clone(), p.delay);
            let canceller = tokio::spawn(async move {
                wait_status(&canceller_wf, &to, RunStatus::Waiting).await?;
                tokio::time::sleep(delay).await;
                canceller_wf.cancel(&to).await.map_err(|e| format!("cancelling: {e}"))
            });
            let steps = s.steps.clone();
            let got = wf
                .run(rid.as_str(), |_| async move {
                    let a = work(&steps, "before", i).await?;
                    let never: u64 = durably::signal("never").await?;
                    Ok::<u64, durably::Error>(a + never)
                })
                .await;
            match got {
                Err(durably::Error::Cancelled { .. }) => {}
                other => {
                    canceller.abort();
                    return Err(match other {
                        Ok(v) => format!("returned {v} where it was to be cancelled"),
                        Err(e) => format!("failed with {e} where it was to be cancelled"),
                    });
                }
            }
            let cancelled = canceller.await.map_err(|e| format!("the cancelling task failed: {e}"))??;
            if !cancelled {
                return Err("cancel() said the run had already ended".to_owned());
            }
        }
    }
    check_stored(wf, &rid, status, output).await
}

/// The markdown table of one store's soak.
pub(crate) fn markdown(store: &str, result: &SoakResult) -> String {
    let rec = &result.record;
    let f = |k: &str| rec.extra_f64(k).unwrap_or(0.0);
    let lost = rec.extra.get("lost").and_then(Value::as_u64).unwrap_or(0);
    let grew = rec.extra.get("rss_grew").and_then(Value::as_bool).unwrap_or(false);
    let mut out = format!(
        "\n### soak on {store}: {:.0} s, {} runs ({} started), {} purged, {} lost, {} errors\n\n\
         | t (s) | runs | runs/s | steps/s | p50 | p99 | RSS MB | SQLite heap MB | open | stored | purged | purge | errors | load |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
        f("duration_s"),
        rec.n,
        f("started"),
        f("purged"),
        lost,
        rec.errors
    );
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1} ms"));
    for iv in &result.intervals {
        out.push_str(&format!(
            "| {:.0} | {} | {:.1} | {:.1} | {} | {} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} |\n",
            iv.elapsed_s,
            iv.runs,
            iv.runs_per_s,
            iv.steps_per_s,
            ms(iv.p50_ms),
            ms(iv.p99_ms),
            iv.rss_mb,
            iv.sqlite_heap_mb,
            iv.open,
            iv.stored.map_or_else(|| "-".to_owned(), |s| s.to_string()),
            iv.purged,
            ms(iv.purge_ms),
            iv.errors,
            iv.load
        ));
    }
    let slope = rec.extra_f64("rss_slope_mb_per_min").map_or_else(|| "-".to_owned(), |s| format!("{s:+.2}"));
    out.push_str(&format!(
        "\nFirst → last interval: {:.1} → {:.1} runs/s, {:.1} → {:.1} steps/s, RSS {:.1} → {:.1} MB \
         (slope after the first interval {slope} MB/min{}; SQLite's heap {:.1} → {:.1} MB).\n",
        f("runs_per_s_first"),
        f("runs_per_s_last"),
        f("steps_per_s_first"),
        f("steps_per_s_last"),
        f("rss_first_mb"),
        f("rss_last_mb"),
        if grew { ", **grew**" } else { "" },
        f("sqlite_heap_first_mb"),
        f("sqlite_heap_last_mb")
    ));
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::stores::StoreKind;

    #[test]
    fn histogram_percentiles_are_within_two_percent() {
        let mut h = Histogram::new();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.percentile_us(50.0).unwrap();
        let p99 = h.percentile_us(99.0).unwrap();
        assert!((50_000.0..=51_000.0).contains(&p50), "p50 {p50}");
        assert!((99_000.0..=101_000.0).contains(&p99), "p99 {p99}");
        h.reset();
        assert_eq!(h.percentile_us(50.0), None);
        h.record(Duration::from_secs(100_000));
        assert!(h.percentile_us(50.0).is_some(), "beyond the last bucket lands in it");
    }

    #[test]
    fn slope_fits_a_line_and_needs_two_points() {
        assert_eq!(slope(&[(0.0, 1.0)]), None);
        assert_eq!(slope(&[(1.0, 1.0), (1.0, 2.0)]), None);
        let s = slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]).unwrap();
        assert!((s - 2.0).abs() < 1e-9);
    }

    fn iv(elapsed_s: f64, rss_mb: f64) -> Interval {
        Interval {
            elapsed_s,
            secs: 10.0,
            runs: 1,
            runs_per_s: 0.1,
            steps_per_s: 0.1,
            p50_ms: None,
            p99_ms: None,
            rss_mb,
            sqlite_heap_mb: 0.0,
            open: 0,
            stored: None,
            purged: 0,
            purge_ms: None,
            errors: 0,
            load: String::new(),
        }
    }

    #[test]
    fn rss_trend_skips_the_warm_up_and_flags_steady_growth() {
        // A big first interval (warm-up), then flat: no growth.
        let flat = [iv(10.0, 80.0), iv(20.0, 20.0), iv(30.0, 20.0), iv(40.0, 20.0)];
        let (s, grew) = rss_trend(&flat);
        assert!(s.unwrap().abs() < 1e-9);
        assert!(!grew);
        // 6 MB a minute for 3 minutes after the warm-up.
        let growing: Vec<Interval> = (1..=19).map(|k| iv(10.0 * k as f64, 20.0 + k as f64)).collect();
        let (s, grew) = rss_trend(&growing);
        assert!((s.unwrap() - 6.0).abs() < 1e-9);
        assert!(grew);
    }

    #[test]
    fn defaults_scale_down_for_a_short_soak() {
        let c = SoakConfig::new(Duration::from_secs(300), None, 64, None, None, 1, None);
        assert_eq!(c.interval, Duration::from_secs(10));
        assert_eq!(c.purge_every, Duration::from_secs(5));
        assert_eq!(c.purge_age, Duration::from_secs(5));
        let c = SoakConfig::new(Duration::from_secs(3), None, 64, None, None, 1, None);
        assert_eq!(c.interval, Duration::from_secs(1));
        assert_eq!(c.purge_every, Duration::from_secs(1));
        assert_eq!(c.purge_age, Duration::from_secs(2));
        let c = SoakConfig::new(Duration::from_secs(3), Some(Duration::from_secs(2)), 0, None, None, 1, None);
        assert_eq!((c.interval, c.concurrency), (Duration::from_secs(2), 1), "explicit values win");
    }

    #[test]
    fn sqlite_heap_counts_an_open_connection() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (zeroblob(100000));").unwrap();
        assert!(sqlite_heap_mb() > 0.0);
    }

    #[test]
    fn the_mix_has_every_kind_in_its_stated_share() {
        let count = |k: Kind| MIX.iter().filter(|m| **m == k).count();
        assert_eq!(count(Kind::Steps), 10);
        for k in [Kind::Signal, Kind::SignalOther, Kind::Sleep, Kind::Retry] {
            assert_eq!(count(k), 2, "{k:?}");
        }
        assert_eq!((count(Kind::FailResume), count(Kind::Cancel)), (1, 1));
    }

    /// A short soak on the memory store: every run ends as expected, nothing is lost, and the
    /// last purge empties the store.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_short_soak_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target =
            Target::fresh(StoreKind::Memory, dir.path(), "soak", Duration::from_millis(100)).unwrap();
        let cfg = SoakConfig::new(Duration::from_millis(1500), None, 16, None, None, 3, None);
        let r = soak(&target, &cfg).await.unwrap();
        let rec = &r.record;
        assert_eq!(rec.errors, 0, "{:?}", rec.extra.get("first_errors"));
        assert_eq!(rec.extra["lost"], 0);
        assert!(rec.n >= 20, "at least one full round of the mix ended: {}", rec.n);
        assert_eq!(rec.extra["started"].as_u64(), Some(rec.n));
        assert!(!r.intervals.is_empty());
        let mix = rec.extra["mix"].as_object().unwrap();
        assert!(mix.values().all(|v| v.as_u64().unwrap() > 0), "every kind ran: {mix:?}");
    }
}
