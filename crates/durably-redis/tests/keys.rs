//! Key layout: everything under the prefix, stores with different prefixes independent, and
//! run ids (and queue names, parents, concurrency keys) with separators and glob characters in
//! keys that never collide.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use common::{Cleanup, fresh_prefix, keys_under, raw, server_or_skip};
use durably_core::store::prelude::*;
use durably_core::{
    Claim, LeaseOutcome, NewEvent, NewRun, QueueLimits, QueuedRun, RunFilter, RunStatus, RunUpdate,
    SignalRecord, StepRecord, StepStatus,
};
use durably_redis::RedisStore;

async fn store(url: &str, prefix: &str) -> RedisStore {
    RedisStore::builder(url).prefix(prefix).connect().await.expect("connect to Redis")
}

#[tokio::test]
async fn stores_with_different_prefixes_share_nothing() {
    let Some(url) = server_or_skip() else { return };
    let (pa, pb) = (fresh_prefix(), fresh_prefix());
    let _cleanup =
        (Cleanup { url: url.clone(), prefix: pa.clone() }, Cleanup { url: url.clone(), prefix: pb.clone() });
    let (a, b) = (store(&url, &pa).await, store(&url, &pb).await);
    a.open_run(NewRun::new("same-id", "wf-a", Some("\"a\"".into()), 1_000)).await.unwrap();
    a.save_step("same-id", &StepRecord::new("s", "task", StepStatus::Completed, 1_000)).await.unwrap();
    assert!(a.deliver_signal("same-id", &SignalRecord::new("go", "\"a\"", 1_000)).await.unwrap());
    assert_eq!(
        a.acquire_lease("same-id", "owner-a", std::time::Duration::from_secs(60), 0).await.unwrap(),
        LeaseOutcome::Acquired
    );

    assert_eq!(b.get_run("same-id").await.unwrap(), None);
    assert!(b.list_runs(&RunFilter::new()).await.unwrap().is_empty());
    assert!(b.list_steps("same-id").await.unwrap().is_empty());
    assert_eq!(b.get_signal("same-id", "go").await.unwrap(), None);
    assert!(
        b.deliver_signal("same-id", &SignalRecord::new("go", "\"b\"", 1_000)).await.unwrap(),
        "B's own first delivery"
    );
    assert_eq!(
        b.acquire_lease("same-id", "owner-b", std::time::Duration::from_secs(60), 0).await.unwrap(),
        LeaseOutcome::Acquired
    );
    let history = b.open_run(NewRun::new("same-id", "wf-b", None, 2_000)).await.unwrap();
    assert_eq!((history.run.workflow.as_str(), history.steps.len()), ("wf-b", 0));
    b.update_run("same-id", &RunUpdate::new(RunStatus::Completed, 3_000)).await.unwrap();

    let run = a.get_run("same-id").await.unwrap().unwrap();
    assert_eq!((run.workflow.as_str(), run.status), ("wf-a", RunStatus::Running), "B's writes reached A");
    assert_eq!(a.get_signal("same-id", "go").await.unwrap().as_deref(), Some("\"a\""));
    assert_eq!(a.recoverable_runs(0, 10).await.unwrap().len(), 0, "A's lease still holds");

    for (prefix, other) in [(&pa, &pb), (&pb, &pa)] {
        let keys = keys_under(&url, prefix).unwrap();
        assert!(!keys.is_empty());
        assert!(keys.iter().all(|k| k.starts_with(&format!("{prefix}:")) && !k.contains(other.as_str())));
    }
}

