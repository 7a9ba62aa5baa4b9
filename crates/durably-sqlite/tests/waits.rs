//! Signal waits: one poller per store looks for deliveries by other processes for every waiting
//! run at once, so runs that merely wait cost no read each; deliveries through the store, by
//! another store on the file, or by a bare connection (another program) still wake them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{raw, temp_db};
use durably_core::store::prelude::*;
use durably_core::{Error, RunFilter, RunStatus, SignalRecord, Workflow};
use durably_sqlite::SqliteStore;
use durably_testkit::faults::{FaultStore, Op};

const POLL: Duration = Duration::from_millis(20);

/// Longer than any test: a wait that returns before it was woken.
const FOREVER: Duration = Duration::from_secs(60);

async fn open_polling(path: &std::path::Path) -> SqliteStore {
    SqliteStore::builder(path).poll_interval(POLL).open().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_runs_read_no_signal_until_one_is_delivered_by_another_process() {
    const RUNS: u32 = 50;
    let db = temp_db();
    let store = Arc::new(FaultStore::new(open_polling(&db.path).await));
    let wf = Workflow::builder("waits").shared_store(store.clone()).build();
    let runners: Vec<_> = (0..RUNS)
        .map(|i| {
            let wf = wf.clone();
            tokio::spawn(async move { wf.run(format!("w-{i}"), |_| durably_core::signal::<u32>("go")).await })
        })
        .collect();
    let waiting = RunFilter::new().status(RunStatus::Waiting);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while store.inner().list_runs(&waiting).await.unwrap().len() < RUNS as usize {
        assert!(tokio::time::Instant::now() < deadline, "the runs never all waited");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = store.calls(Op::GetSignal);
    tokio::time::sleep(POLL * 25).await;
    let reads = store.calls(Op::GetSignal) - before;
    assert!(reads < RUNS, "{reads} signal reads in 25 poll intervals of {RUNS} waiting runs");
    assert_eq!(store.inner().runs_waited_on(), RUNS as usize);

    // Another process (another store on the file) delivers: the poller wakes every run.
    let other = Workflow::builder("waits").store(open_polling(&db.path).await).build();
    for i in 0..RUNS {
        assert!(other.complete(&format!("w-{i}"), "go", &i).await.unwrap());
    }
    for (i, runner) in runners.into_iter().enumerate() {
        let result = tokio::time::timeout(Duration::from_secs(20), runner).await.expect("woken").unwrap();
        assert_eq!(result.unwrap(), i as u32);
    }
    assert_eq!(store.inner().runs_waited_on(), 0, "every wait unregistered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_inserted_by_another_program_wakes_the_wait() {
    let db = temp_db();
    let store = Arc::new(open_polling(&db.path).await);
    let wait = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.wait_for_signal("run 🦀'", "go'%", FOREVER).await })
    };
    while store.runs_waited_on() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Unrelated writes change the file too: the poller looks, finds nothing, and waits on.
    let conn = raw(&db.path);
    conn.execute(
        "INSERT INTO signals (run_id, name, payload, delivered_at_ms) VALUES ('run 🦀''', 'other', '1', 1)",
        [],
    )
    .unwrap();
    tokio::time::sleep(POLL * 5).await;
    assert!(!wait.is_finished(), "woken by a signal it does not wait for");
    conn.execute(
        "INSERT INTO signals (run_id, name, payload, delivered_at_ms) VALUES ('run 🦀''', 'go''%', '2', 2)",
        [],
    )
    .unwrap();
    tokio::time::timeout(Duration::from_secs(20), wait).await.expect("woken by the insert").unwrap();
    assert_eq!(store.get_signal("run 🦀'", "go'%").await.unwrap().as_deref(), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_through_the_store_wakes_its_waits_at_once_in_memory_too() -> Result<(), Error> {
    let db = temp_db();
    let stores = [Arc::new(SqliteStore::in_memory().await?), Arc::new(open_polling(&db.path).await)];
    for store in stores {
        let wait = {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.wait_for_signal("r", "go", FOREVER).await })
        };
        while store.runs_waited_on() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(store.deliver_signal("r", &SignalRecord::new("go", "1", 1)).await?);
        tokio::time::timeout(Duration::from_secs(20), wait).await.expect("woken by the delivery").unwrap();
    }
    Ok(())
}

/// A worker waiting for work on one store is woken by a run another process enqueues, or a
/// parked run another process's signal makes runnable, through the poller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_work_is_woken_by_an_enqueue_and_an_unpark_of_another_process() {
    let db = temp_db();
    let worker = Arc::new(open_polling(&db.path).await);
    let other = open_polling(&db.path).await;
    let queues = vec!["q".to_owned()];
    let wait = {
        let (worker, queues) = (Arc::clone(&worker), queues.clone());
        tokio::spawn(async move { worker.wait_for_work(&queues, FOREVER).await })
    };
    other.enqueue(&durably_core::QueuedRun::new("job", "wf", None, "q", 1_000)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), wait).await.expect("woken by the enqueue").unwrap();

    let claim = durably_core::Claim::new("q", "w", FOREVER, durably_core::now_ms(), 1);
    assert_eq!(worker.claim_runs(&claim).await.unwrap().len(), 1);
    assert!(worker.park_run("job", "w", "go", None, durably_core::now_ms()).await.unwrap());
    let wait = {
        let worker = Arc::clone(&worker);
        tokio::spawn(async move { worker.wait_for_work(&queues, FOREVER).await })
    };
    let signal = SignalRecord::new("go", "true", durably_core::now_ms());
    assert!(other.deliver_signal("job", &signal).await.unwrap());
    tokio::time::timeout(Duration::from_secs(30), wait).await.expect("woken by the unpark").unwrap();
}

/// A reader following a run's log on one store is woken by events another process appends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_events_is_woken_by_an_append_of_another_process() {
    let db = temp_db();
    let reader = Arc::new(open_polling(&db.path).await);
    let other = open_polling(&db.path).await;
    let wait = {
        let reader = Arc::clone(&reader);
        tokio::spawn(async move { reader.wait_for_events("r", 0, FOREVER).await })
    };
    other.append_events("r", &[durably_core::NewEvent::new("text", "\"hi\"", 1)], u64::MAX).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), wait).await.expect("woken by the append").unwrap();
    assert_eq!(reader.read_events("r", 0, 10).await.unwrap().len(), 1);
}
