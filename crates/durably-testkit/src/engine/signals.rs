//! Signals and durable sleep (rules 10 and 11 of docs/design.md).
// A test suite reports failure by panicking, and each test's name is its documentation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use super::{Counter, Harness};
use crate::faults::{FaultStore, Op};
use durably::{Error, RunStatus};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Approval {
    approved: bool,
    by: String,
}

#[durably::task(retries = 0)]
async fn ship(c: Counter) -> Result<String, super::Boom> {
    c.hit();
    Ok("shipped".into())
}

async fn wait_until_status(h: &Harness, run_id: &str, status: RunStatus) -> durably::RunRecord {
    for _ in 0..500 {
        if let Some(run) = h.wf().get_run(run_id).await.unwrap()
            && run.status == status
        {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("run {run_id} never reached {status}");
}

pub async fn wait_then_deliver(h: Harness) {
    let wf = h.wf();
    let c = Counter::new();
    let runner = {
        let (wf, c) = (wf.clone(), c.clone());
        tokio::spawn(async move {
            wf.run("order-1", |_| async move {
                let a: Approval = durably::signal("manager-approval").await?;
                let shipped = if a.approved { ship(c).await? } else { "held".into() };
                Ok::<_, Error>((a, shipped))
            })
            .await
        })
    };
    let waiting = wait_until_status(&h, "order-1", RunStatus::Waiting).await;
    assert_eq!(waiting.waiting_on.as_deref(), Some("manager-approval"));
    assert_eq!(c.get(), 0);
    let approval = Approval { approved: true, by: "ana".into() };
    assert!(wf.complete("order-1", "manager-approval", &approval).await.unwrap());
    let (got, shipped) =
        tokio::time::timeout(Duration::from_secs(5), runner).await.unwrap().unwrap().unwrap();
    assert_eq!((got, shipped.as_str()), (approval, "shipped"));
    assert_eq!(h.wf().get_run("order-1").await.unwrap().unwrap().status, RunStatus::Completed);
}

pub async fn deliver_then_wait(h: Harness) {
    let wf = h.wf();
    assert!(wf.complete("order-2", "go", &42u32).await.unwrap(), "a signal may arrive before the run exists");
    let out = wf.run("order-2", |_| async { durably::signal::<u32>("go").await }).await.unwrap();
    assert_eq!(out, 42);
}

pub async fn duplicate_delivery_returns_false_and_keeps_the_first(h: Harness) {
    let wf = h.wf();
    assert!(wf.complete("order-3", "go", &"first").await.unwrap());
    assert!(!wf.complete("order-3", "go", &"second").await.unwrap());
    let out: String = wf.run("order-3", |_| async { durably::signal("go").await }).await.unwrap();
    assert_eq!(out, "first");
}

pub async fn two_signals_in_order(h: Harness) {
    let wf = h.wf();
    let runner = {
        let wf = wf.clone();
        tokio::spawn(async move {
            wf.run("order-4", |_| async {
                let a: u32 = durably::signal("first").await?;
                let b: u32 = durably::signal("second").await?;
                Ok::<_, Error>(vec![a, b])
            })
            .await
        })
    };
    let run = wait_until_status(&h, "order-4", RunStatus::Waiting).await;
    assert_eq!(run.waiting_on.as_deref(), Some("first"));
    wf.complete("order-4", "first", &1u32).await.unwrap();
    // The run moves on to wait for the second one.
    for _ in 0..500 {
        let run = h.wf().get_run("order-4").await.unwrap().unwrap();
        if run.waiting_on.as_deref() == Some("second") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wf.complete("order-4", "second", &2u32).await.unwrap();
    assert_eq!(runner.await.unwrap().unwrap(), vec![1, 2]);
}

pub async fn a_delivered_signal_replays_after_a_restart(h: Harness) {
    let c = Counter::new();
    let body = |c: Counter, crash: bool| async move {
        let a: Approval = durably::signal("approval").await?;
        if crash {
            return Err(Error::permanent(super::boom("crash after the signal")));
        }
        ship(c).await?;
        Ok::<_, Error>(a.by)
    };
    h.wf().complete("order-5", "approval", &Approval { approved: true, by: "li".into() }).await.unwrap();
    h.wf().run("order-5", |_| body(c.clone(), true)).await.unwrap_err();
    // A new engine (a restarted process) gets the same payload without waiting.
    let by = tokio::time::timeout(Duration::from_secs(5), h.wf().run("order-5", |_| body(c.clone(), false)))
        .await
        .expect("a delivered signal must not be waited for again")
        .unwrap();
    assert_eq!((by.as_str(), c.get()), ("li", 1));
}

pub async fn signal_timeout_returns_none_at_the_deadline_and_replays_it(h: Harness) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let body = |seen: std::sync::Arc<std::sync::Mutex<Vec<Option<u32>>>>, crash: bool| async move {
        let got: Option<u32> = durably::signal_timeout("late", Duration::from_millis(50)).await?;
        seen.lock().unwrap().push(got);
        if crash {
            return Err(Error::permanent(super::boom("crash after the timeout")));
        }
        Ok::<_, Error>(got)
    };
    h.wf().run("order-6", |_| body(seen.clone(), true)).await.unwrap_err();
    // Delivered after the timeout: the replay keeps saying the wait timed out.
    assert!(h.wf().complete("order-6", "late", &7u32).await.unwrap());
    let out = h.wf().run("order-6", |_| body(seen.clone(), false)).await.unwrap();
    assert_eq!(out, None);
    assert_eq!(*seen.lock().unwrap(), vec![None, None]);
    let steps = h.wf().list_steps("order-6").await.unwrap();
    assert_eq!(steps[0].step_id, "signal:late");
    assert_eq!(steps[0].value.as_deref(), Some("null"));
}

pub async fn signal_timeout_returns_the_payload_when_delivered_in_time(h: Harness) {
    let wf = h.wf();
    let runner = {
        let wf = wf.clone();
        tokio::spawn(async move {
            wf.run("order-7", |_| async {
                durably::signal_timeout::<u32>("x", Duration::from_secs(30)).await
            })
            .await
        })
    };
    wait_until_status(&h, "order-7", RunStatus::Waiting).await;
    wf.complete("order-7", "x", &5u32).await.unwrap();
    assert_eq!(runner.await.unwrap().unwrap(), Some(5));
}

pub async fn the_signal_deadline_survives_a_restart(h: Harness) {
    // First execution starts a 400 ms wait, then "crashes" (is dropped) after 250 ms.
    let wf = h.wf();
    let first = wf
        .run("order-8", |_| async { durably::signal_timeout::<u32>("s", Duration::from_millis(400)).await });
    assert!(tokio::time::timeout(Duration::from_millis(250), first).await.is_err());
    // The restarted run waits only for what is left of the recorded deadline.
    let start = std::time::Instant::now();
    let out = h
        .wf()
        .run("order-8", |_| async { durably::signal_timeout::<u32>("s", Duration::from_millis(400)).await })
        .await
        .unwrap();
    assert_eq!(out, None);
    assert!(
        start.elapsed() < Duration::from_millis(330),
        "waited {:?}: the deadline was not kept",
        start.elapsed()
    );
}

pub async fn durable_sleep_waits_only_for_what_is_left(h: Harness) {
    const HOUR: Duration = Duration::from_secs(3600);
    let nap = || async {
        durably::sleep(HOUR).await?;
        Ok::<_, Error>("woke".to_string())
    };
    // The first execution records its wake time, then "crashes" (is dropped) mid-sleep.
    let wf = h.wf();
    let first = tokio::spawn(async move { wf.run("nap-1", |_| nap()).await });
    let wake_of = |steps: Vec<durably::StepRecord>| {
        steps
            .into_iter()
            .find(|s| s.step_id == "sleep")
            .and_then(|s| s.value)
            .map(|v| v.parse::<i64>().unwrap())
    };
    let recorded = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Some(wake) = wake_of(h.wf().list_steps("nap-1").await.unwrap()) {
                return wake;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the sleep step was never recorded");
    assert!(recorded >= durably::now_ms() + 3_500_000, "the wake time is an hour away: {recorded}");
    first.abort();
    let _ = first.await;

    // Most of the hour "passes" while the process is down: the recorded wake time is 200 ms away.
    let wake = durably::now_ms() + 200;
    let mut rec =
        durably::StepRecord::new("sleep", "sleep", durably::StepStatus::Completed, durably::now_ms());
    rec.value = Some(wake.to_string());
    h.store().save_step("nap-1", &rec).await.unwrap();

    // The restarted run sleeps until the recorded time, not for another hour (the timeout only
    // guards against a hang: sleeping the whole duration again would take an hour).
    let out = tokio::time::timeout(Duration::from_secs(60), h.wf().run("nap-1", |_| nap()))
        .await
        .expect("the restarted run slept the whole duration again")
        .unwrap();
    assert_eq!(out, "woke");
    assert!(durably::now_ms() >= wake, "woke before the recorded wake time");
    assert_eq!(
        wake_of(h.wf().list_steps("nap-1").await.unwrap()),
        Some(wake),
        "the wake time is not recorded again"
    );
}

pub async fn signals_outside_a_run_are_an_error(_h: Harness) {
    let err = durably::signal::<u32>("x").await.unwrap_err();
    assert!(err.to_string().contains("inside a workflow run"), "{err}");
}

pub async fn cancel_stops_a_waiting_run(h: Harness) {
    let wf = h.wf();
    let runner = {
        let wf = wf.clone();
        tokio::spawn(
            async move { wf.run("order-9", |_| async { durably::signal::<u32>("never").await }).await },
        )
    };
    wait_until_status(&h, "order-9", RunStatus::Waiting).await;
    assert!(wf.cancel("order-9").await.unwrap());
    let err = tokio::time::timeout(Duration::from_secs(5), runner).await.unwrap().unwrap().unwrap_err();
    assert!(matches!(err, Error::Cancelled { .. }), "{err}");
    assert_eq!(h.wf().get_run("order-9").await.unwrap().unwrap().status, RunStatus::Cancelled);
    let again = h.wf().run("order-9", |_| async { Ok::<_, Error>(1u32) }).await.unwrap_err();
    assert!(
        matches!(again, Error::Cancelled { .. }),
        "executing a cancelled run again returns the cancellation"
    );
}

pub async fn watching_many_runs_for_cancellation_takes_one_store_call_per_poll(h: Harness) {
    // Fifty runs wait on a signal: the engine asks the store about all of them at once, one
    // status read per poll interval, not one per run.
    const RUNS: u32 = 50;
    let faulty = Arc::new(FaultStore::new(h.store()));
    let wf = durably::Workflow::builder("test-app").shared_store(faulty.clone()).build();
    let runners = super::start_waiting_runs(&h, &wf, "watched", RUNS).await;
    let before = faulty.calls(Op::GetRun);
    // Three cancellation polls (`durably_core::CANCEL_POLL` is 500 ms).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let reads = faulty.calls(Op::GetRun) - before;
    assert!(reads < RUNS, "{reads} status reads in three poll intervals of {RUNS} waiting runs");

    // Still watched: a cancellation by another engine (another process) stops its run.
    assert!(h.wf().cancel("watched-7").await.unwrap());
    for i in (0..RUNS).filter(|i| *i != 7) {
        assert!(wf.complete(&format!("watched-{i}"), "go", &i).await.unwrap());
    }
    for (i, runner) in runners.into_iter().enumerate() {
        let result =
            tokio::time::timeout(Duration::from_secs(20), runner).await.expect("the run ended").unwrap();
        match result {
            Err(Error::Cancelled { run_id }) if i == 7 => assert_eq!(run_id, "watched-7"),
            Ok(v) if i != 7 => assert_eq!(v, i as u32),
            other => panic!("run {i}: {other:?}"),
        }
    }
}

/// Two engines sharing one store (as the harness's engines do): a signal delivered through one
/// wakes a run waiting in the other without waiting out the store's own wait.
pub async fn a_signal_from_another_engine_wakes_the_waiter(h: Harness) {
    let (waiter, sender) = (h.wf(), h.wf());
    let runner = tokio::spawn(async move { waiter.run("mem-cross", |_| durably::signal::<u32>("go")).await });
    wait_until_status(&h, "mem-cross", RunStatus::Waiting).await;
    assert!(sender.complete("mem-cross", "go", &3u32).await.unwrap());
    // Without the store's own wake-up the waiter would sleep for its whole store wait (60 s).
    let v = tokio::time::timeout(Duration::from_secs(5), runner).await.expect("woken").unwrap().unwrap();
    assert_eq!(v, 3);
}
