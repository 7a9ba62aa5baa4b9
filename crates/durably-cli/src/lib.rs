//! The `durably` command line: inspect runs, answer signals and approvals, cancel, fork, purge,
//! export and import runs, serve a web dashboard (`durably ui`) and the HTTP API with the
//! dashboard behind a token (`durably serve`). The binary only parses;
//! everything happens here, on a [`Workflow`] over the store named by `--store`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use durably_core::{RunExport, RunFilter, RunRecord, RunStatus, Workflow, now_ms};

pub mod format;
pub mod queues;
pub mod schedules;
pub mod sessions;
pub mod store;
pub mod ui;

pub use store::StoreUrl;

/// The app name the CLI's engine uses; it executes no workflow, so it only appears in logs.
const APP: &str = "durably-cli";

/// Inspect and operate durably runs.
#[derive(Debug, Parser)]
#[command(name = "durably", version, about)]
pub struct Cli {
    /// Where the runs are: `sqlite:PATH`, `redis://HOST[:PORT]` or `postgres://USER@HOST/DB`.
    #[arg(long, global = true, env = "DURABLY_STORE", default_value = "sqlite:./durably.db")]
    pub store: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List runs, newest first.
    Runs {
        /// Only runs in this status (enqueued, running, waiting, completed, failed, cancelled).
        #[arg(long)]
        status: Option<String>,
        /// Only runs of this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// Only runs enqueued in this queue.
        #[arg(long)]
        queue: Option<String>,
        /// Only runs created within this age (45s, 30m, 2h, 7d, 1w).
        #[arg(long)]
        since: Option<String>,
        /// At most this many runs.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a run (its record, steps and signals), or a session's messages.
    Show {
        /// The run id, or a session id (`<session>` or `<agent>:<session>`).
        run: String,
        /// The run as an export document (JSON) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the durable conversations (agent sessions), most recently active first.
    Sessions {
        /// Only the sessions of this agent.
        #[arg(long)]
        agent: Option<String>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the queues of the store: runs enqueued, executing and parked, and the oldest wait.
    Queues {
        /// Only this queue.
        #[arg(long)]
        queue: Option<String>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the cron schedules whose ticks (runs `<schedule>@<tick time>`) are in the store.
    Schedules {
        /// Look at the newest this many runs.
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List runs waiting on a signal or an approval.
    Pending {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Deliver a signal (e.g. an approval) to a run.
    Signal {
        /// The run id.
        run: String,
        /// The signal name.
        name: String,
        /// The payload, as JSON (e.g. '{"approved": true}').
        payload: String,
    },
    /// Cancel a run: it stops at its next step, wait or sleep.
    Cancel {
        /// The run id.
        run: String,
    },
    /// Fork a run from a step: a new run holding the steps before it.
    Fork {
        /// The run id.
        run: String,
        /// The first step to run again.
        #[arg(long = "from")]
        from_step: String,
        /// The new run id (default `<RUN>-fork-<millis>`).
        #[arg(long = "id")]
        new_id: Option<String>,
    },
    /// Delete finished runs older than an age.
    Purge {
        /// Age since the run last changed (45s, 30m, 2h, 7d, 1w).
        #[arg(long)]
        older_than: String,
        /// Only these statuses (repeatable; default completed, failed and cancelled).
        #[arg(long = "status")]
        statuses: Vec<String>,
    },
    /// Write a run (record, input, steps, signals) as JSON.
    Export {
        /// The run id.
        run: String,
        /// The file to write (default: standard output).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Load a run exported with `durably export`.
    Import {
        /// The JSON file.
        file: PathBuf,
        /// Load it under another run id.
        #[arg(long = "id")]
        new_id: Option<String>,
    },
    /// Serve the web dashboard.
    Ui {
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
        /// Also answer requests addressed to NAME (`host` or `host:port`), as when the
        /// dashboard is reached by a DNS name or through a proxy; repeatable. Without it only
        /// the bound address (and `localhost` on loopback) is answered.
        #[arg(long = "allowed-host", value_name = "NAME")]
        allowed_hosts: Vec<String>,
    },
    /// Serve the HTTP API (described at /openapi.json) and the dashboard, behind a bearer token.
    Serve {
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
        /// Also answer requests addressed to NAME (`host` or `host:port`); repeatable.
        #[arg(long = "allowed-host", value_name = "NAME")]
        allowed_hosts: Vec<String>,
        /// Read the API token from this file (default: the DURABLY_TOKEN environment variable).
        #[arg(long, value_name = "PATH")]
        token_file: Option<PathBuf>,
        /// Serve without a token; refused unless the address is a loopback one.
        #[arg(long)]
        insecure_loopback: bool,
    },
}

/// The environment variable `durably serve` reads its token from.
pub const TOKEN_ENV: &str = "DURABLY_TOKEN";

/// Logs to standard error, filtered by `RUST_LOG` (default: warnings).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Opens the store and an engine on it.
pub async fn open_workflow(url: &str, create: bool) -> Result<Workflow> {
    let store = StoreUrl::parse(url)?.open(create).await?;
    Ok(Workflow::builder(APP).shared_store(store).build())
}

fn parse_status(text: &str) -> Result<RunStatus> {
    text.parse::<RunStatus>().map_err(|e| anyhow::anyhow!("{e}"))
}

async fn existing_run(wf: &Workflow, run_id: &str) -> Result<RunRecord> {
    wf.get_run(run_id).await?.with_context(|| format!("no run with id `{run_id}` in this store"))
}

/// Runs one command, writing its report to `out`.
pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<()> {
    let creates = matches!(cli.command, Command::Import { .. });
    let wf = open_workflow(&cli.store, creates).await?;
    match cli.command {
        Command::Runs { status, workflow, queue, since, limit, json } => {
            let mut filter = RunFilter::new();
            if let Some(status) = status {
                filter = filter.status(parse_status(&status)?);
            }
            if let Some(workflow) = workflow {
                filter = filter.workflow(workflow);
            }
            if let Some(queue) = queue {
                filter = filter.queue(queue);
            }
            let since_ms = since.as_deref().map(format::parse_age).transpose()?;
            if since_ms.is_none() {
                filter = filter.limit(limit);
            }
            let now = now_ms();
            let mut runs = wf.list_runs(&filter).await?;
            if let Some(age) = since_ms {
                runs.retain(|r| r.created_at_ms >= now.saturating_sub(age));
                runs.truncate(limit);
            }
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&runs)?)?;
            } else if runs.is_empty() {
                writeln!(out, "no runs")?;
            } else {
                write!(out, "{}", runs_table(&runs, now))?;
            }
        }
        Command::Show { run, json } => {
            if wf.get_run(&run).await?.is_none() {
                let found = sessions::find(&wf, &run).await?;
                if !found.is_empty() {
                    return sessions::show(&wf, &found, json, out).await;
                }
            }
            let doc = wf.export(&run).await.map_err(|e| not_found(e, &run))?;
            if json {
                writeln!(out, "{}", doc.to_json()?)?;
            } else {
                write!(out, "{}", show_text(&doc))?;
            }
        }
        Command::Sessions { agent, json } => sessions::list(&wf, agent.as_deref(), json, out).await?,
        Command::Queues { queue, json } => queues::list(&wf, queue.as_deref(), json, out).await?,
        Command::Schedules { limit, json } => schedules::list(&wf, limit, json, out).await?,
        Command::Pending { json } => {
            let runs = wf.list_runs(&RunFilter::new().status(RunStatus::Waiting)).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&runs)?)?;
            } else if runs.is_empty() {
                writeln!(out, "no runs waiting")?;
            } else {
                let now = now_ms();
                let rows: Vec<Vec<String>> = runs
                    .iter()
                    .map(|r| {
                        vec![
                            r.run_id.clone(),
                            r.workflow.clone(),
                            r.waiting_on.clone().unwrap_or_else(|| "?".into()),
                            format!("{} ago", format::duration_ms(now - r.updated_at_ms)),
                        ]
                    })
                    .collect();
                write!(out, "{}", format::table(&["RUN", "WORKFLOW", "WAITING ON", "SINCE"], &rows))?;
            }
        }
        Command::Signal { run, name, payload } => {
            existing_run(&wf, &run).await?;
            let value: serde_json::Value = serde_json::from_str(&payload)
                .with_context(|| format!("the payload of signal `{name}` is not JSON: {payload}"))?;
            if wf.complete(&run, &name, &value).await? {
                writeln!(out, "delivered signal `{name}` to run `{run}`")?;
            } else {
                writeln!(
                    out,
                    "signal `{name}` was already delivered to run `{run}`; the first payload stays"
                )?;
            }
        }
        Command::Cancel { run } => {
            let record = existing_run(&wf, &run).await?;
            if wf.cancel(&run).await? {
                writeln!(out, "cancelled run `{run}`: it stops at its next step, wait or sleep")?;
            } else {
                writeln!(out, "run `{run}` is already {}; nothing to cancel", record.status)?;
            }
        }
        Command::Fork { run, from_step, new_id } => {
            let new_id = new_id.unwrap_or_else(|| format!("{run}-fork-{}", now_ms()));
            wf.fork(&run, &from_step, &new_id).await.map_err(|e| not_found(e, &run))?;
            let copied = wf.list_steps(&new_id).await?.len();
            writeln!(
                out,
                "forked run `{run}` as `{new_id}` with {copied} step(s) before `{from_step}`; execute `{new_id}` \
                 to run again from `{from_step}`"
            )?;
        }
        Command::Purge { older_than, statuses } => {
            let age = format::parse_age(&older_than)?;
            let statuses = statuses.iter().map(|s| parse_status(s)).collect::<Result<Vec<_>>>()?;
            let n = wf.purge(Duration::from_millis(u64::try_from(age).unwrap_or(0)), &statuses).await?;
            writeln!(out, "purged {n} run(s) older than {older_than}")?;
        }
        Command::Export { run, output } => {
            let json = wf.export(&run).await.map_err(|e| not_found(e, &run))?.to_json()?;
            match output {
                Some(path) => {
                    std::fs::write(&path, format!("{json}\n"))
                        .with_context(|| format!("could not write `{}`", path.display()))?;
                    writeln!(out, "exported run `{run}` to {}", path.display())?;
                }
                None => writeln!(out, "{json}")?,
            }
        }
        Command::Import { file, new_id } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("could not read `{}`", file.display()))?;
            let mut doc = RunExport::from_json(&text)
                .with_context(|| format!("`{}` is not a durably run export", file.display()))?;
            if let Some(id) = new_id {
                doc = doc.with_run_id(id);
            }
            let run = wf.import(&doc).await?;
            writeln!(
                out,
                "imported run `{}` (workflow `{}`, {}, {} step(s), {} signal(s))",
                run.run_id,
                run.workflow,
                run.status,
                doc.steps.len(),
                doc.signals.len()
            )?;
        }
        Command::Ui { addr, allowed_hosts } => {
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .with_context(|| format!("could not listen on {addr}"))?;
            let mut hosts = ui::AllowedHosts::new(listener.local_addr()?);
            for name in &allowed_hosts {
                hosts = hosts.allow(name)?;
            }
            writeln!(out, "durably dashboard on http://{}/", listener.local_addr()?)?;
            out.flush()?;
            ui::serve_with(listener, wf, hosts).await?;
        }
        Command::Serve { addr, allowed_hosts, token_file, insecure_loopback } => {
            let auth = match token_file {
                Some(path) => durably_server::Auth::Token(durably_server::Token::from_file(path)?),
                None if std::env::var_os(TOKEN_ENV).is_some() => {
                    durably_server::Auth::Token(durably_server::Token::from_env(TOKEN_ENV)?)
                }
                None if insecure_loopback => durably_server::Auth::InsecureLoopback,
                None => bail!(
                    "durably serve needs a token: --token-file PATH or {TOKEN_ENV} (or, on a loopback address \
                     only, --insecure-loopback)"
                ),
            };
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .with_context(|| format!("could not listen on {addr}"))?;
            let bound = listener.local_addr()?;
            let mut config = durably_server::ServerConfig::new(bound, auth)?;
            for name in &allowed_hosts {
                config = config.allow_host(name)?;
            }
            writeln!(out, "durably API on http://{bound}/api (OpenAPI at /openapi.json, dashboard at /)")?;
            out.flush()?;
            durably_server::serve(listener, durably_server::secure(ui::app(wf), &config)).await?;
        }
    }
    Ok(())
}

