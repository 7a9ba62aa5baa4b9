//! Shared test harness: every behaviour test runs once per store (memory and SQLite), and can
//! "restart the process" by opening a new engine on the same store.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use durably::store::prelude::*;
use durably::{MemoryStore, Workflow};

/// Which store a test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Memory,
    Sqlite,
}

/// A store that outlives engines, so a test can simulate a restart.
pub struct Harness {
    pub kind: Kind,
    store: Arc<dyn Store>,
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub async fn new(kind: Kind) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = match kind {
            Kind::Memory => Arc::new(MemoryStore::new()),
            Kind::Sqlite => Arc::new(open_sqlite(&dir.path().join("test.db")).await),
        };
        Harness { kind, store, dir }
    }

    /// A fresh engine on the harness's store (a "restarted process"), with no backoff waits.
    pub fn wf(&self) -> Workflow {
        self.wf_named("test-app")
    }

    pub fn wf_named(&self, app: &str) -> Workflow {
        Workflow::builder(app)
            .shared_store(self.store.clone())
            .default_backoff(durably::backoff::constant(0.0))
            .build()
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    pub fn db_path(&self) -> std::path::PathBuf {
        self.dir.path().join("test.db")
    }
}

pub async fn open_sqlite(path: &std::path::Path) -> durably::SqliteStore {
    durably::SqliteStore::open(path).await.expect("open sqlite store")
}

/// A shared execution counter for task bodies.
#[derive(Clone, Default, Debug)]
pub struct Counter(Arc<AtomicU32>);

impl Counter {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn hit(&self) -> u32 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
    pub fn reset(&self) {
        self.0.store(0, Ordering::SeqCst)
    }
}

/// Generates one `#[tokio::test]` per store for each `async fn NAME(h: Harness)`.
#[macro_export]
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Harness::new($crate::common::Kind::Memory).await).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Harness::new($crate::common::Kind::Sqlite).await).await;
                }
            )*
        }
    };
}

/// A plain error type for task bodies.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Boom(pub String);

pub fn boom(msg: &str) -> Boom {
    Boom(msg.to_owned())
}

/// A workflow body that gives up: `return common::crash("why")`.
pub fn crash<T>(msg: &str) -> Result<T, durably::Error> {
    Err(durably::Error::permanent(boom(msg)))
}

/// Starts `n` runs `<prefix>-<i>` on `wf`, each waiting on signal `go` (and returning its
/// payload), and returns once the harness's store records all of them as waiting.
pub async fn start_waiting_runs(
    h: &Harness,
    wf: &Workflow,
    prefix: &str,
    n: u32,
) -> Vec<tokio::task::JoinHandle<durably::Result<u32>>> {
    let runners: Vec<_> = (0..n)
        .map(|i| {
            let wf = wf.clone();
            let run_id = format!("{prefix}-{i}");
            tokio::spawn(async move { wf.run(run_id, |_| durably::signal::<u32>("go")).await })
        })
        .collect();
    let waiting = durably::RunFilter::new().status(durably::RunStatus::Waiting);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while h.wf().list_runs(&waiting).await.unwrap().len() < n as usize {
        assert!(tokio::time::Instant::now() < deadline, "the runs never all waited");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    runners
}
