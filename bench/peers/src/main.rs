//! `durably-peers`: durably-bench's workflow scenarios (`crates/durably-bench/src/engine.rs`) on
//! the Rust peers of durably — durare 0.5 on SQLite and PostgreSQL, dbos 0.5 (DBOS Transact for
//! Rust) on PostgreSQL — with the same sizes and shapes, one JSON line per scenario in
//! durably-bench's record format. `durably-bench --compare-peers` runs it in the same invocation
//! and shows the peers beside durably; it can also run alone:
//!
//! ```text
//! cargo build --release --manifest-path bench/peers/Cargo.toml
//! bench/peers/target/release/durably-peers --quick
//! ```
//!
//! Scenarios:
//! - `steps_fresh`: one run of N sequential steps, from `start` to the last step's result. The
//!   first execution runs on a Tokio runtime of its own that is then dropped, as a crashed
//!   process's is, with the run neither completed nor failed.
//! - `steps_replay_new_object`: a new engine on the same data recovers the run (durare:
//!   `recover()`; dbos: `launch()`), which executes the body again: every step replayed from the
//!   store, none executed. Timed inside the body, from its first line to its last step's result
//!   (the peers dispatch a recovered run through their queue machinery; that time is in the
//!   `*_to_body_end_ms` and `*_to_output_ms` fields). Neither peer executes a run again through
//!   its start call (a start of a pending run id joins it; a run that returned an error is
//!   terminal); their other ways (recovery, or cancel then resume) hand the run to their queue
//!   runner. So durably's same-engine `steps_replay` has no counterpart here.
//! - `workflows_fresh`: M runs × T steps, one after another.
//! - `concurrent_workflows`: C runs × K steps, all started at once; each run's sum checked, and
//!   the completed runs counted in the store.
//!
//! An error is a run that failed or returned a wrong value, or a step executed on a replay.

#![allow(clippy::print_stdout)] // a benchmark program reports on stdout

mod common;
mod on_dbos;
mod on_durare;
mod record;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::common::{Peer, Target};
use crate::record::{Record, p_us, round};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Group {
    /// steps_fresh, steps_replay_new_object.
    Steps,
    /// workflows_fresh.
    Workflows,
    /// concurrent_workflows.
    Concurrent,
}

