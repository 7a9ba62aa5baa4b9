//! A full disk: a child process whose file-size limit (`ulimit -f`) stops the SQLite
//! file from growing writes steps until the store refuses one. The refusal is a clear error
//! naming the operation and the run, and every step recorded before it is intact and readable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::path::PathBuf;
use std::process::Command;

use durably::{Error, SqliteStore, StepStatus, Workflow};

const RUN_ID: &str = "fills-the-disk";

/// The child: writes 4 KB steps until the store fails, printing each step that committed and
/// then the error.
#[tokio::test]
#[ignore = "runs only as the child process of a_full_disk_gives_a_clear_error_and_keeps_every_record"]
async fn disk_full_child() {
    let db = PathBuf::from(std::env::var("DURABLY_DISK_DB").expect("started by the disk test"));
    let store = match SqliteStore::open(&db).await {
        Ok(s) => s,
        Err(e) => {
            println!("OPEN-ERROR {e}");
            return;
        }
    };
    let wf = Workflow::builder("disk").store(store).default_retries(0).build();
    let result = wf
        .run(RUN_ID, |_| async {
            for i in 0..10_000u32 {
                let value = format!("{i}:{}", "x".repeat(4096));
                durably::step("fill", move || {
                    let value = value.clone();
                    async move { Ok::<_, std::io::Error>(value) }
                })
                .step_id(format!("s{i}"))
                .await?;
                println!("COMMITTED s{i}");
            }
            Ok::<_, Error>(())
        })
        .await;
    match result {
        Ok(()) => println!("NO-ERROR"),
        Err(e) => {
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                text.push_str(&format!(": {c}"));
                cause = c.source();
            }
            println!("ERROR {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_gives_a_clear_error_and_keeps_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("small.db");
    // SIGXFSZ ignored (the ignore survives exec), files limited to 256 KiB: a write past the
    // limit fails with EFBIG, as on a full disk.
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#"trap '' XFSZ; ulimit -f 256; exec "$0" "$@""#)
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "disk_full_child", "--ignored", "--nocapture", "--test-threads", "1"])
        .env("DURABLY_DISK_DB", &db)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let committed: Vec<String> =
        stdout.lines().filter_map(|l| l.split_once("COMMITTED ").map(|(_, s)| s.trim().to_owned())).collect();
    let error = stdout.lines().find_map(|l| l.split_once("ERROR ").map(|(_, e)| e.to_owned()));
    let error = error.unwrap_or_else(|| panic!("the child hit no error: {stdout}"));
    assert!(committed.len() > 5, "some steps fit before the limit: {stdout}");
    assert!(error.contains(RUN_ID), "the error names the run: {error}");
    assert!(
        ["full", "disk", "File too large", "I/O", "write"].iter().any(|w| error.contains(w)),
        "the error says what failed: {error}"
    );

    // Without the limit, every step the child saw committed is there and readable.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let verdict: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(verdict, "ok");
    drop(conn);
    let wf = Workflow::builder("disk").store(SqliteStore::open(&db).await.unwrap()).build();
    let steps = wf.list_steps(RUN_ID).await.unwrap();
    for id in &committed {
        let step = steps.iter().find(|s| &s.step_id == id).unwrap_or_else(|| panic!("{id} was lost"));
        assert_eq!(step.status, StepStatus::Completed);
        let value: String = serde_json::from_str(step.value.as_deref().unwrap()).unwrap();
        assert!(value.starts_with(&format!("{}:", id.trim_start_matches('s'))));
    }
    eprintln!("{} steps committed before: {error}", committed.len());
}
