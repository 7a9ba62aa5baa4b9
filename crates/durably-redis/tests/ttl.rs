//! Time to live: every key of a run gets the store's TTL, again on every write; `ZERO` keeps
//! keys forever; an expired run is gone from every read.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Cleanup, fresh_prefix, keys_under, raw, server_or_skip};
use durably_core::store::prelude::*;
use durably_core::{
    Claim, NewEvent, NewRun, QueuedRun, RunFilter, RunStatus, RunUpdate, SignalRecord, StepRecord, StepStatus,
};
use durably_redis::RedisStore;

async fn store(url: &str, prefix: &str, ttl: Duration) -> RedisStore {
    RedisStore::builder(url).prefix(prefix).ttl(ttl).connect().await.expect("connect to Redis")
}

/// Opens a run, saves a step, delivers a signal and marks it waiting: every kind of key exists.
async fn write_everything(store: &RedisStore, run_id: &str) {
    store.open_run(NewRun::new(run_id, "wf", Some("{}".into()), 1_000)).await.unwrap();
    store.save_step(run_id, &StepRecord::new("s", "task", StepStatus::Completed, 1_000)).await.unwrap();
    store.deliver_signal(run_id, &SignalRecord::new("go", "1", 1_000)).await.unwrap();
    store.update_run(run_id, &RunUpdate::new(RunStatus::Waiting, 2_000).waiting_on("next")).await.unwrap();
}

fn pttls(url: &str, prefix: &str) -> Vec<(String, i64)> {
    let mut conn = raw(url);
    let mut keys = keys_under(url, prefix).unwrap();
    keys.sort();
    keys.into_iter().map(|k| (k.clone(), redis::cmd("PTTL").arg(&k).query(&mut conn).unwrap())).collect()
}

#[tokio::test]
async fn every_key_of_a_run_and_its_indexes_gets_the_ttl() {
    let Some(url) = server_or_skip() else { return };
    let prefix = fresh_prefix();
    let _cleanup = Cleanup { url: url.clone(), prefix: prefix.clone() };
    let store = store(&url, &prefix, Duration::from_secs(3_600)).await;
    write_everything(&store, "r").await;
    let keys = pttls(&url, &prefix);
    let kinds: Vec<&str> =
        keys.iter().map(|(k, _)| k[prefix.len() + 1..].split(':').next().unwrap()).collect();
    for kind in ["run", "steps", "signals", "index"] {
        assert!(kinds.contains(&kind), "no `{kind}` key among {keys:?}");
    }
    for (key, pttl) in &keys {
        assert!((3_500_000..=3_600_000).contains(pttl), "{key} has PTTL {pttl} ms, not about one hour");
    }
}

#[tokio::test]
async fn a_write_refreshes_the_ttl_of_every_key_of_the_run() {
    let Some(url) = server_or_skip() else { return };
    let prefix = fresh_prefix();
    let _cleanup = Cleanup { url: url.clone(), prefix: prefix.clone() };
    let store = store(&url, &prefix, Duration::from_secs(3_600)).await;
    write_everything(&store, "r").await;
    let mut conn = raw(&url);
    // Age every key as if the run had not been written for most of its TTL.
    let age = |conn: &mut redis::Connection| {
        for key in keys_under(&url, &prefix).unwrap() {
            redis::cmd("PEXPIRE").arg(&key).arg(60_000).query::<i64>(conn).unwrap();
        }
    };
    age(&mut conn);
    // A status change refreshes the run's keys and every index that lists it.
    store.update_run("r", &RunUpdate::new(RunStatus::Running, 3_000)).await.unwrap();
    for (key, pttl) in pttls(&url, &prefix) {
        assert!(pttl > 3_500_000, "{key} kept PTTL {pttl} ms after update_run: the TTL was not refreshed");
    }
    // A step refreshes the run's own keys at once; the shared indexes only when their last
    // refresh by this run is over a sixteenth of the TTL old, which it is not yet.
    age(&mut conn);
    store.save_step("r", &StepRecord::new("t", "task", StepStatus::Completed, 3_000)).await.unwrap();
    for (key, pttl) in pttls(&url, &prefix) {
        let own = [":run:", ":steps:", ":signals:"].iter().any(|k| key.contains(k));
        assert_eq!(pttl > 3_500_000, own, "{key} has PTTL {pttl} ms after a save_step");
    }
    // Once the last index refresh is old enough, a step refreshes the indexes too.
    let run_key = format!("{prefix}:run:1:r");
    redis::cmd("HSET").arg(&run_key).arg("touched").arg(0).query::<i64>(&mut conn).unwrap();
    store.save_step("r", &StepRecord::new("u", "task", StepStatus::Completed, 4_000)).await.unwrap();
    for (key, pttl) in pttls(&url, &prefix) {
        assert!(pttl > 3_500_000, "{key} kept PTTL {pttl} ms after a save_step: the TTL was not refreshed");
    }
}

