//! The store conformance suite against `PostgresStore`: each test on a fresh schema of the real
//! server, dropped afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

durably_testkit::store_conformance_tests!(match crate::common::fixture().await {
    Some(fixture) => fixture,
    None => return,
});
