//! Concurrent writers: group commit batches concurrent writes into few transactions without one
//! failing write spoiling the others, and several stores on one file (as several processes
//! would be) never surface "database is locked".

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{WriteLock, new_run, open, raw, start, step, temp_db};
use durably_core::store::prelude::*;
use durably_core::{Error, RunFilter, RunStatus, RunUpdate, SignalRecord};
use durably_sqlite::{Durability, SqliteStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_puts_concurrent_writes_in_fewer_transactions() {
    const WRITES: u64 = 500;
    let db = temp_db();
    let store = open(&db.path).await;
    start(&*store, "r").await;
    let before = store.stats();
    let tasks: Vec<_> = (0..WRITES)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.save_step("r", &step(&format!("s{i:03}"), i as i64)).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let after = store.stats();
    let (writes, commits) = (after.writes - before.writes, after.commits - before.commits);
    assert_eq!(writes, WRITES, "every write is counted once");
    assert!(commits < writes, "{writes} writes took {commits} commits: nothing was batched");
    assert_eq!(store.list_steps("r").await.unwrap().len(), WRITES as usize);
}

/// A step's event travels with its checkpoint, in one job of the writer: the two always share a
/// commit, so events do not add commits to a sequential run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_and_its_event_are_committed_together() {
    const STEPS: u64 = 100;
    let db = temp_db();
    let store = open(&db.path).await;
    let wf = durably_core::Workflow::builder("events").shared_store(store.clone()).build();
    let before = store.stats();
    wf.run("r", |ctx| async move {
        for i in 0..STEPS {
            ctx.step(format!("s{i}"), move || async move { Ok::<_, std::io::Error>(i) }).await?;
        }
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    let commits = store.stats().commits - before.commits;
    let events = store.read_events("r", 0, 1000).await.unwrap();
    let step_events = events.iter().filter(|e| e.kind == "step").count() as u64;
    assert_eq!(step_events, STEPS, "every step has its event: {events:?}");
    // The run's own writes (open, lease, final events and status) add a few; a separate
    // commit per event would make it 2 × STEPS, and a writer that took a checkpoint before its
    // event was queued would add one each time (70 to 100 of them on a busy machine).
    assert!(commits <= STEPS + 10, "{STEPS} steps and their events took {commits} commits");
}

/// A run's lease and its creation are one job of the writer, and so are its last events
/// (`started`, `completed`), its final status and the lease's release: a run without steps
/// commits twice, and nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stepless_run_commits_its_start_and_its_end_once_each() {
    let db = temp_db();
    let store = open(&db.path).await;
    let wf = durably_core::Workflow::builder("events").shared_store(store.clone()).build();
    let before = store.stats();
    wf.run("r", |_ctx| async move { Ok::<_, Error>(7u32) }).await.unwrap();
    let commits = store.stats().commits - before.commits;
    let kinds: Vec<String> =
        store.read_events("r", 0, 100).await.unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, ["started", "completed"]);
    assert!(commits <= 2, "lease with open, then end with release, took {commits} commits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_queued_behind_a_lock_commit_together() {
    let db = temp_db();
    let store = open(&db.path).await;
    start(&*store, "r").await;
    let before = store.stats();
    let lock = WriteLock::take(&db.path);
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.save_step("r", &step(&format!("s{i:03}"), i)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    lock.release();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let after = store.stats();
    assert_eq!(after.writes - before.writes, 300);
    // The writer may have taken the first write alone before the others were queued.
    assert!(
        after.commits - before.commits <= 2,
        "300 queued writes took {} commits",
        after.commits - before.commits
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_write_in_a_batch_does_not_fail_the_others() {
    let db = temp_db();
    let store = open(&db.path).await;
    start(&*store, "r").await;
    // A trigger makes one particular step fail inside SQLite, as a constraint would.
    raw(&db.path)
        .execute_batch(
            "CREATE TRIGGER poison BEFORE INSERT ON steps WHEN NEW.step_id = 'poison'
             BEGIN SELECT RAISE(ABORT, 'poisoned step refused'); END;",
        )
        .unwrap();
    let before = store.stats();
    let lock = WriteLock::take(&db.path);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = Arc::clone(&store);
        let id = if i == 25 { "poison".to_owned() } else { format!("s{i:02}") };
        tasks.push(tokio::spawn(async move { store.save_step("r", &step(&id, i)).await }));
    }
    let missing = {
        let store = Arc::clone(&store);
        tokio::spawn(
            async move { store.update_run("missing", &RunUpdate::new(RunStatus::Completed, 1)).await },
        )
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    lock.release();

    for (i, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap();
        if i == 25 {
            match result {
                Err(Error::Store { op, run_id, source, .. }) => {
                    assert_eq!((op, run_id.as_deref()), ("save_step", Some("r")));
                    assert!(source.to_string().contains("poisoned step refused"), "{source}");
                }
                other => panic!("the poisoned step must fail with a store error, got {other:?}"),
            }
        } else {
            result.unwrap_or_else(|e| panic!("write {i} failed with its batch: {e}"));
        }
    }
    match missing.await.unwrap() {
        Err(Error::RunNotFound { run_id }) => assert_eq!(run_id, "missing"),
        other => panic!("expected RunNotFound, got {other:?}"),
    }
    let steps = store.list_steps("r").await.unwrap();
    assert_eq!(steps.len(), 49, "all but the poisoned step landed");
    assert!(steps.iter().all(|s| s.step_id != "poison"));
    let after = store.stats();
    assert_eq!(after.writes - before.writes, 49);
    assert!(
        after.commits - before.commits <= 2,
        "the batch was split: {} commits",
        after.commits - before.commits
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_error_of_a_failing_write_names_the_operation_and_the_cause() {
    let db = temp_db();
    let store = open(&db.path).await;
    start(&*store, "r").await;
    raw(&db.path)
        .execute_batch(
            "CREATE TRIGGER poison BEFORE INSERT ON steps BEGIN SELECT RAISE(ABORT, 'poisoned step refused'); END;",
        )
        .unwrap();
    let err = store.save_step("r", &step("x", 1)).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("save_step") && text.contains("`r`"), "{text}");
    let cause = std::error::Error::source(&err).map(ToString::to_string).unwrap_or_default();
    assert!(cause.contains("poisoned step refused"), "the SQLite cause is kept: {cause}");
    // The failed write left the connection usable.
    store.deliver_signal("r", &SignalRecord::new("after", "1", 1)).await.unwrap();
}

/// Two stores on one file, each with its own writer thread and readers, as two processes would
/// have: 2 × 100 tasks write at once and no call fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_write_concurrently_without_lock_errors() {
    for durability in [Durability::Full, Durability::Normal] {
        let db = temp_db();
        let a = Arc::new(SqliteStore::builder(&db.path).durability(durability).open().await.unwrap());
        let b = Arc::new(SqliteStore::builder(&db.path).durability(durability).open().await.unwrap());
        let mut tasks = Vec::new();
        for (name, store) in [("a", &a), ("b", &b)] {
            for i in 0..100 {
                let store = Arc::clone(store);
                tasks.push(tokio::spawn(async move {
                    let run_id = format!("{name}-{i}");
                    store.open_run(new_run(&run_id)).await?;
                    for s in 0..3 {
                        store.save_step(&run_id, &step(&format!("s{s}"), s)).await?;
                    }
                    store.deliver_signal(&run_id, &SignalRecord::new("go", "1", 1)).await?;
                    store.update_run(&run_id, &RunUpdate::new(RunStatus::Completed, 2)).await?;
                    store.list_steps(&run_id).await
                }));
            }
        }
        for task in tasks {
            let steps = task.await.unwrap().unwrap_or_else(|e| panic!("{durability:?}: a call failed: {e}"));
            assert_eq!(steps.len(), 3);
        }
        // Each store sees the other's writes.
        let done = a.list_runs(&RunFilter::new().status(RunStatus::Completed)).await.unwrap();
        assert_eq!(done.len(), 200, "{durability:?}");
        assert_eq!(b.get_signal("a-7", "go").await.unwrap().as_deref(), Some("1"));
    }
}

/// With a busy timeout far shorter than another connection's transaction, SQLite reports BUSY;
/// the store waits and retries instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_longer_than_busy_timeout_is_waited_out() {
    let db = temp_db();
    let store = SqliteStore::builder(&db.path).busy_timeout(Duration::from_millis(10)).open().await.unwrap();
    start(&store, "r").await;
    let lock = WriteLock::take(&db.path);
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        lock.release();
    });
    let started = Instant::now();
    store.save_step("r", &step("late", 1)).await.expect("the write waits for the lock");
    store.update_run("r", &RunUpdate::new(RunStatus::Completed, 2)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250), "the lock was held: {:?}", started.elapsed());
    releaser.join().unwrap();
    assert_eq!(store.list_steps("r").await.unwrap().len(), 1);
}

