//! Runs prepared with the durably API for the CLI and dashboard tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use durably_core::store::prelude::*;
use durably_core::{Error, RunStatus, Workflow, step};
use durably_sqlite::SqliteStore;
use serde::{Deserialize, Serialize};

#[derive(Clone, Default)]
pub struct Counter(pub Arc<AtomicU32>);

impl Counter {
    pub fn hit(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub approved: bool,
    #[serde(default)]
    pub reason: Option<String>,
}

pub async fn sqlite(path: &Path) -> Arc<dyn Store> {
    let store = SqliteStore::builder(path).poll_interval(Duration::from_millis(20)).open().await.unwrap();
    Arc::new(store)
}

pub fn engine(store: Arc<dyn Store>) -> Workflow {
    Workflow::builder("shop").shared_store(store).default_retries(0).build()
}

/// Three steps: `fetch`, `price`, `ship`; `counter` counts executed bodies.
pub async fn pipeline(wf: &Workflow, run_id: &str, counter: Counter) -> Result<String, Error> {
    wf.run(run_id, move |_| async move {
        let c = counter.clone();
        let order = step("fetch", move || {
            c.hit();
            std::future::ready(Ok::<_, std::io::Error>(
                serde_json::json!({"id": 42, "items": ["book", "pen"]}),
            ))
        })
        .await?;
        let c = counter.clone();
        let price = step("price", move || {
            c.hit();
            std::future::ready(Ok::<_, std::io::Error>(19.5f64))
        })
        .await?;
        let c = counter.clone();
        let shipped = step("ship", move || {
            c.hit();
            std::future::ready(Ok::<_, std::io::Error>(format!("order {} shipped", order["id"])))
        })
        .await?;
        Ok::<_, Error>(format!("{shipped} for {price}"))
    })
    .await
}

/// `draft`, then waits on `manager-approval`, then `publish` (or `held` when rejected).
pub async fn approval_flow(wf: &Workflow, run_id: &str, counter: Counter) -> Result<String, Error> {
    wf.run(run_id, move |_| async move {
        let c = counter.clone();
        let draft = step("draft", move || {
            c.hit();
            std::future::ready(Ok::<_, std::io::Error>("Q3 report draft".to_owned()))
        })
        .await?;
        let approval: Approval = durably_core::signal("manager-approval").await?;
        if !approval.approved {
            return Ok(format!("held: {}", approval.reason.unwrap_or_default()));
        }
        let c = counter.clone();
        step("publish", move || {
            c.hit();
            let d = draft.clone();
            std::future::ready(Ok::<_, std::io::Error>(format!("published {d}")))
        })
        .await
    })
    .await
}

pub async fn wait_for_status(wf: &Workflow, run_id: &str, status: RunStatus) {
    for _ in 0..2000 {
        if wf.get_run(run_id).await.unwrap().is_some_and(|r| r.status == status) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("run {run_id} never reached {status}");
}

/// A store with `order-1` completed, `order-2` failed and `approval-1` left waiting (its
/// executor stopped, as if its process had exited).
pub async fn prepare(path: &Path) {
    let store = sqlite(path).await;
    let wf = engine(store);
    pipeline(&wf, "order-1", Counter::default()).await.unwrap();
    let failed = wf
        .run("order-2", |_| async {
            step("fetch", || std::future::ready(Err::<u32, _>(std::io::Error::other("upstream 503")))).await
        })
        .await;
    assert!(failed.is_err());
    let waiting = {
        let wf = wf.clone();
        tokio::spawn(async move { approval_flow(&wf, "approval-1", Counter::default()).await })
    };
    wait_for_status(&wf, "approval-1", RunStatus::Waiting).await;
    waiting.abort();
    let _ = waiting.await;
}

/// A store made by [`prepare`] and the dashboard serving it on a free loopback port.
pub struct Dashboard {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// An engine of its own on the same file, to execute runs and read the store.
    pub wf: Workflow,
    pub _dir: tempfile::TempDir,
}

pub async fn dashboard() -> Dashboard {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("durably.db");
    prepare(&db).await;
    let wf = engine(sqlite(&db).await);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(durably_cli::ui::serve(
        listener,
        durably_cli::open_workflow(&format!("sqlite:{}", db.display()), false).await.unwrap(),
    ));
    Dashboard { base: format!("http://{addr}"), addr, wf, _dir: dir }
}
