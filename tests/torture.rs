//! Crash torture: a workflow of many steps runs in a child process that is killed with
//! SIGKILL at a random moment, again and again, until the run completes. After every kill the
//! parent checks, from the store and from an append-only log of step executions:
//!
//! - a step whose checkpoint committed is never executed again;
//! - at most one step (the one in flight at the kill) is executed again per kill;
//! - an `at_most_once` step is never executed twice (the run stops with `AmbiguousEffect`);
//! - the SQLite file passes `PRAGMA integrity_check`;
//! - the final output equals that of a crash-free run, and no run is left unfinishable.
//!
//! `.ci/run` runs a small number of kills per store; the full count is
//! `DURABLY_TORTURE_KILLS=300 cargo test --release --test torture -- --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use std::sync::Arc;

use durably::store::prelude::*;
use durably::{Durability, Error, SqliteStore, StepStatus, Workflow};

#[path = "common/process.rs"]
mod process;
use process::StoreSpec;
#[cfg(any(feature = "redis", feature = "postgres"))]
use process::service;

const STEPS: u32 = 40;
const RUN_ID: &str = "torture";

/// Kills per store: small by default, `DURABLY_TORTURE_KILLS` for the full run.
fn kills_wanted() -> u32 {
    std::env::var("DURABLY_TORTURE_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(25)
}

/// Where a torture run keeps its records: `sqlite-full:<path>`, `sqlite-normal:<path>`, or a
/// [`StoreSpec`] (`redis:<url>#<prefix>`, `postgres:<url>#<schema>`).
async fn open(spec: &str) -> Arc<dyn Store> {
    let sqlite = |path: &str, d: Durability| {
        let path = PathBuf::from(path);
        async move { SqliteStore::builder(path).durability(d).open().await.expect("open the SQLite store") }
    };
    if let Some(path) = spec.strip_prefix("sqlite-full:") {
        Arc::new(sqlite(path, Durability::Full).await)
    } else if let Some(path) = spec.strip_prefix("sqlite-normal:") {
        Arc::new(sqlite(path, Durability::Normal).await)
    } else {
        StoreSpec::parse(spec).open().await
    }
}

fn sqlite_file(spec: &str) -> Option<&Path> {
    spec.strip_prefix("sqlite-full:").or_else(|| spec.strip_prefix("sqlite-normal:")).map(Path::new)
}

fn log_line(log: &Path, line: &str) -> std::io::Result<()> {
    // One write(2) per line on an O_APPEND file: a SIGKILL cannot tear it, and what write
    // returned is in the kernel, so the parent sees it after the kill.
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    f.write_all(format!("{line}\n").as_bytes())
}

#[durably::task(retries = 0)]
async fn work(log: PathBuf, i: u32) -> Result<u64, std::io::Error> {
    log_line(&log, &i.to_string())?;
    // Long enough for kills to land inside bodies as well as between them.
    tokio::time::sleep(Duration::from_micros(300 + u64::from(i % 7) * 100)).await;
    Ok(u64::from(i) * 31 + 7)
}

#[durably::task(retries = 0, at_most_once)]
async fn charge(log: PathBuf, i: u32) -> Result<u64, std::io::Error> {
    log_line(&log, &i.to_string())?;
    tokio::time::sleep(Duration::from_micros(500)).await;
    Ok(u64::from(i) + 1000)
}

async fn the_workflow(wf: &Workflow, run_id: &str, log: PathBuf, at_most_once: bool) -> durably::Result<u64> {
    wf.run(run_id, |_| async move {
        let mut total = 0u64;
        for i in 0..STEPS {
            let id = format!("step-{i}");
            total = total.wrapping_mul(17).wrapping_add(if at_most_once {
                charge(log.clone(), i).step_id(id).await?
            } else {
                work(log.clone(), i).step_id(id).await?
            });
        }
        Ok::<_, Error>(total)
    })
    .await
}

/// The expected output, computed by a crash-free run in memory.
async fn crash_free_output(at_most_once: bool) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let wf = Workflow::builder("torture").build();
    the_workflow(&wf, RUN_ID, dir.path().join("log"), at_most_once).await.unwrap()
}