/// A lock that never goes away ends in an error naming the operation, in durably's words, not
/// SQLite's "database is locked".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_that_is_never_released_gives_a_clear_error() {
    let db = temp_db();
    let store = SqliteStore::builder(&db.path).busy_timeout(Duration::from_millis(1)).open().await.unwrap();
    start(&store, "r").await;
    let lock = WriteLock::take(&db.path);
    let err = store.save_step("r", &step("never", 1)).await.unwrap_err();
    lock.release();
    match &err {
        Error::Store { op, run_id, source, .. } => {
            assert_eq!((*op, run_id.as_deref()), ("save_step", Some("r")));
            let text = source.to_string();
            assert!(!text.contains("database is locked"), "{text}");
            assert!(text.contains("kept the database file locked"), "{text}");
        }
        other => panic!("expected Error::Store, got {other:?}"),
    }
    store.save_step("r", &step("afterwards", 1)).await.expect("the store works once the lock is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_not_blocked_by_another_connections_write_lock() {
    let db = temp_db();
    let store = open(&db.path).await;
    start(&*store, "r").await;
    store.save_step("r", &step("a", 1)).await.unwrap();
    let lock = WriteLock::take(&db.path);
    let started = Instant::now();
    assert_eq!(store.list_steps("r").await.unwrap().len(), 1);
    assert!(store.get_run("r").await.unwrap().is_some());
    assert!(started.elapsed() < Duration::from_secs(1), "WAL readers do not wait for writers");
    lock.release();
}

