//! Checkpoint and replay (rules 1, 2, 3, 6, 7, 8 of docs/design.md): finished tasks return their recorded
//! value on a new execution, step ids are decided at call time, and replay is checked.

// A test suite reports failure by panicking, and each test's name is its documentation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use super::{Counter, Harness, boom};
use durably::{Error, RunStatus, StepStatus};
use serde::{Deserialize, Serialize};

#[durably::task(retries = 0)]
async fn add(c: Counter, a: u32, b: u32) -> Result<u32, super::Boom> {
    c.hit();
    Ok(a + b)
}

#[durably::task(retries = 0)]
async fn maybe_fail(c: Counter, fail: bool) -> Result<String, super::Boom> {
    c.hit();
    if fail { Err(boom("third step is down")) } else { Ok("third".into()) }
}

#[durably::task(name = "other-task", retries = 0)]
async fn other(c: Counter) -> Result<u32, super::Boom> {
    c.hit();
    Ok(7)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Item {
    id: u32,
    tags: Vec<String>,
}

#[durably::task(retries = 0)]
async fn unit_task(c: Counter) -> Result<(), super::Boom> {
    c.hit();
    Ok(())
}

#[durably::task(retries = 0)]
async fn none_task(c: Counter) -> Result<Option<Item>, super::Boom> {
    c.hit();
    Ok(None)
}

#[durably::task(retries = 0)]
async fn some_task(c: Counter) -> Result<Option<Item>, super::Boom> {
    c.hit();
    Ok(Some(Item { id: 1, tags: vec!["é".into(), "\"quoted\"".into()] }))
}

pub async fn steps_are_checkpointed_and_not_reexecuted(h: Harness) {
    let c = Counter::new();
    let body = |c: Counter| async move {
        let x = add(c.clone(), 1, 2).await?;
        let y = add(c.clone(), x, 10).await?;
        Ok::<_, Error>(y)
    };
    assert_eq!(h.wf().run("r1", |_| body(c.clone())).await.unwrap(), 13);
    assert_eq!(c.get(), 2);

    // A new engine on the same store: the run completed, so its stored output comes back and
    // no body runs.
    c.reset();
    assert_eq!(h.wf().run("r1", |_| body(c.clone())).await.unwrap(), 13);
    assert_eq!(c.get(), 0, "a completed run re-executed a step");

    let steps = h.wf().list_steps("r1").await.unwrap();
    let ids: Vec<&str> = steps.iter().map(|s| s.step_id.as_str()).collect();
    assert_eq!(ids, ["add", "add#1"]);
    assert!(steps.iter().all(|s| s.status == StepStatus::Completed && s.attempts == 1));
    assert_eq!(steps[1].value.as_deref(), Some("13"));
}

pub async fn failed_workflow_resumes_with_only_the_failed_step(h: Harness) {
    let c1 = Counter::new();
    let c3 = Counter::new();
    let body = |c1: Counter, c3: Counter, fail: bool| async move {
        let a = add(c1.clone(), 1, 1).await?;
        let b = add(c1.clone(), a, 1).await?;
        let t = maybe_fail(c3.clone(), fail).await?;
        Ok::<_, Error>(format!("{b}-{t}"))
    };
    let err = h.wf().run("r2", |_| body(c1.clone(), c3.clone(), true)).await.unwrap_err();
    assert!(matches!(&err, Error::Task { step_id, attempts: 1, .. } if step_id == "maybe_fail"), "{err}");
    let run = h.wf().get_run("r2").await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert!(run.error.as_deref().unwrap_or_default().contains("third step is down"), "{:?}", run.error);
    assert_eq!((c1.get(), c3.get()), (2, 1));

    // Resume after the "fix": the first two steps replay, only the third runs.
    let out = h.wf().run("r2", |_| body(c1.clone(), c3.clone(), false)).await.unwrap();
    assert_eq!(out, "3-third");
    assert_eq!((c1.get(), c3.get()), (2, 2), "only the failed step may run again");
    let run = h.wf().get_run("r2").await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.output.as_deref(), Some("\"3-third\""));
    assert_eq!(run.error, None);
}

