//! Group commit: the checkpoints of concurrent runs are written together, in far fewer
//! transactions than calls, each call still answered about its own record; one record the
//! server refuses fails only its own call. Its own test binary: it counts the database's
//! write transactions, which other tests would add to.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::{fresh, raw, start, step};
use durably_core::store::prelude::*;
use durably_core::{Error, StepStatus};

/// The server's next transaction id: every write transaction takes one.
async fn next_xid(client: &tokio_postgres::Client) -> i64 {
    client.query_one("SELECT txid_current()", &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checkpoints_share_transactions_and_all_land() {
    const RUNS: usize = 100;
    const STEPS: usize = 4;
    let Some((builder, _guard)) = fresh().await else { return };
    let store = Arc::new(builder.connect().await.unwrap());
    for r in 0..RUNS {
        start(&*store, &format!("r{r}")).await;
    }
    let client = raw().await;
    let before = next_xid(&client).await;
    let writers: Vec<_> = (0..RUNS)
        .map(|r| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for s in 0..STEPS {
                    store
                        .save_step(&format!("r{r}"), &step(&format!("s{s}"), 1_000 + s as i64))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let transactions = next_xid(&client).await - before - 1;
    let saves = (RUNS * STEPS) as i64;
    assert!(
        transactions <= saves / 4,
        "{saves} checkpoints of {RUNS} concurrent runs took {transactions} write transactions"
    );
    for r in 0..RUNS {
        let steps = store.list_steps(&format!("r{r}")).await.unwrap();
        let ids: Vec<&str> = steps.iter().map(|s| s.step_id.as_str()).collect();
        assert_eq!(ids, ["s0", "s1", "s2", "s3"], "run r{r}");
        assert!(steps.iter().all(|s| s.status == StepStatus::Completed));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_record_fails_only_its_own_call() {
    const RUNS: usize = 40;
    let Some((builder, _guard)) = fresh().await else { return };
    let store = Arc::new(builder.connect().await.unwrap());
    for r in 0..RUNS {
        start(&*store, &format!("r{r}")).await;
    }
    // PostgreSQL text cannot hold NUL: the server refuses this record.
    let calls: Vec<_> = (0..RUNS)
        .map(|r| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let name = if r == 7 { "bad\0step" } else { "good" };
                store.save_step(&format!("r{r}"), &step(name, 1_000)).await
            })
        })
        .collect();
    for (r, call) in calls.into_iter().enumerate() {
        let result = call.await.unwrap();
        if r == 7 {
            match result {
                Err(Error::Store { op: "save_step", run_id: Some(run), .. }) => assert_eq!(run, "r7"),
                other => panic!("the refused record's call got {other:?}"),
            }
            assert!(store.list_steps("r7").await.unwrap().is_empty(), "nothing half-written");
        } else {
            result.unwrap_or_else(|e| panic!("run r{r} failed for another run's record: {e}"));
            assert_eq!(store.list_steps(&format!("r{r}")).await.unwrap().len(), 1);
        }
    }
}
