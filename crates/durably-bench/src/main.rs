//! The durably benchmark: the scenarios of python-durable's reference script
//! (`crates/durably-bench/python/python_durable_bench.py`) run on durably's stores, the physical floor of this
//! machine measured with rusqlite directly, and optionally python-durable itself and the Rust
//! peers (durare, dbos: `bench/peers`, see `peers.rs`) in the same invocation. One JSON line per
//! scenario, then a markdown summary with the targets, and optionally an SVG chart (`chart.rs`).
//!
//! ```text
//! cargo run --release -p durably-bench -- --help
//! cargo run --release -p durably-bench -- --compare-python /tmp/pyd-venv/bin/python
//! cargo run --release -p durably-bench --features postgres -- --stores sqlite-normal,postgres \
//!     --only floor,steps,workflows,concurrent --compare-peers --chart bench.svg
//! cargo run --release -p durably-bench -- --quick          # tiny sizes: a smoke test
//! cargo run --release -p durably-bench -- soak --minutes 5  # a bounded soak (see `soak/mod.rs`)
//! ```
//!
//! The exit status is non-zero only when a scenario of durably (or a floor) had errors, or the
//! soak lost a run, never because of a timing.

#![allow(clippy::print_stdout)] // a benchmark program reports on stdout

#[cfg(feature = "agent")]
mod agents;
mod chart;
mod comparison;
mod engine;
mod floor;
mod peers;
mod python;
mod queues;
mod report;
mod servers;
#[cfg(feature = "agent")]
mod sessions;
mod signals;
mod soak;
mod stores;
mod summary;
mod waiting;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::report::{Record, Reporter};
use crate::stores::{StoreKind, Target};

#[derive(Debug, Parser)]
#[command(
    name = "durably-bench",
    version,
    about = "Benchmarks durably against python-durable, the Rust peers (durare, dbos) and this machine's raw floor.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    opts: Options,
}

/// The soak, and the children: the program re-executes itself for the scenarios that need
/// another process.
#[derive(Debug, Subcommand)]
enum Command {
    /// A bounded soak: a steady mix of runs (steps, signals, sleeps, retries, failures,
    /// cancellations, purges) on one engine per store for minutes, a progress line per
    /// interval on stderr, then checks that no run was lost. Not part of the normal benchmark.
    Soak(SoakArgs),
    /// Delivers the signal `go` to each run id read from stdin (signal_latency_poll_process).
    #[command(hide = true)]
    SignalChild {
        #[arg(long)]
        store: StoreKind,
        #[arg(long)]
        location: PathBuf,
        #[arg(long)]
        namespace: String,
    },
    /// Starts runs that wait on signals and reports its memory (waiting_runs).
    #[command(hide = true)]
    WaitingChild(ChildArgs),
    /// Parks runs waiting on a signal with a queue worker and reports its memory (parked_runs).
    #[command(hide = true)]
    ParkedChild(ChildArgs),
}

/// The arguments of the children that start runs on a store and report their memory.
#[derive(Debug, clap::Args)]
struct ChildArgs {
    #[arg(long)]
    store: StoreKind,
    #[arg(long)]
    location: PathBuf,
    #[arg(long)]
    runs: u64,
    #[arg(long)]
    poll_ms: u64,
    #[arg(long)]
    namespace: String,
}

/// The options of `soak`.
#[derive(Debug, clap::Args)]
struct SoakArgs {
    /// Stores to soak, one after another.
    #[arg(long, value_delimiter = ',', default_value = "sqlite-full")]
    stores: Vec<StoreKind>,
    /// How long to soak each store, in minutes [default: 5].
    #[arg(long, conflicts_with = "seconds")]
    minutes: Option<u64>,
    /// How long to soak each store, in seconds (a smoke test: `--seconds 3`).
    #[arg(long)]
    seconds: Option<u64>,
    /// Seconds between progress lines [default: 10, shorter for a soak under 30 s].
    #[arg(long)]
    interval_secs: Option<u64>,
    /// Runs open at once, at most.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Runs started per second (a steady arrival rate); without it, a new run starts as soon
    /// as one ends (saturation).
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds between purges of finished runs [default: 5, at most the interval].
    #[arg(long)]
    purge_every_secs: Option<u64>,
    /// A purge deletes the runs finished at least this many seconds ago [default: 5, at most
    /// two intervals].
    #[arg(long)]
    purge_age_secs: Option<u64>,
    /// The SQLite store's signal poll interval, in milliseconds (the library's default: 5).
    #[arg(long, default_value_t = 5)]
    poll_ms: u64,
    /// Seed of the delays (signal delivery, sleeps, cancellations).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print only the JSON lines, no markdown table.
    #[arg(long)]
    json_only: bool,
    /// Where the SQLite files go (default: a temporary directory, removed at the end).
    #[arg(long)]
    workdir: Option<PathBuf>,
}

