//! Queues across processes on one file: claims of two stores racing never share a run nor pass
//! the limit, and a delivery by one store racing a park by another always leaves the run
//! claimable.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::{open, temp_db};
use durably_core::store::prelude::*;
use durably_core::{Claim, QueueLimits, QueuedRun, SignalRecord, now_ms};

const RUNS: usize = 40;
const TTL: Duration = Duration::from_secs(600);

async fn enqueue_all(store: &impl Store) {
    for i in 0..RUNS {
        store.enqueue(&QueuedRun::new(format!("job-{i:02}"), "wf", None, "q", 1_000)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_of_two_stores_on_one_file_keep_the_limit_and_never_share_a_run() {
    let db = temp_db();
    let (a, b) = (open(&db.path).await, open(&db.path).await);
    enqueue_all(&*a).await;
    let mut limits = QueueLimits::default();
    limits.concurrency = Some(7);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = Arc::clone(if i % 2 == 0 { &a } else { &b });
        tasks.push(tokio::spawn(async move {
            let claim = Claim::new("q", format!("owner-{i}"), TTL, now_ms(), 3).limits(limits);
            store.claim_runs(&claim).await.unwrap()
        }));
    }
    let mut claimed = Vec::new();
    for task in tasks {
        claimed.extend(task.await.unwrap().into_iter().map(|run| run.run_id));
    }
    let distinct: BTreeSet<&String> = claimed.iter().collect();
    assert_eq!(distinct.len(), claimed.len(), "a run was claimed twice: {claimed:?}");
    assert_eq!(claimed.len(), 7, "the limit of 7 must be reached and kept: {claimed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_by_one_store_racing_a_park_by_another_leaves_the_run_claimable() {
    let db = temp_db();
    let (parker, deliverer) = (open(&db.path).await, open(&db.path).await);
    enqueue_all(&*parker).await;
    assert_eq!(parker.claim_runs(&Claim::new("q", "w", TTL, now_ms(), RUNS)).await.unwrap().len(), RUNS);
    let mut tasks = Vec::new();
    for i in 0..RUNS {
        let run_id = format!("job-{i:02}");
        let (p, d, park_id) = (Arc::clone(&parker), Arc::clone(&deliverer), run_id.clone());
        tasks.push(tokio::spawn(async move {
            assert!(p.park_run(&park_id, "w", "go", None, now_ms()).await.unwrap());
        }));
        tasks.push(tokio::spawn(async move {
            assert!(d.deliver_signal(&run_id, &SignalRecord::new("go", "true", now_ms())).await.unwrap());
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let woken = deliverer.claim_runs(&Claim::new("q", "w2", TTL, now_ms(), RUNS)).await.unwrap();
    assert_eq!(woken.len(), RUNS, "a run stayed parked despite its signal");
}
