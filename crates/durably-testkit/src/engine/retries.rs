//! Retries and failure (rules 4 and 5 of docs/design.md).
// A test suite reports failure by panicking, and each test's name is its documentation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use super::{Counter, Harness, boom};
use durably::{Error, RunStatus, StepStatus};

#[durably::task(retries = 3, backoff = constant(0.0))]
async fn flaky(c: Counter, succeed_on: u32) -> Result<u32, super::Boom> {
    let n = c.hit();
    if n < succeed_on { Err(boom(&format!("attempt {n} failed"))) } else { Ok(n) }
}

#[durably::task(retries = 5, backoff = constant(0.0))]
async fn refuses(c: Counter) -> Result<u32, Error> {
    c.hit();
    Err(Error::permanent(boom("invalid account")))
}

/// An error type that knows which of its cases are worth retrying.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("bad request")]
    BadRequest,
    #[error("unavailable")]
    Unavailable,
}

impl durably::Retryable for ApiError {
    fn is_retryable(&self) -> bool {
        matches!(self, ApiError::Unavailable)
    }
}

#[durably::task(retries = 5, backoff = constant(0.0))]
async fn api(c: Counter, bad: bool) -> Result<u32, ApiError> {
    c.hit();
    Err(if bad { ApiError::BadRequest } else { ApiError::Unavailable })
}

#[durably::task(retries = 4, backoff = constant(0.0))]
async fn anyhow_permanent(c: Counter) -> anyhow::Result<u32> {
    c.hit();
    Err(Error::permanent(boom("no such user")).into())
}

pub async fn retries_until_success_and_records_the_attempts(h: Harness) {
    let c = Counter::new();
    let out = h.wf().run("r1", |_| flaky(c.clone(), 3)).await.unwrap();
    assert_eq!(out, 3);
    assert_eq!(c.get(), 3);
    let steps = h.wf().list_steps("r1").await.unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!((steps[0].status, steps[0].attempts), (StepStatus::Completed, 3));
    assert!(steps[0].finished_at_ms.unwrap() >= steps[0].started_at_ms);
}

pub async fn exhausted_retries_fail_the_run_with_the_error_text(h: Harness) {
    let c = Counter::new();
    let err = h.wf().run("r2", |_| flaky(c.clone(), 100)).await.unwrap_err();
    assert_eq!(c.get(), 4, "retries = 3 means 4 attempts");
    assert!(matches!(&err, Error::Task { attempts: 4, run_id, .. } if run_id == "r2"), "{err}");
    let run = h.wf().get_run("r2").await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert!(run.error.unwrap().contains("attempt 4 failed"));
    let step = &h.wf().list_steps("r2").await.unwrap()[0];
    assert_eq!((step.status, step.attempts), (StepStatus::Failed, 4));
    assert!(step.error.as_deref().unwrap().contains("attempt 4 failed"));

    // The failed step is not cached: the next execution runs it again.
    c.reset();
    let out = h.wf().run("r2", |_| flaky(c.clone(), 1)).await.unwrap();
    assert_eq!((out, c.get()), (1, 1));
}

pub async fn permanent_errors_are_not_retried(h: Harness) {
    let c = Counter::new();
    let err = h.wf().run("r3", |_| refuses(c.clone())).await.unwrap_err();
    assert_eq!(c.get(), 1);
    assert!(err.is_permanent(), "{err:?}");

    let c = Counter::new();
    h.wf().run("r3b", |_| anyhow_permanent(c.clone())).await.unwrap_err();
    assert_eq!(c.get(), 1, "Error::permanent inside anyhow must stop retries too");
}

pub async fn a_retryable_impl_decides(h: Harness) {
    let c = Counter::new();
    h.wf().run("r4", |_| api(c.clone(), true)).await.unwrap_err();
    assert_eq!(c.get(), 1, "BadRequest says it is not retryable");
    let c = Counter::new();
    let err = h.wf().run("r5", |_| api(c.clone(), false)).await.unwrap_err();
    assert_eq!(c.get(), 6, "Unavailable is retried: retries = 5");
    assert!(matches!(err.downcast_source_ref::<ApiError>(), Some(ApiError::Unavailable)), "{err:?}");
}

pub async fn call_site_options_override_the_task(h: Harness) {
    let c = Counter::new();
    h.wf().run("r6", |_| flaky(c.clone(), 100).retries(1)).await.unwrap_err();
    assert_eq!(c.get(), 2);
}

pub async fn the_closure_form_retries_with_the_workflow_default(h: Harness) {
    // The harness's engine keeps the default of 3 retries, with no wait.
    let c = Counter::new();
    let out = h
        .wf()
        .run("r7", |_| {
            let c = c.clone();
            durably::step("closure", move || {
                let c = c.clone();
                async move {
                    let n = c.hit();
                    if n < 4 { Err(boom("not yet")) } else { Ok(n) }
                }
            })
        })
        .await
        .unwrap();
    assert_eq!((out, c.get()), (4, 4));
    let wf = durably::Workflow::builder("x").shared_store(h.store()).default_retries(0).build();
    let c = Counter::new();
    let err = wf
        .run("r8", |_| {
            let c = c.clone();
            durably::step("closure", move || {
                let c = c.clone();
                async move {
                    c.hit();
                    Err::<u32, _>(boom("no"))
                }
            })
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Task { attempts: 1, .. }));
    assert_eq!(c.get(), 1);
}
