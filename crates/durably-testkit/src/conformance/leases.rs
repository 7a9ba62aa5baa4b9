//! Leases: acquire, renew, expire, release, racing owners, `recoverable_runs`,
//! `cancelled_runs` and batched `renew_leases`.
//!
//! These tests pass the real time (`durably_core::now_ms()`) and real TTLs, and wait for expiry
//! by sleeping, so that they hold for stores that take the time from their server and ignore
//! `now_ms`.

// A test suite reports failure by panicking: the workspace's library lints do not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use durably_core::{LeaseOutcome, LeasedOpen, RunStatus, RunUpdate, Store};

use super::support::*;

/// A lease on a run nobody holds is granted, whether or not the run exists yet.
pub async fn acquire_lease_of_a_free_run_succeeds<S: Store>(store: Arc<S>) {
    assert_eq!(acquire(&*store, "not-yet-created", "owner-a", LONG_TTL).await, LeaseOutcome::Acquired);
    open(&*store, new_run("existing", None, 1_000)).await;
    assert_eq!(acquire(&*store, "existing", "owner-a", LONG_TTL).await, LeaseOutcome::Acquired);
}

/// While one owner holds a live lease, another owner gets `HeldBy` with the holder's id and
/// its expiry (about `now + ttl`), and the lease is unchanged.
pub async fn a_second_owner_gets_held_by_with_owner_and_expiry<S: Store>(store: Arc<S>) {
    open(&*store, new_run("r", None, 1_000)).await;
    let before = durably_core::now_ms();
    assert_eq!(acquire(&*store, "r", "owner-a", LONG_TTL).await, LeaseOutcome::Acquired);
    let after = durably_core::now_ms();
    let lease = held_by(acquire(&*store, "r", "owner-b", LONG_TTL).await, "second owner");
    assert_eq!(lease.owner, "owner-a");
    let (lo, hi) = (before + ms(LONG_TTL) - CLOCK_SLACK_MS, after + ms(LONG_TTL) + CLOCK_SLACK_MS);
    assert!(
        (lo..=hi).contains(&lease.expires_at_ms),
        "expiry {} should be about now + 60 s, within [{lo}, {hi}]",
        lease.expires_at_ms
    );
    // The refused attempt changed nothing: a third owner sees the same lease.
    let again = held_by(acquire(&*store, "r", "owner-c", LONG_TTL).await, "third owner");
    assert_eq!(again, lease, "a refused acquire must not change the lease");
}

/// The holder acquiring again renews its lease: still granted, expiry moved to `now + ttl`.
pub async fn the_same_owner_renews_and_extends_the_expiry<S: Store>(store: Arc<S>) {
    open(&*store, new_run("r", None, 1_000)).await;
    assert_eq!(acquire(&*store, "r", "owner-a", Duration::from_secs(10)).await, LeaseOutcome::Acquired);
    let first = held_by(acquire(&*store, "r", "owner-b", LONG_TTL).await, "before renewal");
    assert_eq!(acquire(&*store, "r", "owner-a", LONG_TTL).await, LeaseOutcome::Acquired, "renewal");
    let renewed = held_by(acquire(&*store, "r", "owner-b", LONG_TTL).await, "after renewal");
    assert_eq!(renewed.owner, "owner-a");
    assert!(
        renewed.expires_at_ms >= first.expires_at_ms + 40_000,
        "renewing a 10 s lease with 60 s must extend it by about 50 s: {} -> {}",
        first.expires_at_ms,
        renewed.expires_at_ms
    );
}

/// A short lease keeps a run held by renewing it before it lapses.
pub async fn renewing_a_short_lease_keeps_it<S: Store>(store: Arc<S>) {
    let ttl = Duration::from_millis(1_000);
    assert_eq!(acquire(&*store, "r", "owner-a", ttl).await, LeaseOutcome::Acquired);
    for i in 0..5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(acquire(&*store, "r", "owner-a", ttl).await, LeaseOutcome::Acquired, "renewal {i}");
    }
    // 1.5 s after the first acquire, longer than its TTL: only the renewals keep it held.
    let lease = held_by(acquire(&*store, "r", "owner-b", LONG_TTL).await, "after renewals");
    assert_eq!(lease.owner, "owner-a");
}

