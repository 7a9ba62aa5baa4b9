//! The engine suite (`durably_testkit::engine`) on `PostgresStore`: every test on a fresh schema of the real server, dropped afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

durably_testkit::engine_suite!(match crate::common::fixture().await {
    Some(fixture) => fixture,
    None => return,
});
