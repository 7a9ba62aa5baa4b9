//! `waiting_runs`: many runs waiting on signals at once, in a child process of their own so that
//! its resident memory is theirs alone. The child starts the runs, waits until every one is
//! recorded as waiting, reads its memory (`VmRSS`, `VmHWM` in `/proc/self/status`) and the CPU
//! it spends while they merely wait, then delivers every signal and checks every run completes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use durably::{RunFilter, RunStatus};
use serde::{Deserialize, Serialize};

use crate::report::{Record, round};
use crate::stores::{StoreKind, Target, engine, open_store};

/// A `kB` field of `/proc/self/status`, in MB.
pub(crate) fn status_mb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// CPU time (user + system) of this process, in clock ticks of 1/100 s (Linux's `USER_HZ`).
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// What the child reports.
#[derive(Debug, Serialize, Deserialize)]
struct Report {
    runs: u64,
    baseline_rss_mb: f64,
    rss_mb: f64,
    hwm_mb: f64,
    all_waiting_ms: f64,
    idle_cpu_pct: f64,
    resume_all_ms: f64,
    errors: u64,
    #[serde(default)]
    first_error: Option<String>,
}

/// Runs this program again as the hidden subcommand `child` (`waiting-child`,
/// `parked-child`) on `target` with `runs`; returns its exit status and the last JSON line it
/// printed (its report).
pub(crate) async fn run_child(
    child: &str,
    target: &Target,
    runs: u64,
    timeout: Duration,
) -> anyhow::Result<(std::process::ExitStatus, String)> {
    let exe =
        std::env::current_exe().with_context(|| format!("finding this program to run it as {child}"))?;
    let output = tokio::process::Command::new(exe)
        .arg(child)
        .arg("--store")
        .arg(target.kind.label())
        .arg("--location")
        .arg(&target.location)
        .arg("--runs")
        .arg(runs.to_string())
        .arg("--poll-ms")
        .arg(target.poll.as_millis().to_string())
        .arg("--namespace")
        .arg(&target.namespace)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(timeout, output)
        .await
        .map_err(|_| anyhow!("{child} did not finish within {timeout:?}"))?
        .with_context(|| format!("running {child}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().rev().find(|l| l.starts_with('{')) else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!("{child} printed no report ({}): {}", out.status, stderr.trim());
    };
    Ok((out.status, line.to_owned()))
}

/// Runs the `waiting-child` and turns its report into the `waiting_runs` record.
pub(crate) async fn waiting(target: &Target, runs: u64) -> anyhow::Result<Record> {
    let (status, line) = run_child("waiting-child", target, runs, Duration::from_secs(900)).await?;
    let line = line.as_str();
    let r: Report = serde_json::from_str(line).with_context(|| format!("waiting child said {line:?}"))?;
    let ready = Duration::from_secs_f64(r.all_waiting_ms / 1e3);
    let mut rec = Record::throughput("waiting_runs", target.kind.label(), r.runs, ready)
        .errors(r.errors)
        .with("rss_mb", round(r.rss_mb, 1))
        .with("hwm_mb", round(r.hwm_mb, 1))
        .with("baseline_rss_mb", round(r.baseline_rss_mb, 1))
        .with("kb_per_run", round((r.rss_mb - r.baseline_rss_mb) * 1024.0 / r.runs.max(1) as f64, 2))
        .with("idle_cpu_pct", round(r.idle_cpu_pct, 1))
        .with("resume_all_ms", round(r.resume_all_ms, 1))
        .with("poll_ms", target.poll.as_secs_f64() * 1e3);
    if let Some(e) = r.first_error {
        rec = rec.with("first_error", e);
    }
    if !status.success() {
        let errors = rec.errors.max(1);
        rec = rec.errors(errors).with("child_status", status.to_string());
    }
    Ok(rec)
}

/// The `waiting-child` itself; prints one JSON [`Report`] line.
/// How long the child lets its runs settle after all are listed as waiting.
const SETTLE: Duration = Duration::from_secs(1);
/// How long the child measures its CPU time while the runs wait: long enough for the 10 ms
/// resolution of the process's CPU counters to resolve a fraction of a percent.
const IDLE: Duration = Duration::from_secs(5);

pub(crate) async fn child(
    kind: StoreKind,
    location: PathBuf,
    runs: u64,
    poll: Duration,
    namespace: String,
) -> anyhow::Result<()> {
    let target = Target { kind, location, namespace, poll };
    let opened = open_store(&target).await?;
    let wf = engine("bench-wait", &opened);
    let baseline = status_mb("VmRSS:").unwrap_or(0.0);
    let started = Instant::now();
    let mut handles = Vec::with_capacity(runs as usize);
    for i in 0..runs {
        let wf = wf.clone();
        let rid = format!("wait-{i}");
        handles.push(tokio::spawn(async move {
            wf.run(rid, |_ctx| async move {
                let v: u64 = durably::signal("go").await?;
                Ok::<u64, durably::Error>(v)
            })
            .await
        }));
    }
    let filter = RunFilter::new().status(RunStatus::Waiting);
    loop {
        let waiting = wf.list_runs(&filter).await?.len();
        if waiting as u64 >= runs {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("only {waiting} of {runs} runs were waiting after 600 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_waiting = started.elapsed();
    let rss_waiting = status_mb("VmRSS:").unwrap_or(0.0);
    // A run is listed as waiting once its status is written; its `waiting` event and its
    // registration for wake-ups follow. Let that tail end before measuring.
    tokio::time::sleep(SETTLE).await;
    // What the runs cost while they merely wait (polls, timers, lease renewals).
    let idle = IDLE;
    let cpu0 = cpu_ticks().unwrap_or(0);
    tokio::time::sleep(idle).await;
    let cpu1 = cpu_ticks().unwrap_or(0);
    let rss_idle = status_mb("VmRSS:").unwrap_or(0.0);

    let resume = Instant::now();
    let mut deliveries = Vec::with_capacity(runs as usize);
    for i in 0..runs {
        let wf = wf.clone();
        let rid = format!("wait-{i}");
        deliveries.push(tokio::spawn(async move { wf.complete(&rid, "go", &i).await }));
    }
    let mut errors = 0;
    let mut first_error = None;
    let mut note = |e: String| {
        errors += 1;
        if first_error.is_none() {
            first_error = Some(e);
        }
    };
    for d in deliveries {
        match d.await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => note("a signal was reported as a duplicate".to_owned()),
            Ok(Err(e)) => note(e.to_string()),
            Err(e) => note(e.to_string()),
        }
    }
    for (i, h) in handles.into_iter().enumerate() {
        match h.await {
            Ok(Ok(v)) if v == i as u64 => {}
            Ok(Ok(v)) => note(format!("run {i} returned {v}")),
            Ok(Err(e)) => note(e.to_string()),
            Err(e) => note(e.to_string()),
        }
    }
    let resume_all = resume.elapsed();
    let report = Report {
        runs,
        baseline_rss_mb: baseline,
        rss_mb: rss_waiting.max(rss_idle),
        hwm_mb: status_mb("VmHWM:").unwrap_or(0.0),
        all_waiting_ms: all_waiting.as_secs_f64() * 1e3,
        idle_cpu_pct: cpu1.saturating_sub(cpu0) as f64 / 100.0 / idle.as_secs_f64() * 100.0,
        resume_all_ms: resume_all.as_secs_f64() * 1e3,
        errors,
        first_error,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn reads_this_process_memory_and_cpu() {
        let rss = status_mb("VmRSS:").unwrap();
        let hwm = status_mb("VmHWM:").unwrap();
        assert!(rss > 0.0 && hwm >= rss, "rss {rss} hwm {hwm}");
        let before = cpu_ticks().unwrap();
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(cpu_ticks().unwrap() > before, "100 ms of spinning shows as CPU time");
    }
}