/// `RunNotFound` said the way the other commands say it.
fn not_found(e: durably_core::Error, run: &str) -> anyhow::Error {
    match e {
        durably_core::Error::RunNotFound { run_id } => {
            anyhow::anyhow!("no run with id `{run_id}` in this store")
        }
        other => anyhow::Error::new(other).context(format!("run `{run}`")),
    }
}

fn runs_table(runs: &[RunRecord], now: i64) -> String {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let note = match r.status {
                RunStatus::Waiting => format!("waiting on {}", r.waiting_on.as_deref().unwrap_or("?")),
                RunStatus::Failed => format::preview(r.error.as_deref().unwrap_or(""), 60),
                RunStatus::Completed => format::preview(r.output.as_deref().unwrap_or(""), 40),
                _ => String::new(),
            };
            vec![
                r.run_id.clone(),
                r.workflow.clone(),
                r.status.to_string(),
                format::time(r.created_at_ms),
                format!("{} ago", format::duration_ms(now - r.updated_at_ms)),
                note,
            ]
        })
        .collect();
    format::table(&["RUN", "WORKFLOW", "STATUS", "CREATED (UTC)", "UPDATED", "NOTE"], &rows)
}

/// The text of `durably show`.
pub fn show_text(doc: &RunExport) -> String {
    let r = &doc.run;
    let mut s = String::new();
    let mut line = |k: &str, v: &str| s.push_str(&format!("{k:<10}{v}\n"));
    line("run", &r.run_id);
    line("workflow", &r.workflow);
    line("status", r.status.as_str());
    line("created", &format!("{} UTC", format::time(r.created_at_ms)));
    line("updated", &format!("{} UTC", format::time(r.updated_at_ms)));
    if let Some(w) = &r.waiting_on {
        line("waiting", &format!("on signal `{w}`"));
    }
    if let Some(i) = &r.input {
        line("input", &format::preview(i, 100));
    }
    if let Some(o) = &r.output {
        line("output", &format::preview(o, 100));
    }
    if let Some(e) = &r.error {
        line("error", &format::preview(e, 200));
    }
    s.push('\n');
    if doc.steps.is_empty() {
        s.push_str("no steps recorded\n");
    } else {
        let rows: Vec<Vec<String>> = doc
            .steps
            .iter()
            .map(|st| {
                let duration = st
                    .finished_at_ms
                    .map(|f| format::duration_ms(f - st.started_at_ms))
                    .unwrap_or_else(|| "-".into());
                let value = match (&st.value, &st.error) {
                    (_, Some(e)) if st.status != durably_core::StepStatus::Completed => {
                        format!("error: {}", format::preview(e, 60))
                    }
                    (Some(v), _) => format::preview(v, 60),
                    (None, _) => String::new(),
                };
                vec![
                    st.step_id.clone(),
                    st.name.clone(),
                    st.status.to_string(),
                    st.attempts.to_string(),
                    duration,
                    value,
                ]
            })
            .collect();
        s.push_str(&format::table(&["STEP", "NAME", "STATUS", "ATTEMPTS", "DURATION", "VALUE"], &rows));
    }
    if !doc.signals.is_empty() {
        s.push('\n');
        let rows: Vec<Vec<String>> = doc
            .signals
            .iter()
            .map(|sig| {
                // The engine's own signals are shown as such, not as ones a user delivered.
                let name = if durably_core::is_internal_signal(&sig.name) {
                    format!("{} (internal)", sig.name)
                } else {
                    sig.name.clone()
                };
                vec![name, format::time(sig.delivered_at_ms), format::preview(&sig.payload, 60)]
            })
            .collect();
        s.push_str(&format::table(&["SIGNAL", "DELIVERED (UTC)", "PAYLOAD"], &rows));
    }
    s
}