/// A write that fails half-way (here `open_run`: its status change is made, then reading the
/// history finds a corrupt step) is rolled back whole, alone or in a batch with other writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_failing_half_way_leaves_nothing_behind_alone_or_in_a_batch() {
    let db = temp_db();
    let store = open(&db.path).await;
    for run_id in ["alone", "batched"] {
        start(&*store, run_id).await;
        store.save_step(run_id, &step("bad", 1)).await.unwrap();
        store.update_run(run_id, &RunUpdate::new(RunStatus::Failed, 2).error("boom")).await.unwrap();
    }
    raw(&db.path).execute("UPDATE steps SET attempts = -5 WHERE step_id = 'bad'", []).unwrap();

    let err = store.open_run(new_run("alone")).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    let before = store.stats();

    let lock = WriteLock::take(&db.path);
    let save_other = |i: i64| {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.save_step("other", &step(&format!("s{i}"), i)).await })
    };
    // The writer takes the first write alone and waits for the lock; everything after it queues
    // up and is committed as one batch, the failing open_run in the middle of it.
    let mut others: Vec<_> = (0..10).map(save_other).collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let failing = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.open_run(new_run("batched")).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    others.extend((10..20).map(save_other));
    tokio::time::sleep(Duration::from_millis(200)).await;
    lock.release();
    assert!(matches!(failing.await.unwrap(), Err(Error::Corrupt { .. })));
    for task in others {
        task.await.unwrap().unwrap();
    }

    for run_id in ["alone", "batched"] {
        let run = store.get_run(run_id).await.unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Failed, "{run_id}: the failed open_run must not resume the run");
        assert_eq!(run.error.as_deref(), Some("boom"), "{run_id}: nor clear its error");
    }
    assert_eq!(store.list_steps("other").await.unwrap().len(), 20);
    assert!(store.stats().commits - before.commits <= 2, "the failing write shared a batch");
}

/// Several stores opening one new file at once (processes starting together) all succeed: one
/// creates the schema, the others wait for it and find it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_stores_opening_a_new_file_at_once_all_succeed() {
    let db = temp_db();
    let opens: Vec<_> = (0..8)
        .map(|_| {
            let path = db.path.clone();
            tokio::spawn(async move { SqliteStore::open(&path).await })
        })
        .collect();
    let mut stores = Vec::new();
    for open in opens {
        stores.push(open.await.unwrap().unwrap_or_else(|e| panic!("a concurrent open failed: {e}")));
    }
    for (i, store) in stores.iter().enumerate() {
        start(store, &format!("run-{i}")).await;
    }
    assert_eq!(stores[0].list_runs(&RunFilter::new()).await.unwrap().len(), 8);
}
