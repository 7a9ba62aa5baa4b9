//! Fault injection: a store that fails, loses the reply of, or delays chosen calls.
//! The run fails with an error naming the operation and the run, a re-run resumes from what was
//! recorded, and no half-written record appears.
// A test suite reports failure by panicking, and each test's name is its documentation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use super::{Counter, Harness};
use crate::faults::{Fault, FaultStore, InjectedFault, Op};
use durably::{Error, RunStatus, StepStatus, Workflow};

#[durably::task(retries = 0)]
async fn work(c: Counter, i: u32) -> Result<u32, super::Boom> {
    c.hit();
    Ok(i * 10)
}

async fn five_steps(wf: &Workflow, run_id: &str, c: &Counter) -> durably::Result<u32> {
    wf.run(run_id, |_| {
        let c = c.clone();
        async move {
            let mut total = 0;
            for i in 0..5 {
                total += work(c.clone(), i).step_id(format!("s{i}")).await?;
            }
            Ok::<_, Error>(total)
        }
    })
    .await
}

fn engine(store: Arc<FaultStore<Arc<dyn durably::Store>>>) -> Workflow {
    Workflow::builder("faults").shared_store(store).default_backoff(durably::backoff::constant(0.0)).build()
}

fn assert_injected(err: &Error, op: &str, run_id: &str) {
    let mut text = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(e) = cause {
        text.push_str(&format!(": {e}"));
        cause = e.source();
    }
    assert!(text.contains(op) && text.contains(run_id), "the error names {op} and {run_id}: {text}");
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(f) = e.downcast_ref::<InjectedFault>() {
            assert_eq!(f.op, op);
            return;
        }
        source = e.source();
    }
    panic!("no injected {op} fault in the chain of {text}");
}

fn completed(steps: &[durably::StepRecord]) -> Vec<&str> {
    steps.iter().filter(|s| s.status == StepStatus::Completed).map(|s| s.step_id.as_str()).collect()
}

pub async fn a_failed_checkpoint_write_fails_the_run_and_a_rerun_resumes(h: Harness) {
    let store = Arc::new(FaultStore::new(h.store()));
    store.inject(Op::SaveStep, 3, Fault::Fail);
    let c = Counter::new();
    let err = five_steps(&engine(store.clone()), "f1", &c).await.unwrap_err();
    assert_injected(&err, "save_step", "f1");
    assert_eq!(c.get(), 3, "the third body ran; its checkpoint did not land");
    // Nothing half-written: two complete records, no trace of the third.
    let steps = h.wf().list_steps("f1").await.unwrap();
    assert_eq!(completed(&steps), ["s0", "s1"]);
    assert!(steps.iter().all(|s| s.step_id != "s2" || s.status != StepStatus::Completed));
    // The re-run replays s0 and s1 and executes the rest.
    c.reset();
    assert_eq!(five_steps(&engine(store.clone()), "f1", &c).await.unwrap(), 100);
    assert_eq!(c.get(), 3);
}

pub async fn a_lost_reply_after_the_write_replays_the_step(h: Harness) {
    let store = Arc::new(FaultStore::new(h.store()));
    store.inject(Op::SaveStep, 2, Fault::FailAfterWrite);
    let c = Counter::new();
    let err = five_steps(&engine(store.clone()), "f2", &c).await.unwrap_err();
    assert_injected(&err, "save_step", "f2");
    assert_eq!(completed(&h.wf().list_steps("f2").await.unwrap()), ["s0", "s1"]);
    c.reset();
    assert_eq!(five_steps(&engine(store), "f2", &c).await.unwrap(), 100);
    assert_eq!(c.get(), 3, "s1 was recorded before the reply was lost: it replays");
}

pub async fn a_failed_open_run_creates_nothing(h: Harness) {
    let store = Arc::new(FaultStore::new(h.store()));
    store.inject(Op::OpenRun, 1, Fault::Fail);
    let c = Counter::new();
    let err = five_steps(&engine(store.clone()), "f3", &c).await.unwrap_err();
    assert_injected(&err, "open_run", "f3");
    assert_eq!(c.get(), 0);
    assert!(h.wf().get_run("f3").await.unwrap().is_none());
    assert_eq!(five_steps(&engine(store), "f3", &c).await.unwrap(), 100);
}

