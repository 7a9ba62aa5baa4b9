//! Agents (feature `agent`): a rig agent of `turns` model calls (a tool call per turn, then the
//! answer) against the mock OpenAI-compatible server answering after a simulated model latency.
//!
//! - `agent_bare`: the plain rig agent, nothing recorded.
//! - `agent_durable`: the same agent as a `DurableAgent` (`run_with_id`): every model call and
//!   every tool call is a step. On every store the bare agent runs again, round for round with
//!   the durable one, and `overhead_pct` compares the medians of those same rounds.
//! - `agent_replay`: a run whose model and tool calls are all recorded but which did not
//!   complete (its workflow stopped after the agent), executed again: every call comes from the
//!   store and the mock server must see no request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use durably::agent::TaskConfig;
use durably::agent::rig::DurableAgent;
use durably::agent::rig::rig_agent::AgentBuilder;
use durably::agent::rig::rig_core::DynModel;
use durably::agent::rig::rig_core::operation::Completion;
use durably::agent::rig::rig_core::providers::openai::OpenAIConfig;
use durably::agent::rig::rig_core::tool::{Tool, ToolContext};
use durably::backoff::constant;
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use serde::Deserialize;

use crate::report::Record;
use crate::stores::{Target, engine, open_store};

/// The label of the bare agent's records: no store at all.
pub(crate) const BARE: &str = "rig (no store)";

const PROMPT: &str = "Add one, again and again.";

#[derive(Debug, thiserror::Error)]
#[error("add failed")]
pub(crate) struct AddError;

#[derive(Deserialize)]
pub(crate) struct AddArgs {
    x: i64,
    y: i64,
}

/// `add`: x + y, counting its executions.
pub(crate) struct Add(pub(crate) Arc<AtomicU64>);

impl Tool for Add {
    const NAME: &'static str = "add";
    type Args = AddArgs;
    type Output = i64;
    type Error = AddError;

    fn description(&self) -> String {
        "Adds two integers".into()
    }

    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "object",
            "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
            "required": ["x", "y"]
        })
    }

    async fn call(&self, _cx: &mut ToolContext, args: AddArgs) -> Result<i64, AddError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(args.x + args.y)
    }
}

pub(crate) fn model(mock: &MockOpenAi) -> DynModel<Completion> {
    OpenAIConfig::new("sk-bench").with_base_url(mock.base_url()).client().chat("gpt-4o-mini").into()
}

/// Queues one run's replies: `turns - 1` tool calls, then the answer.
fn script(mock: &MockOpenAi, turns: u64) {
    for i in 0..turns.saturating_sub(1) {
        mock.push(MockReply::tool_calls([("add", serde_json::json!({"x": i, "y": 1}))]));
    }
    mock.push(MockReply::text("done"));
}

