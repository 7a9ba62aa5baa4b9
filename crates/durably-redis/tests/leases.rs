//! Leases keep time by the Redis server's clock: the caller's `now_ms` is ignored, so workers
//! with skewed clocks agree on who holds a run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Cleanup, fresh_prefix, raw, server_or_skip};
use durably_core::store::prelude::*;
use durably_core::{LeaseOutcome, NewRun};
use durably_redis::RedisStore;

fn server_now_ms(url: &str) -> i64 {
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query(&mut raw(url)).unwrap();
    secs * 1_000 + micros / 1_000
}

#[tokio::test]
async fn lease_times_come_from_the_server_not_from_now_ms() {
    let Some(url) = server_or_skip() else { return };
    let prefix = fresh_prefix();
    let _cleanup = Cleanup { url: url.clone(), prefix: prefix.clone() };
    let store = RedisStore::builder(url.as_str()).prefix(prefix.as_str()).connect().await.unwrap();
    store.open_run(NewRun::new("r", "wf", None, 1)).await.unwrap();

    // A worker whose clock says 1970 takes a 60 s lease…
    let before = server_now_ms(&url);
    assert_eq!(
        store.acquire_lease("r", "slow-clock", Duration::from_secs(60), 0).await.unwrap(),
        LeaseOutcome::Acquired
    );
    let after = server_now_ms(&url);
    // …and a worker whose clock is at the end of time still finds it held, until the
    // server's now + 60 s.
    let held = match store.acquire_lease("r", "fast-clock", Duration::from_secs(60), i64::MAX).await.unwrap()
    {
        LeaseOutcome::HeldBy(lease) => lease,
        other => panic!("a live lease must not be taken because the caller's clock is ahead: {other:?}"),
    };
    assert_eq!(held.owner, "slow-clock");
    assert!(
        (before + 60_000..=after + 60_000).contains(&held.expires_at_ms),
        "expiry {} is not the server's time + 60 s ({before}..{after} + 60 s)",
        held.expires_at_ms
    );
    // Recovery, asked with a clock far ahead, still sees the run as held.
    assert!(store.recoverable_runs(i64::MAX, 10).await.unwrap().is_empty());
    // The lease key expires by itself on the server.
    let pttl: i64 = redis::cmd("PTTL").arg(format!("{prefix}:lease:1:r")).query(&mut raw(&url)).unwrap();
    assert!((55_000..=60_000).contains(&pttl), "lease key PTTL {pttl} ms");
}
