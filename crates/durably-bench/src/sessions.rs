//! Conversations (feature `agent`): a `DurableAgent` session of `turns` turns, each turn a tool
//! call and an answer, against the mock model answering after a simulated latency.
//!
//! - `session_turns`: the turns sent live, one after the other; `bytes_stored` is every byte
//!   the session's turn runs keep (inputs, outputs, step values, errors, ids, names, hashes),
//!   `response_bytes` the recorded model responses alone, and `bytes_ratio` the one over the
//!   other: storage grows with the messages (the ratio stays flat as the turns grow), never
//!   with their square, although each request carries the whole history.
//! - `session_retry`: the last turn sent again with its turn id (a retried request): the
//!   recorded answer, read with the session; the mock server must see no request.
//! - `session_replay`: every turn sent again with its turn id, with no request.
//! - `session_send`: one more turn sent live, the mock answering at once (no tool call): what
//!   a send costs beside its model call on a session of `turns` turns. A send reads its
//!   session in one store call (`list_runs` by the turns' run id prefix), so the figure
//!   grows with the bytes of the history, not with a round trip per earlier turn.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use durably::agent::TaskConfig;
use durably::agent::rig::DurableAgent;
use durably::agent::rig::rig_agent::AgentBuilder;
use durably::backoff::constant;
use durably_testkit::mock_openai::{MockOpenAi, MockReply};

use crate::agents::{Add, model};
use crate::report::Record;
use crate::stores::{Target, engine, open_store};

/// The session scenarios on one store, one session of each size in `sizes`.
pub(crate) async fn sessions(
    target: &Target,
    sizes: &[u64],
    latency: Duration,
) -> anyhow::Result<Vec<Record>> {
    let mock = MockOpenAi::try_start().await.context("starting the mock OpenAI server")?;
    mock.latency(latency);
    let opened = open_store(target).await?;
    let wf = engine("bench-session", &opened);
    let agent = DurableAgent::new(model(&mock), &wf, move |b: AgentBuilder| {
        b.preamble("You are terse.").tool(Add(Default::default()))
    })
    .name("chat")
    .model_config(TaskConfig::new(0, constant(0.0)))
    .tool_config(TaskConfig::new(0, constant(0.0)));
    let label = target.kind.label();
    let mut out = Vec::new();
    for &turns in sizes {
        let session = agent.session(format!("bench-{turns}"));
        let before = mock.requests();
        let t0 = Instant::now();
        for n in 1..=turns {
            mock.push(MockReply::tool_calls([("add", serde_json::json!({"x": n, "y": 1}))]));
            mock.push(MockReply::text(format!("Turn {n}: the sum is {}.", n + 1)));
            session.send_with_id(format!("t{n}"), format!("What is {n} + 1?")).await?;
        }
        let live = t0.elapsed();
        if (mock.requests() - before) as u64 != 2 * turns {
            bail!("{turns} turns made {} model calls, not {}", mock.requests() - before, 2 * turns);
        }
        let (stored, responses) = stored_bytes(&wf, &format!("chat:bench-{turns}"), turns).await?;
        out.push(
            Record::throughput("session_turns", label, turns, live)
                .with("latency_ms", latency.as_millis() as u64)
                .with("bytes_stored", stored)
                .with("response_bytes", responses)
                .with("bytes_ratio", crate::report::round(stored as f64 / responses.max(1) as f64, 3)),
        );

        let before = mock.requests();
        let t0 = Instant::now();
        session.send_with_id(format!("t{turns}"), format!("What is {turns} + 1?")).await?;
        let retry = t0.elapsed();
        let sent = (mock.requests() - before) as u64;
        out.push(
            Record::throughput("session_retry", label, 1, retry)
                .errors(sent)
                .with("turns", turns)
                .with("http_requests", sent),
        );

        let t0 = Instant::now();
        for n in 1..=turns {
            session.send_with_id(format!("t{n}"), format!("What is {n} + 1?")).await?;
        }
        let replay = t0.elapsed();
        let sent = (mock.requests() - before) as u64;
        out.push(
            Record::throughput("session_replay", label, turns, replay)
                .errors(sent)
                .with("http_requests", sent),
        );

        mock.latency(Duration::ZERO);
        mock.push(MockReply::text("Done."));
        let before = mock.requests();
        let t0 = Instant::now();
        session.send_with_id(format!("t{}", turns + 1), "Thanks.").await?;
        let send = t0.elapsed();
        mock.latency(latency);
        let sent = (mock.requests() - before) as u64;
        out.push(
            Record::throughput("session_send", label, 1, send)
                .errors(u64::from(sent != 1))
                .with("turns", turns)
                .with("http_requests", sent),
        );
    }
    Ok(out)
}

/// Every byte the turn runs `<session>#1..=turns` keep, and the bytes of their recorded model
/// responses.
async fn stored_bytes(wf: &durably::Workflow, session: &str, turns: u64) -> anyhow::Result<(u64, u64)> {
    let (mut stored, mut responses) = (0, 0);
    for n in 1..=turns {
        let run_id = format!("{session}#{n}");
        let run = wf.get_run(&run_id).await?.with_context(|| format!("turn run {run_id} is missing"))?;
        stored += (run.run_id.len() + run.workflow.len()) as u64;
        stored += run.input.map_or(0, |s| s.len() as u64) + run.output.map_or(0, |s| s.len() as u64);
        for step in wf.list_steps(&run_id).await? {
            let value = step.value.map_or(0, |s| s.len() as u64);
            if step.name.ends_with(".model") {
                responses += value;
            }
            stored += value + (step.step_id.len() + step.name.len()) as u64;
            stored +=
                step.error.map_or(0, |s| s.len() as u64) + step.request_hash.map_or(0, |s| s.len() as u64);
        }
    }
    Ok((stored, responses))
}