impl SoakArgs {
    fn config(&self) -> soak::SoakConfig {
        let secs = |v: Option<u64>| v.map(Duration::from_secs);
        let duration = match (self.seconds, self.minutes) {
            (Some(s), _) => Duration::from_secs(s),
            (None, Some(m)) => Duration::from_secs(m.saturating_mul(60)),
            (None, None) => Duration::from_secs(300),
        };
        soak::SoakConfig::new(
            duration,
            secs(self.interval_secs),
            self.concurrency,
            secs(self.purge_every_secs),
            secs(self.purge_age_secs),
            self.seed,
            self.rate,
        )
    }
}

/// Groups of scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Group {
    /// floor_*: rusqlite commits (1 and 100 rows per transaction), point select, fdatasync.
    Floor,
    /// store_save_step against the same upsert on a bare connection.
    Overhead,
    /// steps_fresh, steps_replay, steps_replay_new_object.
    Steps,
    /// workflows_fresh.
    Workflows,
    /// concurrent_workflows.
    Concurrent,
    /// signal_latency_inproc, signal_latency_poll_object, signal_latency_poll_process.
    Signal,
    /// waiting_runs (in a child process).
    Waiting,
    /// queue_throughput_1w, queue_throughput_4w, enqueue_to_start, fan_out, parked_runs (the
    /// last in a child process).
    Queues,
    /// agent_bare, agent_durable, agent_replay, session_turns, session_retry, session_replay,
    /// session_send (feature `agent`).
    Agent,
}

