//! The behaviours of [`Queues`](durably_core::store::Queues): enqueueing with deduplication,
//! claims in priority order under global, per-key and rate limits (also when owners race),
//! parked runs and what makes them runnable again, and the queue counts.
//!
//! Like the lease tests, these pass the real time and real TTLs, so they hold for stores that
//! keep lease time by their server's clock.

// A test suite reports failure by panicking: the workspace's library lints do not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use durably_core::{
    Claim, LeaseOutcome, NewRun, QueueLimits, QueuedRun, Rate, RunFilter, RunRecord, RunStatus, RunUpdate,
    Store,
};

use super::support::*;

const Q: &str = "conformance-queue";

fn queued(run_id: &str, now_ms: i64) -> QueuedRun {
    QueuedRun::new(run_id, WF, Some(format!("{{\"id\":{run_id:?}}}")), Q, now_ms)
}

async fn enqueue<S: Store>(store: &S, run: QueuedRun) -> (RunRecord, bool) {
    let run_id = run.run_id.clone();
    store.enqueue(&run).await.unwrap_or_else(|e| panic!("enqueue(`{run_id}`) failed: {e}"))
}

async fn claim<S: Store>(store: &S, owner: &str, max: usize, limits: QueueLimits) -> Vec<RunRecord> {
    claim_with(store, owner, max, limits, LONG_TTL).await
}

async fn claim_with<S: Store>(
    store: &S,
    owner: &str,
    max: usize,
    limits: QueueLimits,
    ttl: Duration,
) -> Vec<RunRecord> {
    let request = Claim::new(Q, owner, ttl, durably_core::now_ms(), max).limits(limits);
    store.claim_runs(&request).await.unwrap_or_else(|e| panic!("claim_runs({request:?}) failed: {e}"))
}

async fn park<S: Store>(store: &S, run_id: &str, owner: &str, signal: &str, wake_at_ms: Option<i64>) -> bool {
    store
        .park_run(run_id, owner, signal, wake_at_ms, durably_core::now_ms())
        .await
        .unwrap_or_else(|e| panic!("park_run(`{run_id}`) failed: {e}"))
}

fn limits(concurrency: Option<u32>, per_key: Option<u32>, rate: Option<Rate>) -> QueueLimits {
    let mut limits = QueueLimits::default();
    limits.concurrency = concurrency;
    limits.per_key = per_key;
    limits.rate = rate;
    limits
}

/// Ends a claimed run as an executor does: completed, then its lease released.
async fn finish<S: Store>(store: &S, run_id: &str, owner: &str) {
    update(store, run_id, RunUpdate::new(RunStatus::Completed, durably_core::now_ms()).output("1")).await;
    store.release_lease(run_id, owner).await.unwrap();
}

