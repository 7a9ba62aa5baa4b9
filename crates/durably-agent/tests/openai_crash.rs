//! A real crash in the middle of a multi-tool loop: a child process running the OpenAI agent
//! is killed with SIGKILL while its third tool call runs; the resumed run repeats no model
//! call and no completed tool call. The parent hosts the mock server, so its request count
//! covers both processes.
#![cfg(feature = "openai")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use durably_agent::TaskConfig;
use durably_agent::openai::{OpenAiAgent, Tool};
use durably_core::backoff::constant;
use durably_core::{StepStatus, Workflow};
use durably_sqlite::SqliteStore;
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

const RUN_ID: &str = "crash-agent";

#[derive(Deserialize, JsonSchema)]
struct WorkArgs {
    /// Which piece of work.
    n: u32,
}

fn agent(wf: &Workflow, base_url: &str, log: PathBuf, block_on: Option<u32>) -> OpenAiAgent {
    let work = Tool::new("work", "Do one piece of work", move |a: WorkArgs| {
        let log = log.clone();
        async move {
            // Log the execution first (synced), then maybe hang: the parent kills us there.
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
            writeln!(f, "{}", a.n)?;
            f.sync_all()?;
            if block_on == Some(a.n) {
                std::future::pending::<()>().await;
            }
            Ok::<_, std::io::Error>(format!("work {} done", a.n))
        }
    });
    OpenAiAgent::builder(wf)
        .name("worker")
        .api_base(base_url)
        .api_key("sk-crash-test")
        .tool(work)
        .model_config(TaskConfig::new(0, constant(0.0)))
        .tool_config(TaskConfig::new(0, constant(0.0)))
        .build()
}

async fn engine(db: &Path) -> Workflow {
    Workflow::builder("crash").store(SqliteStore::open(db).await.unwrap()).build()
}

fn executed(log: &Path) -> Vec<u32> {
    std::fs::read_to_string(log).unwrap_or_default().lines().map(|l| l.parse().unwrap()).collect()
}

/// The child side: started by `sigkill_mid_tool_loop_then_resume` in its own process.
#[tokio::test]
#[ignore = "runs only as the child process of sigkill_mid_tool_loop_then_resume"]
async fn openai_crash_child() {
    let db = std::env::var("DURABLY_CRASH_DB").expect("started by the crash test");
    let log = std::env::var("DURABLY_CRASH_LOG").expect("started by the crash test");
    let url = std::env::var("DURABLY_CRASH_MOCK").expect("started by the crash test");
    let wf = engine(Path::new(&db)).await;
    agent(&wf, &url, log.into(), Some(3)).run_with_id("Do the work", RUN_ID).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_tool_loop_then_resume() {
    let mock = MockOpenAi::start().await;
    for n in 1..=3 {
        mock.push(MockReply::tool_calls([("work", json!({ "n": n }))]));
    }
    mock.push(MockReply::text("All work done."));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let log = dir.path().join("executed.log");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "openai_crash_child", "--ignored", "--nocapture"])
        .env("DURABLY_CRASH_DB", &db)
        .env("DURABLY_CRASH_LOG", &log)
        .env("DURABLY_CRASH_MOCK", mock.base_url())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it while its third tool call runs (it hangs there), after two tool calls finished.
    let start = Instant::now();
    while executed(&log).len() < 3 {
        assert!(start.elapsed() < Duration::from_secs(60), "the child never got going");
        assert!(child.try_wait().unwrap().is_none(), "the child exited before it was killed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL on unix
    child.wait().unwrap();
    assert_eq!(executed(&log), [1, 2, 3]);
    assert_eq!(mock.requests(), 3, "model calls before the kill");

    let wf = engine(&db).await;
    let completed: Vec<String> = wf
        .list_steps(RUN_ID)
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.status == StepStatus::Completed)
        .map(|s| s.step_id)
        .collect();
    assert_eq!(completed.len(), 5, "three model calls and two tool calls committed: {completed:?}");

    let run =
        agent(&wf, &mock.base_url(), log.clone(), None).run_with_id("Do the work", RUN_ID).await.unwrap();
    assert_eq!(run.output, "All work done.");
    // One new model call (the fourth); the three recorded ones were not sent again.
    assert_eq!(mock.requests(), 4, "a recorded model call was sent again");
    // Only the tool call in flight at the kill ran again; calls 1 and 2 came from their steps.
    assert_eq!(executed(&log), [1, 2, 3, 3]);
    let tool_results: Vec<String> = run
        .messages
        .iter()
        .map(|m| serde_json::to_value(m).unwrap())
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tool_results, ["work 1 done", "work 2 done", "work 3 done"]);
}
