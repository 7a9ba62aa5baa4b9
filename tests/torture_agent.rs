//! Crash torture of an agent run with tools: an agent (the OpenAI agent, and the
//! rig `DurableAgent` with the `rig` feature) runs a tool loop of [`TOOLS`] tool calls in a
//! child process that is killed with SIGKILL at a random moment, again and again, until the
//! run completes. The mock model lives in this (parent) process, so it survives the kills and
//! sees every request; it answers from the conversation in the request (a
//! [responder](durably_testkit::mock_openai#responders)), as a real model would, so a resumed
//! run gets the same replies whatever was sent before the kill.
//!
//! The run has `2 * TOOLS + 1` calls in a fixed order, numbered here: model call `p` (sent with
//! `p` tool results, step `<agent>.model#<p + 1>`) is call `2p`, tool call `n` (from 1, step
//! `<agent>.tool.work#<n>.<call id>`) is call `2n - 1`. Each child sends its own API key and
//! logs its tool executions under it, so every request and execution is charged to the child
//! that made it. For every child, against the steps that had committed before it started:
//!
//! - the committed calls are a prefix of the run (calls commit in order);
//! - the child makes exactly the calls after that prefix, in a contiguous range, each once:
//!   no committed model call is requested again and no committed tool is executed again
//!   (on Redis and PostgreSQL the commit of the call in flight at the kill may reach the
//!   server after the kill; the child may then start one call later, counted as a late commit);
//! - at most one of its calls (the one in flight at the previous kill) had been made by an
//!   earlier child, and only as its first call;
//! - the SQLite file passes `PRAGMA integrity_check` after every kill;
//! - the run finishes with the final answer of a crash-free run; executing it once more sends
//!   no request and executes no tool.
//!
//! Totals are printed as `torture-agent <agent> <store>: Totals { .. }`; model requests =
//! `(TOOLS + 1) * runs + re_requests`, tool executions = `TOOLS * runs + re_executions`, and
//! `re_requests + re_executions <= kills`.
//!
//! `.ci/run` runs a few kills per store (`DURABLY_TORTURE_KILLS`, default 15); the full run is
//! `DURABLY_TORTURE_KILLS=300 cargo test --release --features openai,rig,redis,postgres
//! --test torture_agent -- --nocapture --test-threads=1`.
#![cfg(feature = "openai")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use durably::agent::TaskConfig;
use durably::agent::openai::{OpenAiAgent, Tool};
use durably::backoff::constant;
use durably::{StepStatus, Workflow};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use serde_json::{Value, json};

#[path = "common/process.rs"]
mod process;
#[cfg(any(feature = "redis", feature = "postgres"))]
use process::service;
use process::{ChildProcess, ExecLog, StoreSpec};

/// Tool calls per run, one per model turn.
const TOOLS: u32 = 8;
/// Calls per run: `TOOLS + 1` model calls and `TOOLS` tool calls.
const CALLS: u32 = 2 * TOOLS + 1;
const AGENT: &str = "tortured";
const PROMPT: &str = "Do the eight pieces of work in order, then report.";
/// Kills per run at most; then the run is left to finish.
const KILLS_PER_RUN: u32 = 12;