/// `enqueue` creates an `enqueued` run in its queue, with its input and parent, and says so.
pub async fn enqueue_creates_an_enqueued_run_in_its_queue<S: Store>(store: Arc<S>) {
    let (run, created) = enqueue(&*store, queued("job-1", 1_000).parent("parent-1").priority(3)).await;
    assert!(created, "a new run id must be created");
    assert_eq!(run.status, RunStatus::Enqueued);
    assert_eq!(run.queue.as_deref(), Some(Q));
    assert_eq!(run.parent_id.as_deref(), Some("parent-1"));
    assert_eq!(run.input.as_deref(), Some(r#"{"id":"job-1"}"#));
    assert_eq!(run.workflow, WF);
    assert_eq!(expect_run(&*store, "job-1").await, run, "get_run must return what enqueue returned");
}

/// Enqueuing a run id that exists changes nothing and returns the stored run: a run id is
/// executed once however often it is enqueued.
pub async fn enqueue_of_an_existing_run_id_changes_nothing<S: Store>(store: Arc<S>) {
    let (first, _) = enqueue(&*store, queued("job-1", 1_000)).await;
    let mut again = queued("job-1", 2_000);
    again.input = Some(r#"{"other":true}"#.to_owned());
    let (second, created) = enqueue(&*store, again).await;
    assert!(!created, "an existing run id must not be created again");
    assert_eq!(second, first);
    // A run started in place is not enqueued either.
    open(&*store, new_run("in-place", None, 1_000)).await;
    let (existing, created) = enqueue(&*store, queued("in-place", 2_000)).await;
    assert!(!created);
    assert_eq!(existing.status, RunStatus::Running);
    assert_eq!(existing.queue, None);
}

/// A claim takes the highest priority first, then the oldest, then by run id; a claimed run is
/// `running` under the claimer's lease.
pub async fn claim_takes_runs_by_priority_then_age<S: Store>(store: Arc<S>) {
    enqueue(&*store, queued("c-old", 1_000)).await;
    enqueue(&*store, queued("b-new", 3_000)).await;
    enqueue(&*store, queued("a-urgent", 5_000).priority(5)).await;
    enqueue(&*store, queued("a-same-age", 3_000)).await;
    let claimed = claim(&*store, "worker-a", 10, QueueLimits::default()).await;
    assert_eq!(ids(&claimed), ["a-urgent", "c-old", "a-same-age", "b-new"]);
    for run in &claimed {
        assert_eq!(run.status, RunStatus::Running, "{} must be running once claimed", run.run_id);
        let stored = expect_run(&*store, &run.run_id).await;
        assert_eq!(stored.status, RunStatus::Running);
        match acquire(&*store, &run.run_id, "someone-else", LONG_TTL).await {
            LeaseOutcome::HeldBy(lease) => assert_eq!(lease.owner, "worker-a"),
            other => panic!("a claimed run's lease must be the claimer's, got {other:?}"),
        }
    }
    assert!(claim(&*store, "worker-b", 10, QueueLimits::default()).await.is_empty());
}

/// A claim takes at most `max` runs, and only from its own queue.
pub async fn claim_takes_at_most_max_runs_of_its_own_queue<S: Store>(store: Arc<S>) {
    for i in 0..5 {
        enqueue(&*store, queued(&format!("job-{i}"), 1_000 + i)).await;
    }
    enqueue(&*store, QueuedRun::new("elsewhere", WF, None, "other-queue", 500)).await;
    let claimed = claim(&*store, "w", 2, QueueLimits::default()).await;
    assert_eq!(ids(&claimed), ["job-0", "job-1"]);
    let rest = claim(&*store, "w", 10, QueueLimits::default()).await;
    assert_eq!(ids(&rest), ["job-2", "job-3", "job-4"]);
    assert_eq!(expect_run(&*store, "elsewhere").await.status, RunStatus::Enqueued);
}

/// The queue's concurrency counts executing runs of every owner, and frees a slot when a run
/// ends and its lease is released.
pub async fn claim_keeps_the_concurrency_limit_across_owners<S: Store>(store: Arc<S>) {
    for i in 0..4 {
        enqueue(&*store, queued(&format!("job-{i}"), 1_000 + i)).await;
    }
    let two = limits(Some(2), None, None);
    let a = claim(&*store, "worker-a", 1, two).await;
    let b = claim(&*store, "worker-b", 10, two).await;
    assert_eq!(ids(&a), ["job-0"]);
    assert_eq!(ids(&b), ["job-1"], "the second owner gets only what the limit leaves");
    assert!(claim(&*store, "worker-c", 10, two).await.is_empty());
    finish(&*store, "job-0", "worker-a").await;
    assert_eq!(ids(&claim(&*store, "worker-c", 10, two).await), ["job-2"]);
}

/// Per-key concurrency skips a run whose key is at its limit and takes the next one.
pub async fn claim_keeps_the_per_key_limit<S: Store>(store: Arc<S>) {
    enqueue(&*store, queued("t1-a", 1_000).key("tenant-1")).await;
    enqueue(&*store, queued("t1-b", 1_001).key("tenant-1")).await;
    enqueue(&*store, queued("t2-a", 1_002).key("tenant-2")).await;
    enqueue(&*store, queued("no-key", 1_003)).await;
    let one = limits(None, Some(1), None);
    assert_eq!(ids(&claim(&*store, "w", 10, one).await), ["t1-a", "t2-a", "no-key"]);
    assert!(claim(&*store, "w", 10, one).await.is_empty(), "tenant-1 is at its limit");
    finish(&*store, "t1-a", "w").await;
    assert_eq!(ids(&claim(&*store, "w", 10, one).await), ["t1-b"]);
}

/// The rate limit counts claims in the last period, whether or not the runs still execute.
pub async fn claim_keeps_the_rate_limit<S: Store>(store: Arc<S>) {
    for i in 0..5 {
        enqueue(&*store, queued(&format!("job-{i}"), 1_000 + i)).await;
    }
    let rate = limits(None, None, Some(Rate::new(2, 1_000)));
    assert_eq!(ids(&claim(&*store, "w", 10, rate).await), ["job-0", "job-1"]);
    finish(&*store, "job-0", "w").await;
    finish(&*store, "job-1", "w").await;
    assert!(claim(&*store, "w", 10, rate).await.is_empty(), "two claims already in this period");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(ids(&claim(&*store, "w", 10, rate).await), ["job-2", "job-3"]);
}

/// A claim records its time on each run it takes (the time the rate limit counts), as stored
/// and as returned; a run never claimed has none, and a later claim of the same run records a
/// time no earlier than the first.
pub async fn a_claim_records_its_time_on_the_run<S: Store>(store: Arc<S>) {
    let (run, _) = enqueue(&*store, queued("job-1", 1_000)).await;
    assert_eq!(run.claimed_at_ms, None, "an enqueued run was never claimed");
    let rate = limits(None, None, Some(Rate::new(10, 1_000)));
    let claimed = claim_with(&*store, "dead", 1, rate, SHORT_TTL).await;
    let first = claimed[0].claimed_at_ms.expect("a claimed run has its claim time");
    assert_eq!(expect_run(&*store, "job-1").await.claimed_at_ms, Some(first), "the claim time is stored");
    tokio::time::sleep(PAST_SHORT_TTL).await;
    let again = claim(&*store, "w", 1, rate).await;
    assert_eq!(ids(&again), ["job-1"], "the run whose lease lapsed is claimed again");
    let second = again[0].claimed_at_ms.expect("a claimed run has its claim time");
    assert!(second >= first, "the second claim ({second}) comes after the first ({first})");
    assert_eq!(expect_run(&*store, "job-1").await.claimed_at_ms, Some(second));
}

async fn claim_as<S: Store>(store: &S, owner: &str, version: Option<&str>) -> Vec<RunRecord> {
    let mut request = Claim::new(Q, owner, LONG_TTL, durably_core::now_ms(), 10);
    request.version = version.map(str::to_owned);
    store.claim_runs(&request).await.unwrap_or_else(|e| panic!("claim_runs({request:?}) failed: {e}"))
}

/// Rule 26: a worker of a version claims runs never executed that are not bound to another
/// version (binding them to its own) and runs of its version, also when they resume after a
/// park; never runs of another version or runs first executed without one. A worker without
/// a version claims every run and binds none.
pub async fn a_versioned_claim_takes_new_runs_and_runs_of_its_own_version<S: Store>(store: Arc<S>) {
    enqueue(&*store, queued("new", 1_000)).await;
    enqueue(&*store, queued("for-v1", 2_000).version("v1")).await;
    enqueue(&*store, queued("for-v2", 3_000).version("v2")).await;
    let v1 = claim_as(&*store, "w1", Some("v1")).await;
    assert_eq!(ids(&v1), ["new", "for-v1"], "v1 takes the new run and its own, not v2's");
    for run in &v1 {
        assert_eq!(run.version.as_deref(), Some("v1"), "{} as claimed", run.run_id);
        assert_eq!(
            expect_run(&*store, &run.run_id).await.version.as_deref(),
            Some("v1"),
            "{} as stored",
            run.run_id
        );
    }
    assert_eq!(ids(&claim_as(&*store, "w2", Some("v2")).await), ["for-v2"]);

    // Parked and due again, a run goes back only to its version.
    for (run_id, owner) in [("new", "w1"), ("for-v1", "w1"), ("for-v2", "w2")] {
        assert!(park(&*store, run_id, owner, "durably.sleep", Some(1)).await);
    }
    assert_eq!(ids(&claim_as(&*store, "w3", Some("v3")).await), Vec::<String>::new(), "v3 has no run");
    assert_eq!(ids(&claim_as(&*store, "w2", Some("v2")).await), ["for-v2"]);
    assert_eq!(ids(&claim_as(&*store, "w1", Some("v1")).await), ["new", "for-v1"]);

    // A run first executed by an unversioned worker belongs to no version: only unversioned
    // workers resume it. An unversioned worker also takes runs bound to a version.
    enqueue(&*store, queued("unversioned", 4_000)).await;
    enqueue(&*store, queued("for-v3", 5_000).version("v3")).await;
    let any = claim_as(&*store, "w0", None).await;
    assert_eq!(ids(&any), ["unversioned", "for-v3"]);
    assert_eq!(any[0].version, None, "an unversioned claim binds no version");
    assert_eq!(any[1].version.as_deref(), Some("v3"), "an unversioned claim keeps the run's version");
    for run_id in ["unversioned", "for-v3"] {
        assert!(park(&*store, run_id, "w0", "durably.sleep", Some(1)).await);
    }
    assert_eq!(ids(&claim_as(&*store, "w1", Some("v1")).await), Vec::<String>::new());
    assert_eq!(ids(&claim_as(&*store, "w0", None).await), ["unversioned", "for-v3"]);
}

/// A claimed run whose lease lapsed (its worker died) is claimed again, and no longer counts
/// against the concurrency limit.
pub async fn a_run_whose_lease_lapsed_is_claimed_again<S: Store>(store: Arc<S>) {
    enqueue(&*store, queued("job-1", 1_000)).await;
    let one = limits(Some(1), None, None);
    assert_eq!(ids(&claim_with(&*store, "dead", 1, one, SHORT_TTL).await), ["job-1"]);
    assert!(claim(&*store, "alive", 1, one).await.is_empty(), "the lease is still live");
    tokio::time::sleep(PAST_SHORT_TTL).await;
    let again = claim(&*store, "alive", 1, one).await;
    assert_eq!(ids(&again), ["job-1"]);
    assert_eq!(again[0].status, RunStatus::Running);
}

/// Owners racing for a queue never claim one run twice nor exceed the concurrency limit.
pub async fn racing_claims_keep_the_limit_and_never_share_a_run<S: Store>(store: Arc<S>) {
    for i in 0..20 {
        enqueue(&*store, queued(&format!("job-{i:02}"), 1_000 + i)).await;
    }
    let start = Arc::new(tokio::sync::Barrier::new(8));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (store, start) = (Arc::clone(&store), Arc::clone(&start));
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            claim(&*store, &format!("owner-{i}"), 3, limits(Some(5), None, None)).await
        }));
    }
    let mut claimed = Vec::new();
    for task in tasks {
        claimed.extend(task.await.expect("a claim task panicked").into_iter().map(|r| r.run_id));
    }
    let distinct: BTreeSet<&String> = claimed.iter().collect();
    assert_eq!(distinct.len(), claimed.len(), "a run was claimed twice: {claimed:?}");
    assert_eq!(claimed.len(), 5, "the limit of 5 must be reached and kept: {claimed:?}");
}