/// Once a lease has expired another owner takes it, and the former holder is then refused.
pub async fn an_expired_lease_can_be_taken_by_another_owner<S: Store>(store: Arc<S>) {
    open(&*store, new_run("r", None, 1_000)).await;
    assert_eq!(acquire(&*store, "r", "owner-a", SHORT_TTL).await, LeaseOutcome::Acquired);
    let live = held_by(acquire(&*store, "r", "owner-b", SHORT_TTL).await, "while live");
    assert_eq!(live.owner, "owner-a");
    tokio::time::sleep(PAST_SHORT_TTL).await;
    assert_eq!(acquire(&*store, "r", "owner-b", LONG_TTL).await, LeaseOutcome::Acquired, "after expiry");
    let taken = held_by(acquire(&*store, "r", "owner-a", LONG_TTL).await, "former holder");
    assert_eq!(taken.owner, "owner-b", "the former holder must learn that it lost the lease");
}

/// Releasing someone else's lease does nothing (and is not an error).
pub async fn release_by_a_non_owner_does_nothing<S: Store>(store: Arc<S>) {
    open(&*store, new_run("r", None, 1_000)).await;
    assert_eq!(acquire(&*store, "r", "owner-a", LONG_TTL).await, LeaseOutcome::Acquired);
    release(&*store, "r", "owner-b").await;
    let lease = held_by(acquire(&*store, "r", "owner-c", LONG_TTL).await, "after a stranger's release");
    assert_eq!(lease.owner, "owner-a");
    // Releasing a lease nobody holds is fine too.
    release(&*store, "never-leased", "owner-b").await;
}

/// The holder's release frees the lease at once, for anyone.
pub async fn release_by_the_owner_frees_the_lease<S: Store>(store: Arc<S>) {
    open(&*store, new_run("r", None, 1_000)).await;
    assert_eq!(acquire(&*store, "r", "owner-a", LONG_TTL).await, LeaseOutcome::Acquired);
    release(&*store, "r", "owner-a").await;
    assert_eq!(acquire(&*store, "r", "owner-b", LONG_TTL).await, LeaseOutcome::Acquired, "after release");
    let lease = held_by(acquire(&*store, "r", "owner-a", LONG_TTL).await, "former holder");
    assert_eq!(lease.owner, "owner-b");
}

/// Leases of different runs, including ids that share prefixes and separators, are independent.
pub async fn leases_of_different_runs_are_independent<S: Store>(store: Arc<S>) {
    let runs = ["r", "r:1", "r:", ":r", "r*", "r%", "🦀"];
    for (i, run_id) in runs.iter().enumerate() {
        let owner = format!("owner-{i}");
        assert_eq!(
            acquire(&*store, run_id, &owner, LONG_TTL).await,
            LeaseOutcome::Acquired,
            "run {run_id:?}"
        );
    }
    for (i, run_id) in runs.iter().enumerate() {
        let lease = held_by(acquire(&*store, run_id, "stranger", LONG_TTL).await, run_id);
        assert_eq!(lease.owner, format!("owner-{i}"), "run {run_id:?}");
    }
    release(&*store, "r", "owner-0").await;
    assert_eq!(acquire(&*store, "r", "stranger", LONG_TTL).await, LeaseOutcome::Acquired);
    let lease = held_by(acquire(&*store, "r:1", "stranger", LONG_TTL).await, "r:1 after r's release");
    assert_eq!(lease.owner, "owner-1", "releasing `r` must not touch `r:1`");
}