/// Kills per store: small by default, `DURABLY_TORTURE_KILLS` for the full run.
fn kills_wanted() -> u32 {
    std::env::var("DURABLY_TORTURE_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(15)
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
pub(crate) struct WorkArgs {
    /// Which piece of work, from 1.
    pub(crate) n: u32,
}

/// The tool's body: logs `<key> <n>`, synced, before it works, so the parent sees every
/// execution that began.
async fn work(log: ExecLog, key: String, n: u32) -> std::io::Result<String> {
    log.append(&format!("{key} {n}"))?;
    // Long enough for kills to land inside tool bodies as well as between steps.
    tokio::time::sleep(Duration::from_micros(500 + u64::from(n % 3) * 300)).await;
    Ok(format!("work {n} done"))
}

/// Which agent runs the tool loop.
#[derive(Clone, Copy, Debug)]
enum Kind {
    OpenAi,
    #[cfg(feature = "rig")]
    Rig,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::OpenAi => "openai",
            #[cfg(feature = "rig")]
            Kind::Rig => "rig",
        }
    }

    fn parse(name: &str) -> Kind {
        match name {
            "openai" => Kind::OpenAi,
            #[cfg(feature = "rig")]
            "rig" => Kind::Rig,
            other => panic!("unknown agent kind `{other}`"),
        }
    }

    /// Runs (or resumes) the agent run `run_id` with the API key `key`, no retries; returns
    /// its final answer.
    async fn run(
        self,
        wf: &Workflow,
        base_url: &str,
        key: &str,
        log: ExecLog,
        run_id: &str,
    ) -> durably::Result<String> {
        let no_retries = || TaskConfig::new(0, constant(0.0));
        match self {
            Kind::OpenAi => {
                let who = key.to_owned();
                let tool = Tool::new("work", "Do one piece of work", move |a: WorkArgs| {
                    work(log.clone(), who.clone(), a.n)
                });
                let agent = OpenAiAgent::builder(wf)
                    .name(AGENT)
                    .api_base(base_url)
                    .api_key(key)
                    .tool(tool)
                    .max_turns(TOOLS + 2)
                    .model_config(no_retries())
                    .tool_config(no_retries())
                    .build();
                Ok(agent.run_with_id(PROMPT, run_id).await?.output)
            }
            #[cfg(feature = "rig")]
            Kind::Rig => {
                use durably::agent::rig::rig_core::providers::openai::OpenAIConfig;
                let model =
                    OpenAIConfig::new(key).with_base_url(base_url.to_owned()).client().chat("gpt-4o-mini");
                let tool = rig_work::Work { log, key: key.to_owned() };
                let agent = durably::agent::rig::DurableAgent::new(model, wf, move |b| {
                    b.preamble("Do the work you are asked for.").tool(tool.clone())
                })
                .name(AGENT)
                .max_turns(TOOLS as usize + 2)
                .model_config(no_retries())
                .tool_config(no_retries());
                Ok(agent.run_with_id(PROMPT, run_id).await?.output)
            }
        }
    }
}

/// `work` as a rig tool.
#[cfg(feature = "rig")]
mod rig_work {
    use durably::agent::rig::rig_core::tool::{Tool, ToolContext};
    use serde_json::{Value, json};

    use super::{ExecLog, WorkArgs};

    #[derive(Clone)]
    pub(crate) struct Work {
        pub(crate) log: ExecLog,
        pub(crate) key: String,
    }

    impl Tool for Work {
        const NAME: &'static str = "work";
        type Args = WorkArgs;
        type Output = String;
        type Error = std::io::Error;

        fn description(&self) -> String {
            "Do one piece of work".into()
        }

        fn parameters(&self) -> Value {
            json!({ "type": "object", "properties": { "n": { "type": "integer" } }, "required": ["n"] })
        }

        async fn call(&self, _cx: &mut ToolContext, args: WorkArgs) -> std::io::Result<String> {
            super::work(self.log.clone(), self.key.clone(), args.n).await
        }
    }
}