/// Parking sets `waiting` with what it waits for, releases the lease, and the run is neither
/// claimable nor recoverable until something wakes it.
pub async fn park_run_releases_the_lease_and_hides_the_run<S: Store>(store: Arc<S>) {
    enqueue(&*store, queued("job-1", 1_000)).await;
    claim(&*store, "w", 1, QueueLimits::default()).await;
    assert!(park(&*store, "job-1", "w", "approval", None).await);
    let run = expect_run(&*store, "job-1").await;
    assert_eq!(run.status, RunStatus::Waiting);
    assert_eq!(run.waiting_on.as_deref(), Some("approval"));
    assert_eq!(run.wake_at_ms, Some(i64::MAX), "a park without a timer waits for ever");
    assert_eq!(acquire(&*store, "job-1", "other", LONG_TTL).await, LeaseOutcome::Acquired);
    store.release_lease("job-1", "other").await.unwrap();
    assert!(claim(&*store, "w2", 10, QueueLimits::default()).await.is_empty());
    let recoverable = store.recoverable_runs(durably_core::now_ms(), 10).await.unwrap();
    assert!(ids(&recoverable).is_empty(), "a parked run is not recoverable: {:?}", ids(&recoverable));
    let stats = store.queue_stats(Q, durably_core::now_ms()).await.unwrap();
    assert_eq!((stats.enqueued, stats.executing, stats.parked), (0, 0, 1));
}

