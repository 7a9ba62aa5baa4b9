//! Signal latency: from `complete()` to the waiting workflow running again.
//!
//! - `signal_latency_inproc`: the same engine delivers the signal (in-process wake-up); the time
//!   includes the durable write of the signal and of the run's status.
//! - `signal_latency_poll_object`: another store object and engine on the same data, in this
//!   process: the waiter learns of it only through the store (SQLite's poll).
//! - `signal_latency_poll_process`: this program run again as a child process delivers it.
//!   Both processes read the same wall clock (`SystemTime`), so the child's time just before
//!   `complete()` and the parent's time at resumption compare directly.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use durably::{RunStatus, Workflow};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::report::{Record, round};
use crate::stores::{StoreKind, Target, engine, open_store};

/// Nanoseconds since the Unix epoch on the wall clock, which every process shares.
pub(crate) fn unix_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// A small deterministic generator for the signal's phase against the poll cycle.
#[derive(Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [0, 1).
    pub(crate) fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

type Resumed = (Instant, u128);

/// Starts a run that waits for the signal `go` and reports when it resumed.
fn spawn_waiter(
    wf: &Workflow,
    run_id: String,
) -> (JoinHandle<durably::Result<u64>>, oneshot::Receiver<Resumed>) {
    let (tx, rx) = oneshot::channel();
    let wf = wf.clone();
    let handle = tokio::spawn(async move {
        wf.run(run_id, move |_ctx| async move {
            let v: u64 = durably::signal("go").await?;
            let _ = tx.send((Instant::now(), unix_ns()));
            Ok::<u64, durably::Error>(v)
        })
        .await
    });
    (handle, rx)
}

