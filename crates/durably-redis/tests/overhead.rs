//! The cost of a checkpoint: `save_step` (a Lua script that writes the step and refreshes the
//! TTL of the run's keys) against a bare `SET` on the same server, one at a time; and of the
//! queue scripts (`enqueue`, `claim_runs` with many runs executing, `append_events`). Ignored
//! by default because they measure rather than check; run them with
//! `cargo test -p durably-redis --release --test overhead -- --ignored --nocapture`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

mod common;

use std::time::{Duration, Instant};

use common::{Cleanup, fresh_prefix, server_or_skip};
use durably_core::store::prelude::*;
use durably_core::{
    Claim, NewEvent, NewRun, QueueLimits, QueuedRun, RunStatus, RunUpdate, StepRecord, StepStatus,
};
use durably_redis::RedisStore;

const ROUNDS: usize = 5_000;

fn per_op(total: Duration) -> String {
    format!("{:.1} µs", total.as_secs_f64() * 1e6 / ROUNDS as f64)
}

#[tokio::test]
#[ignore = "a measurement; run with --ignored --nocapture"]
async fn save_step_round_trip_against_a_bare_set() {
    let Some(url) = server_or_skip() else { return };
    let prefix = fresh_prefix();
    let _cleanup = Cleanup { url: url.clone(), prefix: prefix.clone() };
    let store = RedisStore::builder(url.as_str()).prefix(prefix.as_str()).connect().await.unwrap();
    store.open_run(NewRun::new("bench", "wf", None, 1)).await.unwrap();
    let mut conn =
        redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let value = r#"{"order":42,"items":["a","b"],"total":"19.99"}"#;

    // Warm up both paths (script load, connection).
    for i in 0..200 {
        let mut step = StepRecord::new(format!("warm-{i}"), "task", StepStatus::Completed, i);
        step.value = Some(value.to_owned());
        store.save_step("bench", &step).await.unwrap();
        let _: () = redis::cmd("SET")
            .arg(format!("{prefix}:raw:{i}"))
            .arg(value)
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    let started = Instant::now();
    for i in 0..ROUNDS {
        let _: () = redis::cmd("SET")
            .arg(format!("{prefix}:raw:{i}"))
            .arg(value)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let set = started.elapsed();

    let started = Instant::now();
    for i in 0..ROUNDS {
        let mut step = StepRecord::new(format!("step-{i}"), "task", StepStatus::Completed, i as i64);
        step.value = Some(value.to_owned());
        step.attempts = 1;
        store.save_step("bench", &step).await.unwrap();
    }
    let save = started.elapsed();

    let started = Instant::now();
    let history = store.open_run(NewRun::new("bench", "wf", None, 2)).await.unwrap();
    let open = started.elapsed();
    assert_eq!(history.steps.len(), ROUNDS + 200);

    println!("{ROUNDS} sequential round trips on {url}:");
    println!("  raw SET:   {} per op", per_op(set));
    println!("  save_step: {} per op", per_op(save));
    println!("  open_run of the {}-step history: {:.2} ms", ROUNDS + 200, open.as_secs_f64() * 1e3);
}

#[tokio::test]
#[ignore = "a measurement; run with --ignored --nocapture"]
async fn queue_scripts_per_call() {
    const RUNS: usize = 2_000;
    const EXECUTING: usize = 200;
    let Some(url) = server_or_skip() else { return };
    let prefix = fresh_prefix();
    let _cleanup = Cleanup { url: url.clone(), prefix: prefix.clone() };
    let store = RedisStore::builder(url.as_str()).prefix(prefix.as_str()).connect().await.unwrap();
    let ms = |d: Duration, n: usize| format!("{:.1} µs", d.as_secs_f64() * 1e6 / n as f64);
    let now = durably_core::now_ms();
    let started = Instant::now();
    for i in 0..RUNS {
        let run = QueuedRun::new(format!("job-{i:05}"), "wf", Some("{}".into()), "q", now + i as i64);
        store.enqueue(&run.key(format!("tenant-{}", i % 10))).await.unwrap();
    }
    let enqueue = started.elapsed();
    // Keep EXECUTING runs under live leases: each claim walks them to count its limits.
    let ttl = Duration::from_secs(600);
    let hold = store.claim_runs(&Claim::new("q", "holder", ttl, now, EXECUTING)).await.unwrap();
    assert_eq!(hold.len(), EXECUTING);
    let mut limits = QueueLimits::default();
    limits.concurrency = Some(u32::MAX);
    limits.per_key = Some(u32::MAX);
    let (mut claims, mut claimed) = (0, 0);
    let started = Instant::now();
    loop {
        let batch = store.claim_runs(&Claim::new("q", "w", ttl, now, 10).limits(limits)).await.unwrap();
        claims += 1;
        if batch.is_empty() {
            break;
        }
        claimed += batch.len();
        for run in batch {
            let done = RunUpdate::new(RunStatus::Completed, now).output("1");
            store.update_run(&run.run_id, &done).await.unwrap();
            store.release_lease(&run.run_id, "w").await.unwrap();
        }
    }
    let claim_loop = started.elapsed();
    assert_eq!(claimed, RUNS - EXECUTING);
    let started = Instant::now();
    for i in 0..ROUNDS {
        store
            .append_events("run", &[NewEvent::new("text", format!("{{\"chunk\":{i}}}"), 1)], u64::MAX)
            .await
            .unwrap();
    }
    let append = started.elapsed();
    println!("on {url}:");
    println!("  enqueue: {} per run ({RUNS} runs)", ms(enqueue, RUNS));
    println!(
        "  claim 10 + complete + release each, {EXECUTING} others executing: {} per claimed run ({claims} claims)",
        ms(claim_loop, claimed)
    );
    println!("  append_events of one event: {} per call ({ROUNDS} calls)", ms(append, ROUNDS));
}
