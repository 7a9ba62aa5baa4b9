//! Shared test harness of the package's own tests: a test runs once on the memory store and once
//! on SQLite, and can "restart the process" by opening a new engine on the same store. The
//! behaviours that must hold on every store are in the engine suite (`tests/engine.rs`); the
//! helpers for task bodies are the suite's.
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::sync::Arc;

use durably::{MemoryStore, Store, Workflow};
pub use durably_testkit::engine::{Boom, Counter, boom, crash};

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
