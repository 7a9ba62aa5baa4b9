//! One executor per run inside a process (rule 9 of docs/design.md) and idempotency keys with
//! at-most-once tasks (rule 14).
// A test suite reports failure by panicking, and each test's name is its documentation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use super::{Counter, Harness, boom};
use durably::{Error, StepRecord, StepStatus};

#[durably::task(retries = 0)]
async fn slow_step(c: Counter) -> Result<u32, super::Boom> {
    let n = c.hit();
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(n)
}

#[durably::task(retries = 2, backoff = constant(0.0))]
async fn keyed(keys: std::sync::Arc<std::sync::Mutex<Vec<String>>>) -> Result<String, super::Boom> {
    let key = durably::idempotency_key().expect("inside a step");
    let mut seen = keys.lock().unwrap();
    seen.push(key.clone());
    if seen.len() < 3 { Err(boom("transient")) } else { Ok(key) }
}

#[durably::task(at_most_once, retries = 0)]
async fn charge(c: Counter) -> Result<String, super::Boom> {
    c.hit();
    Ok("charged".into())
}

pub async fn concurrent_executions_of_one_run_execute_each_step_once(h: Harness) {
    let wf = h.wf();
    let c = Counter::new();
    let run = |wf: durably::Workflow, c: Counter| async move {
        wf.run("same-id", |_| async move {
            let a = slow_step(c.clone()).await?;
            let b = slow_step(c.clone()).await?;
            Ok::<_, Error>(a * 10 + b)
        })
        .await
    };
    let (x, y, z) =
        tokio::join!(run(wf.clone(), c.clone()), run(wf.clone(), c.clone()), run(wf.clone(), c.clone()));
    assert_eq!(c.get(), 2, "each step body must run once in total");
    assert_eq!((x.unwrap(), y.unwrap(), z.unwrap()), (12, 12, 12), "every caller gets the same result");
}

pub async fn a_concurrent_caller_gets_the_same_failure(h: Harness) {
    let wf = h.wf();
    let c = Counter::new();
    let run = |wf: durably::Workflow, c: Counter| async move {
        wf.run("fails", |_| async move {
            slow_step(c.clone()).await?;
            super::crash::<u32>("workflow gave up")
        })
        .await
    };
    let (x, y) = tokio::join!(run(wf.clone(), c.clone()), run(wf.clone(), c.clone()));
    assert_eq!(c.get(), 1);
    let (x, y) = (x.unwrap_err(), y.unwrap_err());
    assert!(x.to_string().contains("workflow gave up"), "{x}");
    assert!(y.to_string().contains("workflow gave up"), "{y}");
}

pub async fn the_idempotency_key_is_stable_across_attempts_and_distinct_per_step(h: Harness) {
    let keys = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = h.wf().run("pay-1", |_| keyed(keys.clone())).await.unwrap();
    let seen = keys.lock().unwrap().clone();
    assert_eq!(seen, vec!["pay-1/keyed".to_string(); 3], "three attempts, one key");
    assert_eq!(out, "pay-1/keyed");
    let keys2 = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let out2 = h.wf().run("pay-2", |_| keyed(keys2.clone()).step_id("other")).await.unwrap();
    assert_eq!(out2, "pay-2/other");
    assert_eq!(durably::idempotency_key(), None, "no key outside a step");
}

pub async fn at_most_once_refuses_to_run_an_ambiguous_step_again(h: Harness) {
    let c = Counter::new();
    // Leave behind what a crash in the middle of the body leaves: the intent, no result.
    let run = "pay-4";
    h.wf().run(run, |_| async { super::crash::<()>("crash before the step") }).await.unwrap_err();
    let intent = StepRecord::new("charge", "charge", StepStatus::Started, durably::now_ms());
    h.store().save_step(run, &intent).await.unwrap();

    let err = h.wf().run(run, |_| charge(c.clone())).await.unwrap_err();
    assert!(
        matches!(&err, Error::AmbiguousEffect { run_id, step_id } if run_id == run && step_id == "charge"),
        "{err}"
    );
    assert_eq!(c.get(), 0, "the at-most-once body must not run a second time");
}

pub async fn at_most_once_records_its_intent_before_the_body(h: Harness) {
    let store = h.store();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let out = h
        .wf()
        .run("pay-5", |_| {
            let (store, seen) = (store.clone(), seen.clone());
            durably::step("send-email", move || {
                let (store, seen) = (store.clone(), seen.clone());
                async move {
                    // Look at the store from inside the body.
                    let steps = store.list_steps("pay-5").await?;
                    *seen.lock().unwrap() = steps.first().map(|s| s.status);
                    Ok::<_, Error>("sent".to_string())
                }
            })
            .at_most_once()
        })
        .await
        .unwrap();
    assert_eq!(out, "sent");
    assert_eq!(
        *seen.lock().unwrap(),
        Some(StepStatus::Started),
        "the intent must be durable before the body runs"
    );
    let steps = h.wf().list_steps("pay-5").await.unwrap();
    assert_eq!(steps[0].status, StepStatus::Completed);
}