pub async fn concurrent_calls_get_ids_by_call_order_not_completion(h: Harness) {
    let c = Counter::new();
    let body = |c: Counter| async move {
        // Created in order a, b, c; they finish in reverse order.
        let slow = durably::step("fetch", || async {
            tokio::time::sleep(std::time::Duration::from_millis(60)).await;
            Ok::<_, Error>("slow".to_string())
        });
        let mid = durably::step("fetch", || async {
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            Ok::<_, Error>("mid".to_string())
        });
        let fast = durably::step("fetch", || async { Ok::<_, Error>("fast".to_string()) });
        let (a, b, d) = tokio::try_join!(slow, mid, fast)?;
        let all = futures::future::try_join_all((0..3u32).map(|i| add(c.clone(), i, 100))).await?;
        // Created first, awaited second: the id still follows creation.
        let created_first = durably::step("order", || async { Ok::<_, Error>("created first".to_string()) });
        let created_second =
            durably::step("order", || async { Ok::<_, Error>("created second".to_string()) });
        created_second.await?;
        created_first.await?;
        Ok::<_, Error>((a, b, d, all))
    };
    let out = h.wf().run("r3", |_| body(c.clone())).await.unwrap();
    assert_eq!(out.3, vec![100, 101, 102]);
    let steps = h.wf().list_steps("r3").await.unwrap();
    let value = |id: &str| steps.iter().find(|s| s.step_id == id).and_then(|s| s.value.clone());
    assert_eq!(value("fetch").as_deref(), Some("\"slow\""));
    assert_eq!(value("fetch#1").as_deref(), Some("\"mid\""));
    assert_eq!(value("fetch#2").as_deref(), Some("\"fast\""));
    assert_eq!(value("add#2").as_deref(), Some("102"));
    assert_eq!(value("order").as_deref(), Some("\"created first\""));
    assert_eq!(value("order#1").as_deref(), Some("\"created second\""));
}

pub async fn loop_step_ids_checkpoint_each_iteration(h: Harness) {
    let c = Counter::new();
    let stop_at = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(3));
    let body = |c: Counter, stop: std::sync::Arc<std::sync::atomic::AtomicU32>| async move {
        let mut total = 0;
        for i in 0..5u32 {
            if i == stop.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(Error::permanent(boom("crash mid-loop")));
            }
            total += add(c.clone(), i, 0).step_id(format!("item-{i}")).await?;
        }
        Ok::<_, Error>(total)
    };
    assert!(h.wf().run("r4", |_| body(c.clone(), stop_at.clone())).await.is_err());
    assert_eq!(c.get(), 3);
    stop_at.store(99, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(h.wf().run("r4", |_| body(c.clone(), stop_at.clone())).await.unwrap(), 10);
    assert_eq!(c.get(), 5, "items 0..3 replayed, only 3 and 4 executed");
    let ids: Vec<String> = h.wf().list_steps("r4").await.unwrap().into_iter().map(|s| s.step_id).collect();
    assert_eq!(ids, ["item-0", "item-1", "item-2", "item-3", "item-4"]);
}

pub async fn tasks_outside_a_run_are_plain_functions(h: Harness) {
    let c = Counter::new();
    assert_eq!(add(c.clone(), 2, 3).await.unwrap(), 5);
    assert_eq!(add(c.clone(), 2, 3).await.unwrap(), 5);
    assert_eq!(c.get(), 2, "outside a run nothing is cached");
    // No retries outside a run either: one attempt, the error comes straight back.
    let err = maybe_fail(c.clone(), true).await.unwrap_err();
    assert!(matches!(err, Error::Task { attempts: 1, .. }), "{err}");
    assert!(
        h.wf().list_runs(&Default::default()).await.unwrap().is_empty(),
        "outside a run, nothing is stored"
    );
}

