//! The multi-process suite (`durably_testkit::multiprocess`) on `RedisStore`: several real OS
//! processes (this test binary, started again) sharing runs, leases and pub/sub wake-ups
//! through the shared server, each test under a fresh key prefix deleted afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Cleanup, fresh_prefix, redis_url, server_or_skip};
use durably_redis::RedisStore;
use durably_testkit::multiprocess::Namespace;

durably_testkit::multiprocess_suite! {
    fresh = match server_or_skip() {
        Some(url) => {
            let prefix = fresh_prefix();
            Namespace::new(prefix.clone()).guard(Cleanup { url, prefix })
        }
        None => return,
    },
    open(prefix) = RedisStore::builder(redis_url()).prefix(prefix).connect().await.expect("connect to Redis"),
}