#[derive(Debug, clap::Args)]
struct Options {
    /// Stores to run the scenarios on.
    #[arg(long, value_delimiter = ',', default_value = "sqlite-full,sqlite-normal,memory")]
    stores: Vec<StoreKind>,
    /// Scenario groups to run (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<Group>,
    /// Tiny sizes, for a smoke test (CI). Explicit sizes still win.
    #[arg(long)]
    quick: bool,
    /// Print only the JSON lines, no markdown summary.
    #[arg(long)]
    json_only: bool,
    /// Also run python-durable's script with this Python interpreter and print the ratios.
    #[arg(long, value_name = "PYTHON")]
    compare_python: Option<PathBuf>,
    /// The python-durable script (default: python/python_durable_bench.py in this crate).
    #[arg(long)]
    python_script: Option<PathBuf>,
    /// Also run the workflow scenarios on the Rust peers (durare 0.5 on SQLite and PostgreSQL,
    /// dbos 0.5 on PostgreSQL) with `durably-peers`: a binary, or a Cargo.toml run with `cargo
    /// run --release` [default: bench/peers/Cargo.toml of this repository].
    #[arg(long, value_name = "PATH", num_args = 0..=1)]
    compare_peers: Option<Option<PathBuf>>,
    /// The peers of --compare-peers.
    #[arg(long, value_delimiter = ',', default_value = "durare-sqlite,durare-postgres,dbos-postgres")]
    peers: Vec<String>,
    /// Write an SVG chart of the time per step (log scale) of each workflow scenario: durably's
    /// stores, the peers, python-durable and the floor.
    #[arg(long, value_name = "FILE")]
    chart: Option<PathBuf>,
    /// Where the database files go (default: a temporary directory, removed at the end).
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// N of steps_fresh / steps_replay [default: 2000; quick 50].
    #[arg(long)]
    steps: Option<u64>,
    /// Runs of workflows_fresh [default: 500; quick 10].
    #[arg(long)]
    workflows: Option<u64>,
    /// Tasks per run of workflows_fresh [default: 3].
    #[arg(long)]
    wf_tasks: Option<u64>,
    /// Runs of concurrent_workflows, all at once [default: 1000; quick 50].
    #[arg(long)]
    concurrent: Option<u64>,
    /// Tasks per run of concurrent_workflows [default: 10; quick 3].
    #[arg(long)]
    conc_tasks: Option<u64>,
    /// Trials of signal_latency_inproc [default: 200; quick 5].
    #[arg(long)]
    signal_inproc: Option<u64>,
    /// Trials of each poll-path signal scenario [default: 20; quick 2] (python-durable: at most 6,
    /// each takes up to its 2 s poll).
    #[arg(long)]
    signal_poll: Option<u64>,
    /// Runs of waiting_runs [default: 10000; quick 200].
    #[arg(long)]
    waiting: Option<u64>,
    /// One-step runs of queue_throughput_* [default: 2000; quick 50].
    #[arg(long)]
    queue_runs: Option<u64>,
    /// Trials of enqueue_to_start [default: 200; quick 10].
    #[arg(long)]
    enqueue_trials: Option<u64>,
    /// Children of fan_out [default: 1000; quick 20].
    #[arg(long)]
    fan_out: Option<u64>,
    /// Runs of parked_runs [default: 100000; quick 200].
    #[arg(long)]
    parked: Option<u64>,
    /// Rows of the one-row-per-commit floors and of store_save_step [default: 2000; quick 50].
    #[arg(long)]
    floor_rows: Option<u64>,
    /// Rows of the 100-rows-per-commit floors [default: 20000; quick 500].
    #[arg(long)]
    floor_batch_rows: Option<u64>,
    /// Rounds of steps_*, the one-row floors and store_save_step; the best is kept [default: 3; quick 1].
    #[arg(long)]
    repeat: Option<u32>,
    /// Model calls of the agent scenarios (one tool call per turn, then the answer) [default: 20; quick 3].
    #[arg(long)]
    agent_turns: Option<u64>,
    /// The mock model's latency in the agent scenarios, in milliseconds [default: 20; quick 1].
    #[arg(long)]
    agent_latency_ms: Option<u64>,
    /// The SQLite store's signal poll interval, in milliseconds (the library's default: 5).
    #[arg(long, default_value_t = 5)]
    poll_ms: u64,
    /// Seed of the signals' phases against the poll cycle.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Sizes after `--quick` and the explicit options.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    steps: u64,
    workflows: u64,
    wf_tasks: u64,
    concurrent: u64,
    conc_tasks: u64,
    signal_inproc: u64,
    signal_poll: u64,
    waiting: u64,
    queue_runs: u64,
    enqueue_trials: u64,
    fan_out: u64,
    parked: u64,
    floor_rows: u64,
    floor_batch_rows: u64,
    repeat: u32,
    agent_turns: u64,
    agent_latency_ms: u64,
}

