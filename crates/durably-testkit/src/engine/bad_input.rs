//! Bad input gets a clear error naming run, step and type, and loses nothing already recorded
//! (rules 3 and 15 of docs/design.md).
// A test suite reports failure by panicking, and each test's name is its documentation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashMap;

use super::{Counter, Harness};
use durably::{Error, StepRecord, StepStatus};

#[durably::task(name = "value", retries = 0)]
async fn value_as_number(c: Counter) -> Result<u32, super::Boom> {
    c.hit();
    Ok(5)
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Profile {
    name: String,
}

#[durably::task(name = "value", retries = 0)]
async fn value_as_profile(c: Counter) -> Result<Profile, super::Boom> {
    c.hit();
    Ok(Profile { name: "x".into() })
}

/// JSON object keys must be strings: a tuple key cannot serialize.
type PairMap = HashMap<(u8, u8), u8>;

#[durably::task(retries = 0)]
async fn unserializable(c: Counter) -> Result<PairMap, super::Boom> {
    c.hit();
    Ok(HashMap::from([((1, 2), 3)]))
}

pub async fn a_stored_value_of_the_wrong_type_is_an_error_not_a_panic(h: Harness) {
    let c = Counter::new();
    h.wf()
        .run("bad-1", |_| async {
            value_as_number(c.clone()).await?;
            super::crash::<()>("stop")
        })
        .await
        .unwrap_err();
    // The task's return type changed in a deploy.
    let err = h.wf().run("bad-1", |_| value_as_profile(c.clone())).await.unwrap_err();
    match &err {
        Error::Deserialize { run_id, step_id, type_name, .. } => {
            assert_eq!((run_id.as_str(), step_id.as_str()), ("bad-1", "value"));
            assert!(type_name.ends_with("Profile"), "{type_name}");
        }
        other => panic!("expected Deserialize, got {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("bad-1") && msg.contains("value") && msg.contains("Profile"), "{msg}");
    assert_eq!(c.get(), 1, "the new body must not run in place of the recorded value");
    let steps = h.wf().list_steps("bad-1").await.unwrap();
    assert_eq!(steps[0].value.as_deref(), Some("5"), "the record is left as it was");
}

pub async fn a_corrupted_stored_value_is_an_error_naming_the_step(h: Harness) {
    let c = Counter::new();
    h.wf().run("bad-2", |_| async { super::crash::<()>("stop") }).await.unwrap_err();
    let mut rec = StepRecord::new("value", "value", StepStatus::Completed, durably::now_ms());
    rec.value = Some("{not json".into());
    h.store().save_step("bad-2", &rec).await.unwrap();
    let err = h.wf().run("bad-2", |_| value_as_number(c.clone())).await.unwrap_err();
    assert!(
        matches!(&err, Error::Deserialize { run_id, step_id, type_name: "u32", .. }
            if run_id == "bad-2" && step_id == "value"),
        "{err}"
    );
    assert_eq!(c.get(), 0);
}

pub async fn an_unserializable_value_is_an_error_before_anything_is_recorded(h: Harness) {
    let c = Counter::new();
    let err = h.wf().run("bad-3", |_| unserializable(c.clone())).await.unwrap_err();
    match &err {
        Error::Serialize { run_id, step_id, type_name, .. } => {
            assert_eq!((run_id.as_str(), step_id.as_str()), ("bad-3", "unserializable"));
            assert!(type_name.contains("HashMap"), "{type_name}");
        }
        other => panic!("expected Serialize, got {other}"),
    }
    assert!(h.wf().list_steps("bad-3").await.unwrap().is_empty(), "nothing may be recorded for it");
}

pub async fn an_unserializable_output_fails_the_run_with_a_clear_error(h: Harness) {
    let err = h
        .wf()
        .run("bad-4", |_| async { Ok::<_, Error>(HashMap::from([((1u8, 2u8), 3u8)])) })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Serialize { step_id, what: "run output", .. } if step_id == "output"),
        "{err}"
    );
    let run = h.wf().get_run("bad-4").await.unwrap().unwrap();
    assert_eq!(run.status, durably::RunStatus::Failed);
    assert!(run.error.unwrap().contains("run output"));
}

pub async fn a_signal_payload_of_the_wrong_type_names_the_signal(h: Harness) {
    h.wf().complete("bad-5", "approval", &"yes").await.unwrap();
    let err = h.wf().run("bad-5", |_| async { durably::signal::<bool>("approval").await }).await.unwrap_err();
    assert!(
        matches!(&err, Error::Deserialize { step_id, type_name: "bool", .. } if step_id == "signal:approval"),
        "{err}"
    );
    // The payload is still there, and the right type reads it.
    let ok: String =
        h.wf().run("bad-5", |_| async { durably::signal::<String>("approval").await }).await.unwrap();
    assert_eq!(ok, "yes");
}
