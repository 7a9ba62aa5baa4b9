//! Queues, workers, parked runs, child runs and patches (rules 22–26 of docs/design.md).
// A test suite reports failure by panicking, and each test's name is its documentation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Counter, Harness};
use durably::{EnqueueOptions, Error, Queue, RunStatus, Workflow};

/// How long a test waits for something that should take milliseconds.
const PATIENCE: Duration = Duration::from_secs(30);

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut).await.unwrap_or_else(|_| panic!("{what} did not happen in time"))
}

async fn wait_until(
    h: &Harness,
    run_id: &str,
    what: &str,
    ok: impl Fn(&durably::RunRecord) -> bool,
) -> durably::RunRecord {
    within(what, async {
        loop {
            if let Some(run) = h.wf().get_run(run_id).await.unwrap()
                && ok(&run)
            {
                return run;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// An engine with queue `jobs` (and `limits` applied) and the workflows of these tests.
fn engine(h: &Harness, c: &Counter, queue: Queue) -> Workflow {
    let wf = h.wf();
    wf.add_queue(queue).unwrap();
    let counter = c.clone();
    wf.register_fn("double", move |_ctx, n: u32| {
        let c = counter.clone();
        async move {
            let out = durably::step("double", move || {
                let c = c.clone();
                async move {
                    c.hit();
                    Ok::<_, std::io::Error>(n * 2)
                }
            })
            .await?;
            Ok::<_, Error>(out)
        }
    });
    wf.register_fn("fail", |_ctx, why: String| async move { super::crash::<u32>(&why) });
    let counter = c.clone();
    wf.register_fn("approve", move |_ctx, n: u32| {
        let c = counter.clone();
        async move {
            durably::step("before", move || {
                let c = c.clone();
                async move {
                    c.hit();
                    Ok::<_, std::io::Error>(())
                }
            })
            .await?;
            let ok: bool = durably::signal("approval").await?;
            Ok::<_, Error>(if ok { n } else { 0 })
        }
    });
    wf.register_fn("nap", |_ctx, ms: u64| async move {
        durably::sleep(Duration::from_millis(ms)).await?;
        Ok::<_, Error>(ms)
    });
    wf.register_fn("parent", |_ctx, n: u32| async move {
        let doubled: u32 = durably::child("double", &n).result().await?;
        let again: u32 = durably::child("double", &doubled).result().await?;
        Ok::<_, Error>(again)
    });
    wf.register_fn("fan_out", |_ctx, n: u32| async move {
        let handles =
            futures::future::try_join_all((0..n).map(|i| durably::child("double", &i).start())).await?;
        let mut total = 0u32;
        for handle in handles {
            total += handle.join::<u32>().await?;
        }
        Ok::<_, Error>(total)
    });
    wf.register_fn("parent_of_failure", |_ctx, why: String| async move {
        match durably::child("fail", &why).result::<u32>().await {
            Err(Error::RunFailed { message, .. }) => Ok::<_, Error>(message),
            other => panic!("the child's failure must reach the parent, got {other:?}"),
        }
    });
    wf.register_fn("parent_waiting", |_ctx, n: u32| async move {
        let out: u32 = durably::child("approve", &n).id("the-child").result().await?;
        Ok::<_, Error>(out)
    });
    wf
}

pub async fn an_enqueued_run_is_executed_by_a_worker_and_awaited_from_another_engine(h: Harness) {
    let c = Counter::new();
    let client = engine(&h, &c, Queue::new("jobs"));
    let handle = client.enqueue("jobs", "double", "job-1", &21u32).await.unwrap();
    assert_eq!(client.get_run("job-1").await.unwrap().unwrap().status, RunStatus::Enqueued);
    let worker_engine = engine(&h, &c, Queue::new("jobs"));
    let worker = worker_engine.queue_worker(["jobs"]).start().unwrap();
    let out: u32 = within("the run's result", handle.result()).await.unwrap();
    assert_eq!(out, 42);
    assert_eq!(c.get(), 1);
    worker.shutdown().await;
}

pub async fn enqueueing_a_run_id_twice_executes_it_once(h: Harness) {
    let c = Counter::new();
    let wf = engine(&h, &c, Queue::new("jobs"));
    let first = wf.enqueue("jobs", "double", "job-1", &1u32).await.unwrap();
    let second = wf.enqueue("jobs", "double", "job-1", &1000u32).await.unwrap();
    let worker = wf.queue_worker(["jobs"]).start().unwrap();
    assert_eq!(within("the result", first.result::<u32>()).await.unwrap(), 2);
    assert_eq!(within("the result", second.result::<u32>()).await.unwrap(), 2, "the first input stays");
    worker.shutdown().await;
    assert_eq!(c.get(), 1);
    let err = wf.enqueue("jobs", "fail", "job-1", &"x").await.unwrap_err();
    assert!(matches!(err, Error::RunConflict { .. }), "{err}");
}

pub async fn enqueue_refuses_bad_input_and_stores_nothing(h: Harness) {
    let c = Counter::new();
    let wf = engine(&h, &c, Queue::new("jobs"));
    let err = wf.enqueue("no-such-queue", "double", "job-1", &1u32).await.unwrap_err();
    assert!(err.to_string().contains("no-such-queue"), "{err}");
    let err = wf.enqueue("jobs", "no-such-workflow", "job-2", &1u32).await.unwrap_err();
    assert!(err.to_string().contains("no-such-workflow"), "{err}");
    let err = wf.enqueue("jobs", "double", "job-3", &"not a number").await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("job-3") && text.contains("u32"), "the error names the run and the type: {text}");
    let err = wf.enqueue("jobs", "double", "", &1u32).await.unwrap_err();
    assert!(err.to_string().contains("run id"), "{err}");
    for id in ["job-1", "job-2", "job-3"] {
        assert!(wf.get_run(id).await.unwrap().is_none(), "nothing may be stored for {id}");
    }
    for (queue, what) in [
        (Queue::new("q").concurrency(0), "concurrency"),
        (Queue::new("q").per_key(0), "per_key"),
        (Queue::new("q").worker_concurrency(0), "worker_concurrency"),
        (Queue::new("q").rate(0, Duration::from_secs(1)), "rate"),
        (Queue::new("q").rate(1, Duration::ZERO), "period"),
        (Queue::new(""), "name"),
    ] {
        let err = wf.add_queue(queue).unwrap_err();
        assert!(err.to_string().contains(what), "{err} should name {what}");
    }
    let err = wf.queue_worker(["undefined"]).start().unwrap_err();
    assert!(err.to_string().contains("undefined"), "{err}");
}

/// Each run records when it started and ended; the limit is checked from those intervals.
pub async fn workers_keep_the_queue_concurrency_and_per_key_limits(h: Harness) {
    let intervals: Arc<Mutex<Vec<(String, i64, i64)>>> = Arc::default();
    let make = || {
        let wf = h.wf();
        wf.add_queue(Queue::new("jobs").concurrency(3).per_key(1)).unwrap();
        let log = intervals.clone();
        wf.register_fn("work", move |ctx, key: String| {
            let log = log.clone();
            async move {
                let run_id = ctx.run_id().to_owned();
                let start = durably::now_ms();
                tokio::time::sleep(Duration::from_millis(40)).await;
                log.lock().unwrap().push((key, start, durably::now_ms()));
                let _ = run_id;
                Ok::<_, Error>(())
            }
        });
        wf
    };
    let (a, b) = (make(), make());
    let mut handles = Vec::new();
    for i in 0..24 {
        let key = format!("tenant-{}", i % 6);
        let options = EnqueueOptions::new().key(&key);
        handles.push(a.enqueue_with("jobs", "work", &format!("job-{i}"), &key, options).await.unwrap());
    }
    let workers = [a.queue_worker(["jobs"]).start().unwrap(), b.queue_worker(["jobs"]).start().unwrap()];
    for handle in handles {
        within("a run", handle.result::<()>()).await.unwrap();
    }
    for worker in workers {
        worker.shutdown().await;
    }
    let log = intervals.lock().unwrap().clone();
    assert_eq!(log.len(), 24);
    for (key, start, _) in &log {
        let overlapping: Vec<_> = log.iter().filter(|(_, s, e)| s <= start && start < e).collect();
        assert!(overlapping.len() <= 3, "more than 3 runs at once at {start}: {overlapping:?}");
        let same_key = overlapping.iter().filter(|(k, _, _)| k == key).count();
        assert!(same_key <= 1, "two runs of {key} at once at {start}: {overlapping:?}");
    }
}

pub async fn a_waiting_run_is_parked_and_resumed_by_replay_when_its_signal_arrives(h: Harness) {
    let c = Counter::new();
    let wf = engine(&h, &c, Queue::new("jobs"));
    let handle = wf.enqueue("jobs", "approve", "job-1", &7u32).await.unwrap();
    let worker = wf.queue_worker(["jobs"]).park_after(Duration::ZERO).start().unwrap();
    let parked = wait_until(&h, "job-1", "the park", |r| r.wake_at_ms.is_some()).await;
    assert_eq!(parked.status, RunStatus::Waiting);
    assert_eq!(parked.waiting_on.as_deref(), Some("approval"));
    assert_eq!(c.get(), 1);
    // Another engine, as another process would, delivers the approval.
    let other = h.wf();
    assert!(other.complete("job-1", "approval", &true).await.unwrap());
    assert_eq!(within("the result", handle.result::<u32>()).await.unwrap(), 7);
    assert_eq!(c.get(), 1, "the step before the wait replays, it does not run again");
    worker.shutdown().await;
}

/// Rule 25: the delivery of a parked run's signal from another engine wakes a waiting worker
/// at once: its poll interval (an hour) is far longer than the test waits.
pub async fn a_delivery_wakes_a_waiting_worker_without_its_poll(h: Harness) {
    let c = Counter::new();
    let wf = engine(&h, &c, Queue::new("jobs"));
    let handle = wf.enqueue("jobs", "approve", "job-1", &5u32).await.unwrap();
    let worker = wf
        .queue_worker(["jobs"])
        .park_after(Duration::ZERO)
        .poll_interval(Duration::from_secs(3_600))
        .start()
        .unwrap();
    wait_until(&h, "job-1", "the park", |r| r.wake_at_ms.is_some()).await;
    // Enqueued after the park: the worker is woken by the enqueue, then waits again.
    let other = engine(&h, &c, Queue::new("jobs"));
    let second = other.enqueue("jobs", "double", "job-2", &1u32).await.unwrap();
    assert_eq!(within("the enqueued run's result", second.result::<u32>()).await.unwrap(), 2);
    assert!(other.complete("job-1", "approval", &true).await.unwrap());
    assert_eq!(within("the resumed run's result", handle.result::<u32>()).await.unwrap(), 5);
    worker.shutdown().await;
}

/// Rule 26: a run first executed by a worker of version `v1` records it, and after it parks
/// only a `v1` worker resumes it: a `v2` worker, awake and claiming after the signal made the
/// run runnable again, leaves it alone while it takes new runs (binding them to `v2`).
pub async fn a_parked_run_resumes_only_on_a_worker_of_its_version(h: Harness) {
    let c = Counter::new();
    let wf = engine(&h, &c, Queue::new("jobs"));
    let handle = wf.enqueue("jobs", "approve", "job-1", &7u32).await.unwrap();
    let v1 = wf.queue_worker(["jobs"]).version("v1").park_after(Duration::ZERO).start().unwrap();
    let parked = wait_until(&h, "job-1", "the park", |r| r.wake_at_ms.is_some()).await;
    assert_eq!(parked.version.as_deref(), Some("v1"), "the run records the version that first executed it");
    v1.shutdown().await;

    let new_code = engine(&h, &c, Queue::new("jobs"));
    let v2 = new_code.queue_worker(["jobs"]).version("v2").park_after(Duration::ZERO).start().unwrap();
    assert!(new_code.complete("job-1", "approval", &true).await.unwrap());
    // A run enqueued after the delivery: the claim that takes it saw `job-1` runnable too.
    let later = new_code.enqueue("jobs", "double", "job-2", &4u32).await.unwrap();
    assert_eq!(within("the v2 run's result", later.result::<u32>()).await.unwrap(), 8);
    assert_eq!(new_code.get_run("job-2").await.unwrap().unwrap().version.as_deref(), Some("v2"));
    let untouched = new_code.get_run("job-1").await.unwrap().unwrap();
    assert_eq!(untouched.status, RunStatus::Waiting, "a v2 worker must not resume a v1 run");
    assert_eq!(untouched.claimed_at_ms, parked.claimed_at_ms, "no claim since the park");
    v2.shutdown().await;

    let v1 = wf.queue_worker(["jobs"]).version("v1").start().unwrap();
    assert_eq!(within("the result", handle.result::<u32>()).await.unwrap(), 7);
    assert_eq!(c.get(), 2, "`before` ran once (the v1 run replays it), `double` once");
    v1.shutdown().await;
}

pub async fn a_parked_sleep_resumes_when_its_timer_is_due(h: Harness) {
    let c = Counter::new();
    let wf = engine(&h, &c, Queue::new("jobs"));
    let handle = wf.enqueue("jobs", "nap", "nap-1", &300u64).await.unwrap();
    let worker = wf
        .queue_worker(["jobs"])
        .park_after(Duration::from_millis(50))
        .poll_interval(Duration::from_millis(50))
        .start()
        .unwrap();
    let parked = wait_until(&h, "nap-1", "the park", |r| r.wake_at_ms.is_some()).await;
    assert!(parked.wake_at_ms.unwrap() < i64::MAX, "a sleep parks with its wake time");
    assert_eq!(within("the result", handle.result::<u64>()).await.unwrap(), 300);
    worker.shutdown().await;
}

pub async fn a_child_run_returns_its_output_and_is_started_once(h: Harness) {
    let c = Counter::new();
    let wf = engine(&h, &c, Queue::new("jobs"));
    let handle = wf.enqueue("jobs", "parent", "parent-1", &5u32).await.unwrap();
    let worker = wf.queue_worker(["jobs"]).park_after(Duration::ZERO).start().unwrap();
    assert_eq!(within("the parent's result", handle.result::<u32>()).await.unwrap(), 20);
    worker.shutdown().await;
    assert_eq!(c.get(), 2, "each child's step ran once, although the parent replayed after parking");
    let children = wf.list_runs(&durably::RunFilter::new().parent("parent-1")).await.unwrap();
    assert_eq!(children.len(), 2);
    assert!(children.iter().all(|r| r.status == RunStatus::Completed && r.queue.as_deref() == Some("jobs")));
}

pub async fn a_fan_out_of_children_joins_every_output(h: Harness) {
    let c = Counter::new();
    let wf = engine(&h, &c, Queue::new("jobs"));
    let handle = wf.enqueue("jobs", "fan_out", "fan-1", &40u32).await.unwrap();
    let worker = wf.queue_worker(["jobs"]).concurrency(8).start().unwrap();
    let total = within("the fan-out", handle.result::<u32>()).await.unwrap();
    assert_eq!(total, (0..40).map(|i| i * 2).sum::<u32>());
    worker.shutdown().await;
    assert_eq!(c.get(), 40);
}

pub async fn a_failed_child_fails_the_parents_await(h: Harness) {
    let c = Counter::new();
    let wf = engine(&h, &c, Queue::new("jobs"));
    let handle = wf.enqueue("jobs", "parent_of_failure", "p-1", &"out of stock").await.unwrap();
    let worker = wf.queue_worker(["jobs"]).start().unwrap();
    let message = within("the parent's result", handle.result::<String>()).await.unwrap();
    assert!(message.contains("out of stock"), "{message}");
    worker.shutdown().await;
}

pub async fn cancelling_a_parent_cancels_its_children(h: Harness) {
    let c = Counter::new();
    let wf = engine(&h, &c, Queue::new("jobs"));
    let handle = wf.enqueue("jobs", "parent_waiting", "p-1", &3u32).await.unwrap();
    let worker = wf.queue_worker(["jobs"]).start().unwrap();
    wait_until(&h, "the-child", "the child's wait", |r| r.status == RunStatus::Waiting).await;
    assert!(wf.cancel("p-1").await.unwrap());
    let child =
        wait_until(&h, "the-child", "the child's cancellation", |r| r.status == RunStatus::Cancelled).await;
    assert_eq!(child.parent_id.as_deref(), Some("p-1"));
    assert!(matches!(within("the parent's end", handle.result::<u32>()).await, Err(Error::Cancelled { .. })));
    worker.shutdown().await;
}

pub async fn patched_keeps_runs_started_before_a_change_on_the_old_code(h: Harness) {
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = |log: &Arc<Mutex<Vec<String>>>, what: &'static str| {
        let log = log.clone();
        move || {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(what.to_owned());
                Ok::<_, std::io::Error>(())
            }
        }
    };
    // The old code: a, then c, then it crashes.
    let wf = h.wf();
    let r = wf
        .run("old-run", |_| {
            let (a, c) = (record(&log, "a"), record(&log, "c"));
            async move {
                durably::step("a", a).await?;
                durably::step("c", c).await?;
                super::crash::<()>("crash after c")
            }
        })
        .await;
    assert!(r.is_err());
    // The new code inserts a patched branch between a and c.
    let new_code = |wf: Workflow, run_id: &'static str, log: Arc<Mutex<Vec<String>>>| async move {
        wf.run(run_id, |_| async move {
            durably::step("a", record(&log, "a")).await?;
            let patched = durably::patched("insert-b").await?;
            if patched {
                durably::step("b", record(&log, "b")).await?;
            }
            durably::step("c", record(&log, "c")).await?;
            Ok::<_, Error>(patched)
        })
        .await
    };
    log.lock().unwrap().clear();
    assert!(
        !new_code(h.wf(), "old-run", log.clone()).await.unwrap(),
        "a run past the change keeps the old code"
    );
    assert!(log.lock().unwrap().is_empty(), "a and c replayed: {:?}", log.lock().unwrap());
    assert!(new_code(h.wf(), "new-run", log.clone()).await.unwrap(), "a new run takes the new code");
    assert_eq!(*log.lock().unwrap(), ["a", "b", "c"]);
    log.lock().unwrap().clear();
    assert!(new_code(h.wf(), "new-run", log.clone()).await.unwrap(), "the answer is recorded");
}

pub async fn a_stopped_worker_hands_its_runs_to_another(h: Harness) {
    let c = Counter::new();
    let a = engine(&h, &c, Queue::new("jobs"));
    let handle = a.enqueue("jobs", "approve", "job-1", &9u32).await.unwrap();
    let first = a
        .queue_worker(["jobs"])
        .park_after(Duration::from_secs(3600))
        .shutdown_grace(Duration::ZERO)
        .start()
        .unwrap();
    wait_until(&h, "job-1", "the wait", |r| r.status == RunStatus::Waiting).await;
    first.shutdown().await;
    let b = engine(&h, &c, Queue::new("jobs"));
    let second = b.queue_worker(["jobs"]).poll_interval(Duration::from_millis(50)).start().unwrap();
    b.complete("job-1", "approval", &true).await.unwrap();
    assert_eq!(within("the result", handle.result::<u32>()).await.unwrap(), 9);
    assert_eq!(c.get(), 1, "the recorded step is not executed again by the second worker");
    second.shutdown().await;
}

pub async fn recover_leaves_a_queued_run_to_the_queue_workers(h: Harness) {
    let c = Counter::new();
    let a = engine(&h, &c, Queue::new("jobs").concurrency(1));
    let handle = a.enqueue("jobs", "approve", "job-1", &9u32).await.unwrap();
    let first = a
        .queue_worker(["jobs"])
        .version("v1")
        .park_after(Duration::from_secs(3600))
        .shutdown_grace(Duration::ZERO)
        .start()
        .unwrap();
    wait_until(&h, "job-1", "the wait", |r| r.status == RunStatus::Waiting).await;
    first.shutdown().await;
    // The worker is gone, the run waits without a lease: `recover` (rule 12) must not take it
    // past the queue's concurrency and version (rules 22 and 26).
    let b = engine(&h, &c, Queue::new("jobs").concurrency(1));
    let report = b.recover().await.unwrap();
    assert!(report.resumed.is_empty(), "recover resumed queued runs: {:?}", report.resumed);
    b.complete("job-1", "approval", &true).await.unwrap();
    let second =
        b.queue_worker(["jobs"]).version("v1").poll_interval(Duration::from_millis(50)).start().unwrap();
    assert_eq!(within("the result", handle.result::<u32>()).await.unwrap(), 9);
    assert_eq!(c.get(), 1, "the recorded step is not executed again");
    second.shutdown().await;
}
