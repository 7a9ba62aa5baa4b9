//! Group commit: the checkpoints and event appends of concurrent runs are written together, in
//! far fewer transactions than calls, each call still answered about its own record; one
//! record the server refuses fails only its own call. Its own test binary: it counts the database's
//! write transactions, which other tests would add to.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::{fresh, raw, start, step};
use durably_core::store::prelude::*;
use durably_core::{Error, NewEvent, StepStatus};
use durably_postgres::PostgresStore;

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

/// A checkpoint with its event, as the engine sends them: in one write (even steps), or as two
/// calls at once (odd steps, as on a store that cannot write both together).
async fn checkpoint_with_event(store: &PostgresStore, run: &str, s: usize) {
    let event = NewEvent::new("step", format!("{{\"step\":{s}}}"), 1_000 + s as i64);
    let record = step(&format!("s{s}"), 1_000 + s as i64);
    if s.is_multiple_of(2) {
        store.save_step_with_events(run, &record, std::slice::from_ref(&event), 100).await.unwrap().unwrap();
    } else {
        let (saved, appended) = tokio::join!(
            store.save_step(run, &record),
            store.append_events(run, std::slice::from_ref(&event), 100)
        );
        saved.unwrap();
        assert_eq!(appended.unwrap(), s as u64, "the append answers its own first offset");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_and_their_events_share_transactions_and_keep_dense_offsets() {
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
                    checkpoint_with_event(&store, &format!("r{r}"), s).await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let transactions = next_xid(&client).await - before - 1;
    let writes = (2 * RUNS * STEPS) as i64;
    assert!(
        transactions <= writes / 4,
        "{writes} checkpoints and appends of {RUNS} concurrent runs took {transactions} write transactions"
    );
    for r in 0..RUNS {
        let run = format!("r{r}");
        let events = store.read_events(&run, 0, 100).await.unwrap();
        let got: Vec<(u64, &str)> = events.iter().map(|e| (e.offset, e.data.as_str())).collect();
        let want: Vec<(u64, String)> = (0..STEPS).map(|s| (s as u64, format!("{{\"step\":{s}}}"))).collect();
        let want: Vec<(u64, &str)> = want.iter().map(|(o, d)| (*o, d.as_str())).collect();
        assert_eq!(got, want, "run {run}");
        assert_eq!(store.list_steps(&run).await.unwrap().len(), STEPS, "run {run}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_append_fails_only_its_own_call_and_a_batch_keeps_each_runs_retention() {
    const RUNS: usize = 40;
    let Some((builder, _guard)) = fresh().await else { return };
    let store = Arc::new(builder.connect().await.unwrap());
    let calls: Vec<_> = (0..RUNS)
        .map(|r| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                // PostgreSQL text cannot hold NUL: the server refuses run r7's events.
                let data = if r == 7 { "\"bad\0\"" } else { "1" };
                let events: Vec<NewEvent> = (0..5).map(|i| NewEvent::new("text", data, i)).collect();
                // Each run keeps its own newest `r % 3 + 1`, whatever the others of the batch keep.
                store.append_events(&format!("r{r}"), &events, (r % 3 + 1) as u64).await
            })
        })
        .collect();
    for (r, call) in calls.into_iter().enumerate() {
        let result = call.await.unwrap();
        let run = format!("r{r}");
        if r == 7 {
            match result {
                Err(Error::Store { op: "append_events", run_id: Some(id), .. }) => assert_eq!(id, run),
                other => panic!("the refused append got {other:?}"),
            }
            assert!(store.read_events(&run, 0, 10).await.unwrap().is_empty(), "nothing half-written");
        } else {
            assert_eq!(result.unwrap_or_else(|e| panic!("run {run} failed for another's append: {e}")), 0);
            let offsets: Vec<u64> =
                store.read_events(&run, 0, 10).await.unwrap().iter().map(|e| e.offset).collect();
            let kept = r % 3 + 1;
            assert_eq!(
                offsets,
                ((5 - kept) as u64..5).collect::<Vec<_>>(),
                "run {run} keeps its newest {kept}"
            );
        }
    }
}
