//! One record per scenario: printed as a JSON line when measured, gathered for the markdown
//! tables and the target checks at the end.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What one scenario measured on one store (read back from `durably-peers`' JSON lines).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The scenario name, the same as in `python_durable_bench.py` where it has one.
    pub(crate) scenario: String,
    /// `sqlite-full`, `sqlite-normal`, `memory`, `redis`, `postgres`, `rusqlite` (the floor),
    /// `python-durable`, and the Rust peers (`durare-sqlite`, `durare-postgres`, `dbos-postgres`).
    pub(crate) store: String,
    /// Operations measured (steps, rows, signals, runs).
    pub(crate) n: u64,
    pub(crate) total_ms: f64,
    /// Mean time per operation; for latency scenarios, the median.
    pub(crate) per_op_us: f64,
    pub(crate) ops_per_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) p50_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) p99_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_us: Option<f64>,
    pub(crate) errors: u64,
    /// Scenario-specific details (sizes, writer statistics, memory, error kinds).
    #[serde(flatten)]
    pub(crate) extra: Map<String, Value>,
}

impl Record {
    /// A throughput record: `n` operations in `total`.
    pub(crate) fn throughput(scenario: &str, store: &str, n: u64, total: Duration) -> Record {
        let secs = total.as_secs_f64();
        Record {
            scenario: scenario.to_owned(),
            store: store.to_owned(),
            n,
            total_ms: round(secs * 1e3, 3),
            per_op_us: if n == 0 { 0.0 } else { round(secs * 1e6 / n as f64, 2) },
            ops_per_s: if secs > 0.0 { round(n as f64 / secs, 1) } else { 0.0 },
            p50_us: None,
            p99_us: None,
            max_us: None,
            errors: 0,
            extra: Map::new(),
        }
    }

    /// A latency record: `samples` are the latencies of `n` operations; `per_op_us` is their
    /// median.
    pub(crate) fn latency(scenario: &str, store: &str, samples: &[Duration], total: Duration) -> Record {
        let mut rec = Record::throughput(scenario, store, samples.len() as u64, total);
        rec = rec.percentiles(samples);
        rec.per_op_us = rec.p50_us.unwrap_or(0.0);
        rec
    }

    /// A scenario that could not be measured at all.
    pub(crate) fn failed(scenario: &str, store: &str, error: &anyhow::Error) -> Record {
        Record::throughput(scenario, store, 0, Duration::ZERO).errors(1).with("error", format!("{error:#}"))
    }

    /// Sets p50, p99 and the maximum from `samples`.
    pub(crate) fn percentiles(mut self, samples: &[Duration]) -> Record {
        let mut us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
        us.sort_by(f64::total_cmp);
        self.p50_us = percentile(&us, 50.0).map(|v| round(v, 1));
        self.p99_us = percentile(&us, 99.0).map(|v| round(v, 1));
        self.max_us = us.last().map(|v| round(*v, 1));
        self
    }

    pub(crate) fn errors(mut self, errors: u64) -> Record {
        self.errors = errors;
        self
    }

    /// Adds a detail field.
    pub(crate) fn with(mut self, key: &str, value: impl Into<Value>) -> Record {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    pub(crate) fn extra_f64(&self, key: &str) -> Option<f64> {
        self.extra.get(key).and_then(Value::as_f64)
    }
}

/// The nearest-rank percentile of sorted values.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

pub(crate) fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

/// Prints records as they come and keeps them for the summary.
#[derive(Debug, Default)]
pub(crate) struct Reporter {
    pub(crate) records: Vec<Record>,
}

impl Reporter {
    pub(crate) fn emit(&mut self, rec: Record) {
        match serde_json::to_string(&rec) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("durably-bench: cannot print the record of {}: {e}", rec.scenario),
        }
        self.records.push(rec);
    }

    pub(crate) fn find(&self, scenario: &str, store: &str) -> Option<&Record> {
        self.records.iter().find(|r| r.scenario == scenario && r.store == store)
    }

    /// Errors in durably's own scenarios and the floors (python-durable's and the Rust peers' are
    /// their results).
    pub(crate) fn own_errors(&self) -> u64 {
        self.records
            .iter()
            .filter(|r| r.store != PYTHON && !crate::peers::is_peer(&r.store))
            .map(|r| r.errors)
            .sum()
    }
}

/// The store label of python-durable's records.
pub(crate) const PYTHON: &str = "python-durable";
/// The store label of the raw floors.
pub(crate) const FLOOR: &str = "rusqlite";

/// Formats microseconds for a table cell.
pub(crate) fn fmt_us(us: f64) -> String {
    if us >= 100_000.0 {
        format!("{:.0} ms", us / 1e3)
    } else if us >= 1_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else if us >= 10.0 {
        format!("{us:.0} µs")
    } else {
        format!("{us:.2} µs")
    }
}

/// Formats a rate with thousands separators.
pub(crate) fn fmt_rate(v: f64) -> String {
    let n = v.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The cell of a record in the side-by-side table.
pub(crate) fn cell(rec: &Record) -> String {
    if rec.n == 0 && rec.errors > 0 {
        return "error".to_owned();
    }
    let errs = if rec.errors > 0 { format!(", **{} errors**", rec.errors) } else { String::new() };
    if rec.scenario.starts_with("signal_latency") {
        let tail = match (rec.p99_us, rec.max_us) {
            (Some(p99), _) if rec.store != PYTHON => format!(" / p99 {}", fmt_us(p99)),
            (_, Some(max)) => format!(" / max {}", fmt_us(max)),
            _ => String::new(),
        };
        return format!("p50 {}{tail}{errs}", fmt_us(rec.per_op_us));
    }
    if rec.scenario == "waiting_runs" {
        let rss = rec.extra_f64("rss_mb").unwrap_or(0.0);
        return format!("{rss:.0} MB RSS{errs}");
    }
    format!("{} ({}/s){errs}", fmt_us(rec.per_op_us), fmt_rate(rec.ops_per_s))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn latency_record_takes_the_median_as_per_op() {
        let samples: Vec<Duration> = [3, 1, 2].iter().map(|&ms| Duration::from_millis(ms)).collect();
        let rec = Record::latency("signal_latency_inproc", "memory", &samples, Duration::from_millis(6));
        assert_eq!(rec.n, 3);
        assert_eq!(rec.per_op_us, 2000.0);
        assert_eq!(rec.max_us, Some(3000.0));
    }

    #[test]
    fn throughput_record_divides_by_n() {
        let rec = Record::throughput("steps_fresh", "memory", 4, Duration::from_millis(2));
        assert_eq!(rec.per_op_us, 500.0);
        assert_eq!(rec.ops_per_s, 2000.0);
        let json = serde_json::to_value(rec.with("runs", 2)).unwrap();
        assert_eq!(json["runs"], 2, "extra fields are flattened into the JSON line");
        assert!(json.get("p50_us").is_none());
    }

    #[test]
    fn rates_get_thousands_separators() {
        assert_eq!(fmt_rate(1234567.4), "1,234,567");
        assert_eq!(fmt_rate(999.0), "999");
        assert_eq!(fmt_us(235.4), "235 µs");
        assert_eq!(fmt_us(2500.0), "2.50 ms");
    }
}