impl Sizes {
    fn from(o: &Options) -> Sizes {
        let q = o.quick;
        let pick = |v: Option<u64>, full: u64, quick: u64| v.unwrap_or(if q { quick } else { full });
        Sizes {
            steps: pick(o.steps, 2000, 50),
            workflows: pick(o.workflows, 500, 10),
            wf_tasks: pick(o.wf_tasks, 3, 3),
            concurrent: pick(o.concurrent, 1000, 50),
            conc_tasks: pick(o.conc_tasks, 10, 3),
            signal_inproc: pick(o.signal_inproc, 200, 5),
            signal_poll: pick(o.signal_poll, 20, 2),
            waiting: pick(o.waiting, 10_000, 200),
            queue_runs: pick(o.queue_runs, 2000, 50),
            enqueue_trials: pick(o.enqueue_trials, 200, 10),
            fan_out: pick(o.fan_out, 1000, 20),
            parked: pick(o.parked, 100_000, 200),
            floor_rows: pick(o.floor_rows, 2000, 50),
            floor_batch_rows: pick(o.floor_batch_rows, 20_000, 500),
            repeat: o.repeat.unwrap_or(if q { 1 } else { 3 }),
            agent_turns: pick(o.agent_turns, 20, 3),
            agent_latency_ms: pick(o.agent_latency_ms, 20, 1),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("durably-bench: cannot start the Tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Some(Command::Soak(args)) => runtime.block_on(soak_all(args)),
        Some(Command::SignalChild { store, location, namespace }) => {
            runtime.block_on(signals::child(store, location, namespace))
        }
        Some(Command::WaitingChild(a)) => runtime.block_on(waiting::child(
            a.store,
            a.location,
            a.runs,
            Duration::from_millis(a.poll_ms),
            a.namespace,
        )),
        Some(Command::ParkedChild(a)) => runtime.block_on(queues::parked_child(
            a.store,
            a.location,
            a.runs,
            Duration::from_millis(a.poll_ms),
            a.namespace,
        )),
        None => runtime.block_on(bench(cli.opts)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("durably-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a scenario on a fresh target, then removes what it left on a server.
async fn in_target(
    target: anyhow::Result<Target>,
    f: impl AsyncFnOnce(&Target) -> anyhow::Result<Record>,
) -> anyhow::Result<Record> {
    let target = target?;
    let result = f(&target).await;
    if let Err(e) = target.cleanup().await {
        eprintln!("durably-bench: could not clean up {}: {e:#}", target.namespace);
    }
    result
}

/// Like [`in_target`], for a scenario that gives several records.
#[cfg(feature = "agent")]
async fn in_target_many(
    target: anyhow::Result<Target>,
    f: impl AsyncFnOnce(&Target) -> anyhow::Result<Vec<Record>>,
) -> anyhow::Result<Vec<Record>> {
    let target = target?;
    let result = f(&target).await;
    if let Err(e) = target.cleanup().await {
        eprintln!("durably-bench: could not clean up {}: {e:#}", target.namespace);
    }
    result
}

/// Emits a scenario's record, or a failure record naming what went wrong.
fn emit(rep: &mut Reporter, scenario: &str, store: &str, result: anyhow::Result<Record>) {
    match result {
        Ok(rec) => rep.emit(rec),
        Err(e) => {
            eprintln!("durably-bench: {scenario} on {store} failed: {e:#}");
            rep.emit(Record::failed(scenario, store, &e));
        }
    }
}

/// This invocation as a `cargo run` command line, for the summary.
fn command_line() -> String {
    let features: Vec<&str> = [
        ("redis", cfg!(feature = "redis")),
        ("postgres", cfg!(feature = "postgres")),
        ("agent", cfg!(feature = "agent")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    let cargo = if features.is_empty() {
        "cargo run --release -p durably-bench --".to_owned()
    } else {
        format!("cargo run --release -p durably-bench --features {} --", features.join(","))
    };
    std::iter::once(cargo).chain(std::env::args().skip(1)).collect::<Vec<_>>().join(" ")
}

/// `soak`: each store in turn, then the verdict on errors and lost runs.
async fn soak_all(args: SoakArgs) -> anyhow::Result<()> {
    let cfg = args.config();
    let machine_at_start = summary::machine();
    let tmp = tempfile::Builder::new().prefix("durably-soak-").tempdir()?;
    let dir = match &args.workdir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => tmp.path().to_owned(),
    };
    eprintln!("durably-bench: soak; {machine_at_start}; {cfg:?}; files in {}", dir.display());
    let mut rep = Reporter::default();
    let mut tables = Vec::new();
    for kind in args.stores.iter().copied() {
        let target = Target::fresh(kind, &dir, "soak", Duration::from_millis(args.poll_ms));
        let mut table = None;
        let r = in_target(target, async |t| {
            let result = soak::soak(t, &cfg).await?;
            table = Some(soak::markdown(kind.label(), &result));
            Ok(result.record)
        });
        emit(&mut rep, "soak", kind.label(), r.await);
        tables.extend(table);
    }
    if !args.json_only {
        println!(
            "\n## durably soak\n\n`{}`\n\nMachine at start: {machine_at_start}; at the end: load average {}.",
            command_line(),
            summary::load()
        );
        for t in tables {
            println!("{t}");
        }
    }
    let errors = rep.own_errors();
    drop(tmp);
    if errors > 0 {
        anyhow::bail!("the soak had {errors} errors or lost runs (see \"first_errors\" in the JSON lines)");
    }
    Ok(())
}

async fn bench(o: Options) -> anyhow::Result<()> {
    let sizes = Sizes::from(&o);
    let on = |g: Group| o.only.is_empty() || o.only.contains(&g);
    let machine_at_start = summary::machine();
    let command = command_line();
    let tmp = tempfile::Builder::new().prefix("durably-bench-").tempdir()?;
    let dir = match &o.workdir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => tmp.path().to_owned(),
    };
    let poll = Duration::from_millis(o.poll_ms);
    let mut rep = Reporter::default();
    eprintln!("durably-bench: {machine_at_start}; sizes {sizes:?}; files in {}", dir.display());

    if on(Group::Floor) {
        let d = dir.clone();
        let s = sizes;
        let floors = tokio::task::spawn_blocking(move || {
            let one = s.floor_rows;
            // As many commits after a pause as the agent scenario makes writes in one run, after
            // a pause of its model latency.
            let idle = Duration::from_millis(s.agent_latency_ms.max(1));
            let idle_rows = (2 * s.agent_turns).max(10);
            vec![
                ("floor_fdatasync", floor::best_of(s.repeat, |_| floor::fdatasync(&d, one.min(1000)))),
                ("floor_wal_full_1", floor::best_of(s.repeat, |_| floor::commits(&d, "FULL", one, 1))),
                ("floor_wal_normal_1", floor::best_of(s.repeat, |_| floor::commits(&d, "NORMAL", one, 1))),
                ("floor_wal_full_100", floor::commits(&d, "FULL", s.floor_batch_rows, 100)),
                ("floor_wal_normal_100", floor::commits(&d, "NORMAL", s.floor_batch_rows, 100)),
                ("floor_select", floor::select(&d, s.steps.max(one))),
                ("floor_wal_full_1_after_idle", floor::commits_after_idle(&d, "FULL", idle_rows, idle)),
                ("floor_wal_normal_1_after_idle", floor::commits_after_idle(&d, "NORMAL", idle_rows, idle)),
            ]
        })
        .await?;
        for (name, r) in floors {
            emit(&mut rep, name, report::FLOOR, r);
        }
        // A raw round trip per server store selected.
        for kind in o.stores.iter().copied() {
            let _ = kind;
            #[cfg(feature = "redis")]
            if kind == StoreKind::Redis {
                let ns = format!("durably_bench_{}_floor", std::process::id());
                let r = servers::redis_set_floor(&stores::redis_url(), &ns, sizes.floor_rows).await;
                emit(&mut rep, "floor_redis_set", report::FLOOR, r);
            }
            #[cfg(feature = "postgres")]
            if kind == StoreKind::Postgres {
                let ns = format!("durably_bench_{}_floor", std::process::id());
                let r = servers::postgres_insert_floor(&stores::postgres_url(), &ns, sizes.floor_rows).await;
                emit(&mut rep, "floor_postgres_insert", report::FLOOR, r);
            }
        }
    }

    if on(Group::Overhead) {
        for kind in o.stores.iter().copied() {
            let Some(durability) = kind.durability() else { continue };
            let label = if kind == StoreKind::SqliteFull { "full" } else { "normal" };
            let path = dir.join(format!("overhead-{label}.db"));
            let n = sizes.floor_rows;
            let mut raw: Option<Record> = None;
            let mut store: Option<Record> = None;
            let mut failure = None;
            // Alternate the two, keeping the best of each, so that both see the same disk.
            for _ in 0..sizes.repeat.max(1) {
                match floor::store_schema_commits(path.clone(), durability, n).await {
                    Ok(r) if raw.as_ref().is_none_or(|b| r.total_ms < b.total_ms) => raw = Some(r),
                    Ok(_) => {}
                    Err(e) => failure = Some(("floor_store_schema", e)),
                }
                match floor::store_saves(path.clone(), durability, n).await {
                    Ok(r) if store.as_ref().is_none_or(|b| r.total_ms < b.total_ms) => store = Some(r),
                    Ok(_) => {}
                    Err(e) => failure = Some(("store_save_step", e)),
                }
            }
            for r in [raw, store].into_iter().flatten() {
                rep.emit(r.with("repeat", sizes.repeat));
            }
            if let Some((name, e)) = failure {
                emit(&mut rep, name, kind.label(), Err(e));
            }
        }
    }

    for kind in o.stores.iter().copied() {
        let label = kind.label();
        let fresh = |scenario: &str| Target::fresh(kind, &dir, scenario, poll);
        if on(Group::Steps) {
            let d = dir.clone();
            let recs = engine::steps(
                kind,
                |round| Target::fresh(kind, &d, &format!("steps{round}"), poll),
                sizes.steps,
                sizes.repeat,
            )
            .await;
            for r in recs {
                rep.emit(r);
            }
        }
        if on(Group::Workflows) {
            let r = in_target(fresh("workflows"), async |t| {
                engine::workflows(t, sizes.workflows, sizes.wf_tasks).await
            });
            emit(&mut rep, "workflows_fresh", label, r.await);
        }
        if on(Group::Concurrent) {
            let r = in_target(fresh("concurrent"), async |t| {
                engine::concurrent(t, sizes.concurrent, sizes.conc_tasks).await
            });
            emit(&mut rep, "concurrent_workflows", label, r.await);
        }
        if on(Group::Signal) {
            let r = in_target(fresh("signal"), async |t| signals::inproc(t, sizes.signal_inproc).await);
            emit(&mut rep, "signal_latency_inproc", label, r.await);
            if kind.shared() {
                let r = in_target(fresh("signal-object"), async |t| {
                    signals::poll_object(t, sizes.signal_poll, o.seed).await
                });
                emit(&mut rep, "signal_latency_poll_object", label, r.await);
                let r = in_target(fresh("signal-process"), async |t| {
                    signals::poll_process(t, sizes.signal_poll, o.seed).await
                });
                emit(&mut rep, "signal_latency_poll_process", label, r.await);
            }
        }
        if on(Group::Agent) {
            #[cfg(feature = "agent")]
            {
                let bare = !rep.records.iter().any(|r| r.store == agents::BARE);
                let r = in_target_many(fresh("agent"), async |t| {
                    let latency = Duration::from_millis(sizes.agent_latency_ms);
                    agents::agents(t, sizes.agent_turns, latency, sizes.repeat, bare).await
                });
                match r.await {
                    Ok(recs) => recs.into_iter().for_each(|r| rep.emit(r)),
                    Err(e) => emit(&mut rep, "agent_durable", label, Err(e)),
                }
                let turns: &[u64] = if o.quick { &[3, 6] } else { &[25, 50, 100] };
                let r = in_target_many(fresh("session"), async |t| {
                    let latency = Duration::from_millis(sizes.agent_latency_ms);
                    sessions::sessions(t, turns, latency).await
                });
                match r.await {
                    Ok(recs) => recs.into_iter().for_each(|r| rep.emit(r)),
                    Err(e) => emit(&mut rep, "session_turns", label, Err(e)),
                }
            }
            #[cfg(not(feature = "agent"))]
            if !o.only.is_empty() {
                eprintln!("durably-bench: the agent scenarios need the `agent` feature");
            }
        }
        if on(Group::Waiting) {
            let r = in_target(fresh("waiting"), async |t| waiting::waiting(t, sizes.waiting).await);
            emit(&mut rep, "waiting_runs", label, r.await);
        }
        if on(Group::Queues) {
            for workers in [1, 4] {
                let r = in_target(fresh(&format!("queue-{workers}w")), async |t| {
                    queues::throughput(t, sizes.queue_runs, workers).await
                });
                emit(&mut rep, &format!("queue_throughput_{workers}w"), label, r.await);
            }
            let r = in_target(fresh("enqueue-to-start"), async |t| {
                queues::enqueue_to_start(t, sizes.enqueue_trials).await
            });
            emit(&mut rep, "enqueue_to_start", label, r.await);
            let r = in_target(fresh("fan-out"), async |t| queues::fan_out(t, sizes.fan_out).await);
            emit(&mut rep, "fan_out", label, r.await);
            let r = in_target(fresh("parked"), async |t| queues::parked(t, sizes.parked).await);
            emit(&mut rep, "parked_runs", label, r.await);
        }
    }

    if let Some(py) = &o.compare_python {
        let script = o.python_script.clone().or_else(python::default_script);
        match script {
            None => {
                let e = anyhow::anyhow!("python_durable_bench.py not found: pass --python-script");
                emit(&mut rep, "python", report::PYTHON, Err(e));
            }
            Some(script) => {
                let mut only = Vec::new();
                for (g, name) in [
                    (Group::Steps, "steps"),
                    (Group::Workflows, "workflows"),
                    (Group::Concurrent, "concurrent"),
                    (Group::Signal, "signal"),
                ] {
                    if on(g) {
                        only.push(name);
                    }
                }
                let args = python::PythonArgs {
                    only,
                    steps: sizes.steps,
                    workflows: sizes.workflows,
                    wf_tasks: sizes.wf_tasks,
                    concurrent: sizes.concurrent,
                    conc_tasks: sizes.conc_tasks,
                    signal_inproc: sizes.signal_inproc,
                    signal_poll: sizes.signal_poll.min(6),
                    seed: o.seed,
                };
                let mut got = Vec::new();
                let result = python::run(py, &script, &dir.join("python"), &args, |r| got.push(r)).await;
                // Python's records are printed after the run so as not to interleave with its stderr.
                for r in got {
                    rep.emit(r);
                }
                if let Err(e) = result {
                    // python-durable failing is its result, not durably's error.
                    eprintln!("durably-bench: python-durable: {e:#}");
                }
            }
        }
    }

    if let Some(program) = &o.compare_peers {
        match program.clone().or_else(peers::default_manifest) {
            None => {
                let e = anyhow::anyhow!("bench/peers/Cargo.toml not found: pass --compare-peers PATH");
                emit(&mut rep, "peers", "durably-peers", Err(e));
            }
            Some(program) => {
                let mut only = Vec::new();
                for (g, name) in [
                    (Group::Steps, "steps"),
                    (Group::Workflows, "workflows"),
                    (Group::Concurrent, "concurrent"),
                ] {
                    if on(g) {
                        only.push(name);
                    }
                }
                let args = peers::PeersArgs {
                    peers: o.peers.clone(),
                    only,
                    steps: sizes.steps,
                    workflows: sizes.workflows,
                    wf_tasks: sizes.wf_tasks,
                    concurrent: sizes.concurrent,
                    conc_tasks: sizes.conc_tasks,
                    repeat: sizes.repeat,
                };
                let mut got = Vec::new();
                let result = peers::run(&program, &dir.join("peers"), &args, |r| got.push(r)).await;
                for r in got {
                    rep.emit(r);
                }
                if let Err(e) = result {
                    // A peer failing is its result, not durably's error.
                    eprintln!("durably-bench: durably-peers: {e:#}");
                }
            }
        }
    }

    let chart = match &o.chart {
        Some(path) => std::fs::write(path, chart::svg(&rep))
            .map(|()| eprintln!("durably-bench: chart written to {}", path.display()))
            .map_err(|e| anyhow::anyhow!("cannot write the chart to {}: {e}", path.display())),
        None => Ok(()),
    };

    if !o.json_only {
        println!("{}", summary::markdown(&rep, &command, &machine_at_start));
    }
    let errors = rep.own_errors();
    drop(tmp);
    if errors > 0 {
        anyhow::bail!("{errors} errors in durably's scenarios (see the records with \"errors\" > 0)");
    }
    chart
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn quick_shrinks_sizes_but_explicit_ones_win() {
        let cli = Cli::try_parse_from(["durably-bench", "--quick", "--steps", "7"]).unwrap();
        let s = Sizes::from(&cli.opts);
        assert_eq!(s.steps, 7);
        assert_eq!(s.concurrent, 50);
        assert_eq!(s.repeat, 1);
        let cli = Cli::try_parse_from(["durably-bench"]).unwrap();
        let s = Sizes::from(&cli.opts);
        assert_eq!((s.concurrent, s.conc_tasks, s.waiting), (1000, 10, 10_000), "the issue's target sizes");
        assert_eq!(cli.opts.stores, vec![StoreKind::SqliteFull, StoreKind::SqliteNormal, StoreKind::Memory]);
    }

    #[test]
    fn stores_and_groups_are_comma_lists() {
        let cli = Cli::try_parse_from([
            "durably-bench",
            "--stores",
            "memory,sqlite-normal",
            "--only",
            "steps,signal",
        ])
        .unwrap();
        assert_eq!(cli.opts.stores, vec![StoreKind::Memory, StoreKind::SqliteNormal]);
        assert_eq!(cli.opts.only, vec![Group::Steps, Group::Signal]);
        assert!(Cli::try_parse_from(["durably-bench", "--stores", "oracle"]).is_err());
    }

    #[test]
    fn compare_peers_takes_an_optional_program_and_chart_a_file() {
        let cli = Cli::try_parse_from(["durably-bench", "--compare-peers", "--chart", "c.svg"]).unwrap();
        assert_eq!(cli.opts.compare_peers, Some(None), "no program: bench/peers/Cargo.toml");
        assert_eq!(cli.opts.chart, Some(PathBuf::from("c.svg")));
        assert_eq!(cli.opts.peers, ["durare-sqlite", "durare-postgres", "dbos-postgres"]);
        let cli = Cli::try_parse_from([
            "durably-bench",
            "--compare-peers",
            "bench/peers/target/release/durably-peers",
            "--peers",
            "dbos-postgres",
        ])
        .unwrap();
        assert_eq!(
            cli.opts.compare_peers,
            Some(Some(PathBuf::from("bench/peers/target/release/durably-peers")))
        );
        assert_eq!(cli.opts.peers, ["dbos-postgres"]);
        let cli = Cli::try_parse_from(["durably-bench"]).unwrap();
        assert_eq!((cli.opts.compare_peers, cli.opts.chart), (None, None));
    }

    #[test]
    fn children_parse_their_own_arguments() {
        let cli = Cli::try_parse_from([
            "durably-bench",
            "waiting-child",
            "--store",
            "sqlite-full",
            "--location",
            "/tmp/x.db",
            "--runs",
            "3",
            "--poll-ms",
            "100",
            "--namespace",
            "ns",
        ])
        .unwrap();
        assert!(matches!(cli.command, Some(Command::WaitingChild(ChildArgs { runs: 3, .. }))));
    }

    #[test]
    fn soak_is_a_subcommand_with_its_own_stores_and_duration() {
        let cli = Cli::try_parse_from([
            "durably-bench",
            "soak",
            "--seconds",
            "3",
            "--stores",
            "sqlite-full,memory",
            "--concurrency",
            "8",
        ])
        .unwrap();
        let Some(Command::Soak(args)) = cli.command else { panic!("not the soak: {:?}", cli.command) };
        assert_eq!(args.stores, vec![StoreKind::SqliteFull, StoreKind::Memory]);
        let cfg = args.config();
        assert_eq!((cfg.duration, cfg.concurrency), (Duration::from_secs(3), 8));
        let cli = Cli::try_parse_from(["durably-bench", "soak", "--minutes", "5"]).unwrap();
        let Some(Command::Soak(args)) = cli.command else { panic!("not the soak") };
        assert_eq!(args.config().duration, Duration::from_secs(300));
        assert_eq!(args.stores, vec![StoreKind::SqliteFull]);
        assert!(Cli::try_parse_from(["durably-bench", "soak", "--minutes", "1", "--seconds", "3"]).is_err());
        // The normal benchmark never soaks, and its options are not the soak's.
        assert!(Cli::try_parse_from(["durably-bench"]).unwrap().command.is_none());
        assert!(Cli::try_parse_from(["durably-bench", "--quick", "soak"]).is_err());
    }
}
