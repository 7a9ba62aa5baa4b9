//! The engine suite (`durably_testkit::engine`) on `RedisStore`: every test on a fresh key prefix of the shared server, deleted afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

durably_testkit::engine_suite!(match crate::common::fixture().await {
    Some(fixture) => fixture,
    None => return,
});