/// Delivering the awaited signal makes a parked run claimable; another signal does not.
pub async fn delivering_the_awaited_signal_wakes_a_parked_run<S: Store>(store: Arc<S>) {
    enqueue(&*store, queued("job-1", 1_000)).await;
    claim(&*store, "w", 1, QueueLimits::default()).await;
    park(&*store, "job-1", "w", "approval", None).await;
    deliver(&*store, "job-1", "unrelated", "1", durably_core::now_ms()).await;
    assert!(claim(&*store, "w", 10, QueueLimits::default()).await.is_empty());
    deliver(&*store, "job-1", "approval", "true", durably_core::now_ms()).await;
    let woken = claim(&*store, "w", 10, QueueLimits::default()).await;
    assert_eq!(ids(&woken), ["job-1"]);
    assert_eq!(woken[0].status, RunStatus::Running);
    assert_eq!(woken[0].wake_at_ms, None, "a claim clears the wake time");
}

/// A signal delivered before the park (between the run's last look and the park) leaves the
/// run claimable at once: no wake-up is lost.
pub async fn a_signal_delivered_before_parking_leaves_the_run_claimable<S: Store>(store: Arc<S>) {
    enqueue(&*store, queued("job-1", 1_000)).await;
    claim(&*store, "w", 1, QueueLimits::default()).await;
    deliver(&*store, "job-1", "approval", "true", durably_core::now_ms()).await;
    assert!(park(&*store, "job-1", "w", "approval", None).await);
    assert_eq!(ids(&claim(&*store, "w2", 10, QueueLimits::default()).await), ["job-1"]);
}

