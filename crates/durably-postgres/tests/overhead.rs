//! What one checkpoint costs through the store against the floor of one single-row INSERT round
//! trip on a plain connection. Timing-dependent, so ignored by default and asserting nothing
//! about speed; run it in release mode and read the figures:
//! `cargo test --release -p durably-postgres --test overhead -- --ignored --nocapture`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

mod common;

use std::time::{Duration, Instant};

use common::{fresh, start, step};
use durably_core::NewRun;
use durably_core::store::prelude::*;
use durably_postgres::PostgresStore;

const N: usize = 1_000;

fn per_op(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e6 / n as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing; run in release mode with --nocapture"]
async fn save_step_against_a_raw_single_row_insert_with_synchronous_commit() {
    compare(true).await;
}

/// Without waiting for the WAL flush at commit, what is left is the round trip and the work of
/// the statement: the store's own overhead shows more clearly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing; run in release mode with --nocapture"]
async fn save_step_against_a_raw_single_row_insert_without_synchronous_commit() {
    compare(false).await;
}

async fn compare(synchronous_commit: bool) {
    let Some((_, guard)) = fresh().await else { return };
    // The store's connections and the raw one get the same session settings from the URL.
    let url = if synchronous_commit {
        common::url()
    } else {
        format!("{}?options=-c%20synchronous_commit%3Doff", common::url())
    };
    let store = PostgresStore::builder(&url).schema(&guard.0).pool_size(1).connect().await.unwrap();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let setting: String = client.query_one("SHOW synchronous_commit", &[]).await.unwrap().get(0);
    let s = format!("\"{}\"", guard.0);
    client
        .batch_execute(&format!(
            "CREATE TABLE {s}.bare (run_id text, step_id text, value text, PRIMARY KEY (run_id, step_id))"
        ))
        .await
        .unwrap();
    let bare = client.prepare(&format!("INSERT INTO {s}.bare VALUES ($1, $2, $3)")).await.unwrap();
    let same_upsert = client
        .prepare(&format!(
            "INSERT INTO {s}.steps (run_id, step_id, name, status, value_text, error, attempts,
                 request_hash, started_at_ms, finished_at_ms)
             VALUES ($1, $2, 'task', 'completed', $3, NULL, 1, NULL, 1, 1)
             ON CONFLICT (run_id, step_id) DO UPDATE SET value_text = excluded.value_text"
        ))
        .await
        .unwrap();
    start(&store, "r").await;

    // The three writes take turns, so that a burst of load from elsewhere on the machine
    // weighs on all of them alike; each sum is of the same N writes.
    let mut sums = [Duration::ZERO; 3];
    for i in 0..N {
        let t = Instant::now();
        client.execute(&bare, &[&"r", &format!("b{i}"), &"\"v\""]).await.unwrap();
        sums[0] += t.elapsed();
        let t = Instant::now();
        client.execute(&same_upsert, &[&"r", &format!("u{i}"), &"\"v\""]).await.unwrap();
        sums[1] += t.elapsed();
        let t = Instant::now();
        store.save_step("r", &step(&format!("s{i}"), 1)).await.unwrap();
        sums[2] += t.elapsed();
    }
    // Loading the whole history (here 2N steps) is one statement.
    let t = Instant::now();
    for _ in 0..20 {
        let history = store.open_run(NewRun::new("r", "wf", None, 2_000)).await.unwrap();
        assert_eq!(history.steps.len(), 2 * N);
    }
    let open = t.elapsed();
    println!(
        "synchronous_commit = {setting}; sequential, one connection, {N} of each, interleaved:\n  \
         raw single-row INSERT (3 text columns): {:.1} µs\n  \
         raw upsert into the store's steps table: {:.1} µs\n  \
         store.save_step: {:.1} µs ({:.2}x the raw INSERT, {:.2}x the raw upsert)\n  \
         open_run of a run with {} steps: {:.0} µs",
        per_op(sums[0], N),
        per_op(sums[1], N),
        per_op(sums[2], N),
        sums[2].as_secs_f64() / sums[0].as_secs_f64(),
        sums[2].as_secs_f64() / sums[1].as_secs_f64(),
        2 * N,
        per_op(open, 20),
    );
}

/// Concurrent checkpoints share WAL flushes: throughput of 16 runs saving steps at once
/// through one store (pool of 8) against the same steps saved one after another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing; run in release mode with --nocapture"]
async fn concurrent_save_step_throughput() {
    let Some((builder, _guard)) = fresh().await else { return };
    let store = std::sync::Arc::new(builder.pool_size(8).connect().await.unwrap());
    const RUNS: usize = 16;
    const PER_RUN: usize = 100;
    for r in 0..RUNS {
        start(&*store, &format!("r{r}")).await;
    }
    let t = Instant::now();
    for i in 0..PER_RUN {
        store.save_step("r0", &step(&format!("seq{i}"), 1)).await.unwrap();
    }
    let sequential = per_op(t.elapsed(), PER_RUN);
    let t = Instant::now();
    let tasks: Vec<_> = (0..RUNS)
        .map(|r| {
            let store = std::sync::Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..PER_RUN {
                    store.save_step(&format!("r{r}"), &step(&format!("s{i}"), 1)).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = t.elapsed();
    println!(
        "save_step, synchronous_commit = on: sequential {sequential:.1} µs each ({:.0}/s); \
         {RUNS} runs at once on a pool of 8: {:.0} saves/s",
        1e6 / sequential,
        (RUNS * PER_RUN) as f64 / elapsed.as_secs_f64()
    );
}
