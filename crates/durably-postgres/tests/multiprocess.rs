//! The multi-process suite (`durably_testkit::multiprocess`) on `PostgresStore`: several real
//! OS processes (this test binary, started again) sharing runs, leases and notifications
//! through the real server, each test on a fresh schema dropped afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use durably_postgres::PostgresStore;
use durably_testkit::multiprocess::Namespace;

durably_testkit::multiprocess_suite! {
    fresh = match common::fresh().await {
        Some((_builder, guard)) => Namespace::new(guard.0.clone()).guard(guard),
        None => return,
    },
    open(schema) = PostgresStore::builder(common::url())
        .schema(schema)
        .pool_size(2)
        .connect()
        .await
        .expect("connect the PostgreSQL store"),
}
