//! Arbitrary bytes in a column of a real SQLite store (a step value, status or error, a signal
//! payload, a run's input, output or status, a time or attempt count), then every read path:
//! replaying the run, recovering it (which decodes its stored input), `get_run`, `list_steps`,
//! `list_runs` and `export`. Each must give a value or an error, never a panic.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use durably::{Durability, Error, RunFilter, SqliteStore, Workflow};
use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u32,
    items: Vec<String>,
}

/// The column overwritten: `(table, column, is_integer)`.
const COLUMNS: &[(&str, &str, bool)] = &[
    ("steps", "value", false),
    ("steps", "status", false),
    ("steps", "error", false),
    ("steps", "name", false),
    ("steps", "step_id", false),
    ("steps", "request_hash", false),
    ("steps", "attempts", true),
    ("steps", "started_at_ms", true),
    ("steps", "finished_at_ms", true),
    ("signals", "payload", false),
    ("signals", "name", false),
    ("signals", "delivered_at_ms", true),
    ("runs", "input", false),
    ("runs", "output", false),
    ("runs", "status", false),
    ("runs", "error", false),
    ("runs", "waiting_on", false),
    ("runs", "workflow", false),
    ("runs", "created_at_ms", true),
    ("runs", "updated_at_ms", true),
];

const RUN: &str = "run-f";

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime")
    })
}

/// A fresh database file per input, on tmpfs when there is one (flushes are cheap there).
fn fresh_db() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = DIR.get_or_init(|| {
        let base =
            if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        let dir = base.join("durably-fuzz");
        std::fs::create_dir_all(&dir).expect("fuzz dir");
        dir
    });
    dir.join(format!("{}-{}.db", std::process::id(), N.fetch_add(1, Ordering::Relaxed)))
}

async fn engine(db: &Path) -> Workflow {
    let store = SqliteStore::builder(db).durability(Durability::Normal).open().await.expect("open store");
    let wf = Workflow::builder("fuzz").store(store).build();
    wf.register_fn("fuzzed", |_ctx, input: Order| async move {
        let order = durably::step("order", move || {
            let input = input.clone();
            async move { Ok::<_, std::io::Error>(input) }
        })
        .await?;
        Ok::<_, Error>(order.id)
    });
    wf
}

/// The run body replayed over the (damaged) records: a step, then a signal.
async fn body() -> durably::Result<Order> {
    let order: Order =
        durably::step("order", || async { Ok::<_, std::io::Error>(Order { id: 9, items: vec![] }) }).await?;
    let signalled: Option<Order> = durably::signal_timeout("approval", Duration::from_millis(1)).await?;
    Ok(signalled.unwrap_or(order))
}

fn remove_db(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(path));
    }
}

fuzz_target!(|data: &[u8]| {
    let [which, flags, bytes @ ..] = data else { return };
    let (table, column, integer) = COLUMNS[usize::from(*which) % COLUMNS.len()];
    let db = fresh_db();
    runtime().block_on(async {
        // A run with an input, a recorded step, a delivered signal and an output.
        let wf = engine(&db).await;
        wf.complete(RUN, "approval", &Order { id: 3, items: vec!["x".into()] }).await.expect("deliver");
        let _ = wf.start::<_, u32>("fuzzed", RUN, &Order { id: 1, items: vec!["a".into()] }).await;
        drop(wf);

        {
            let conn = rusqlite::Connection::open(&db).expect("poke connection");
            let sql = if integer {
                format!("UPDATE {table} SET {column} = ?1 WHERE run_id = ?2")
            } else {
                format!("UPDATE {table} SET {column} = CAST(?1 AS TEXT) WHERE run_id = ?2")
            };
            let result = if integer {
                let mut raw = [0u8; 8];
                let n = bytes.len().min(8);
                raw[..n].copy_from_slice(&bytes[..n]);
                conn.execute(&sql, rusqlite::params![i64::from_le_bytes(raw), RUN])
            } else {
                conn.execute(&sql, rusqlite::params![bytes, RUN])
            };
            // A write the schema refuses (a duplicate key, NULL in NOT NULL) leaves the row as it was.
            let _ = result;
            if flags & 1 == 1 && !(table == "runs" && column == "status") {
                // Unfinished again, so that executing the run replays its records.
                let _ = conn
                    .execute("UPDATE runs SET status = 'running', output = NULL WHERE run_id = ?1", [RUN]);
            }
        }

        let wf = engine(&db).await;
        let _ = wf.get_run(RUN).await;
        let _ = wf.list_steps(RUN).await;
        let _ = wf.list_runs(&RunFilter::default()).await;
        if let Ok(doc) = wf.export(RUN).await {
            let _ = doc.to_json();
        }
        if flags & 2 == 2 {
            if let Ok(report) = wf.recover().await {
                let _ = tokio::time::timeout(Duration::from_secs(2), report.join()).await;
            }
        } else {
            let _ = tokio::time::timeout(Duration::from_secs(2), wf.run(RUN, |_| body())).await;
        }
    });
    remove_db(&db);
});
