//! PostgreSQL's btree limit on index entries (about 2.7 KB after compression): ids of several
//! kilobytes of repetitive text are stored verbatim (the conformance suite's 10 KB ids), but
//! an id of incompressible text that large is refused with an error naming the operation and
//! the run, and nothing is half-written.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use durably_core::store::prelude::*;
use durably_core::{Error, NewRun, RunFilter};

/// `len` bytes of hex digits from a fixed-seed generator: about 4 bits of entropy per byte, so
/// PostgreSQL's compression cannot bring 10 KB under the index limit.
fn incompressible(len: usize) -> String {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from_digit((x % 16) as u32, 16).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn an_incompressible_ten_kilobyte_run_id_is_refused_with_a_clear_error() {
    let Some(fixture) = common::fixture().await else { return };
    let store = fixture.store();
    let run_id = incompressible(10 * 1024);
    let err = store.open_run(NewRun::new(run_id.clone(), "wf", None, 1_000)).await.unwrap_err();
    match &err {
        Error::Store { op, run_id: Some(id), .. } => {
            assert_eq!(*op, "open_run");
            assert_eq!(id, &run_id);
        }
        other => panic!("expected Error::Store, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("54000") && text.contains("index row"), "says why: {}", &text[text.len() - 200..]);
    assert!(store.list_runs(&RunFilter::new()).await.unwrap().is_empty(), "nothing was written");
    // The store keeps working.
    common::start(&*store, "ordinary").await;
    // A 2 KB incompressible id still fits.
    let fits = incompressible(2 * 1024);
    let history = store.open_run(NewRun::new(fits.clone(), "wf", None, 1_000)).await.unwrap();
    assert_eq!(history.run.run_id, fits);
}