#[tokio::test]
async fn zero_ttl_keeps_keys_forever_and_clears_an_earlier_expiry() {
    let Some(url) = server_or_skip() else { return };
    let prefix = fresh_prefix();
    let _cleanup = Cleanup { url: url.clone(), prefix: prefix.clone() };
    let expiring = store(&url, &prefix, Duration::from_secs(3_600)).await;
    write_everything(&expiring, "r").await;
    assert!(pttls(&url, &prefix).iter().all(|(_, pttl)| *pttl > 0));
    let forever = store(&url, &prefix, Duration::ZERO).await;
    assert_eq!(forever.ttl(), Duration::ZERO);
    write_everything(&forever, "r").await;
    write_everything(&forever, "other").await;
    for (key, pttl) in pttls(&url, &prefix) {
        if key.ends_with(":index:expiry") {
            // Kept by expiring stores only, to sweep their expired runs; it expires with them.
            continue;
        }
        assert_eq!(pttl, -1, "{key} expires in {pttl} ms under a store with TTL zero");
    }
}

#[tokio::test]
async fn an_expired_run_is_gone_from_every_read() {
    let Some(url) = server_or_skip() else { return };
    let prefix = fresh_prefix();
    let _cleanup = Cleanup { url: url.clone(), prefix: prefix.clone() };
    let store = store(&url, &prefix, Duration::from_millis(1_000)).await;
    write_everything(&store, "r").await;
    assert_eq!(store.list_runs(&RunFilter::new()).await.unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(store.get_run("r").await.unwrap(), None);
    assert!(store.list_steps("r").await.unwrap().is_empty());
    assert_eq!(store.get_signal("r", "go").await.unwrap(), None);
    assert!(store.list_runs(&RunFilter::new()).await.unwrap().is_empty());
    assert!(store.list_runs(&RunFilter::new().status(RunStatus::Waiting)).await.unwrap().is_empty());
    assert!(store.recoverable_runs(0, 10).await.unwrap().is_empty());
    // Executing the id again starts a new run.
    let history = store.open_run(NewRun::new("r", "wf", None, 9_000)).await.unwrap();
    assert_eq!((history.run.created_at_ms, history.steps.len()), (9_000, 0));
}

#[tokio::test]
async fn index_entries_of_expired_runs_are_swept_by_later_writes() {
    let Some(url) = server_or_skip() else { return };
    let prefix = fresh_prefix();
    let _cleanup = Cleanup { url: url.clone(), prefix: prefix.clone() };
    // Expiring runs in every status and two workflows, and a long-lived store that keeps
    // writing to the same prefix (so the index keys themselves never expire).
    let short = store(&url, &prefix, Duration::from_millis(1_000)).await;
    let statuses = [
        RunStatus::Running,
        RunStatus::Waiting,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];
    for (i, status) in statuses.iter().enumerate() {
        let run_id = format!("old-{i}");
        short
            .open_run(NewRun::new(&run_id, if i % 2 == 0 { "even" } else { "odd" }, None, i as i64))
            .await
            .unwrap();
        short.update_run(&run_id, &RunUpdate::new(*status, 10)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let long = store(&url, &prefix, Duration::from_secs(3_600)).await;
    long.open_run(NewRun::new("new", "even", None, 100)).await.unwrap();
    let mut conn = raw(&url);
    for key in keys_under(&url, &prefix).unwrap() {
        if key.contains(":index:") && !key.ends_with(":index:expiry") {
            let members: Vec<String> =
                redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).query(&mut conn).unwrap();
            assert_eq!(members, ["new"], "{key} still lists expired runs");
        }
    }
    let expiry: Vec<String> =
        redis::cmd("ZRANGE").arg(format!("{prefix}:index:expiry")).arg(0).arg(-1).query(&mut conn).unwrap();
    assert_eq!(expiry, ["4:evennew"]);
}

/// Enqueues three children of `parent` in `queue`, claims two and parks one of those, and
/// appends to a trimmed event log: every per-queue structure and event key has a member.
async fn fill_a_queue(store: &RedisStore, queue: &str, parent: &str) {
    let now = durably_core::now_ms();
    for i in 0..3 {
        let run = QueuedRun::new(format!("{queue}-{i}"), "wf", None, queue, now + i).parent(parent).key("k");
        store.enqueue(&run).await.unwrap();
    }
    let mut claim = Claim::new(queue, "w", Duration::from_secs(60), now, 2);
    claim.limits.rate = Some(durably_core::Rate::new(10, 60_000));
    assert_eq!(store.claim_runs(&claim).await.unwrap().len(), 2);
    assert!(store.park_run(&format!("{queue}-0"), "w", "go", None, now).await.unwrap());
    // Two events of which one is kept: the log's `events-from` key exists too.
    let events = [NewEvent::new("text", "{}", now), NewEvent::new("text", "{}", now)];
    store.append_events(&format!("{queue}-1"), &events, 1).await.unwrap();
}

#[tokio::test]
async fn queue_and_event_keys_get_the_ttl() {
    let Some(url) = server_or_skip() else { return };
    let prefix = fresh_prefix();
    let _cleanup = Cleanup { url: url.clone(), prefix: prefix.clone() };
    let store = store(&url, &prefix, Duration::from_secs(3_600)).await;
    fill_a_queue(&store, "q", "p").await;
    let keys = pttls(&url, &prefix);
    for part in [
        ":events:",
        ":events-from:",
        ":queue:1:q:enqueued",
        ":queue:1:q:ready",
        ":queue:1:q:active",
        ":queue:1:q:parked",
        ":queue:1:q:claims",
        ":index:queue:",
        ":index:parent:",
        ":lease:",
    ] {
        assert!(keys.iter().any(|(k, _)| k.contains(part)), "no `{part}` key among {keys:?}");
    }
    for (key, pttl) in &keys {
        if key.contains(":lease:") {
            continue; // A lease lasts its own TTL.
        }
        assert!((3_500_000..=3_600_000).contains(pttl), "{key} has PTTL {pttl} ms, not about one hour");
    }
}

#[tokio::test]
async fn a_signal_that_unparks_a_run_refreshes_its_queue_keys() {
    let Some(url) = server_or_skip() else { return };
    let prefix = fresh_prefix();
    let _cleanup = Cleanup { url: url.clone(), prefix: prefix.clone() };
    let store = store(&url, &prefix, Duration::from_secs(3_600)).await;
    fill_a_queue(&store, "q", "p").await;
    let mut conn = raw(&url);
    // The queue sat idle for most of the TTL while its run was parked.
    for key in keys_under(&url, &prefix).unwrap() {
        redis::cmd("PEXPIRE").arg(&key).arg(60_000).query::<i64>(&mut conn).unwrap();
    }
    store.deliver_signal("q-0", &SignalRecord::new("go", "1", durably_core::now_ms())).await.unwrap();
    for (key, pttl) in pttls(&url, &prefix) {
        if key.contains(":queue:") {
            assert!(pttl > 3_500_000, "{key} kept PTTL {pttl} ms after the delivery that unparked a run");
        }
    }
    let claim = Claim::new("q", "w2", Duration::from_secs(60), durably_core::now_ms(), 10);
    let woken: Vec<String> = store.claim_runs(&claim).await.unwrap().into_iter().map(|r| r.run_id).collect();
    assert_eq!(woken, ["q-0", "q-2"], "the woken run and the enqueued one, oldest first");
}

#[tokio::test]
async fn queued_runs_that_expired_are_swept_from_their_queue() {
    let Some(url) = server_or_skip() else { return };
    let prefix = fresh_prefix();
    let _cleanup = Cleanup { url: url.clone(), prefix: prefix.clone() };
    let short = store(&url, &prefix, Duration::from_millis(1_000)).await;
    fill_a_queue(&short, "q", "p").await;
    let stats = short.queue_stats("q", 0).await.unwrap();
    assert_eq!((stats.enqueued, stats.executing, stats.parked), (1, 1, 1));
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    // A long-lived store keeps the queue's keys alive; its next enqueue sweeps the old runs.
    let long = store(&url, &prefix, Duration::from_secs(3_600)).await;
    long.enqueue(&QueuedRun::new("new", "wf", None, "q", durably_core::now_ms()).parent("p")).await.unwrap();
    let stats = long.queue_stats("q", 0).await.unwrap();
    assert_eq!((stats.enqueued, stats.executing, stats.parked), (1, 0, 0), "{stats:?}");
    let mut conn = raw(&url);
    for key in keys_under(&url, &prefix).unwrap() {
        let members: Vec<String> =
            match redis::cmd("TYPE").arg(&key).query::<String>(&mut conn).unwrap().as_str() {
                "zset" => redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).query(&mut conn).unwrap(),
                "set" => redis::cmd("SMEMBERS").arg(&key).query(&mut conn).unwrap(),
                _ => continue,
            };
        if key.ends_with(":index:expiry") || key.ends_with(":claims") {
            continue;
        }
        assert!(members.iter().all(|m| m.ends_with("new")), "{key} still lists expired runs: {members:?}");
    }
    let ids: Vec<String> =
        long.list_runs(&RunFilter::new().parent("p")).await.unwrap().into_iter().map(|r| r.run_id).collect();
    assert_eq!(ids, ["new"]);
}
