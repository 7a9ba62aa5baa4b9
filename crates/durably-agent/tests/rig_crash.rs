//! A real crash in the middle of a rig tool loop: a child process running the agent is killed
//! with SIGKILL while its third tool call executes; the parent resumes the run from the SQLite
//! file and repeats no model call and no tool call that had completed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod rig_support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use durably_agent::rig::rig_core::tool::{Tool, ToolContext};
use durably_agent::rig::{DurableAgent, rig_agent::AgentBuilder};
use durably_core::store::prelude::*;
use durably_core::{StepStatus, Workflow};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use rig_support::*;
use serde::Deserialize;
use serde_json::json;

const RUN_ID: &str = "crash-loop";
const PROMPT: &str = "Fetch a, b and c, then summarize.";

#[derive(Deserialize)]
struct FetchArgs {
    label: String,
}

/// `fetch`: logs each execution to a file; in the child, `c` takes long enough to be killed.
struct Fetch {
    log: PathBuf,
    slow: Option<String>,
}

impl Tool for Fetch {
    const NAME: &'static str = "fetch";
    type Args = FetchArgs;
    type Output = String;
    type Error = ToolError;

    fn description(&self) -> String {
        "Fetches a document".into()
    }

    fn parameters(&self) -> serde_json::Value {
        json!({"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]})
    }

    async fn call(&self, _cx: &mut ToolContext, args: FetchArgs) -> Result<String, ToolError> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| ToolError(e.to_string()))?;
        writeln!(f, "{}", args.label).map_err(|e| ToolError(e.to_string()))?;
        f.sync_all().map_err(|e| ToolError(e.to_string()))?;
        if self.slow.as_deref() == Some(&args.label) {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        Ok(format!("document {}", args.label))
    }
}

fn agent(wf: &Workflow, base_url: &str, log: &Path, slow: Option<&str>) -> DurableAgent {
    let (log, slow) = (log.to_owned(), slow.map(str::to_owned));
    DurableAgent::new(model_at(base_url), wf, move |b: AgentBuilder| {
        b.preamble("Fetch what you are asked for.").tool(Fetch { log: log.clone(), slow: slow.clone() })
    })
    .name("fetcher")
    .model_config(quick(0))
}

async fn sqlite(path: &Path) -> Workflow {
    let store: Arc<dyn Store> = Arc::new(durably_sqlite::SqliteStore::open(path).await.unwrap());
    engine(store)
}

fn executed(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log).unwrap_or_default().lines().map(str::to_owned).collect()
}

/// The child side, started by `sigkill_in_a_tool_loop_then_resume` in its own process.
#[tokio::test]
#[ignore = "runs only as the child process of sigkill_in_a_tool_loop_then_resume"]
async fn rig_crash_child() {
    let db = std::env::var("DURABLY_RIG_CRASH_DB").expect("started by the crash test");
    let log = std::env::var("DURABLY_RIG_CRASH_LOG").expect("started by the crash test");
    let url = std::env::var("DURABLY_RIG_CRASH_URL").expect("started by the crash test");
    let wf = sqlite(Path::new(&db)).await;
    agent(&wf, &url, Path::new(&log), Some("c")).run_with_id(PROMPT, RUN_ID).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_a_tool_loop_then_resume() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("fetch", json!({"label": "a"})), ("fetch", json!({"label": "b"}))]));
    mock.push(MockReply::tool_calls([("fetch", json!({"label": "c"}))]));
    mock.push(MockReply::text("a, b and c summarized"));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agent.db");
    let log = dir.path().join("executed.log");

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "rig_crash_child", "--ignored", "--nocapture"])
        .env("DURABLY_RIG_CRASH_DB", &db)
        .env("DURABLY_RIG_CRASH_LOG", &log)
        .env("DURABLY_RIG_CRASH_URL", mock.base_url())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it while `c`, the third tool call (second turn), executes.
    let start = Instant::now();
    while !executed(&log).contains(&"c".to_owned()) {
        assert!(start.elapsed() < Duration::from_secs(60), "the child never reached tool c");
        assert!(child.try_wait().unwrap().is_none(), "the child exited before it was killed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL on unix
    child.wait().unwrap();
    assert_eq!(executed(&log), ["a", "b", "c"]);
    assert_eq!(mock.requests(), 2, "the child made two model calls");

    let wf = sqlite(&db).await;
    let committed: Vec<String> = wf
        .list_steps(RUN_ID)
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.status == StepStatus::Completed)
        .map(|s| s.step_id)
        .collect();
    for id in
        ["fetcher.model#1", "fetcher.tool.fetch#1.call_1", "fetcher.tool.fetch#1.call_2", "fetcher.model#2"]
    {
        assert!(committed.contains(&id.to_owned()), "{id} was not committed before the kill: {committed:?}");
    }
    assert!(!committed.iter().any(|id| id.contains("call_3")), "c was in flight: {committed:?}");

    let answer = agent(&wf, &mock.base_url(), &log, None).run_with_id(PROMPT, RUN_ID).await.unwrap();
    assert_eq!(answer.output, "a, b and c summarized");
    assert_eq!(mock.requests(), 3, "only the third model call was sent after the crash");
    assert_eq!(executed(&log), ["a", "b", "c", "c"], "only the call in flight at the kill ran again");
    let steps = wf.list_steps(RUN_ID).await.unwrap();
    assert_eq!(steps.len(), 7, "input, 3 model calls, 3 tool calls");
    assert!(steps.iter().all(|s| s.status == StepStatus::Completed));
}
