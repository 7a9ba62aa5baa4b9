//! One JSON line per scenario, in the shape of durably-bench's records (`report.rs`), so that
//! `durably-bench --compare-peers` reads them as its own.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

/// What one scenario measured on one peer.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub scenario: String,
    /// `durare-sqlite`, `durare-postgres`, `dbos-postgres`.
    pub store: String,
    /// Steps measured.
    pub n: u64,
    pub total_ms: f64,
    /// Mean time per step.
    pub per_op_us: f64,
    pub ops_per_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_us: Option<f64>,
    pub errors: u64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Record {
    /// `n` steps in `total`.
    pub fn throughput(scenario: &str, store: &str, n: u64, total: Duration) -> Record {
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

    /// A scenario that could not be measured at all.
    pub fn failed(scenario: &str, store: &str, error: &anyhow::Error) -> Record {
        Record::throughput(scenario, store, 0, Duration::ZERO).errors(1).with("error", format!("{error:#}"))
    }

    /// p50, p99 and the maximum of `samples`.
    pub fn percentiles(mut self, samples: &[Duration]) -> Record {
        let us = sorted_us(samples);
        self.p50_us = percentile(&us, 50.0).map(|v| round(v, 1));
        self.p99_us = percentile(&us, 99.0).map(|v| round(v, 1));
        self.max_us = us.last().map(|v| round(*v, 1));
        self
    }

    pub fn errors(mut self, errors: u64) -> Record {
        self.errors = errors;
        self
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Record {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// Prints the record as one JSON line on stdout.
    pub fn print(&self) {
        match serde_json::to_string(self) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("durably-peers: cannot print the record of {}: {e}", self.scenario),
        }
    }
}

pub fn sorted_us(samples: &[Duration]) -> Vec<f64> {
    let mut us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    us.sort_by(f64::total_cmp);
    us
}

/// The nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The percentile of durations in microseconds, rounded, or 0.
pub fn p_us(samples: &[Duration], p: f64) -> f64 {
    percentile(&sorted_us(samples), p).map(|v| round(v, 1)).unwrap_or(0.0)
}

pub fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_has_durably_bench_fields() {
        let rec =
            Record::throughput("steps_fresh", "durare-sqlite", 4, Duration::from_millis(2)).with("runs", 1);
        let json = serde_json::to_value(&rec).unwrap();
        for key in ["scenario", "store", "n", "total_ms", "per_op_us", "ops_per_s", "errors"] {
            assert!(json.get(key).is_some(), "{key} missing: {json}");
        }
        assert_eq!(json["per_op_us"], 500.0);
        assert_eq!(json["runs"], 1, "extra fields are flattened");
    }
}
