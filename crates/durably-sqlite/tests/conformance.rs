//! The store conformance suite against `SqliteStore`: a fresh database file per test, once with
//! each durability, and once in memory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

mod full {
    durably_testkit::store_conformance_tests!(
        crate::common::file_store(durably_sqlite::Durability::Full).await
    );
}

mod normal {
    durably_testkit::store_conformance_tests!(
        crate::common::file_store(durably_sqlite::Durability::Normal).await
    );
}

mod in_memory {
    durably_testkit::store_conformance_tests!(
        durably_sqlite::SqliteStore::in_memory().await.expect("open the in-memory store")
    );
}
