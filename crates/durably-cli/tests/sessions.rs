//! `durably sessions` and `durably show <session>` against a SQLite file holding a
//! conversation recorded by a real agent (the mock model answering).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use assert_cmd::Command;
use durably_agent::TaskConfig;
use durably_agent::openai::OpenAiAgent;
use durably_core::Workflow;
use durably_core::backoff::constant;
use durably_sqlite::SqliteStore;
use durably_testkit::mock_openai::{MockOpenAi, MockReply};

fn durably(db: &Path) -> Command {
    let mut cmd = Command::cargo_bin("durably").unwrap();
    cmd.env_remove("DURABLY_STORE").arg("--store").arg(format!("sqlite:{}", db.display()));
    cmd
}

fn ok(cmd: &mut Command) -> String {
    let out = cmd.timeout(Duration::from_secs(60)).output().unwrap();
    let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    stdout
}

async fn converse(db: &Path) {
    let mock = MockOpenAi::start().await;
    mock.push_all(["Hello Ann.", "You are Ann."].map(MockReply::text));
    let wf = Workflow::builder("chat").store(SqliteStore::open(db).await.unwrap()).build();
    let bot = OpenAiAgent::builder(&wf)
        .name("support")
        .api_base(mock.base_url())
        .api_key("sk-test-cli")
        .model_config(TaskConfig::new(0, constant(0.0)))
        .build();
    let session = bot.session("conv-42");
    session.send("I am Ann").await.unwrap();
    session.send("Who am I?").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_listed_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("durably.db");
    converse(&db).await;

    let table = ok(durably(&db).arg("sessions"));
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("SESSION") && header.contains("AGENT"), "{table}");
    let row = table.lines().nth(1).unwrap();
    assert!(row.starts_with("conv-42") && row.contains("support") && row.contains(" 2 "), "{table}");
    assert_eq!(ok(durably(&db).args(["sessions", "--agent", "other"])).trim(), "no sessions");
    let json: serde_json::Value =
        serde_json::from_str(&ok(durably(&db).args(["sessions", "--json"]))).unwrap();
    assert_eq!(json[0]["session"], "conv-42");
    assert_eq!(json[0]["turns"], 2);

    for name in ["conv-42", "support:conv-42"] {
        let shown = ok(durably(&db).args(["show", name]));
        let lines: Vec<&str> = shown.lines().filter(|l| l.contains(": ")).map(str::trim).collect();
        assert_eq!(
            lines[lines.len() - 4..],
            ["user: I am Ann", "assistant: Hello Ann.", "user: Who am I?", "assistant: You are Ann."],
            "{shown}"
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&ok(durably(&db).args(["show", "conv-42", "--json"]))).unwrap();
    assert_eq!(json["messages"][3]["content"], "You are Ann.");
    assert_eq!(json["messages"][3]["role"], "assistant");
    // A turn's run is still shown as a run.
    let run = ok(durably(&db).args(["show", "support:conv-42#1"]));
    assert!(run.contains("durably.session") && run.contains("support.model#1"), "{run}");
}
