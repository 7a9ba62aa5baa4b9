//! A client that is not Rust: `tests/http_client.py` (Python's standard library only) starts an
//! agent run over HTTP, approves its tool call, reads the output and talks to a session, against
//! this test's server (an agent workflow on the mock model, fed from `fixtures/`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use durably_agent::openai::{OpenAiAgent, Tool};
use durably_core::RunStatus;
use durably_testkit::mock_openai::{MockOpenAi, fixtures_dir};
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Deserialize, JsonSchema)]
struct Transfer {
    /// The recipient's account.
    to: String,
    /// The amount in euros.
    amount_eur: u32,
}

#[derive(Deserialize)]
struct Payout {
    prompt: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_starts_an_agent_run_approves_its_tool_call_and_reads_the_output() {
    let mock = MockOpenAi::from_fixture(fixtures_dir().join("http_approval.json")).await.unwrap();
    let wf = common::engine();
    let transfers = Arc::new(AtomicU32::new(0));
    let counted = transfers.clone();
    let tool = Tool::new("transfer_funds", "Transfer money to an account", move |t: Transfer| {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(format!("transferred {} EUR to {}", t.amount_eur, t.to))
        }
    })
    .requires_approval();
    let agent = OpenAiAgent::builder(&wf)
        .name("payouts")
        .model("gpt-4o-mini")
        .api_base(mock.base_url())
        .api_key("sk-test-python-client")
        .system_prompt("You pay suppliers with transfer_funds.")
        .tool(tool)
        .build();
    let runs = agent.clone();
    wf.register_fn("payout", move |_ctx, input: Payout| {
        let agent = runs.clone();
        async move { agent.run(input.prompt).await.map(|r| r.output) }
    });
    let turns = agent.clone();
    let s = common::serve_with(wf, move |c| {
        c.session_agent("payouts", move |session, turn_id, message| {
            let agent = turns.clone();
            async move { agent.session(session).send_with_id(turn_id, message).await.map(|r| r.output) }
        })
    })
    .await;

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/http_client.py");
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .env("DURABLY_URL", format!("http://{}", s.addr))
        .env("DURABLY_TOKEN", common::TOKEN)
        .output()
        .await
        .unwrap_or_else(|e| panic!("python3 is needed for this test: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the Python client failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("python client: every check passed"), "{stdout}");

    // Two model calls for the run (the tool call, the answer) and one for the turn; the turn
    // sent again was answered from its record.
    assert_eq!(mock.requests(), 3, "{:?}", mock.received());
    assert_eq!(transfers.load(Ordering::SeqCst), 1, "the tool ran once, after the approval");
    let run = s.wf.get_run("py-payout-1").await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Completed);
    let signals = s.wf.store().list_signals("py-payout-1").await.unwrap();
    let approvals: Vec<_> = signals.iter().filter(|s| s.name.starts_with("approve:")).collect();
    assert_eq!(approvals.len(), 1, "{signals:?}");
    assert_eq!(approvals[0].payload, r#"{"approved":true}"#);
    assert_eq!(run.queue.as_deref(), Some(durably_server::DEFAULT_QUEUE), "the run went through the queue");
}
