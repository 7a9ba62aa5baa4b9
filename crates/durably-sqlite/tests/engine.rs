//! The engine suite (`durably_testkit::engine`) on `SqliteStore`: a fresh database file per
//! test, once with each durability. The root package runs it on the memory store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

mod full {
    durably_testkit::engine_suite!(crate::common::file_store(durably_sqlite::Durability::Full).await);
}

mod normal {
    durably_testkit::engine_suite!(crate::common::file_store(durably_sqlite::Durability::Normal).await);
}
