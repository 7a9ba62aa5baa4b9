//! Shared test harness of the package's own tests: a test runs once on the memory store and once
//! on SQLite, and can "restart the process" by opening a new engine on the same store (the
//! engine suite's [`Harness`]). The behaviours that must hold on every store are in the engine
//! suite itself (`tests/engine.rs` and the store crates' `tests/engine.rs`).
#![allow(dead_code, unreachable_pub, unused_imports)]

use durably_testkit::Fixture;
pub use durably_testkit::engine::{Boom, Counter, Harness, boom, crash};

pub async fn open_sqlite(path: &std::path::Path) -> durably::SqliteStore {
    durably::SqliteStore::open(path).await.expect("open sqlite store")
}

/// A SQLite store on a fresh file, its directory kept until the store is dropped.
pub async fn sqlite_fixture() -> Fixture<durably::SqliteStore> {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_sqlite(&dir.path().join("test.db")).await;
    Fixture::new(store).guard(dir)
}

/// Generates one `#[tokio::test]` per store for each `async fn NAME(h: Harness)`.
#[macro_export]
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = $crate::common::Harness::new(durably::MemoryStore::new(), "memory");
                    super::$name(h).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = $crate::common::Harness::new($crate::common::sqlite_fixture().await, "sqlite");
                    super::$name(h).await;
                }
            )*
        }
    };
}
