//! The engine suite (`durably_testkit::engine`) on the memory store. The same suite runs on
//! SQLite files (each durability), Redis and PostgreSQL from the store crates' `tests/engine.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

durably_testkit::engine_suite!(durably::MemoryStore::new());
