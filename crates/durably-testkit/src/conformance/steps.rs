//! Steps: `save_step` round trips and replacement, and `list_steps` ordering.

// A test suite reports failure by panicking: the workspace's library lints do not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use durably_core::{RunStatus, RunUpdate, StepRecord, StepStatus, Store};

use super::support::*;

// ---------------------------------------------------------------------------------------------
// save_step

/// Every field of a step record comes back as it was saved.
pub async fn save_step_round_trips_every_field<S: Store>(store: Arc<S>) {
    open(&*store, new_run("r", None, 1_000)).await;
    let original = full_step("fetch");
    save(&*store, "r", &original).await;
    assert_eq!(list_steps(&*store, "r").await, vec![original.clone()]);
    assert_eq!(open(&*store, new_run("r", None, 2_000)).await.steps, vec![original]);
}

/// `None` fields stay `None` (and are not turned into empty strings or zeros).
pub async fn save_step_round_trips_absent_fields<S: Store>(store: Arc<S>) {
    open(&*store, new_run("r", None, 1_000)).await;
    let bare = StepRecord::new("intent", "pay", StepStatus::Started, 1_000);
    assert_eq!((bare.value.as_ref(), bare.error.as_ref(), bare.request_hash.as_ref()), (None, None, None));
    assert_eq!(bare.finished_at_ms, None);
    save(&*store, "r", &bare).await;
    assert_eq!(list_steps(&*store, "r").await, vec![bare]);
}

/// Each step status is kept.
pub async fn save_step_round_trips_each_status<S: Store>(store: Arc<S>) {
    open(&*store, new_run("r", None, 1_000)).await;
    let steps: Vec<StepRecord> = [StepStatus::Started, StepStatus::Completed, StepStatus::Failed]
        .into_iter()
        .enumerate()
        .map(|(i, status)| StepRecord::new(format!("s{i}"), "task", status, 1_000 + i as i64))
        .collect();
    for s in &steps {
        save(&*store, "r", s).await;
    }
    assert_eq!(list_steps(&*store, "r").await, steps);
}

/// The whole range of `attempts` and of the timestamps is kept.
pub async fn save_step_round_trips_extreme_numbers<S: Store>(store: Arc<S>) {
    open(&*store, new_run("r", None, 1_000)).await;
    let mut low = StepRecord::new("low", "task", StepStatus::Failed, i64::MIN);
    low.attempts = 0;
    low.finished_at_ms = Some(-1);
    let mut zero = StepRecord::new("zero", "task", StepStatus::Completed, 0);
    zero.attempts = 1;
    zero.finished_at_ms = Some(0);
    let mut high = StepRecord::new("high", "task", StepStatus::Completed, i64::MAX);
    high.attempts = u32::MAX;
    high.finished_at_ms = Some(i64::MAX);
    for s in [&low, &zero, &high] {
        save(&*store, "r", s).await;
    }
    assert_eq!(list_steps(&*store, "r").await, vec![low, zero, high]);
}

/// Saving a step id again replaces the whole record (fields absent now are cleared).
pub async fn save_step_replaces_the_record_with_the_same_id<S: Store>(store: Arc<S>) {
    open(&*store, new_run("r", None, 1_000)).await;
    save(&*store, "r", &full_step("pay")).await;
    save(&*store, "r", &step("other", 1_500)).await;
    let mut replacement = StepRecord::new("pay", "pay_v2", StepStatus::Failed, 2_000);
    replacement.error = Some("declined".into());
    replacement.attempts = 2;
    save(&*store, "r", &replacement).await;
    let steps = list_steps(&*store, "r").await;
    assert_eq!(steps.len(), 2, "replacing must not add a record: {steps:?}");
    let pay = steps.iter().find(|s| s.step_id == "pay").expect("step `pay` is gone");
    assert_eq!(pay, &replacement, "the second save replaces every field, clearing value and request_hash");
    assert_eq!(steps.iter().find(|s| s.step_id == "other"), Some(&step("other", 1_500)));
}

/// The same step id in two runs gives two records.
pub async fn save_step_keeps_equal_step_ids_of_different_runs_apart<S: Store>(store: Arc<S>) {
    open(&*store, new_run("a", None, 1_000)).await;
    open(&*store, new_run("b", None, 1_000)).await;
    let mut in_a = step("shared", 1_000);
    in_a.value = Some("\"a\"".into());
    let mut in_b = step("shared", 1_000);
    in_b.value = Some("\"b\"".into());
    save(&*store, "a", &in_a).await;
    save(&*store, "b", &in_b).await;
    assert_eq!(list_steps(&*store, "a").await, vec![in_a]);
    assert_eq!(list_steps(&*store, "b").await, vec![in_b]);
}

/// Values, errors and request hashes come back byte for byte.
pub async fn step_texts_round_trip_verbatim<S: Store>(store: Arc<S>) {
    open(&*store, new_run("texts", None, 1_000)).await;
    let mut expected = Vec::new();
    let json = awkward_json();
    let texts = awkward_texts();
    for i in 0..json.len().max(texts.len()) {
        let mut s = StepRecord::new(format!("step-{i:03}"), "task", StepStatus::Completed, 1_000 + i as i64);
        s.value = Some(json[i % json.len()].clone());
        s.error = Some(texts[i % texts.len()].clone());
        s.request_hash = Some(texts[(i + 1) % texts.len()].clone());
        save(&*store, "texts", &s).await;
        expected.push(s);
    }
    let stored = list_steps(&*store, "texts").await;
    assert_eq!(stored.len(), expected.len());
    for (got, want) in stored.iter().zip(&expected) {
        assert_eq!(got.value, want.value, "value of {} must be verbatim", want.step_id);
        assert_eq!(got.error, want.error, "error of {} must be verbatim", want.step_id);
        assert_eq!(got.request_hash, want.request_hash, "request_hash of {} must be verbatim", want.step_id);
    }
    assert_eq!(stored, expected);
}