/// A parked run with a timer is claimable once the timer is due, not before.
pub async fn a_parked_run_is_claimable_when_its_timer_is_due<S: Store>(store: Arc<S>) {
    enqueue(&*store, queued("later", 1_000)).await;
    enqueue(&*store, queued("soon", 1_001)).await;
    claim(&*store, "w", 2, QueueLimits::default()).await;
    let now = durably_core::now_ms();
    park(&*store, "later", "w", "durably.sleep", Some(now + 3_600_000)).await;
    park(&*store, "soon", "w", "durably.sleep", Some(now + 300)).await;
    assert!(claim(&*store, "w", 10, QueueLimits::default()).await.is_empty());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ids(&claim(&*store, "w", 10, QueueLimits::default()).await), ["soon"]);
}

/// Parking a cancelled run changes nothing and says so.
pub async fn park_run_of_a_cancelled_run_changes_nothing<S: Store>(store: Arc<S>) {
    enqueue(&*store, queued("job-1", 1_000)).await;
    claim(&*store, "w", 1, QueueLimits::default()).await;
    update(&*store, "job-1", RunUpdate::new(RunStatus::Cancelled, durably_core::now_ms())).await;
    assert!(!park(&*store, "job-1", "w", "approval", None).await);
    let run = expect_run(&*store, "job-1").await;
    assert_eq!(run.status, RunStatus::Cancelled);
    assert_eq!(run.wake_at_ms, None);
}

