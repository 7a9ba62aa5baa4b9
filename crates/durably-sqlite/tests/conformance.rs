//! The store conformance suite against `SqliteStore`: a fresh database file per test, once with
//! each durability, and once in memory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use durably_sqlite::{Durability, SqliteStore};
use durably_testkit::Fixture;

async fn file_store(durability: Durability) -> Fixture<SqliteStore> {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::builder(dir.path().join("durably.db"))
        .durability(durability)
        .open()
        .await
        .expect("open the SQLite store");
    Fixture::new(store).guard(dir)
}

mod full {
    durably_testkit::store_conformance_tests!(super::file_store(durably_sqlite::Durability::Full).await);
}

mod normal {
    durably_testkit::store_conformance_tests!(super::file_store(durably_sqlite::Durability::Normal).await);
}

mod in_memory {
    durably_testkit::store_conformance_tests!(
        durably_sqlite::SqliteStore::in_memory().await.expect("open the in-memory store")
    );
}