#[derive(Debug, Parser)]
#[command(name = "durably-peers", version, about = "durably-bench's workflow scenarios on durare and dbos.")]
struct Cli {
    /// Peers to run the scenarios on.
    #[arg(long, value_delimiter = ',', default_value = "durare-sqlite,durare-postgres,dbos-postgres")]
    peers: Vec<Peer>,
    /// Scenario groups to run (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<Group>,
    /// Tiny sizes, for a smoke test. Explicit sizes still win.
    #[arg(long)]
    quick: bool,
    /// PostgreSQL server of the *-postgres peers (each scenario in a schema of its own, dropped
    /// at the end) [default: DURABLY_POSTGRES_URL, else postgres://postgres@127.0.0.1:5432/test].
    #[arg(long)]
    postgres_url: Option<String>,
    /// Where the SQLite files go (default: a temporary directory, removed at the end).
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// N of steps_fresh / steps_replay_new_object [default: 2000; quick 50].
    #[arg(long)]
    steps: Option<u64>,
    /// Runs of workflows_fresh [default: 500; quick 10].
    #[arg(long)]
    workflows: Option<u64>,
    /// Steps per run of workflows_fresh [default: 3].
    #[arg(long)]
    wf_tasks: Option<u64>,
    /// Runs of concurrent_workflows, all at once [default: 1000; quick 50].
    #[arg(long)]
    concurrent: Option<u64>,
    /// Steps per run of concurrent_workflows [default: 10; quick 3].
    #[arg(long)]
    conc_tasks: Option<u64>,
    /// Rounds of the steps scenarios; the best is kept [default: 3; quick 1].
    #[arg(long)]
    repeat: Option<u32>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("durably-peers: cannot start the Tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("durably-peers: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a scenario's record, or a failure record naming what went wrong.
fn emit(scenario: &str, peer: Peer, result: anyhow::Result<Record>) {
    match result {
        Ok(mut rec) => {
            if peer == Peer::DurareSqlite {
                rec = rec.with("durability", "WAL, synchronous=NORMAL (durare's own settings)");
            }
            rec.with("lib", peer.lib()).print()
        }
        Err(e) => {
            eprintln!("durably-peers: {scenario} on {} failed: {e:#}", peer.label());
            Record::failed(scenario, peer.label(), &e).with("lib", peer.lib()).print();
        }
    }
}

async fn bench(cli: Cli) -> anyhow::Result<()> {
    let q = cli.quick;
    let pick = |v: Option<u64>, full: u64, quick: u64| v.unwrap_or(if q { quick } else { full });
    let steps = pick(cli.steps, 2000, 50);
    let workflows = pick(cli.workflows, 500, 10);
    let wf_tasks = pick(cli.wf_tasks, 3, 3);
    let concurrent = pick(cli.concurrent, 1000, 50);
    let conc_tasks = pick(cli.conc_tasks, 10, 3);
    let repeat = cli.repeat.unwrap_or(if q { 1 } else { 3 }).max(1);
    let on = |g: Group| cli.only.is_empty() || cli.only.contains(&g);
    let url = cli.postgres_url.clone().unwrap_or_else(|| {
        std::env::var("DURABLY_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
    });
    let tmp = std::env::temp_dir().join(format!("durably-peers-{}", std::process::id()));
    let dir = cli.workdir.clone().unwrap_or_else(|| tmp.clone());
    std::fs::create_dir_all(&dir)?;
    eprintln!(
        "durably-peers: steps {steps}, workflows {workflows} × {wf_tasks}, concurrent {concurrent} × {conc_tasks}, \
         repeat {repeat}; files in {}",
        dir.display()
    );

    for peer in cli.peers.iter().copied() {
        if on(Group::Steps) {
            steps_best_of(peer, &dir, &url, steps, repeat).await;
        }
        if on(Group::Workflows) {
            let r = in_target(Target::fresh(peer, &dir, &url, "workflows"), async |t| match peer {
                Peer::DbosPostgres => on_dbos::workflows(t, workflows, wf_tasks).await,
                _ => on_durare::workflows(t, workflows, wf_tasks).await,
            });
            emit("workflows_fresh", peer, r.await);
        }
        if on(Group::Concurrent) {
            let r = in_target(Target::fresh(peer, &dir, &url, "concurrent"), async |t| match peer {
                Peer::DbosPostgres => on_dbos::concurrent(t, concurrent, conc_tasks).await,
                _ => on_durare::concurrent(t, concurrent, conc_tasks).await,
            });
            emit("concurrent_workflows", peer, r.await);
        }
    }
    if cli.workdir.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(())
}

/// Runs a scenario on a fresh target, then removes what it left.
async fn in_target<T>(
    target: anyhow::Result<Target>,
    f: impl AsyncFnOnce(&Target) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let target = target?;
    let result = f(&target).await;
    if let Err(e) = target.cleanup().await {
        eprintln!("durably-peers: could not clean up {}: {e:#}", target.schema);
    }
    result
}

/// The steps scenarios, best (lowest total) of `repeat` rounds each, every round on a fresh
/// target.
async fn steps_best_of(peer: Peer, dir: &std::path::Path, url: &str, n: u64, repeat: u32) {
    let mut best: BTreeMap<String, Record> = BTreeMap::new();
    let mut failures = Vec::new();
    for round in 0..repeat {
        let r = in_target(Target::fresh(peer, dir, url, &format!("steps{round}")), async |t| match peer {
            Peer::DbosPostgres => on_dbos::steps_round(t, n).await,
            _ => on_durare::steps_round(t, n).await,
        });
        match r.await {
            Ok(recs) => {
                for rec in recs {
                    match best.get(&rec.scenario) {
                        Some(old) if old.errors <= rec.errors && old.total_ms <= rec.total_ms => {}
                        _ => {
                            best.insert(rec.scenario.clone(), rec);
                        }
                    }
                }
            }
            Err(e) => failures.push(e),
        }
    }
    for name in ["steps_fresh", "steps_replay_new_object"] {
        if let Some(rec) = best.remove(name) {
            emit(name, peer, Ok(rec.with("repeat", repeat)));
        }
    }
    if let Some(e) = failures.into_iter().next() {
        emit("steps_fresh", peer, Err(e));
    }
}

/// The record of `workflows_fresh` and `concurrent_workflows`, as durably-bench's.
#[allow(clippy::too_many_arguments)]
pub(crate) fn runs_record(
    scenario: &str,
    peer: Peer,
    runs: u64,
    tasks: u64,
    elapsed: Duration,
    lat: &[Duration],
    mut kinds: BTreeMap<String, u64>,
    completed: Option<u64>,
) -> Record {
    // Every run must be recorded as completed: nothing lost.
    if let Some(c) = completed
        && c != runs
    {
        *kinds.entry(format!("{} runs not recorded as completed", runs.saturating_sub(c))).or_default() += 1;
    }
    let errors: u64 = kinds.values().sum();
    let secs = elapsed.as_secs_f64();
    let mut rec = Record::throughput(scenario, peer.label(), runs * tasks, elapsed)
        .errors(errors)
        .with("runs", runs)
        .with("tasks_per_run", tasks)
        .with("runs_per_s", round(runs as f64 / secs, 1))
        .with("run_p50_us", p_us(lat, 50.0))
        .with("run_p99_us", p_us(lat, 99.0));
    if let Some(c) = completed {
        rec = rec.with("recorded_completed", c);
    }
    if !kinds.is_empty() {
        rec = rec.with("error_kinds", serde_json::to_value(&kinds).unwrap_or_default());
    }
    rec
}