/// The agent scenarios on one store; `bare` adds the bare agent's record (once per invocation).
pub(crate) async fn agents(
    target: &Target,
    turns: u64,
    latency: Duration,
    repeat: u32,
    bare: bool,
) -> anyhow::Result<Vec<Record>> {
    let mock = MockOpenAi::try_start().await.context("starting the mock OpenAI server")?;
    mock.latency(latency);
    let opened = open_store(target).await?;
    let wf = engine("bench-agent", &opened);
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    let durable = DurableAgent::new(model(&mock), &wf, move |b: AgentBuilder| {
        b.preamble("You are terse.").tool(Add(c.clone()))
    })
    .name("bench")
    .max_turns(turns as usize + 5)
    .model_config(TaskConfig::new(0, constant(0.0)))
    .tool_config(TaskConfig::new(0, constant(0.0)));

    let label = target.kind.label();
    let mut bare_runs = Vec::new();
    let mut durable_runs = Vec::new();
    let mut errors = 0;
    // The bare agent and the durable one take turns, in alternating order, so that both see the
    // same machine; the ratio is of their medians, which one slow round does not move.
    let rounds = agent_rounds(repeat);
    for round in 0..rounds {
        for durable_first in [round % 2 == 1, round % 2 == 0] {
            if durable_first {
                script(&mock, turns);
                let before = mock.requests();
                let t0 = Instant::now();
                let out = durable.run_with_id(PROMPT, format!("agent-{round}")).await;
                let d = t0.elapsed();
                match out {
                    Ok(r) if r.output == "done" && (mock.requests() - before) as u64 == turns => {
                        durable_runs.push(d)
                    }
                    Ok(r) => {
                        errors += 1;
                        eprintln!(
                            "durably-bench: the durable agent answered {:?} after {} calls",
                            r.output,
                            mock.requests() - before
                        );
                    }
                    Err(e) => bail!("the durable agent failed: {e}"),
                }
            } else {
                script(&mock, turns);
                let agent = AgentBuilder::new(model(&mock))
                    .preamble("You are terse.")
                    .tool(Add(calls.clone()))
                    .build();
                let before = mock.requests();
                let t0 = Instant::now();
                let out = agent.prompt(PROMPT).max_turns(turns as usize + 5).await;
                let d = t0.elapsed();
                match out {
                    Ok(_) if (mock.requests() - before) as u64 == turns => bare_runs.push(d),
                    Ok(_) => {
                        bail!("the bare agent made {} model calls, not {turns}", mock.requests() - before)
                    }
                    Err(e) => bail!("the bare agent failed: {e}"),
                }
            }
        }
    }
    let mut out = Vec::new();
    let median_bare = median(&mut bare_runs);
    if bare && let Some(b) = median_bare {
        out.push(
            Record::throughput("agent_bare", BARE, turns, b)
                .with("latency_ms", latency.as_millis() as u64)
                .with("rounds", rounds),
        );
    }
    if let Some(d) = median(&mut durable_runs) {
        let mut rec = Record::throughput("agent_durable", label, turns, d)
            .errors(errors)
            .with("latency_ms", latency.as_millis() as u64)
            .with("rounds", rounds);
        if let Some(b) = median_bare {
            rec = rec.with("bare_ms", crate::report::round(b.as_secs_f64() * 1e3, 3)).with(
                "overhead_pct",
                crate::report::round((d.as_secs_f64() / b.as_secs_f64() - 1.0) * 100.0, 2),
            );
        }
        out.push(rec);
    }

    // Replay: a run whose calls are all recorded but which did not complete.
    let mut best_replay: Option<Duration> = None;
    let mut requests = 0;
    for round in 0..repeat.max(1) {
        let run_id = format!("agent-replay-{round}");
        script(&mock, turns);
        let first = run_stopped(&wf, &durable, &run_id, true).await;
        if !matches!(first, Err(ref e) if e.to_string().contains(STOP)) {
            bail!("the recording execution of {run_id} did not stop as planned: {first:?}");
        }
        let before = mock.requests();
        let executed = calls.load(Ordering::Relaxed);
        let t0 = Instant::now();
        let answer = run_stopped(&wf, &durable, &run_id, false)
            .await
            .with_context(|| format!("replaying {run_id}"))?;
        let d = t0.elapsed();
        requests += mock.requests() - before;
        if answer != "done" || calls.load(Ordering::Relaxed) != executed {
            errors += 1;
        }
        best_replay = Some(best_replay.map_or(d, |b| b.min(d)));
    }
    let replay = best_replay.ok_or_else(|| anyhow!("no replay measured"))?;
    out.push(
        Record::throughput("agent_replay", label, turns, replay)
            .errors(errors + requests as u64)
            .with("http_requests", requests as u64)
            .with("repeat", repeat),
    );
    Ok(out)
}

/// Rounds of the bare and durable agents: three per `--repeat`, so that the median of a few
/// hundred milliseconds per run is stable against the machine's noise.
fn agent_rounds(repeat: u32) -> u32 {
    repeat.max(1) * 3
}

/// The median of `samples` (sorting them).
fn median(samples: &mut [Duration]) -> Option<Duration> {
    samples.sort();
    samples.get(samples.len() / 2).copied()
}

const STOP: &str = "bench: stop after the agent so that the run stays resumable";

/// The agent inside a workflow run, which then stops (`stop`) or completes.
async fn run_stopped(
    wf: &durably::Workflow,
    agent: &DurableAgent,
    run_id: &str,
    stop: bool,
) -> anyhow::Result<String> {
    let agent = agent.clone();
    let out = wf
        .run(run_id, move |_ctx| async move {
            let r = agent.run(PROMPT).await?;
            if stop {
                return Err(anyhow!(STOP));
            }
            Ok(r.output)
        })
        .await?;
    Ok(out)
}