/// Waits until the run is recorded as waiting on its signal.
async fn wait_waiting(wf: &Workflow, run_id: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let run = wf.get_run(run_id).await.with_context(|| format!("reading run {run_id}"))?;
        if run.is_some_and(|r| r.status == RunStatus::Waiting) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("run {run_id} was not waiting on its signal after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn finish(handle: JoinHandle<durably::Result<u64>>, run_id: &str) -> anyhow::Result<()> {
    let out = tokio::time::timeout(Duration::from_secs(30), handle)
        .await
        .map_err(|_| anyhow!("run {run_id} did not finish within 30 s of its signal"))?
        .map_err(|e| anyhow!("run {run_id} panicked: {e}"))?
        .with_context(|| format!("run {run_id}"))?;
    let _ = out;
    Ok(())
}

async fn resumed(rx: oneshot::Receiver<Resumed>, run_id: &str) -> anyhow::Result<Resumed> {
    tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .map_err(|_| anyhow!("run {run_id} did not resume within 30 s of its signal"))?
        .map_err(|_| anyhow!("run {run_id} ended without resuming"))
}

/// `signal_latency_inproc`.
pub(crate) async fn inproc(target: &Target, trials: u64) -> anyhow::Result<Record> {
    let opened = open_store(target).await?;
    let wf = engine("bench-sig", &opened);
    let mut lat = Vec::new();
    let mut call = Vec::new();
    let started = Instant::now();
    for i in 0..trials {
        let rid = format!("sig-in{i}");
        let (handle, rx) = spawn_waiter(&wf, rid.clone());
        wait_waiting(&wf, &rid).await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let t0 = Instant::now();
        let delivered = wf.complete(&rid, "go", &i).await.with_context(|| format!("complete({rid})"))?;
        call.push(t0.elapsed());
        if !delivered {
            bail!("signal to {rid} was reported as a duplicate");
        }
        let (at, _) = resumed(rx, &rid).await?;
        lat.push(at.saturating_duration_since(t0));
        finish(handle, &rid).await?;
    }
    let mut call_us: Vec<f64> = call.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    call_us.sort_by(f64::total_cmp);
    Ok(Record::latency("signal_latency_inproc", target.kind.label(), &lat, started.elapsed())
        .with(
            "complete_call_p50_us",
            crate::report::percentile(&call_us, 50.0).map(|v| round(v, 1)).unwrap_or(0.0),
        )
        .with("path", "in-process wake-up (same engine)"))
}

/// `signal_latency_poll_object`: a second store object in this process delivers the signal.
pub(crate) async fn poll_object(target: &Target, trials: u64, seed: u64) -> anyhow::Result<Record> {
    let opened = open_store(target).await?;
    let wf = engine("bench-sig", &opened);
    let other = engine("bench-sig", &open_store(target).await?);
    let poll = target.poll;
    let mut rng = Rng::new(seed);
    let mut lat = Vec::new();
    let started = Instant::now();
    for i in 0..trials {
        let rid = format!("sig-obj{i}");
        let (handle, rx) = spawn_waiter(&wf, rid.clone());
        wait_waiting(&wf, &rid).await?;
        tokio::time::sleep(poll.mul_f64(rng.next_f64())).await;
        let t0 = Instant::now();
        other
            .complete(&rid, "go", &i)
            .await
            .with_context(|| format!("complete({rid}) from another object"))?;
        let (at, _) = resumed(rx, &rid).await?;
        lat.push(at.saturating_duration_since(t0));
        finish(handle, &rid).await?;
    }
    Ok(Record::latency("signal_latency_poll_object", target.kind.label(), &lat, started.elapsed())
        .with("poll_ms", poll.as_secs_f64() * 1e3)
        .with("path", "store (another store object, same process)"))
}

/// What the child prints after each delivery.
#[derive(Debug, Serialize, Deserialize)]
struct Delivered {
    t0_ns: u128,
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `signal_latency_poll_process`: a child process (this program, `signal-child`) delivers it.
pub(crate) async fn poll_process(target: &Target, trials: u64, seed: u64) -> anyhow::Result<Record> {
    let opened = open_store(target).await?;
    let wf = engine("bench-sig", &opened);
    let exe = std::env::current_exe().context("finding this program to run it as the signalling child")?;
    let mut child = tokio::process::Command::new(exe)
        .arg("signal-child")
        .arg("--store")
        .arg(target.kind.label())
        .arg("--location")
        .arg(&target.location)
        .arg("--namespace")
        .arg(&target.namespace)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the signalling child process")?;
    let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("child has no stdin"))?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("child has no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .map_err(|_| anyhow!("the signalling child did not start within 60 s"))??;
    if first.as_deref() != Some("ready") {
        bail!("the signalling child said {first:?} instead of ready");
    }
    let poll = target.poll;
    let mut rng = Rng::new(seed.wrapping_add(1));
    let mut lat = Vec::new();
    let started = Instant::now();
    for i in 0..trials {
        let rid = format!("sig-proc{i}");
        let (handle, rx) = spawn_waiter(&wf, rid.clone());
        wait_waiting(&wf, &rid).await?;
        tokio::time::sleep(poll.mul_f64(rng.next_f64())).await;
        stdin.write_all(format!("{rid}\n").as_bytes()).await.context("writing to the signalling child")?;
        stdin.flush().await?;
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .map_err(|_| anyhow!("the signalling child did not answer for {rid}"))??
            .ok_or_else(|| anyhow!("the signalling child exited"))?;
        let d: Delivered = serde_json::from_str(&line).with_context(|| format!("child said {line:?}"))?;
        if let Some(e) = d.error {
            bail!("the child could not deliver the signal to {rid}: {e}");
        }
        if !d.ok {
            bail!("the child's signal to {rid} was reported as a duplicate");
        }
        let (_, at_ns) = resumed(rx, &rid).await?;
        let ns = u64::try_from(at_ns.saturating_sub(d.t0_ns)).unwrap_or(u64::MAX);
        lat.push(Duration::from_nanos(ns));
        finish(handle, &rid).await?;
    }
    drop(stdin);
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    Ok(Record::latency("signal_latency_poll_process", target.kind.label(), &lat, started.elapsed())
        .with("poll_ms", poll.as_secs_f64() * 1e3)
        .with("path", "store (another OS process)"))
}

/// The child of `signal_latency_poll_process`: opens the store, says `ready`, then delivers
/// `go` to each run id read from stdin and prints when it started doing so.
pub(crate) async fn child(
    kind: StoreKind,
    location: std::path::PathBuf,
    namespace: String,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let target = Target { kind, location, namespace, poll: Duration::from_millis(100) };
    let wf = engine("bench-sig", &open_store(&target).await?);
    let mut out = std::io::stdout();
    writeln!(out, "ready")?;
    out.flush()?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(rid) = lines.next_line().await? {
        let t0_ns = unix_ns();
        let d = match wf.complete(&rid, "go", &1u64).await {
            Ok(ok) => Delivered { t0_ns, ok, error: None },
            Err(e) => Delivered { t0_ns, ok: false, error: Some(e.to_string()) },
        };
        writeln!(out, "{}", serde_json::to_string(&d)?)?;
        out.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn phases_are_uniform_in_the_unit_interval() {
        let mut rng = Rng::new(1);
        let xs: Vec<f64> = (0..10_000).map(|_| rng.next_f64()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        let mut again = Rng::new(1);
        assert_eq!(again.next_f64(), xs[0], "the same seed gives the same phases");
    }
}
