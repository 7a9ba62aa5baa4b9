//! The `durably` binary against a SQLite file prepared with the durably API: each command's
//! output, its errors, and the commands that act on runs executing in this (another) process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::Duration;

use assert_cmd::Command;
use common::{Counter, approval_flow, engine, pipeline, prepare, sqlite, wait_for_status};
use durably_core::{Error, RunStatus};

fn durably(db: &Path) -> Command {
    let mut cmd = Command::cargo_bin("durably").unwrap();
    cmd.env_remove("DURABLY_STORE").arg("--store").arg(format!("sqlite:{}", db.display()));
    cmd
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(cmd: &mut Command) -> Out {
    let out = cmd.timeout(Duration::from_secs(60)).output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert_eq!(out.code, 0, "stdout: {}\nstderr: {}", out.stdout, out.stderr);
    out.stdout
}

fn fails(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert_eq!(out.code, 1, "expected exit code 1; stdout: {}\nstderr: {}", out.stdout, out.stderr);
    out.stderr
}

async fn prepared() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("durably.db");
    prepare(&db).await;
    (dir, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_lists_and_filters() {
    let (_dir, db) = prepared().await;
    let table = ok(durably(&db).arg("runs"));
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("RUN") && header.contains("STATUS"), "{table}");
    for (id, status) in [("order-1", "completed"), ("order-2", "failed"), ("approval-1", "waiting")] {
        let line =
            table.lines().find(|l| l.starts_with(id)).unwrap_or_else(|| panic!("{id} missing: {table}"));
        assert!(line.contains(status), "{line}");
    }
    assert!(table.contains("waiting on manager-approval"), "{table}");
    assert!(table.contains("failed at step `fetch` of run `order-2`"), "{table}");

    let waiting = ok(durably(&db).args(["runs", "--status", "waiting"]));
    assert_eq!(waiting.lines().count(), 2, "{waiting}");
    assert!(waiting.contains("approval-1"));

    let json = ok(durably(&db).args(["runs", "--json", "--since", "1h"]));
    let runs: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|r| r["workflow"] == "shop"));

    assert_eq!(ok(durably(&db).args(["runs", "--workflow", "other"])).trim(), "no runs");
    let err = fails(durably(&db).args(["runs", "--status", "sleeping"]));
    assert!(err.contains("`sleeping` is not one of"), "{err}");
    let err = fails(durably(&db).args(["runs", "--since", "2 hours"]));
    assert!(err.contains("not an age"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_prints_steps_with_attempts_durations_and_values() {
    let (_dir, db) = prepared().await;
    let text = ok(durably(&db).args(["show", "order-1"]));
    assert!(text.contains("status    completed"), "{text}");
    assert!(text.contains("output    \"order 42 shipped for 19.5\""), "{text}");
    let header = text.lines().find(|l| l.starts_with("STEP")).unwrap();
    for col in ["NAME", "STATUS", "ATTEMPTS", "DURATION", "VALUE"] {
        assert!(header.contains(col), "{header}");
    }
    let fetch = text.lines().find(|l| l.starts_with("fetch")).unwrap();
    assert!(fetch.contains("completed") && fetch.contains(r#"{"id":42,"items":["book","pen"]}"#), "{fetch}");
    assert!(text.lines().any(|l| l.starts_with("price") && l.contains("19.5")), "{text}");

    let failed = ok(durably(&db).args(["show", "order-2"]));
    assert!(failed.contains("error: upstream 503"), "{failed}");

    let doc: serde_json::Value =
        serde_json::from_str(&ok(durably(&db).args(["show", "order-1", "--json"]))).unwrap();
    assert_eq!(doc["steps"].as_array().unwrap().len(), 3);

    let err = fails(durably(&db).args(["show", "nope"]));
    assert!(err.contains("no run with id `nope`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_lists_runs_waiting_with_their_signal() {
    let (_dir, db) = prepared().await;
    let text = ok(durably(&db).arg("pending"));
    let line = text.lines().find(|l| l.starts_with("approval-1")).unwrap();
    assert!(line.contains("manager-approval"), "{text}");
    assert_eq!(text.lines().count(), 2, "only the waiting run: {text}");
    let json: Vec<serde_json::Value> =
        serde_json::from_str(&ok(durably(&db).args(["pending", "--json"]))).unwrap();
    assert_eq!(json[0]["waiting_on"], "manager-approval");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_from_the_cli_resumes_a_run_waiting_in_another_process() {
    let (_dir, db) = prepared().await;
    let wf = engine(sqlite(&db).await);
    let published = Counter::default();
    let runner = {
        let (wf, c) = (wf.clone(), published.clone());
        tokio::spawn(async move { approval_flow(&wf, "approval-2", c).await })
    };
    wait_for_status(&wf, "approval-2", RunStatus::Waiting).await;
    let out = ok(durably(&db).args(["signal", "approval-2", "manager-approval", r#"{"approved": true}"#]));
    assert_eq!(out.trim(), "delivered signal `manager-approval` to run `approval-2`");
    let result = tokio::time::timeout(Duration::from_secs(20), runner).await.unwrap().unwrap();
    assert_eq!(result.unwrap(), "published Q3 report draft");
    assert_eq!(published.get(), 2);

    let again = ok(durably(&db).args(["signal", "approval-2", "manager-approval", r#"{"approved": false}"#]));
    assert!(again.contains("already delivered"), "{again}");
    let err = fails(durably(&db).args(["signal", "approval-1", "manager-approval", "{not json"]));
    assert!(err.contains("not JSON"), "{err}");
    let err = fails(durably(&db).args(["signal", "nope", "manager-approval", "true"]));
    assert!(err.contains("no run with id `nope`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_from_the_cli_stops_a_run_executing_in_another_process() {
    let (_dir, db) = prepared().await;
    let wf = engine(sqlite(&db).await);
    let published = Counter::default();
    let runner = {
        let (wf, c) = (wf.clone(), published.clone());
        tokio::spawn(async move { approval_flow(&wf, "approval-3", c).await })
    };
    wait_for_status(&wf, "approval-3", RunStatus::Waiting).await;
    let out = ok(durably(&db).args(["cancel", "approval-3"]));
    assert!(out.contains("cancelled run `approval-3`"), "{out}");
    let result = tokio::time::timeout(Duration::from_secs(20), runner).await.unwrap().unwrap();
    assert!(matches!(result, Err(Error::Cancelled { .. })), "{result:?}");
    assert_eq!(published.get(), 1, "only the draft ran");
    assert!(ok(durably(&db).args(["show", "approval-3"])).contains("status    cancelled"));
    let again = ok(durably(&db).args(["cancel", "approval-3"]));
    assert!(again.contains("already cancelled"), "{again}");
    let err = fails(durably(&db).args(["cancel", "nope"]));
    assert!(err.contains("no run with id `nope`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_from_the_cli_re_runs_from_the_step() {
    let (_dir, db) = prepared().await;
    let out = ok(durably(&db).args(["fork", "order-1", "--from", "price", "--id", "order-1b"]));
    assert!(out.contains("forked run `order-1` as `order-1b` with 1 step(s) before `price`"), "{out}");
    let wf = engine(sqlite(&db).await);
    let executed = Counter::default();
    assert_eq!(pipeline(&wf, "order-1b", executed.clone()).await.unwrap(), "order 42 shipped for 19.5");
    assert_eq!(executed.get(), 2, "fetch replayed, price and ship ran");

    let generated = ok(durably(&db).args(["fork", "order-1", "--from", "fetch"]));
    assert!(generated.contains("as `order-1-fork-"), "{generated}");
    let err = fails(durably(&db).args(["fork", "order-1", "--from", "nope"]));
    assert!(err.contains("has no step `nope`") && err.contains("fetch, price, ship"), "{err}");
    let err = fails(durably(&db).args(["fork", "order-1", "--from", "price", "--id", "order-2"]));
    assert!(err.contains("`order-2` already exists"), "{err}");
    let err = fails(durably(&db).args(["fork", "nope", "--from", "price"]));
    assert!(err.contains("no run with id `nope`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_deletes_old_runs_of_the_statuses_asked() {
    let (_dir, db) = prepared().await;
    assert_eq!(
        ok(durably(&db).args(["purge", "--older-than", "7d"])).trim(),
        "purged 0 run(s) older than 7d"
    );
    let out = ok(durably(&db).args(["purge", "--older-than", "0s", "--status", "failed"]));
    assert_eq!(out.trim(), "purged 1 run(s) older than 0s");
    let left = ok(durably(&db).arg("runs"));
    assert!(!left.contains("order-2") && left.contains("order-1") && left.contains("approval-1"), "{left}");
    let err = fails(durably(&db).args(["purge", "--older-than", "soon"]));
    assert!(err.contains("not an age"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_import_into_another_store_replays_without_executing() {
    let (dir, db) = prepared().await;
    let file = dir.path().join("order-1.json");
    let out = ok(durably(&db).args(["export", "order-1", "-o"]).arg(&file));
    assert_eq!(out.trim(), format!("exported run `order-1` to {}", file.display()));
    let stdout_doc = ok(durably(&db).args(["export", "order-1"]));
    assert_eq!(stdout_doc.trim(), std::fs::read_to_string(&file).unwrap().trim());

    let other = dir.path().join("fixtures.db");
    let out = ok(durably(&other).arg("import").arg(&file));
    assert_eq!(out.trim(), "imported run `order-1` (workflow `shop`, completed, 3 step(s), 0 signal(s))");
    let err = fails(durably(&other).arg("import").arg(&file));
    assert!(err.contains("`order-1` already exists"), "{err}");
    ok(durably(&other).arg("import").arg(&file).args(["--id", "order-copy"]));

    let wf = engine(sqlite(&other).await);
    let executed = Counter::default();
    assert_eq!(pipeline(&wf, "order-copy", executed.clone()).await.unwrap(), "order 42 shipped for 19.5");
    assert_eq!(executed.get(), 0);

    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, "{}").unwrap();
    let err = fails(durably(&other).arg("import").arg(&junk));
    assert!(err.contains("is not a durably run export"), "{err}");
}

#[test]
fn a_missing_sqlite_file_is_an_error_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("missing.db");
    for args in [&["runs"][..], &["show", "x"], &["pending"], &["cancel", "x"]] {
        let err = fails(durably(&db).args(args));
        assert!(err.contains("no SQLite store at") && err.contains("does not exist"), "{args:?}: {err}");
    }
    assert!(!db.exists(), "a read command must not create the file");
}

#[test]
fn a_wrong_store_url_is_an_error_naming_it() {
    let err = fails(Command::cargo_bin("durably").unwrap().args(["--store", "mysql://db/x", "runs"]));
    assert!(err.contains("unsupported store URL `mysql://db/x`") && err.contains("sqlite:PATH"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_comes_from_durably_store_when_no_flag_is_given() {
    let (dir, db) = prepared().await;
    let mut cmd = Command::cargo_bin("durably").unwrap();
    cmd.env("DURABLY_STORE", format!("sqlite:{}", db.display())).arg("pending");
    assert!(ok(&mut cmd).contains("approval-1"));
    // The default is ./durably.db in the working directory.
    let mut cmd = Command::cargo_bin("durably").unwrap();
    cmd.env_remove("DURABLY_STORE").current_dir(dir.path()).arg("pending");
    assert!(ok(&mut cmd).contains("approval-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_lists_what_waits_executes_and_is_parked() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("durably.db");
    {
        let store = sqlite(&db).await;
        let wf = durably_core::Workflow::builder("shop").shared_store(store).build();
        wf.add_queue(durably_core::Queue::new("emails")).unwrap();
        wf.register_fn("send", |_ctx, to: String| async move { Ok::<_, Error>(to) });
        for i in 0..3 {
            wf.enqueue("emails", "send", &format!("mail-{i}"), &format!("user-{i}")).await.unwrap();
        }
    }
    let table = ok(durably(&db).arg("queues"));
    let line = table.lines().find(|l| l.starts_with("emails")).unwrap_or_else(|| panic!("{table}"));
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&cells[1..4], ["3", "0", "0"], "{table}");
    assert!(line.contains("ago"), "the oldest wait is shown: {table}");
    let json = ok(durably(&db).args(["queues", "--json"]));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["enqueued"], 3);
    let enqueued = ok(durably(&db).args(["runs", "--queue", "emails", "--status", "enqueued"]));
    assert_eq!(enqueued.lines().count(), 4, "a header and three runs: {enqueued}");
    assert_eq!(
        ok(durably(&db).args(["queues", "--queue", "none"]))
            .lines()
            .nth(1)
            .map(|l| l.split_whitespace().nth(1)),
        Some(Some("0"))
    );
}