/// A 1 MiB step value comes back whole.
pub async fn one_megabyte_step_value_round_trips<S: Store>(store: Arc<S>) {
    open(&*store, new_run("big", None, 1_000)).await;
    let value = one_megabyte_json();
    let mut s = step("big", 1_000);
    s.value = Some(value.clone());
    save(&*store, "big", &s).await;
    let stored = list_steps(&*store, "big").await;
    assert_eq!(stored.len(), 1);
    let got = stored[0].value.as_deref().unwrap_or_default();
    assert!(got == value, "1 MiB value changed: {} bytes back for {}", got.len(), value.len());
    let history = open(&*store, new_run("big", None, 2_000)).await;
    assert!(history.steps.first().and_then(|s| s.value.as_deref()) == Some(value.as_str()));
}

/// Input, output, error text and `waiting_on` of a run come back byte for byte.
pub async fn run_texts_round_trip_verbatim<S: Store>(store: Arc<S>) {
    let json = awkward_json();
    let texts = awkward_texts();
    for (i, input) in json.iter().enumerate() {
        let run_id = format!("run-{i}");
        let history = open(&*store, new_run(&run_id, Some(input), 1_000)).await;
        assert_eq!(
            history.run.input.as_deref(),
            Some(input.as_str()),
            "input {} must be verbatim",
            show(input)
        );
        let output = &json[(i + 1) % json.len()];
        update(&*store, &run_id, RunUpdate::new(RunStatus::Completed, 1_100).output(output.clone())).await;
        let run = expect_run(&*store, &run_id).await;
        assert_eq!(run.input.as_deref(), Some(input.as_str()), "input {} must be verbatim", show(input));
        assert_eq!(run.output.as_deref(), Some(output.as_str()), "output {} must be verbatim", show(output));
    }
    open(&*store, new_run("errors", None, 1_000)).await;
    for text in &texts {
        update(&*store, "errors", RunUpdate::new(RunStatus::Failed, 1_100).error(text.clone())).await;
        let error = expect_run(&*store, "errors").await.error;
        assert_eq!(error.as_deref(), Some(text.as_str()), "error {} must be verbatim", show(text));
        update(&*store, "errors", RunUpdate::new(RunStatus::Waiting, 1_200).waiting_on(text.clone())).await;
        let waiting_on = expect_run(&*store, "errors").await.waiting_on;
        assert_eq!(waiting_on.as_deref(), Some(text.as_str()), "waiting_on {} must be verbatim", show(text));
    }
    let big = one_megabyte_json();
    let history = open(&*store, new_run("big-input", Some(&big), 1_000)).await;
    assert!(history.run.input.as_deref() == Some(big.as_str()), "a 1 MiB input must come back whole");
    update(&*store, "big-input", RunUpdate::new(RunStatus::Completed, 1_100).output(big.clone())).await;
    assert!(
        expect_run(&*store, "big-input").await.output == Some(big),
        "a 1 MiB output must come back whole"
    );
}

// ---------------------------------------------------------------------------------------------
// list_steps

/// Steps come in the order they started, whatever the order they were saved in.
pub async fn list_steps_orders_by_start_time<S: Store>(store: Arc<S>) {
    open(&*store, new_run("r", None, 1_000)).await;
    for (id, at) in [("c", 3_000), ("a", 5_000), ("e", 1_000), ("b", 4_000), ("d", 2_000)] {
        save(&*store, "r", &step(id, at)).await;
    }
    let order: Vec<String> = list_steps(&*store, "r").await.into_iter().map(|s| s.step_id).collect();
    assert_eq!(order, ["e", "d", "c", "b", "a"]);
}

/// Steps that started in the same millisecond come in step id order.
pub async fn list_steps_breaks_ties_by_step_id<S: Store>(store: Arc<S>) {
    open(&*store, new_run("r", None, 1_000)).await;
    for id in ["item-2", "item-0", "late", "item-1"] {
        save(&*store, "r", &step(id, if id == "late" { 2_000 } else { 1_000 })).await;
    }
    let order: Vec<String> = list_steps(&*store, "r").await.into_iter().map(|s| s.step_id).collect();
    assert_eq!(order, ["item-0", "item-1", "item-2", "late"]);
}

/// A run with no steps (or no run at all) lists none.
pub async fn list_steps_of_an_unknown_run_is_empty<S: Store>(store: Arc<S>) {
    assert!(list_steps(&*store, "nobody").await.is_empty());
    open(&*store, new_run("empty", None, 1_000)).await;
    open(&*store, new_run("busy", None, 1_000)).await;
    save(&*store, "busy", &step("s", 1_000)).await;
    assert!(list_steps(&*store, "empty").await.is_empty());
    assert!(list_steps(&*store, "bus").await.is_empty(), "no prefix match");
}
