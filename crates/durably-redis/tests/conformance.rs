//! The store conformance suite against `RedisStore` on the shared server: each test under a
//! fresh key prefix, deleted afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

durably_testkit::store_conformance_tests!(match crate::common::fixture().await {
    Some(fixture) => fixture,
    None => return,
});
