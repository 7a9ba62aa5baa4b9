//! What the soak measures: run latencies in a fixed-size histogram, one progress line per
//! interval, the driver's tally of runs, errors and purges, and the trends (RSS slope) compared
//! at the end.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::report::round;
use crate::waiting::status_mb;

use super::{Event, KEPT_ERRORS, PRINTED_ERRORS};

/// Latencies in buckets 2 % wide (from 1 µs to about 80 min), so that the soak's own memory
/// does not grow with the runs it measures.
#[derive(Debug, Clone)]
pub(super) struct Histogram {
    pub(super) counts: Vec<u64>,
    pub(super) n: u64,
}

pub(super) const GROWTH: f64 = 1.02;
pub(super) const BUCKETS: usize = 1200;

impl Histogram {
    pub(super) fn new() -> Histogram {
        Histogram { counts: vec![0; BUCKETS], n: 0 }
    }

    pub(super) fn record(&mut self, d: Duration) {
        let us = d.as_secs_f64() * 1e6;
        let b = if us < 1.0 { 0 } else { (us.ln() / GROWTH.ln()) as usize };
        self.counts[b.min(BUCKETS - 1)] += 1;
        self.n += 1;
    }

    /// The nearest-rank percentile, as its bucket's upper bound in microseconds (at most 2 %
    /// above the true value).
    pub(super) fn percentile_us(&self, p: f64) -> Option<f64> {
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

    pub(super) fn reset(&mut self) {
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
    pub(super) fn line(&self, store: &str) -> String {
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
pub(super) struct Current {
    pub(super) since: Instant,
    pub(super) runs: u64,
    pub(super) errors: u64,
    pub(super) purged: u64,
    pub(super) purge_ms: Option<f64>,
    pub(super) steps_before: u64,
    pub(super) hist: Histogram,
}

/// The heap SQLite holds in this process (page caches, prepared statements), in MB: the part
/// of RSS that is SQLite's own.
pub(super) fn sqlite_heap_mb() -> f64 {
    // SAFETY: `sqlite3_memory_used` only reads SQLite's global memory counter; it has no
    // preconditions and is safe to call from any thread at any time.
    let bytes = unsafe { rusqlite::ffi::sqlite3_memory_used() };
    bytes as f64 / (1024.0 * 1024.0)
}

/// What the driver counts: runs ended, errors, purges, the interval being measured.
pub(super) struct Tally {
    pub(super) label: &'static str,
    pub(super) start: Instant,
    pub(super) ended: u64,
    pub(super) errors: u64,
    pub(super) kept_errors: Vec<String>,
    pub(super) purged: u64,
    /// Runs in the store as of the last purge.
    pub(super) stored: Option<u64>,
    pub(super) purging: bool,
    pub(super) purge_ms_max: f64,
    pub(super) total: Histogram,
    pub(super) cur: Current,
    pub(super) intervals: Vec<Interval>,
}

impl Tally {
    pub(super) fn new(label: &'static str, start: Instant) -> Tally {
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

    pub(super) fn note(&mut self, e: String) {
        self.errors += 1;
        self.cur.errors += 1;
        if self.errors <= PRINTED_ERRORS {
            eprintln!("durably-bench: soak {}: {e}", self.label);
        }
        if self.kept_errors.len() < KEPT_ERRORS {
            self.kept_errors.push(e);
        }
    }

    pub(super) fn on_event(&mut self, ev: Event) {
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
    pub(super) fn close(&mut self, started: u64, steps: u64) {
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
