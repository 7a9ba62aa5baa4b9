//! `--compare-python`: runs `python_durable_bench.py` (python-durable 0.2.3 on its SQLite store)
//! with the same sizes in the same invocation, and turns each of its JSON lines into a record
//! with the store label `python-durable`, so both libraries appear side by side.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::report::{PYTHON, Record, round};

/// The script, kept in this crate (`python/python_durable_bench.py`), used when
/// `--python-script` is not given.
pub(crate) fn default_script() -> Option<PathBuf> {
    Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("python/python_durable_bench.py")).filter(|p| p.is_file())
}

/// The sizes handed to the script.
#[derive(Debug, Clone)]
pub(crate) struct PythonArgs {
    pub(crate) only: Vec<&'static str>,
    pub(crate) steps: u64,
    pub(crate) workflows: u64,
    pub(crate) wf_tasks: u64,
    pub(crate) concurrent: u64,
    pub(crate) conc_tasks: u64,
    pub(crate) signal_inproc: u64,
    pub(crate) signal_poll: u64,
    pub(crate) seed: u64,
}

/// Runs the script and converts what it prints; `on_record` sees each record as it arrives.
pub(crate) async fn run(
    python: &Path,
    script: &Path,
    workdir: &Path,
    args: &PythonArgs,
    on_record: impl FnMut(Record),
) -> anyhow::Result<()> {
    if args.only.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(workdir)?;
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(script)
        .arg("--workdir")
        .arg(workdir)
        .arg("--only")
        .arg(args.only.join(","))
        .args(["--steps", &args.steps.to_string()])
        .args(["--workflows", &args.workflows.to_string()])
        .args(["--wf-tasks", &args.wf_tasks.to_string()])
        .args(["--concurrent", &args.concurrent.to_string()])
        .args(["--conc-tasks", &args.conc_tasks.to_string()])
        .args(["--signal-inproc", &args.signal_inproc.to_string()])
        .args(["--signal-poll", &args.signal_poll.to_string()])
        .args(["--seed", &args.seed.to_string()]);
    let name = "python-durable's benchmark";
    crate::comparison::run_records(cmd, name, Duration::from_secs(3600), convert, on_record).await
}

/// One line of `python_durable_bench.py` as a record, or `None` if it is not one.
pub(crate) fn convert(line: &str) -> Option<Record> {
    let v: Value = serde_json::from_str(line).ok()?;
    let scenario = v.get("scenario")?.as_str()?;
    let f = |k: &str| v.get(k).and_then(Value::as_f64);
    let seconds = f("seconds")?;
    let per_step_us = f("per_step_us")?;
    let steps = f("steps").or_else(|| f("n"))?;
    let mut rec =
        Record::throughput(scenario, PYTHON, steps as u64, Duration::from_secs_f64(seconds.max(0.0)));
    rec.per_op_us = per_step_us;
    if let Some(lat) = v.get("latency") {
        // Latency scenarios: `seconds` is the median; python-durable reports no p99.
        rec.p50_us = lat.get("median_us").and_then(Value::as_f64);
        rec.max_us = lat.get("max_us").and_then(Value::as_f64);
        rec.ops_per_s = 0.0;
        rec.total_ms = round(seconds * 1e3, 3);
        if let Some(poll) = f("poll_s") {
            rec = rec.with("poll_ms", poll * 1e3);
        }
    } else if seconds > 0.0 {
        rec.ops_per_s = round(steps / seconds, 1);
    }
    rec.errors = f("errors").unwrap_or(0.0) as u64;
    if v.get("steps").is_some() {
        rec = rec
            .with("runs", f("n").unwrap_or(0.0) as u64)
            .with("tasks_per_run", f("tasks_per_wf").unwrap_or(0.0) as u64);
    }
    for key in ["error_kinds", "lib", "journal_mode", "synchronous", "note"] {
        if let Some(x) = v.get(key) {
            rec = rec.with(key, x.clone());
        }
    }
    Some(rec)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn converts_a_steps_line() {
        let line = r#"{"scenario": "steps_fresh", "n": 2000, "seconds": 5.5, "per_step_us": 2750.0, "steps_per_s": 363.6, "steps_rows": 2000, "journal_mode": "delete", "lib": "python-durable==0.2.3"}"#;
        let rec = convert(line).unwrap();
        assert_eq!((rec.scenario.as_str(), rec.store.as_str(), rec.n), ("steps_fresh", PYTHON, 2000));
        assert_eq!(rec.per_op_us, 2750.0);
        assert_eq!(rec.total_ms, 5500.0);
        assert_eq!(rec.ops_per_s, 363.6);
        assert_eq!(rec.extra["journal_mode"], "delete");
    }

    #[test]
    fn converts_a_concurrent_line_with_errors_per_step() {
        let line = r#"{"scenario": "concurrent_workflows", "n": 200, "tasks_per_wf": 5, "steps": 1000, "seconds": 2.0, "per_step_us": 2000.0, "errors": 3, "error_kinds": {"OperationalError: database is locked": 3}}"#;
        let rec = convert(line).unwrap();
        assert_eq!(rec.n, 1000, "n counts steps, as durably's records do");
        assert_eq!(rec.errors, 3);
        assert_eq!(rec.ops_per_s, 500.0);
        assert_eq!(rec.extra["runs"], 200);
        assert_eq!(rec.extra["tasks_per_run"], 5);
    }

    #[test]
    fn converts_a_signal_line_to_median_and_max() {
        let line = r#"{"scenario": "signal_latency_poll_process", "n": 6, "seconds": 0.9, "per_step_us": 900000.0, "latency": {"median_us": 900000.0, "mean_us": 1.0, "min_us": 1.0, "max_us": 1900000.0}, "poll_s": 2.0}"#;
        let rec = convert(line).unwrap();
        assert_eq!(rec.p50_us, Some(900000.0));
        assert_eq!(rec.max_us, Some(1900000.0));
        assert_eq!(rec.p99_us, None);
        assert_eq!(rec.extra["poll_ms"], 2000.0);
    }

    #[test]
    fn ignores_other_lines() {
        assert!(convert("WARNING: something").is_none());
        assert!(convert(r#"{"no": "scenario"}"#).is_none());
    }
}
