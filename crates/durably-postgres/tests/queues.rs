//! Parking and delivering at once: whichever of `park_run` and `deliver_signal` commits first,
//! the parked run ends up claimable (no wake-up is lost between a run's last look and its park).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use durably_core::store::prelude::*;
use durably_core::{Claim, QueuedRun, RunStatus, SignalRecord, now_ms};

const RUNS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_racing_a_park_always_leaves_the_run_claimable() {
    let Some(fixture) = common::fixture().await else { return };
    let store = fixture.store();
    for i in 0..RUNS {
        store.enqueue(&QueuedRun::new(format!("job-{i:02}"), "wf", None, "q", 1_000)).await.unwrap();
    }
    let claim = Claim::new("q", "w", Duration::from_secs(600), now_ms(), RUNS);
    assert_eq!(store.claim_runs(&claim).await.unwrap().len(), RUNS);

    let mut tasks = Vec::new();
    for i in 0..RUNS {
        let run_id = format!("job-{i:02}");
        let (parker, deliverer) = (Arc::clone(&store), Arc::clone(&store));
        let park_id = run_id.clone();
        tasks.push(tokio::spawn(async move {
            assert!(parker.park_run(&park_id, "w", "go", None, now_ms()).await.unwrap());
        }));
        tasks.push(tokio::spawn(async move {
            let signal = SignalRecord::new("go", "true", now_ms());
            assert!(deliverer.deliver_signal(&run_id, &signal).await.unwrap());
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let claim = Claim::new("q", "w2", Duration::from_secs(600), now_ms(), RUNS);
    let woken = store.claim_runs(&claim).await.unwrap();
    let stuck: Vec<String> = store
        .list_runs(&durably_core::RunFilter::new().status(RunStatus::Waiting))
        .await
        .unwrap()
        .into_iter()
        .map(|r| format!("{} wakes at {:?}", r.run_id, r.wake_at_ms))
        .collect();
    assert_eq!(woken.len(), RUNS, "runs parked for ever despite their signal: {stuck:?}");
}