/// Of many owners racing for one free lease, exactly one gets it, and every other one is told
/// who did.
pub async fn racing_acquires_have_exactly_one_winner<S: Store>(store: Arc<S>) {
    open(&*store, new_run("contested", None, 1_000)).await;
    let start = Arc::new(tokio::sync::Barrier::new(32));
    let mut tasks = Vec::new();
    for i in 0..32 {
        let (store, start) = (Arc::clone(&store), Arc::clone(&start));
        tasks.push(tokio::spawn(async move {
            let owner = format!("owner-{i}");
            start.wait().await;
            let outcome = acquire(&*store, "contested", &owner, LONG_TTL).await;
            (owner, outcome)
        }));
    }
    let mut winners = Vec::new();
    let mut holders = BTreeSet::new();
    for task in tasks {
        let (owner, outcome) = task.await.expect("an acquire task panicked");
        match outcome {
            LeaseOutcome::Acquired => winners.push(owner),
            LeaseOutcome::HeldBy(lease) => {
                holders.insert(lease.owner);
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one owner must win; winners: {winners:?}");
    assert_eq!(holders.into_iter().collect::<Vec<_>>(), winners, "losers must name the winner");
}

/// `recoverable_runs` lists `running` and `waiting` runs that no live lease covers, oldest
/// first; never completed, failed or cancelled runs, nor runs under a live lease.
pub async fn recoverable_runs_lists_unfinished_runs_without_a_live_lease<S: Store>(store: Arc<S>) {
    let cases = [
        ("running-old", RunStatus::Running),
        ("completed", RunStatus::Completed),
        ("waiting", RunStatus::Waiting),
        ("failed", RunStatus::Failed),
        ("leased", RunStatus::Running),
        ("cancelled", RunStatus::Cancelled),
        ("leased-waiting", RunStatus::Waiting),
        ("running-new", RunStatus::Running),
    ];
    for (i, (run_id, status)) in cases.iter().enumerate() {
        open(&*store, new_run(run_id, Some("{}"), 1_000 + i as i64 * 10)).await;
        let mut change = RunUpdate::new(*status, 5_000);
        match status {
            RunStatus::Completed => change = change.output("1"),
            RunStatus::Failed => change = change.error("boom"),
            RunStatus::Waiting => change = change.waiting_on("approval"),
            _ => {}
        }
        update(&*store, run_id, change).await;
    }
    assert_eq!(acquire(&*store, "leased", "owner-a", LONG_TTL).await, LeaseOutcome::Acquired);
    assert_eq!(acquire(&*store, "leased-waiting", "owner-a", LONG_TTL).await, LeaseOutcome::Acquired);
    let runs = recoverable(&*store, 100).await;
    assert_eq!(ids(&runs), ["running-old", "waiting", "running-new"]);
    let waiting = &runs[1];
    assert_eq!(
        (waiting.status, waiting.waiting_on.as_deref(), waiting.input.as_deref(), waiting.workflow.as_str()),
        (RunStatus::Waiting, Some("approval"), Some("{}"), WF),
        "recoverable runs are full records"
    );
}

/// A run whose lease expired, or was released, is recoverable again.
pub async fn recoverable_runs_include_expired_and_released_leases<S: Store>(store: Arc<S>) {
    for (i, run_id) in ["expires", "released", "held"].iter().enumerate() {
        open(&*store, new_run(run_id, None, 1_000 + i as i64)).await;
    }
    assert_eq!(acquire(&*store, "expires", "owner-a", SHORT_TTL).await, LeaseOutcome::Acquired);
    assert_eq!(acquire(&*store, "released", "owner-a", LONG_TTL).await, LeaseOutcome::Acquired);
    assert_eq!(acquire(&*store, "held", "owner-a", LONG_TTL).await, LeaseOutcome::Acquired);
    assert!(recoverable(&*store, 100).await.is_empty(), "every run is leased");
    release(&*store, "released", "owner-a").await;
    assert_eq!(ids(&recoverable(&*store, 100).await), ["released"]);
    tokio::time::sleep(PAST_SHORT_TTL).await;
    assert_eq!(ids(&recoverable(&*store, 100).await), ["expires", "released"]);
}

/// `recoverable_runs` returns at most `limit` runs: the oldest ones (ties by run id).
pub async fn recoverable_runs_respects_the_limit<S: Store>(store: Arc<S>) {
    for (run_id, created) in [("d", 4_000), ("b", 2_000), ("c", 2_000), ("a", 5_000), ("e", 1_000)] {
        open(&*store, new_run(run_id, None, created)).await;
    }
    assert_eq!(ids(&recoverable(&*store, 3).await), ["e", "b", "c"]);
    assert_eq!(ids(&recoverable(&*store, 1).await), ["e"]);
    assert!(recoverable(&*store, 0).await.is_empty(), "limit 0 returns nothing");
    assert_eq!(ids(&recoverable(&*store, 10).await), ["e", "b", "c", "d", "a"]);
}

// ---------------------------------------------------------------------------------------------
// Batched questions about the runs an engine executes: cancellations and lease renewals

/// `cancelled_runs` names exactly the cancelled runs among the ids asked about: not runs in
/// another status, not ids of no run, not cancelled runs it was not asked about, whatever
/// characters the ids hold.
pub async fn cancelled_runs_names_exactly_the_cancelled_ones<S: Store>(store: Arc<S>) {
    let others = [RunStatus::Running, RunStatus::Waiting, RunStatus::Completed, RunStatus::Failed];
    let mut asked = Vec::new();
    let mut expected = BTreeSet::new();
    for (i, run_id) in awkward_ids().into_iter().enumerate() {
        open(&*store, new_run(&run_id, None, 1_000 + i as i64)).await;
        let status = if i % 2 == 0 { RunStatus::Cancelled } else { others[i / 2 % others.len()] };
        update(&*store, &run_id, RunUpdate::new(status, 2_000)).await;
        if status == RunStatus::Cancelled {
            expected.insert(run_id.clone());
        }
        asked.push(run_id);
    }
    open(&*store, new_run("cancelled but not asked about", None, 1_000)).await;
    update(&*store, "cancelled but not asked about", RunUpdate::new(RunStatus::Cancelled, 2_000)).await;
    asked.push("no such run".to_owned());
    asked.push("no such run 🦀'%".to_owned());

    let cancelled = |asked: Vec<String>| {
        let store = Arc::clone(&store);
        async move {
            let found =
                store.cancelled_runs(&asked).await.unwrap_or_else(|e| panic!("cancelled_runs failed: {e}"));
            let set: BTreeSet<String> = found.iter().cloned().collect();
            assert_eq!(set.len(), found.len(), "cancelled_runs named a run twice");
            set
        }
    };
    let found = cancelled(asked.clone()).await;
    let missing: Vec<String> = expected.difference(&found).map(|id| show(id)).collect();
    let extra: Vec<String> = found.difference(&expected).map(|id| show(id)).collect();
    assert!(missing.is_empty() && extra.is_empty(), "cancelled_runs missed {missing:?} and named {extra:?}");

    // A run cancelled since is named by the next call.
    update(&*store, &asked[1], RunUpdate::new(RunStatus::Cancelled, 3_000)).await;
    expected.insert(asked[1].clone());
    assert!(cancelled(asked).await == expected, "a run cancelled since the last call must be named");
    assert!(cancelled(Vec::new()).await.is_empty(), "no ids, no cancelled runs");
}

async fn renew<S: Store + ?Sized>(
    store: &S,
    run_ids: &[&str],
    owner: &str,
    ttl: Duration,
) -> Vec<(String, Option<String>)> {
    let run_ids: Vec<String> = run_ids.iter().map(|id| (*id).to_owned()).collect();
    let mut lost = store
        .renew_leases(&run_ids, owner, ttl, durably_core::now_ms())
        .await
        .unwrap_or_else(|e| panic!("renew_leases({run_ids:?}, `{owner}`) failed: {e}"));
    lost.sort();
    lost
}

/// `renew_leases` extends every lease the owner holds, and names each lease another owner
/// holds with its holder, leaving that lease as it is.
pub async fn renew_leases_extends_the_owners_leases_and_names_other_holders<S: Store>(store: Arc<S>) {
    let mine = ["mine", "mine:2", "🦀 '%_mine"];
    for run_id in mine {
        assert_eq!(acquire(&*store, run_id, "owner-a", SHORT_TTL).await, LeaseOutcome::Acquired);
    }
    assert_eq!(acquire(&*store, "theirs", "owner-b", LONG_TTL).await, LeaseOutcome::Acquired);
    let theirs = held_by(acquire(&*store, "theirs", "owner-c", LONG_TTL).await, "before the renewal");

    let before = durably_core::now_ms();
    let lost = renew(&*store, &["mine", "theirs", "mine:2", "🦀 '%_mine"], "owner-a", LONG_TTL).await;
    assert_eq!(lost, [("theirs".to_owned(), Some("owner-b".to_owned()))]);

    // Past the short TTL the renewed leases are still owner-a's, until about now + LONG_TTL.
    tokio::time::sleep(PAST_SHORT_TTL).await;
    for run_id in mine {
        let lease = held_by(acquire(&*store, run_id, "owner-c", LONG_TTL).await, run_id);
        assert_eq!(lease.owner, "owner-a", "run {run_id:?}: the renewal must keep the lease");
        assert!(
            lease.expires_at_ms >= before + ms(LONG_TTL) - CLOCK_SLACK_MS,
            "run {run_id:?}: renewed for {LONG_TTL:?} from {before}, but it expires at {}",
            lease.expires_at_ms
        );
    }
    let after = held_by(acquire(&*store, "theirs", "owner-c", LONG_TTL).await, "after the renewal");
    assert_eq!(after, theirs, "a renewal by another owner must not change the lease");
    assert!(renew(&*store, &[], "owner-a", LONG_TTL).await.is_empty(), "no ids, nothing lost");
}

/// `renew_leases` never takes a lease nobody holds (released, or never taken): it names it
/// with no holder, and anyone may take it afterwards.
pub async fn renew_leases_names_free_leases_without_taking_them<S: Store>(store: Arc<S>) {
    assert_eq!(acquire(&*store, "released", "owner-a", LONG_TTL).await, LeaseOutcome::Acquired);
    release(&*store, "released", "owner-a").await;
    let lost = renew(&*store, &["released", "never leased"], "owner-a", LONG_TTL).await;
    assert_eq!(lost, [("never leased".to_owned(), None), ("released".to_owned(), None)]);
    for run_id in ["released", "never leased"] {
        assert_eq!(
            acquire(&*store, run_id, "owner-b", LONG_TTL).await,
            LeaseOutcome::Acquired,
            "run {run_id:?}: a renewal must not take a free lease"
        );
    }
}

/// `open_run_leased`: a store that takes a lease and opens the run in one write takes the
/// lease for the caller and answers the history `open_run` would (creating the run, or resuming
/// it with its steps); when another owner holds the lease it answers that lease and neither
/// creates nor changes the run. A store that cannot (`None`) is not checked further.
pub async fn open_run_leased_takes_the_lease_then_opens_or_changes_nothing<S: Store>(store: Arc<S>) {
    let new = new_run("leased", Some("{\"n\":1}"), 1_000);
    let Some(opened) = store.open_run_leased(&new, "owner-a", LONG_TTL, durably_core::now_ms()).await else {
        return;
    };
    let LeasedOpen::Opened(history) = opened.expect("open_run_leased of a new run") else {
        panic!("a free lease must be taken and the run opened");
    };
    assert_eq!(history.run.run_id, "leased");
    assert_eq!(history.run.status, RunStatus::Running);
    assert_eq!(history.run.input.as_deref(), Some("{\"n\":1}"));
    assert!(history.steps.is_empty());
    let lease = held_by(acquire(&*store, "leased", "owner-b", LONG_TTL).await, "after open_run_leased");
    assert_eq!(lease.owner, "owner-a", "open_run_leased must take the lease for its caller");

    // Its own owner opens it again, with the steps recorded meanwhile.
    save(&*store, "leased", &step("s1", 1_100)).await;
    let again = store.open_run_leased(&new, "owner-a", LONG_TTL, durably_core::now_ms()).await;
    let Some(Ok(LeasedOpen::Opened(history))) = again else { panic!("the owner reopens its run: {again:?}") };
    assert_eq!(history.steps.iter().map(|s| s.step_id.as_str()).collect::<Vec<_>>(), ["s1"]);

    // Another owner: the holder's lease, and nothing created or changed.
    let other = new_run("held", None, 2_000);
    assert_eq!(acquire(&*store, "held", "owner-a", LONG_TTL).await, LeaseOutcome::Acquired);
    let answer = store.open_run_leased(&other, "owner-b", LONG_TTL, durably_core::now_ms()).await;
    match answer {
        Some(Ok(LeasedOpen::HeldBy(lease))) => assert_eq!(lease.owner, "owner-a"),
        other => panic!("a held lease must be answered, got {other:?}"),
    }
    assert!(
        get_run(&*store, "held").await.is_none(),
        "a run whose lease is held elsewhere must not be created"
    );
    update(&*store, "leased", RunUpdate::new(RunStatus::Waiting, 3_000)).await;
    let answer = store.open_run_leased(&new, "owner-b", LONG_TTL, durably_core::now_ms()).await;
    assert!(matches!(answer, Some(Ok(LeasedOpen::HeldBy(_)))), "got {answer:?}");
    assert_eq!(
        expect_run(&*store, "leased").await.status,
        RunStatus::Waiting,
        "the run must be left as it was"
    );
}
