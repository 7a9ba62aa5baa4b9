//! The engine suite (`durably_testkit::engine`) on the stores of this package: the memory
//! store, and SQLite files with each durability. The same suite runs on Redis and PostgreSQL
//! from their crates' `tests/engine.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use durably::{Durability, SqliteStore};
use durably_testkit::Fixture;

async fn sqlite(durability: Durability) -> Fixture<SqliteStore> {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::builder(dir.path().join("durably.db"))
        .durability(durability)
        .open()
        .await
        .expect("open the SQLite store");
    Fixture::new(store).guard(dir)
}

mod memory {
    durably_testkit::engine_suite!(durably::MemoryStore::new());
}

mod sqlite_full {
    durably_testkit::engine_suite!(super::sqlite(durably::Durability::Full).await);
}

mod sqlite_normal {
    durably_testkit::engine_suite!(super::sqlite(durably::Durability::Normal).await);
}