pub async fn same_task_in_two_runs_stays_isolated(h: Harness) {
    let c = Counter::new();
    let a = h.wf().run("wf-a", |_| add(c.clone(), 1, 1)).await.unwrap();
    let b = h.wf().run("wf-b", |_| add(c.clone(), 5, 5)).await.unwrap();
    assert_eq!((a, b), (2, 10));
    assert_eq!(c.get(), 2, "the second run must not see the first one's checkpoint");
    assert_eq!(h.wf().list_steps("wf-a").await.unwrap()[0].value.as_deref(), Some("2"));
    assert_eq!(h.wf().list_steps("wf-b").await.unwrap()[0].value.as_deref(), Some("10"));
}

#[allow(clippy::let_unit_value)] // the unit value's round trip is the point
pub async fn unit_and_none_results_survive_a_round_trip(h: Harness) {
    let c = Counter::new();
    let body = |c: Counter| async move {
        let u = unit_task(c.clone()).await?;
        let n = none_task(c.clone()).await?;
        let s = some_task(c.clone()).await?;
        // Interrupt the run so that the second execution replays every step.
        Ok::<_, Error>((u, n, s))
    };
    let first = h
        .wf()
        .run("r5", |_| async {
            body(c.clone()).await?;
            super::crash::<()>("stop")
        })
        .await;
    assert!(first.is_err());
    assert_eq!(c.get(), 3);
    let (u, n, s) = h.wf().run("r5", |_| body(c.clone())).await.unwrap();
    assert_eq!(c.get(), 3, "all three replayed");
    assert_eq!(u, ());
    assert_eq!(n, None);
    assert_eq!(s, Some(Item { id: 1, tags: vec!["é".into(), "\"quoted\"".into()] }));
}

pub async fn a_step_id_claimed_by_another_task_is_nondeterminism(h: Harness) {
    let c = Counter::new();
    h.wf()
        .run("r6", |_| async {
            add(c.clone(), 1, 1).step_id("shared").await?;
            super::crash::<()>("stop")
        })
        .await
        .unwrap_err();
    // A deploy changed which task runs at step "shared".
    let err = h.wf().run("r6", |_| async { other(c.clone()).step_id("shared").await }).await.unwrap_err();
    match err {
        Error::NonDeterminism { run_id, step_id, recorded, called } => {
            assert_eq!((run_id.as_str(), step_id.as_str()), ("r6", "shared"));
            assert_eq!((recorded.as_str(), called.as_str()), ("add", "other-task"));
        }
        other => panic!("expected NonDeterminism, got {other}"),
    }
    assert_eq!(c.get(), 1, "the other task must not run in place of the recorded one");
    // The recorded step is untouched.
    let steps = h.wf().list_steps("r6").await.unwrap();
    assert_eq!((steps[0].name.as_str(), steps[0].value.as_deref()), ("add", Some("2")));
}