/// The child side, started by the torture tests in their own process: runs (or resumes) the
/// run and prints its outcome on stdout.
#[tokio::test]
#[ignore = "runs only as the child process of the torture tests"]
async fn torture_child() {
    let var = |k: &str| std::env::var(k).expect("started by a torture test");
    let wf = Workflow::builder("torture").shared_store(open(&var("DURABLY_TORTURE_STORE")).await).build();
    let at_most_once = var("DURABLY_TORTURE_MODE") == "at_most_once";
    match the_workflow(&wf, &var("DURABLY_TORTURE_RUN"), var("DURABLY_TORTURE_LOG").into(), at_most_once)
        .await
    {
        Ok(out) => println!("OUTPUT {out}"),
        Err(Error::AmbiguousEffect { step_id, .. }) => println!("AMBIGUOUS {step_id}"),
        Err(e) => println!("ERROR {e}"),
    }
}

fn read_log(log: &Path) -> Vec<u32> {
    std::fs::read_to_string(log).unwrap_or_default().lines().map(|l| l.parse().unwrap()).collect()
}

fn integrity_check(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let verdict: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(verdict, "ok", "PRAGMA integrity_check after a kill");
}

async fn completed_steps(spec: &str, run_id: &str) -> BTreeSet<u32> {
    let wf = Workflow::builder("torture").shared_store(open(spec).await).build();
    wf.list_steps(run_id)
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.status == StepStatus::Completed)
        .map(|s| s.step_id.trim_start_matches("step-").parse().unwrap())
        .collect()
}

enum ChildEnd {
    Killed,
    Output(u64),
    Ambiguous(String),
}

