//! Each run's event log as the engine writes it: dense, in order, replayed steps not repeated,
//! followed live by `wf.events(id).from(offset)`.
// A test suite reports failure by panicking, and each test's name is its documentation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use durably::{Error, EventRecord};
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use super::{Counter, Harness};

#[durably::task(retries = 0)]
async fn flaky(c: Counter, fail: bool) -> Result<u32, super::Boom> {
    c.hit();
    if fail { Err(super::Boom("flaky step is down".into())) } else { Ok(7) }
}

fn summary(events: &[EventRecord]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let data: Value = serde_json::from_str(&e.data).unwrap();
            match e.kind.as_str() {
                "step" => {
                    format!("step {} {}", data["step_id"].as_str().unwrap(), data["status"].as_str().unwrap())
                }
                "waiting" | "signal" => format!("{} {}", e.kind, data["signal"].as_str().unwrap()),
                other => other.to_owned(),
            }
        })
        .collect()
}

fn assert_dense(events: &[EventRecord], from: u64) {
    let offsets: Vec<u64> = events.iter().map(|e| e.offset).collect();
    let expected: Vec<u64> = (from..from + events.len() as u64).collect();
    assert_eq!(offsets, expected, "offsets are not dense and in order");
}

pub async fn a_runs_events_are_dense_in_order_and_replayed_steps_are_not_emitted_again(h: Harness) {
    let c = Counter::new();
    let run_id = format!("ev-{}", h.kind);
    let body = |c: Counter, fail: bool| async move {
        let a = durably::step("a", || async { Ok::<_, Error>(1u32) }).await?;
        let b = flaky(c, fail).await?;
        Ok::<_, Error>(a + b)
    };
    h.wf().run(&run_id, |_| body(c.clone(), true)).await.unwrap_err();
    // A new engine (a restarted process) executes it again: `a` replays and emits nothing.
    assert_eq!(h.wf().run(&run_id, |_| body(c.clone(), false)).await.unwrap(), 8);

    let store = h.wf().store().clone();
    let events = store.read_events(&run_id, 0, 100).await.unwrap();
    assert_dense(&events, 0);
    assert_eq!(
        summary(&events),
        [
            "started",
            "step a completed",
            "step flaky failed",
            "failed",
            "resumed",
            "step flaky completed",
            "completed"
        ]
    );
    let last: Value = serde_json::from_str(&events[6].data).unwrap();
    assert_eq!(last["output"], 8);
    let failed: Value = serde_json::from_str(&events[3].data).unwrap();
    assert!(failed["error"].as_str().unwrap().contains("flaky step is down"), "{failed}");

    // The Rust API reads the same log from any offset, and ends after the final event.
    let all: Vec<EventRecord> = h.wf().events(&run_id).from(0).try_collect().await.unwrap();
    assert_eq!(all, events);
    let tail: Vec<EventRecord> = h.wf().events(&run_id).from(5).try_collect().await.unwrap();
    assert_eq!(tail, events[5..]);
    // A completed run executed again writes nothing more.
    h.wf().run(&run_id, |_| body(c.clone(), false)).await.unwrap();
    assert_eq!(store.read_events(&run_id, 0, 100).await.unwrap().len(), 7);
}

pub async fn a_follower_gets_a_waiting_runs_events_live_and_ends_with_it(h: Harness) {
    let wf = h.wf();
    let run_id = format!("ev-live-{}", h.kind);
    let mut follow = wf.events(&run_id).from(0);
    let runner = {
        let (wf, run_id) = (wf.clone(), run_id.clone());
        tokio::spawn(async move {
            wf.run(&run_id, |_| async move {
                durably::step("before", || async { Ok::<_, Error>(1u32) }).await?;
                let go: String = durably::signal("go").await?;
                durably::step("after", || async { Ok::<_, Error>(2u32) }).await?;
                Ok::<_, Error>(go)
            })
            .await
        })
    };
    // A follower started before the run exists would fail with RunNotFound: wait for it.
    let mut seen = Vec::new();
    while seen.last().is_none_or(|e: &EventRecord| e.kind != "waiting") {
        match tokio::time::timeout(Duration::from_secs(10), follow.next()).await.unwrap() {
            Some(Ok(event)) => seen.push(event),
            Some(Err(Error::RunNotFound { .. })) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                follow = wf.events(&run_id).from(seen.len() as u64);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(wf.complete(&run_id, "go", "yes").await.unwrap());
    while let Some(event) = tokio::time::timeout(Duration::from_secs(10), follow.next()).await.unwrap() {
        seen.push(event.unwrap());
    }
    assert_eq!(runner.await.unwrap().unwrap(), "yes");
    assert_dense(&seen, 0);
    assert_eq!(
        summary(&seen),
        ["started", "step before completed", "waiting go", "signal go", "step after completed", "completed"]
    );
}

pub async fn a_follower_behind_the_retention_limit_is_told_the_gap_then_gets_the_rest(h: Harness) {
    let wf = durably::Workflow::builder("test-app").shared_store(h.store()).max_events_per_run(4).build();
    let run_id = format!("ev-kept-{}", h.kind);
    wf.run(&run_id, |_| async move {
        for i in 0..6u32 {
            durably::step(format!("s{i}"), move || async move { Ok::<_, Error>(i) }).await?;
        }
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    // started, six steps, completed: offsets 0..=7, of which the newest four are kept.
    let kept = h.store().read_events(&run_id, 0, 100).await.unwrap();
    assert_dense(&kept, 4);
    assert_eq!(summary(&kept), ["step s3 completed", "step s4 completed", "step s5 completed", "completed"]);

    let items: Vec<durably::Result<EventRecord>> = wf.events(&run_id).from(1).collect().await;
    match &items[0] {
        Err(Error::EventsTrimmed { run_id: r, from: 1, first_kept: 4 }) if *r == run_id => {}
        other => panic!("expected the gap from 1 to 4 first, got {other:?}"),
    }
    let rest: Vec<EventRecord> = items[1..].iter().map(|i| i.as_ref().unwrap().clone()).collect();
    assert_eq!(rest, kept, "after the gap, every event kept, once");
    // From a kept offset there is no gap.
    let tail: Vec<EventRecord> = wf.events(&run_id).from(6).try_collect().await.unwrap();
    assert_eq!(tail, kept[2..]);
}