pub async fn a_changed_request_hash_under_the_same_step_is_nondeterminism(h: Harness) {
    let c = Counter::new();
    h.wf()
        .run("r6h", |_| async {
            add(c.clone(), 1, 1).request_hash("aaa").await?;
            super::crash::<()>("stop")
        })
        .await
        .unwrap_err();
    assert_eq!(h.wf().list_steps("r6h").await.unwrap()[0].request_hash.as_deref(), Some("aaa"));
    // The same request replays; a different one under the same step id is refused.
    let same = h.wf().run("r6h", |_| async { add(c.clone(), 1, 1).request_hash("aaa").await }).await;
    assert_eq!(same.unwrap(), 2);
    assert_eq!(c.get(), 1);
    let err = h.wf().run("r6h2", |_| async { add(c.clone(), 1, 1).request_hash("aaa").await }).await;
    assert_eq!(err.unwrap(), 2);
    h.wf()
        .run("r6h3", |_| async {
            add(c.clone(), 1, 1).request_hash("aaa").await?;
            super::crash::<()>("stop")
        })
        .await
        .unwrap_err();
    let err =
        h.wf().run("r6h3", |_| async { add(c.clone(), 1, 1).request_hash("bbb").await }).await.unwrap_err();
    match err {
        Error::NonDeterminism { run_id, step_id, recorded, called } => {
            assert_eq!((run_id.as_str(), step_id.as_str()), ("r6h3", "add"));
            assert!(recorded.contains("aaa") && called.contains("bbb"), "{recorded} / {called}");
        }
        other => panic!("expected NonDeterminism, got {other}"),
    }
    assert_eq!(c.get(), 3, "the changed request must not be answered from the record nor run");
}

pub async fn a_sleep_or_signal_deadline_over_another_tasks_record_is_nondeterminism(h: Harness) {
    let c = Counter::new();
    h.wf()
        .run("r6b", |_| async {
            other(c.clone()).step_id("sleep").await?;
            other(c.clone()).step_id("signal:approval").await?;
            super::crash::<()>("stop")
        })
        .await
        .unwrap_err();
    let err = h.wf().run("r6b", |_| durably::sleep(std::time::Duration::from_secs(3600))).await.unwrap_err();
    assert!(
        matches!(&err, Error::NonDeterminism { step_id, recorded, called, .. }
            if step_id == "sleep" && recorded == "other-task" && called == "sleep"),
        "{err}"
    );
    let err = h
        .wf()
        .run("r6b", |_| durably::signal_timeout::<u32>("approval", std::time::Duration::from_secs(3600)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NonDeterminism { step_id, called, .. }
            if step_id == "signal:approval" && called == "signal:approval"),
        "{err}"
    );
}

pub async fn added_and_removed_calls_do_not_break_a_run_in_flight(h: Harness) {
    let c = Counter::new();
    h.wf()
        .run("r7", |_| async {
            add(c.clone(), 1, 0).step_id("a").await?;
            add(c.clone(), 2, 0).step_id("b").await?;
            super::crash::<u32>("crash")
        })
        .await
        .unwrap_err();
    // New code: "a" was removed, "new" added before "b".
    let out = h
        .wf()
        .run("r7", |_| async {
            let n = add(c.clone(), 40, 0).step_id("new").await?;
            let b = add(c.clone(), 2, 0).step_id("b").await?;
            Ok::<_, Error>(n + b)
        })
        .await
        .unwrap();
    assert_eq!(out, 42);
    assert_eq!(c.get(), 3, "only the new call executes");
}

pub async fn a_completed_run_returns_its_stored_output(h: Harness) {
    let c = Counter::new();
    let first: Vec<String> = h
        .wf()
        .run("r8", |_| async {
            c.hit();
            Ok::<_, Error>(vec!["x".to_string()])
        })
        .await
        .unwrap();
    let again: Vec<String> = h
        .wf()
        .run("r8", |_| async {
            c.hit();
            Ok::<_, Error>(vec!["different".to_string()])
        })
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(c.get(), 1, "the body of a completed run ran again");
    assert_eq!(h.wf().output::<Vec<String>>("r8").await.unwrap(), Some(vec!["x".to_string()]));
}

pub async fn a_run_id_of_another_workflow_is_refused(h: Harness) {
    h.wf_named("app-one").run("shared-id", |_| async { Ok::<_, Error>(1) }).await.unwrap();
    let err = h.wf_named("app-two").run("shared-id", |_| async { Ok::<_, Error>(2) }).await.unwrap_err();
    assert!(
        matches!(&err, Error::RunConflict { run_id, recorded, called }
            if run_id == "shared-id" && recorded == "app-one" && called == "app-two"),
        "{err}"
    );
}
