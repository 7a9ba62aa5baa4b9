//! Retries with backoff in virtual time (rule 5 of docs/design.md): the waits between attempts
//! are the backoff's, not the store's. The store-generic retry behaviours are in the engine
//! suite (`durably_testkit::engine`), run by `tests/engine.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Counter, boom};
use durably::Error;

/// Backoff waits happen between attempts: with time paused, 3 retries of exponential(2, 60) wait
/// 2 + 4 + 8 = 14 virtual seconds.
#[tokio::test(start_paused = true)]
async fn exponential_backoff_waits_between_attempts() {
    let wf = durably::Workflow::builder("t").build();
    let c = Counter::new();
    let start = tokio::time::Instant::now();
    let err = wf
        .run("b1", |_| {
            let c = c.clone();
            durably::step("slow", move || {
                let c = c.clone();
                async move {
                    c.hit();
                    Err::<u32, _>(boom("down"))
                }
            })
            .retries(3)
            .backoff(durably::backoff::exponential(2.0, 60.0))
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Task { attempts: 4, .. }), "{err:?}");
    assert_eq!(start.elapsed().as_secs(), 14);
}