pub async fn a_failed_completion_write_leaves_a_resumable_run(h: Harness) {
    let store = Arc::new(FaultStore::new(h.store()));
    let c = Counter::new();
    // Calls of update_run made by this run: the completion is the last one. Fail every call,
    // like a connection that went down at the end of the run.
    store.fail_from(Op::UpdateRun, 1);
    let err = five_steps(&engine(store.clone()), "f4", &c).await.unwrap_err();
    assert_injected(&err, "update_run", "f4");
    assert_eq!(c.get(), 5);
    let run = h.wf().get_run("f4").await.unwrap().unwrap();
    assert_ne!(run.status, RunStatus::Completed, "the completion did not land");
    assert_eq!(completed(&h.wf().list_steps("f4").await.unwrap()).len(), 5);
    store.heal();
    c.reset();
    assert_eq!(five_steps(&engine(store), "f4", &c).await.unwrap(), 100);
    assert_eq!(c.get(), 0, "every step replays");
    assert_eq!(h.wf().get_run("f4").await.unwrap().unwrap().status, RunStatus::Completed);
}

pub async fn a_connection_down_mid_run_then_back(h: Harness) {
    let store = Arc::new(FaultStore::new(h.store()));
    store.fail_from(Op::SaveStep, 4);
    let c = Counter::new();
    let err = five_steps(&engine(store.clone()), "f5", &c).await.unwrap_err();
    assert_injected(&err, "save_step", "f5");
    store.heal();
    c.reset();
    assert_eq!(five_steps(&engine(store.clone()), "f5", &c).await.unwrap(), 100);
    assert_eq!(c.get(), 2, "s0..s2 replay; s3 and s4 execute");
    assert!(store.calls(Op::SaveStep) >= 6);
}

pub async fn slow_store_calls_delay_but_do_not_break_a_run(h: Harness) {
    let store = Arc::new(FaultStore::new(h.store()));
    store.inject(Op::SaveStep, 2, Fault::Delay(Duration::from_millis(50)));
    store.inject(Op::OpenRun, 1, Fault::Delay(Duration::from_millis(50)));
    let c = Counter::new();
    assert_eq!(five_steps(&engine(store), "f6", &c).await.unwrap(), 100);
    assert_eq!(completed(&h.wf().list_steps("f6").await.unwrap()).len(), 5);
}

pub async fn transient_store_failures_are_retried_by_the_engine(h: Harness) {
    let store = Arc::new(FaultStore::new(h.store()));
    store.inject(Op::OpenRun, 1, Fault::Transient);
    store.inject(Op::SaveStep, 2, Fault::Transient);
    store.inject(Op::SaveStep, 3, Fault::Transient);
    store.inject(Op::UpdateRun, 1, Fault::Transient);
    let c = Counter::new();
    assert_eq!(five_steps(&engine(store.clone()), "f7", &c).await.unwrap(), 100, "the run went through");
    assert_eq!(c.get(), 5, "each body ran once: a retried checkpoint does not re-run its step");
    assert_eq!(completed(&h.wf().list_steps("f7").await.unwrap()).len(), 5);
    assert_eq!(h.wf().get_run("f7").await.unwrap().unwrap().status, RunStatus::Completed);
    assert!(store.calls(Op::SaveStep) >= 7, "two save_step calls were made again");
}

pub async fn only_transient_failures_are_retried_and_only_as_often_as_the_policy_says(h: Harness) {
    // A failure of another kind is not retried: the call is made once.
    let store = Arc::new(FaultStore::new(h.store()));
    store.inject(Op::OpenRun, 1, Fault::Fail);
    let c = Counter::new();
    let err = five_steps(&engine(store.clone()), "f8", &c).await.unwrap_err();
    assert_injected(&err, "open_run", "f8");
    assert_eq!(store.calls(Op::OpenRun), 1);

    // A transient failure that does not clear is given up after the policy's retries.
    let store = Arc::new(FaultStore::new(h.store()));
    for nth in 1..=10 {
        store.inject(Op::OpenRun, nth, Fault::Transient);
    }
    let wf = Workflow::builder("faults")
        .shared_store(store.clone())
        .store_retry(durably::RetryPolicy::new(2, durably::backoff::constant(0.0)))
        .build();
    let err = five_steps(&wf, "f9", &c).await.unwrap_err();
    assert_injected(&err, "open_run", "f9");
    assert_eq!(err.kind(), Some(durably::StoreErrorKind::Transient));
    assert_eq!(store.calls(Op::OpenRun), 3, "one call and two retries");
}