fn run_child(spec: &str, log: &Path, run_id: &str, mode: &str, kill_after: Option<Duration>) -> ChildEnd {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "torture_child", "--ignored", "--nocapture", "--test-threads", "1"])
        .env("DURABLY_TORTURE_STORE", spec)
        .env("DURABLY_TORTURE_LOG", log)
        .env("DURABLY_TORTURE_RUN", run_id)
        .env("DURABLY_TORTURE_MODE", mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    if let Some(after) = kill_after {
        std::thread::sleep(after);
        // SIGKILL on unix; an error means the child had already exited.
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines() {
        // libtest prints "test torture_child ... " before the child's own line.
        if let Some((_, v)) = line.split_once("OUTPUT ") {
            return ChildEnd::Output(v.trim().parse().unwrap());
        }
        if let Some((_, step)) = line.split_once("AMBIGUOUS ") {
            return ChildEnd::Ambiguous(step.trim().to_owned());
        }
        if let Some((_, e)) = line.split_once("ERROR ") {
            panic!("the child failed with an error, not a kill: {e}");
        }
    }
    assert!(!out.status.success() || kill_after.is_some(), "the child printed no outcome: {stdout}");
    ChildEnd::Killed
}

#[derive(Default, Debug)]
struct Totals {
    kills: u32,
    runs: u32,
    reexecutions: u32,
    ambiguous: u32,
    violations: u32,
}

/// Kills a child at a random moment until it finishes on its own, checking the invariants after
/// every kill. Returns the output of the run.
async fn torture_one_run(
    dir: &Path,
    spec: &str,
    run_id: &str,
    mode: &str,
    totals: &mut Totals,
) -> Option<u64> {
    let log = dir.join(format!("{run_id}.log"));
    // Kills land from before the first step to after the last (a run takes ~40 ms here).
    let mut attempts = 0;
    loop {
        attempts += 1;
        assert!(attempts < 500, "run {run_id} never finished");
        let committed_before = completed_steps(spec, run_id).await;
        let executed_before = read_log(&log);
        let kill_after =
            if attempts > 12 { None } else { Some(Duration::from_micros(fastrand::u64(2_000..60_000))) };
        let end = run_child(spec, &log, run_id, mode, kill_after);
        if let Some(db) = sqlite_file(spec) {
            integrity_check(db);
        }
        let executed_now = read_log(&log)[executed_before.len()..].to_vec();
        for i in &executed_now {
            if committed_before.contains(i) {
                totals.violations += 1;
                eprintln!("VIOLATION: step {i} had committed and was executed again ({run_id})");
            }
        }
        let again: Vec<u32> = executed_now.iter().copied().filter(|i| executed_before.contains(i)).collect();
        if mode == "at_most_once" && !again.is_empty() {
            totals.violations += 1;
            eprintln!("VIOLATION: at-most-once steps {again:?} executed twice ({run_id})");
        }
        if again.len() > 1 {
            totals.violations += 1;
            eprintln!("VIOLATION: {} steps executed again after one kill: {again:?}", again.len());
        }
        totals.reexecutions += again.len() as u32;
        match end {
            ChildEnd::Killed => totals.kills += 1,
            ChildEnd::Output(out) => {
                totals.runs += 1;
                let counts = read_log(&log).into_iter().fold(BTreeMap::<u32, u32>::new(), |mut m, i| {
                    *m.entry(i).or_default() += 1;
                    m
                });
                assert_eq!(counts.keys().copied().collect::<Vec<_>>(), (0..STEPS).collect::<Vec<_>>());
                return Some(out);
            }
            ChildEnd::Ambiguous(step) => {
                // The step in flight at the kill: its intent was recorded, its result was not (the
                // kill may have landed before or after the body's effect: that is the ambiguity).
                totals.ambiguous += 1;
                let wf = Workflow::builder("torture").shared_store(open(spec).await).build();
                let steps = wf.list_steps(run_id).await.unwrap();
                let rec = steps.iter().find(|s| s.step_id == step).expect("the ambiguous step has a record");
                assert_eq!(rec.status, StepStatus::Started, "{step}");
                return None;
            }
        }
    }
}

/// Tortures runs on the store `spec` (with `{dir}` standing for a fresh temporary directory).
async fn torture(label: &str, spec: &str, mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec.replace("{dir}", &dir.path().display().to_string());
    let spec = spec.as_str();
    let expected = crash_free_output(mode == "at_most_once").await;
    let mut totals = Totals::default();
    let mut n = 0;
    while totals.kills < kills_wanted() {
        n += 1;
        let run_id = format!("{RUN_ID}-{n}");
        if let Some(out) = torture_one_run(dir.path(), spec, &run_id, mode, &mut totals).await {
            assert_eq!(out, expected, "run {run_id} finished with another output than a crash-free run");
        }
    }
    eprintln!("torture {label} {mode}: {totals:?}");
    assert_eq!(totals.violations, 0, "{totals:?}");
    assert!(totals.reexecutions <= totals.kills, "{totals:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_full_survives_random_kills() {
    torture("sqlite-full", "sqlite-full:{dir}/torture.db", "steps").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_normal_survives_random_kills() {
    torture("sqlite-normal", "sqlite-normal:{dir}/torture.db", "steps").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_once_steps_never_run_twice_under_kills() {
    torture("sqlite-full", "sqlite-full:{dir}/torture.db", "at_most_once").await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_survives_random_kills() {
    let Some(url) = service("DURABLY_REDIS_URL", "redis://127.0.0.1:6379", "127.0.0.1:6379") else { return };
    let prefix = format!("torture-{:016x}", fastrand::u64(..));
    torture("redis", &format!("redis:{url}#{prefix}"), "steps").await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_survives_random_kills() {
    let Some(url) =
        service("DURABLY_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test", "127.0.0.1:5432")
    else {
        return;
    };
    let schema = format!("torture_{:016x}", fastrand::u64(..));
    torture("postgres", &format!("postgres:{url}#{schema}"), "steps").await;
    // Leave nothing behind in the shared database.
    let _ =
        Command::new("psql").args([url.as_str(), "-qc", &format!("DROP SCHEMA {schema} CASCADE")]).output();
}