#[tokio::test]
async fn ids_with_separators_get_keys_of_their_own_and_keep_the_id_verbatim() {
    let Some(url) = server_or_skip() else { return };
    let prefix = fresh_prefix();
    let _cleanup = Cleanup { url: url.clone(), prefix: prefix.clone() };
    let store = store(&url, &prefix).await;
    // Under a naive `<prefix>:run:<id>` + `<prefix>:run:<id>:steps` scheme several of these
    // would share keys or match each other's globs.
    let ids = ["a", "a:steps", "1:a", "a:1", "*", "a*", "{a}", "run:a", "3:a:b", "a\nb", "", "🦀:🦀"];
    for (i, id) in ids.iter().enumerate() {
        store.open_run(NewRun::new(*id, "wf", Some(i.to_string()), 1_000 + i as i64)).await.unwrap();
        let mut step = StepRecord::new(format!("s-{i}"), "task", StepStatus::Completed, 1_000);
        step.value = Some(i.to_string());
        store.save_step(id, &step).await.unwrap();
    }
    let mut conn = raw(&url);
    let run_keys: Vec<String> = keys_under(&url, &prefix)
        .unwrap()
        .into_iter()
        .filter(|k| k.starts_with(&format!("{prefix}:run:")))
        .collect();
    assert_eq!(run_keys.len(), ids.len(), "one run hash per id: {run_keys:?}");
    let stored: BTreeSet<String> =
        run_keys.iter().map(|k| redis::cmd("HGET").arg(k).arg("id").query(&mut conn).unwrap()).collect();
    assert_eq!(
        stored,
        ids.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
        "ids are kept verbatim in the hash"
    );
    for (i, id) in ids.iter().enumerate() {
        let run = store.get_run(id).await.unwrap().unwrap();
        assert_eq!(run.input, Some(i.to_string()), "run {id:?}");
        let steps = store.list_steps(id).await.unwrap();
        assert_eq!(steps.len(), 1, "run {id:?} sees another run's steps: {steps:?}");
        assert_eq!(steps[0].value, Some(i.to_string()));
    }
}

#[tokio::test]
async fn queues_parents_and_keys_with_separators_stay_apart() {
    let Some(url) = server_or_skip() else { return };
    let prefix = fresh_prefix();
    let _cleanup = Cleanup { url: url.clone(), prefix: prefix.clone() };
    let store = store(&url, &prefix).await;
    let names = ["a", "a:ready", "1:a", "a:1", "*", "{a}", "3:a:b", "a\nb", "", "🦀:🦀"];
    let now = durably_core::now_ms();
    for (i, name) in names.iter().enumerate() {
        // Each run has the name as its queue, its parent, its key and its id (events too).
        let run = QueuedRun::new(*name, "wf", None, *name, now + i as i64).parent(*name).key(*name);
        assert!(store.enqueue(&run).await.unwrap().1);
        store.append_events(name, &[NewEvent::new(*name, *name, i as i64)], u64::MAX).await.unwrap();
    }
    let mut one_per_key = QueueLimits::default();
    one_per_key.per_key = Some(1);
    for (i, name) in names.iter().enumerate() {
        let in_queue = store.list_runs(&RunFilter::new().queue(*name)).await.unwrap();
        assert_eq!(in_queue.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(), [*name], "queue {name:?}");
        let children = store.list_runs(&RunFilter::new().parent(*name)).await.unwrap();
        assert_eq!(children.len(), 1, "parent {name:?}: {children:?}");
        let stats = store.queue_stats(name, now).await.unwrap();
        assert_eq!(stats.enqueued, 1, "queue {name:?}: {stats:?}");
        let claim = Claim::new(*name, "w", std::time::Duration::from_secs(60), now, 10).limits(one_per_key);
        let claimed = store.claim_runs(&claim).await.unwrap();
        assert_eq!(claimed.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(), [*name], "queue {name:?}");
        assert_eq!(claimed[0].queue.as_deref(), Some(*name));
        let events = store.read_events(name, 0, 10).await.unwrap();
        assert_eq!(events.len(), 1, "run {name:?} sees another run's events: {events:?}");
        assert_eq!(
            (events[0].kind.as_str(), events[0].data.as_str(), events[0].at_ms),
            (*name, *name, i as i64)
        );
    }
}