/// Opening an enqueued run in place executes it: `running`, no longer claimable.
pub async fn open_run_of_an_enqueued_run_sets_running<S: Store>(store: Arc<S>) {
    enqueue(&*store, queued("job-1", 1_000)).await;
    let history = open(&*store, NewRun::new("job-1", WF, None, 2_000)).await;
    assert_eq!(history.run.status, RunStatus::Running);
    assert_eq!(history.run.input.as_deref(), Some(r#"{"id":"job-1"}"#), "the enqueued input stays");
    assert_eq!(history.run.queue.as_deref(), Some(Q));
}

/// `queue_stats` counts enqueued, executing and parked runs of one queue, and the oldest
/// enqueued time.
pub async fn queue_stats_counts_enqueued_executing_and_parked<S: Store>(store: Arc<S>) {
    let empty = store.queue_stats(Q, durably_core::now_ms()).await.unwrap();
    assert_eq!((empty.enqueued, empty.executing, empty.parked, empty.oldest_enqueued_at_ms), (0, 0, 0, None));
    for i in 0..5 {
        enqueue(&*store, queued(&format!("job-{i}"), 1_000 + i)).await;
    }
    enqueue(&*store, QueuedRun::new("elsewhere", WF, None, "other-queue", 1)).await;
    claim(&*store, "w", 2, QueueLimits::default()).await;
    park(&*store, "job-1", "w", "approval", None).await;
    let stats = store.queue_stats(Q, durably_core::now_ms()).await.unwrap();
    assert_eq!((stats.enqueued, stats.executing, stats.parked), (3, 1, 1));
    assert_eq!(stats.oldest_enqueued_at_ms, Some(1_002));
}

/// `recoverable_runs` leaves out queued runs whose worker died (`running` without a lease):
/// the queue's workers claim them back within the queue's limits and versions, so `recover`
/// must not execute them in place. A run executed in place is still listed.
pub async fn recoverable_runs_leave_queued_runs_to_their_workers<S: Store>(store: Arc<S>) {
    enqueue(&*store, queued("job-1", 1_000)).await;
    assert_eq!(ids(&claim(&*store, "w", 1, QueueLimits::default()).await), ["job-1"]);
    store.release_lease("job-1", "w").await.unwrap();
    open(&*store, new_run("in-place", None, 2_000)).await;
    let recoverable = store.recoverable_runs(durably_core::now_ms(), 100).await.unwrap();
    assert_eq!(ids(&recoverable), ["in-place"]);
    let request = Claim::new(Q, "w2", LONG_TTL, durably_core::now_ms(), 1);
    let again = store.claim_runs(&request).await.unwrap();
    assert_eq!(ids(&again), ["job-1"], "a worker of the queue claims the run back");
}

/// `queue_names` names each queue holding a run once, in byte order, whatever the runs'
/// statuses and whatever characters the names hold; runs executed in place have no queue, and a
/// queue whose last run was deleted is gone.
pub async fn queue_names_lists_each_queue_holding_a_run<S: Store>(store: Arc<S>) {
    assert!(store.queue_names().await.unwrap().is_empty(), "a new store has no queues");
    let odd = "tenant:7 *[q]?\\ 🦀";
    for i in 0..3 {
        enqueue(&*store, queued(&format!("job-{i}"), 1_000 + i)).await;
    }
    enqueue(&*store, QueuedRun::new("elsewhere", WF, None, "other-queue", 1)).await;
    enqueue(&*store, QueuedRun::new("odd", WF, None, odd, 2)).await;
    enqueue(&*store, QueuedRun::new("gone", WF, None, "emptied", 3)).await;
    open(&*store, new_run("in-place", None, 4)).await;
    claim(&*store, "w", 1, QueueLimits::default()).await;
    park(&*store, "job-0", "w", "approval", None).await;
    finish_enqueued(&*store, "elsewhere").await;
    assert!(store.delete_run("gone").await.unwrap(), "the run `gone` must be deleted");
    let mut expected = vec![Q.to_owned(), "other-queue".to_owned(), odd.to_owned()];
    expected.sort();
    assert_eq!(store.queue_names().await.unwrap(), expected);
}

/// Ends an enqueued run as a worker does: claimed from its own queue, completed, released.
async fn finish_enqueued<S: Store>(store: &S, run_id: &str) {
    let run = expect_run(store, run_id).await;
    let queue = run.queue.expect("an enqueued run has a queue");
    let request = Claim::new(queue, "finisher", LONG_TTL, durably_core::now_ms(), 1);
    let claimed = store.claim_runs(&request).await.unwrap();
    assert_eq!(ids(&claimed), [run_id], "the run's queue holds only `{run_id}`");
    finish(store, run_id, "finisher").await;
}

/// `list_runs` filters by queue and by parent.
pub async fn list_runs_filters_by_queue_and_parent<S: Store>(store: Arc<S>) {
    enqueue(&*store, queued("child-1", 1_000).parent("p")).await;
    enqueue(&*store, queued("child-2", 1_001).parent("p")).await;
    enqueue(&*store, queued("orphan", 1_002)).await;
    enqueue(&*store, QueuedRun::new("elsewhere", WF, None, "other-queue", 1_003).parent("p")).await;
    open(&*store, new_run("in-place", None, 1_004)).await;
    let children = list_runs(&*store, RunFilter::new().parent("p")).await;
    assert_eq!(ids(&children), ["elsewhere", "child-2", "child-1"]);
    let in_queue = list_runs(&*store, RunFilter::new().queue(Q)).await;
    assert_eq!(ids(&in_queue), ["orphan", "child-2", "child-1"]);
    let both = list_runs(&*store, RunFilter::new().queue(Q).parent("p").status(RunStatus::Enqueued)).await;
    assert_eq!(ids(&both), ["child-2", "child-1"]);
}

/// `wait_for_work` returns when a run is enqueued in one of its queues.
pub async fn wait_for_work_returns_when_a_run_is_enqueued<S: Store>(store: Arc<S>) {
    let queues = vec!["other-queue".to_owned(), Q.to_owned()];
    let waiter = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.wait_for_work(&queues, Duration::from_secs(120)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    enqueue(&*store, queued("job-1", 1_000)).await;
    tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("wait_for_work did not return after an enqueue")
        .expect("the waiting task panicked");
}