/// The model: with `p < TOOLS` tool results in the conversation it calls `work` for piece
/// `p + 1`, then it reports what the tools returned. Like a strict API it rejects (HTTP 400) a
/// conversation whose tool results do not answer the calls before them in order.
fn model(req: &Value) -> MockReply {
    let messages = req["messages"].as_array().cloned().unwrap_or_default();
    let mut results = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    for m in &messages {
        match m["role"].as_str() {
            Some("assistant") => {
                if !pending.is_empty() {
                    return MockReply::status(400, format!("tool calls {pending:?} were not answered"));
                }
                pending = m["tool_calls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c["id"].as_str().map(str::to_owned))
                    .collect();
            }
            Some("tool") => {
                let id = m["tool_call_id"].as_str().unwrap_or_default();
                if pending.first().map(String::as_str) != Some(id) {
                    return MockReply::status(400, format!("tool result for `{id}` answers no pending call"));
                }
                pending.remove(0);
                let expected = format!("work {} done", results.len() + 1);
                // A string, or content parts: either way the result's text is in it.
                let content = match &m["content"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if !content.contains(&expected) {
                    return MockReply::status(400, format!("tool result `{content}`, expected `{expected}`"));
                }
                results.push(content.to_owned());
            }
            _ => {}
        }
    }
    if !pending.is_empty() {
        return MockReply::status(400, format!("tool calls {pending:?} were not answered"));
    }
    if results.len() < TOOLS as usize {
        MockReply::tool_calls([("work", json!({ "n": results.len() + 1 }))])
    } else {
        MockReply::text(format!("report: {}", results.join(" | ")))
    }
}

/// The child side, started by the torture tests in their own process: runs (or resumes) the
/// agent run and prints its final answer.
#[tokio::test]
#[ignore = "runs only as the child process of the agent torture tests"]
async fn torture_agent_child() {
    let var = |k: &str| std::env::var(k).expect("started by an agent torture test");
    let wf = Workflow::builder("torture-agent").shared_store(StoreSpec::from_env().open().await).build();
    let kind = Kind::parse(&var("DURABLY_TORTURE_AGENT"));
    let log = ExecLog::new(var("DURABLY_TORTURE_LOG"));
    match kind
        .run(&wf, &var("DURABLY_TORTURE_MOCK"), &var("DURABLY_TORTURE_KEY"), log, &var("DURABLY_TORTURE_RUN"))
        .await
    {
        Ok(output) => println!("OUTPUT {output}"),
        Err(e) => println!("ERROR {e}"),
    }
}

/// The final answer of a crash-free run, in memory, against the same model.
async fn crash_free_output(kind: Kind, mock: &MockOpenAi, dir: &Path) -> String {
    let wf = Workflow::builder("torture-agent").build();
    let log = ExecLog::new(dir.join("reference.log"));
    let output = kind.run(&wf, &mock.base_url(), "sk-reference", log, "reference").await.unwrap();
    assert!(output.starts_with("report: ") && output.contains(&format!("work {TOOLS} done")), "{output}");
    output
}

/// The calls whose steps committed, by number (see the module docs).
async fn committed_calls(spec: &StoreSpec, run_id: &str) -> BTreeSet<u32> {
    let wf = Workflow::builder("torture-agent").shared_store(spec.open().await).build();
    let mut calls = BTreeSet::new();
    for step in wf.list_steps(run_id).await.unwrap() {
        // rig records the prompt first (`<agent>.input`): no call, no effect.
        if step.status != StepStatus::Completed || step.step_id == format!("{AGENT}.input") {
            continue;
        }
        // `<agent>.model#<turn>` and `<agent>.tool.work#<turn>.<call id>`; tool `n` is called
        // at turn `n`.
        let (kind, rest) = step.step_id.split_once('#').unwrap_or_else(|| panic!("step {}", step.step_id));
        let turn: u32 = rest.split('.').next().unwrap().parse().unwrap();
        match kind.strip_prefix(AGENT) {
            Some(".model") => calls.insert(2 * (turn - 1)),
            Some(".tool.work") => calls.insert(2 * turn - 1),
            _ => panic!("unexpected step {}", step.step_id),
        };
    }
    calls
}

/// The calls a child made, in the order the mock and the log saw them, by the key it used.
fn calls_by_key(mock: &MockOpenAi, log: &ExecLog) -> BTreeMap<String, Vec<u32>> {
    let mut by_key = BTreeMap::<String, Vec<u32>>::new();
    for (body, headers) in mock.received().iter().zip(mock.headers()) {
        let Some((_, auth)) = headers.iter().find(|(k, _)| k == "authorization") else { continue };
        let key = auth.trim_start_matches("Bearer ").to_owned();
        let results = body["messages"].as_array().unwrap().iter().filter(|m| m["role"] == "tool").count();
        by_key.entry(key).or_default().push(2 * results as u32);
    }
    for line in log.lines() {
        let (key, n) = line.split_once(' ').unwrap();
        by_key.entry(key.to_owned()).or_default().push(2 * n.parse::<u32>().unwrap() - 1);
    }
    by_key
}

fn integrity_check(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let verdict: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(verdict, "ok", "PRAGMA integrity_check after a kill");
}

#[derive(Default, Debug)]
struct Totals {
    kills: u32,
    runs: u32,
    model_requests: u32,
    tool_executions: u32,
    /// Model calls requested again: each was in flight at a kill.
    re_requests: u32,
    /// Tool calls executed again: each was in flight at a kill.
    re_executions: u32,
    /// Kills that landed before the child made a call (store open, lease, replay).
    kills_before_any_call: u32,
    /// Commits of the call in flight at a kill that landed after the kill (server stores).
    late_commits: u32,
    violations: u32,
}

/// One child of a run: its key and the calls committed before it started.
struct Child {
    key: String,
    committed: BTreeSet<u32>,
    killed: bool,
}

struct Torture<'a> {
    kind: Kind,
    mock: &'a MockOpenAi,
    spec: StoreSpec,
    dir: &'a Path,
    label: &'a str,
    /// How long a child takes to make its first call (start-up: process, store, lease,
    /// history load), and the calls of a whole run after that: measured by a calibration run,
    /// then followed (a moving average over the children that finish), since the load of the
    /// machine changes.
    startup: Duration,
    work: Duration,
}

/// When the parent kills a child.
#[derive(Clone, Copy, Debug)]
enum Kill {
    Never,
    /// This long after the start: lands in the start-up or the calls.
    AfterStart(Duration),
    /// This long after the child's first call (a request to the mock or a tool execution):
    /// lands among the calls, or after them while the run's end is recorded.
    AfterFirstCall(Duration),
}

/// How a child ended.
struct Ended {
    /// Its final answer; `None` when it was killed.
    answer: Option<String>,
    /// When its first call was seen, from its start.
    first_call: Option<Duration>,
    /// When it ended, from its start.
    ended: Duration,
}

impl Torture<'_> {
    /// Starts a child on `run_id` and kills it per `kill`, unless it finishes first.
    async fn child(&self, run_id: &str, key: &str, log: &ExecLog, kill: Kill) -> Ended {
        let envs = [
            (process::STORE_ENV, self.spec.to_env()),
            ("DURABLY_TORTURE_AGENT", self.kind.name().to_owned()),
            ("DURABLY_TORTURE_MOCK", self.mock.base_url()),
            ("DURABLY_TORTURE_KEY", key.to_owned()),
            ("DURABLY_TORTURE_LOG", log.0.display().to_string()),
            ("DURABLY_TORTURE_RUN", run_id.to_owned()),
        ];
        let mut child = ChildProcess::spawn("torture_agent_child", key, self.dir, &envs);
        let started = Instant::now();
        let log_len = || std::fs::metadata(&log.0).map_or(0, |m| m.len());
        let (requests_before, log_before) = (self.mock.requests(), log_len());
        let mut first_call = None;
        // Poll, so that the mock (on this runtime) keeps answering while we wait.
        while child.is_running() {
            if first_call.is_none() && (self.mock.requests() > requests_before || log_len() > log_before) {
                first_call = Some(started.elapsed());
            }
            let due = match kill {
                Kill::Never => false,
                Kill::AfterStart(after) => started.elapsed() >= after,
                Kill::AfterFirstCall(after) => first_call.is_some_and(|t| started.elapsed() >= t + after),
            };
            if due {
                child.sigkill();
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "child {key} hangs\n{}", child.output());
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let out = child.output();
        if let Some(e) = out.lines().find_map(|l| l.split_once("ERROR ").map(|(_, e)| e)) {
            panic!("child {key} failed with an error, not a kill: {e}\n{out}");
        }
        let answer = out.lines().find_map(|l| l.split_once("OUTPUT ").map(|(_, a)| a.trim().to_owned()));
        if answer.is_none() {
            assert!(!matches!(kill, Kill::Never), "child {key} printed no answer\n{out}");
        }
        Ended { answer, first_call, ended: started.elapsed() }
    }

    /// Kills children at random moments until the run finishes; checks every child. Returns
    /// the run's final answer.
    async fn one_run(&mut self, n: u32, totals: &mut Totals) -> String {
        let run_id = format!("agent-torture-{n}");
        let log = ExecLog::new(self.dir.join(format!("{run_id}.log")));
        let mut children = Vec::new();
        let answer = loop {
            let key = format!("sk-{}-{n}-{}", self.label, children.len());
            let committed = committed_calls(&self.spec, &run_id).await;
            // One kill in five at any moment of the start-up, the others among the calls left
            // (or just after them).
            let left = f64::from(CALLS - committed.len() as u32 + 1) / f64::from(CALLS);
            let kill = if children.len() >= KILLS_PER_RUN as usize {
                Kill::Never
            } else if fastrand::u8(..5) == 0 {
                Kill::AfterStart(self.startup.mul_f64(1.2 * fastrand::f64()))
            } else {
                Kill::AfterFirstCall(self.work.mul_f64(1.1 * left * fastrand::f64()))
            };
            let ended = self.child(&run_id, &key, &log, kill).await;
            let answer = ended.answer;
            let calls_left = CALLS - committed.len() as u32;
            if let (Some(_), Some(first_call)) = (&answer, ended.first_call) {
                let average = |old: Duration, new: Duration| old.mul_f64(0.7) + new.mul_f64(0.3);
                self.startup = average(self.startup, first_call);
                let whole =
                    (ended.ended - first_call).mul_f64(f64::from(CALLS) / f64::from(calls_left.max(1)));
                self.work = average(self.work, whole);
            }
            if let StoreSpec::Sqlite(db) = &self.spec {
                integrity_check(db);
            }
            children.push(Child { key, committed, killed: answer.is_none() });
            if let Some(answer) = answer {
                break answer;
            }
            totals.kills += 1;
        };
        totals.runs += 1;

        // A finished run replays: no request, no tool.
        let again = format!("sk-{}-{n}-replay", self.label);
        let replayed = self.child(&run_id, &again, &log, Kill::Never).await.answer;
        assert_eq!(replayed.as_deref(), Some(answer.as_str()), "run {run_id} replayed another answer");
        let all = committed_calls(&self.spec, &run_id).await;
        assert_eq!(all, (0..CALLS).collect(), "run {run_id}: not every call committed");

        // The mock has seen every request by now: the last child ran to its end after the
        // last kill. Requests are charged by key, so a late one still counts for its child.
        let by_key = calls_by_key(self.mock, &log);
        assert!(!by_key.contains_key(&again), "run {run_id}: the replay of a finished run made calls");
        let server_store = !matches!(self.spec, StoreSpec::Sqlite(_));
        let mut made_before = BTreeSet::new();
        for (i, child) in children.iter().enumerate() {
            let calls = by_key.get(&child.key).cloned().unwrap_or_default();
            let mut fault = |what: String| {
                totals.violations += 1;
                eprintln!("VIOLATION ({run_id}, child {i}, {}): {what}", child.key);
            };
            let mut first = child.committed.len() as u32;
            if child.committed != (0..first).collect() {
                fault(format!("committed calls are not a prefix: {:?}", child.committed));
            }
            // On a server store the commit of the call in flight at the kill, sent before the
            // kill, can land after it (and after the snapshot): then this child found that call
            // committed and starts one later. Only a call an earlier child made commits so;
            // SQLite commits inside the process, so never there.
            let late = server_store
                && made_before.contains(&first)
                && match calls.iter().min() {
                    Some(&min) => min == first + 1,
                    None => !child.killed && first + 1 == CALLS,
                };
            if late {
                first += 1;
                totals.late_commits += 1;
            }
            let expected: Vec<u32> = (first..first + calls.len() as u32).collect();
            let mut sorted = calls.clone();
            sorted.sort_unstable();
            if sorted != expected {
                fault(format!("made calls {calls:?}, expected a run of calls from {first} (each once)"));
            }
            // A child that finishes makes every call left (none, when its predecessor was
            // killed after the last call committed but before the run's end was recorded).
            if !child.killed && first + calls.len() as u32 != CALLS {
                fault(format!("finished after calls {calls:?}, {first} calls committed before"));
            }
            let repeated: Vec<u32> = calls.iter().copied().filter(|c| made_before.contains(c)).collect();
            if repeated.len() > 1 || repeated.first().is_some_and(|&c| c != first) {
                fault(format!("calls {repeated:?} made again after one kill (first live call {first})"));
            }
            for &c in &calls {
                if c % 2 == 0 {
                    totals.model_requests += 1;
                    totals.re_requests += u32::from(made_before.contains(&c));
                } else {
                    totals.tool_executions += 1;
                    totals.re_executions += u32::from(made_before.contains(&c));
                }
            }
            totals.kills_before_any_call += u32::from(child.killed && calls.is_empty());
            made_before.extend(calls);
        }
        answer
    }
}

/// Tortures runs of the agent `kind` on the store `spec` until `DURABLY_TORTURE_KILLS` kills
/// have landed.
async fn torture(kind: Kind, label: &str, spec: StoreSpec, dir: &Path) {
    let mock = MockOpenAi::responder(model).await;
    // The mock answers after a short think, so that kills land inside model calls too.
    mock.latency(Duration::from_millis(1));
    let expected = crash_free_output(kind, &mock, dir).await;
    let mut t =
        Torture { kind, mock: &mock, spec, dir, label, startup: Duration::ZERO, work: Duration::ZERO };
    // A whole run in a child, start-up included, measured twice (the first warms caches).
    for i in 0..2 {
        let key = format!("sk-{label}-calibrate-{i}");
        let log = ExecLog::new(dir.join("calibrate.log"));
        let ended = t.child(&format!("calibrate-{i}"), &key, &log, Kill::Never).await;
        assert_eq!(ended.answer.as_deref(), Some(expected.as_str()));
        t.startup = ended.first_call.expect("the mock saw the calibration run");
        t.work = ended.ended.saturating_sub(t.startup);
    }
    let mut totals = Totals::default();
    let mut n = 0;
    while totals.kills < kills_wanted() {
        n += 1;
        let answer = t.one_run(n, &mut totals).await;
        assert_eq!(answer, expected, "run {n} finished with another answer than a crash-free run");
    }
    eprintln!(
        "torture-agent {} {label}: {totals:?} (a child's start-up: {:?}, then the calls of a run: {:?})",
        kind.name(),
        t.startup,
        t.work
    );
    assert_eq!(totals.violations, 0, "{totals:?}");
    assert_eq!(totals.model_requests, (TOOLS + 1) * totals.runs + totals.re_requests, "{totals:?}");
    assert_eq!(totals.tool_executions, TOOLS * totals.runs + totals.re_executions, "{totals:?}");
    assert!(totals.re_requests + totals.re_executions <= totals.kills, "{totals:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_openai_agent_survives_random_kills() {
    let dir = tempfile::tempdir().unwrap();
    torture(Kind::OpenAi, "sqlite", StoreSpec::Sqlite(dir.path().join("torture.db")), dir.path()).await;
}

#[cfg(feature = "rig")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_rig_agent_survives_random_kills() {
    let dir = tempfile::tempdir().unwrap();
    torture(Kind::Rig, "sqlite", StoreSpec::Sqlite(dir.path().join("torture.db")), dir.path()).await;
}

#[cfg(feature = "redis")]
async fn on_redis(kind: Kind, label: &str) {
    let Some(url) = service("DURABLY_REDIS_URL", "redis://127.0.0.1:6379", "127.0.0.1:6379") else { return };
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("torture-agent-{:016x}", fastrand::u64(..));
    torture(kind, label, StoreSpec::Redis { url, prefix }, dir.path()).await;
}

#[cfg(feature = "postgres")]
async fn on_postgres(kind: Kind, label: &str) {
    let Some(url) =
        service("DURABLY_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test", "127.0.0.1:5432")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let schema = format!("torture_agent_{:016x}", fastrand::u64(..));
    torture(kind, label, StoreSpec::Postgres { url: url.clone(), schema: schema.clone() }, dir.path()).await;
    // Leave nothing behind in the shared database.
    let _ = std::process::Command::new("psql")
        .args([url.as_str(), "-qc", &format!("DROP SCHEMA {schema} CASCADE")])
        .output();
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_openai_agent_survives_random_kills() {
    on_redis(Kind::OpenAi, "redis").await;
}

#[cfg(all(feature = "redis", feature = "rig"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rig_agent_survives_random_kills() {
    on_redis(Kind::Rig, "redis").await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_openai_agent_survives_random_kills() {
    on_postgres(Kind::OpenAi, "postgres").await;
}

#[cfg(all(feature = "postgres", feature = "rig"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rig_agent_survives_random_kills() {
    on_postgres(Kind::Rig, "postgres").await;
}
