//! The multi-process suite (`durably_testkit::multiprocess`) on one SQLite file per test:
//! several real OS processes (this test binary, started again) sharing runs through it. The
//! store crates run the same suite on Redis and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use durably_testkit::multiprocess::Namespace;

durably_testkit::multiprocess_suite! {
    fresh = {
        let dir = tempfile::tempdir().unwrap();
        Namespace::new(dir.path().join("shared.db").display().to_string()).guard(dir)
    },
    open(path) = durably::SqliteStore::open(path).await.expect("open the SQLite store"),
}
