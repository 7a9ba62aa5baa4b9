//! The behaviours every [`Store`] must show, one public async function each.
//!
//! Each function takes a fresh, empty store and panics (through `assert!`) when the store
//! deviates from the contract written on the [`Store`] trait. [`store_conformance_tests!`]
//! turns every function here into a test; call them directly only for a custom harness.
//!
//! Timestamps are fixed numbers, never the clock, so records can be compared whole. Leases are
//! the exception: a store may keep their time by its own clock (Redis and PostgreSQL use the
//! server's), so the lease tests pass the real time as `now_ms`, use real TTLs, and sleep for
//! a lease to expire.
//!
//! [`store_conformance_tests!`]: crate::store_conformance_tests

// A test suite reports failure by panicking: the workspace's library lints do not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use durably_core::{
    Error, Lease, LeaseOutcome, NewRun, RunFilter, RunHistory, RunRecord, RunStatus, RunUpdate, SignalRecord,
    StepRecord, StepStatus, Store,
};

/// The workflow name most tests use.
const WF: &str = "conformance-workflow";

// ---------------------------------------------------------------------------------------------
// Helpers

fn new_run(run_id: &str, input: Option<&str>, now_ms: i64) -> NewRun {
    NewRun::new(run_id, WF, input.map(str::to_owned), now_ms)
}

/// A completed step with a value and no other optional field.
fn step(step_id: &str, started_at_ms: i64) -> StepRecord {
    let mut step = StepRecord::new(step_id, "task", StepStatus::Completed, started_at_ms);
    step.value = Some(format!("\"value of {}\"", step_id.escape_default()));
    step.attempts = 1;
    step
}

/// A step with every optional field present.
fn full_step(step_id: &str) -> StepRecord {
    let mut step = StepRecord::new(step_id, "fetch_data", StepStatus::Completed, 1_000);
    step.value = Some(r#"{"rows":[1,2,3],"next":null}"#.to_owned());
    step.error = Some("attempt 1: connection reset".to_owned());
    step.attempts = 3;
    step.request_hash = Some("sha256:9f86d081884c7d659a2feaa0c55ad015".to_owned());
    step.started_at_ms = 1_000;
    step.finished_at_ms = Some(1_250);
    step
}

async fn open<S: Store>(store: &S, run: NewRun) -> RunHistory {
    let run_id = run.run_id.clone();
    store.open_run(run).await.unwrap_or_else(|e| panic!("open_run(`{run_id}`) failed: {e}"))
}

async fn save<S: Store>(store: &S, run_id: &str, step: &StepRecord) {
    store
        .save_step(run_id, step)
        .await
        .unwrap_or_else(|e| panic!("save_step(`{run_id}`, `{}`) failed: {e}", step.step_id));
}

async fn update<S: Store>(store: &S, run_id: &str, update: RunUpdate) {
    store.update_run(run_id, &update).await.unwrap_or_else(|e| panic!("update_run(`{run_id}`) failed: {e}"));
}

async fn deliver<S: Store>(store: &S, run_id: &str, name: &str, payload: &str, at_ms: i64) -> bool {
    store
        .deliver_signal(run_id, &SignalRecord::new(name, payload, at_ms))
        .await
        .unwrap_or_else(|e| panic!("deliver_signal(`{run_id}`, `{name}`) failed: {e}"))
}

async fn get_run<S: Store>(store: &S, run_id: &str) -> Option<RunRecord> {
    store.get_run(run_id).await.unwrap_or_else(|e| panic!("get_run(`{run_id}`) failed: {e}"))
}

async fn expect_run<S: Store>(store: &S, run_id: &str) -> RunRecord {
    get_run(store, run_id).await.unwrap_or_else(|| panic!("get_run(`{run_id}`) found no run"))
}

async fn list_runs<S: Store>(store: &S, filter: RunFilter) -> Vec<RunRecord> {
    store.list_runs(&filter).await.unwrap_or_else(|e| panic!("list_runs({filter:?}) failed: {e}"))
}

async fn list_steps<S: Store>(store: &S, run_id: &str) -> Vec<StepRecord> {
    store.list_steps(run_id).await.unwrap_or_else(|e| panic!("list_steps(`{run_id}`) failed: {e}"))
}

async fn get_signal<S: Store>(store: &S, run_id: &str, name: &str) -> Option<String> {
    store
        .get_signal(run_id, name)
        .await
        .unwrap_or_else(|e| panic!("get_signal(`{run_id}`, `{name}`) failed: {e}"))
}

fn ids(runs: &[RunRecord]) -> Vec<&str> {
    runs.iter().map(|r| r.run_id.as_str()).collect()
}

fn by_step_id(mut steps: Vec<StepRecord>) -> Vec<StepRecord> {
    steps.sort_by(|a, b| a.step_id.cmp(&b.step_id));
    steps
}

fn by_name(mut signals: Vec<SignalRecord>) -> Vec<SignalRecord> {
    signals.sort_by(|a, b| a.name.cmp(&b.name));
    signals
}

/// Shortens long texts in assertion messages.
fn show(text: &str) -> String {
    if text.len() <= 80 {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(40).collect();
        format!("{head:?}… ({} bytes)", text.len())
    }
}

/// Identifiers that break naive stores: SQL, glob and LIKE metacharacters, key separators,
/// escapes, unicode, and 10 KB lengths. Every run, step and signal must keep them verbatim.
pub fn awkward_ids() -> Vec<String> {
    vec![
        "plain".to_owned(),
        "with space".to_owned(),
        "  leading and trailing  ".to_owned(),
        "quote'single".to_owned(),
        "quote\"double".to_owned(),
        "'; DROP TABLE runs; --".to_owned(),
        "\"); DROP TABLE steps; --".to_owned(),
        "colon:separated:key".to_owned(),
        "trailing:".to_owned(),
        "*".to_owned(),
        "run-*".to_owned(),
        "?".to_owned(),
        "[abc]".to_owned(),
        "%".to_owned(),
        "_".to_owned(),
        "100%_done".to_owned(),
        "back\\slash".to_owned(),
        "new\nline\ttab\rreturn".to_owned(),
        "{braces}/slash#hash&amp=1".to_owned(),
        "ünïcødé-日本語-🦀-עברית".to_owned(),
        "e\u{301}-combining".to_owned(),
        "x".repeat(10 * 1024),
        "🦀".repeat(10 * 1024 / 4),
    ]
}

/// JSON texts a store must return byte for byte: quotes, escapes, unicode, key order and
/// whitespace that a normalizing store would change, the JSON `null`.
fn awkward_json() -> Vec<String> {
    vec![
        r#"{"b":1,"a":2}"#.to_owned(),
        r#"{ "spaced" : [ 1 , 2 ] }"#.to_owned(),
        r#""quoted \"string\" with 'single' and `backtick`""#.to_owned(),
        r#""'; DROP TABLE steps; --""#.to_owned(),
        r#""escapes: \\ \n \t \u0000 \ud83e\udd80""#.to_owned(),
        "\"ünïcødé 日本語 🦀 עברית e\u{301}\"".to_owned(),
        "null".to_owned(),
        "1.5e300".to_owned(),
        "[]".to_owned(),
    ]
}

/// Free texts (errors, signal names awaited, hashes): anything, including the empty string.
fn awkward_texts() -> Vec<String> {
    let mut texts = awkward_ids();
    texts.push(String::new());
    texts.push("multi\nline\nerror: caused by: io".to_owned());
    texts
}

/// A JSON string of about 1 MiB mixing ASCII, escapes and multi-byte characters.
fn one_megabyte_json() -> String {
    let chunk = r#"héllo \"wörld\" 🦀 \\ 日本 "#;
    let mut text = String::with_capacity((1 << 20) + 64);
    text.push('"');
    while text.len() < 1 << 20 {
        text.push_str(chunk);
    }
    text.push('"');
    text
}

// ---------------------------------------------------------------------------------------------
// open_run

/// A new run is created `running`, with its input and workflow, and nothing recorded.
pub async fn open_run_creates_a_running_run_with_its_input<S: Store>(store: Arc<S>) {
    let history = open(&*store, new_run("run-1", Some(r#"{"source":"users"}"#), 1_000)).await;
    let run = &history.run;
    assert_eq!(run.run_id, "run-1");
    assert_eq!(run.workflow, WF);
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!(run.input.as_deref(), Some(r#"{"source":"users"}"#));
    assert_eq!((run.output.as_deref(), run.error.as_deref(), run.waiting_on.as_deref()), (None, None, None));
    assert_eq!((run.created_at_ms, run.updated_at_ms), (1_000, 1_000));
    assert!(history.steps.is_empty(), "a new run has no steps: {:?}", history.steps);
    assert!(history.signals.is_empty(), "a new run has no signals: {:?}", history.signals);
    assert_eq!(expect_run(&*store, "run-1").await, history.run, "get_run must return what open_run created");
}

/// A run opened without input keeps `input: None`.
pub async fn open_run_creates_a_run_without_input<S: Store>(store: Arc<S>) {
    let history = open(&*store, new_run("no-input", None, 5)).await;
    assert_eq!(history.run.input, None);
    assert_eq!(expect_run(&*store, "no-input").await.input, None);
}

/// Re-opening a `running` run (a crash left it so) keeps its input and creation time.
pub async fn reopening_a_running_run_keeps_input_and_created_at<S: Store>(store: Arc<S>) {
    open(&*store, new_run("crashed", Some(r#"{"v":1}"#), 1_000)).await;
    let history = open(&*store, new_run("crashed", Some(r#"{"v":2}"#), 2_000)).await;
    let run = &history.run;
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!(run.input.as_deref(), Some(r#"{"v":1}"#), "input is stored only when the run is created");
    assert_eq!(run.created_at_ms, 1_000, "created_at_ms must not change on re-open");
    assert_eq!(run.updated_at_ms, 2_000, "re-opening changes the run: updated_at_ms is the new time");
    assert_eq!(expect_run(&*store, "crashed").await, history.run);
}

/// Re-opening a `waiting` run sets it `running` and clears `waiting_on`.
pub async fn reopening_a_waiting_run_sets_running_and_clears_waiting_on<S: Store>(store: Arc<S>) {
    open(&*store, new_run("waiter", Some("{}"), 1_000)).await;
    update(&*store, "waiter", RunUpdate::new(RunStatus::Waiting, 1_500).waiting_on("approval")).await;
    let history = open(&*store, new_run("waiter", Some(r#"{"other":1}"#), 2_000)).await;
    let run = &history.run;
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!(run.waiting_on, None, "re-opening clears waiting_on");
    assert_eq!(run.input.as_deref(), Some("{}"));
    assert_eq!((run.created_at_ms, run.updated_at_ms), (1_000, 2_000));
    assert_eq!(expect_run(&*store, "waiter").await, history.run, "the change must be stored");
}

/// Re-opening a `failed` run sets it `running` and clears its error.
pub async fn reopening_a_failed_run_sets_running_and_clears_error<S: Store>(store: Arc<S>) {
    open(&*store, new_run("failer", Some("[1]"), 1_000)).await;
    update(&*store, "failer", RunUpdate::new(RunStatus::Failed, 1_500).error("boom")).await;
    let history = open(&*store, new_run("failer", None, 2_000)).await;
    let run = &history.run;
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!(run.error, None, "re-opening clears the error");
    assert_eq!(run.input.as_deref(), Some("[1]"), "re-opening without input keeps the stored input");
    assert_eq!((run.created_at_ms, run.updated_at_ms), (1_000, 2_000));
    assert_eq!(expect_run(&*store, "failer").await, history.run, "the change must be stored");
}

/// A `completed` run is returned as it is, output included, and stays so.
pub async fn reopening_a_completed_run_returns_it_unchanged<S: Store>(store: Arc<S>) {
    open(&*store, new_run("done", Some("{}"), 1_000)).await;
    save(&*store, "done", &step("only", 1_100)).await;
    update(&*store, "done", RunUpdate::new(RunStatus::Completed, 1_500).output(r#"{"ok":true}"#)).await;
    let before = expect_run(&*store, "done").await;
    let history = open(&*store, new_run("done", Some(r#"{"new":1}"#), 2_000)).await;
    assert_eq!(history.run, before, "a completed run is returned unchanged");
    assert_eq!(history.run.output.as_deref(), Some(r#"{"ok":true}"#));
    assert_eq!(history.steps, vec![step("only", 1_100)], "its history is still returned");
    assert_eq!(expect_run(&*store, "done").await, before, "and it stays unchanged");
}

/// A `cancelled` run is returned as it is, and stays so.
pub async fn reopening_a_cancelled_run_returns_it_unchanged<S: Store>(store: Arc<S>) {
    open(&*store, new_run("stopped", Some("{}"), 1_000)).await;
    update(&*store, "stopped", RunUpdate::new(RunStatus::Cancelled, 1_500).error("cancelled by user")).await;
    let before = expect_run(&*store, "stopped").await;
    let history = open(&*store, new_run("stopped", None, 2_000)).await;
    assert_eq!(history.run, before, "a cancelled run is returned unchanged");
    assert_eq!(history.run.status, RunStatus::Cancelled);
    assert_eq!(expect_run(&*store, "stopped").await, before, "and it stays unchanged");
}

/// A run opened under another workflow's name is returned unchanged, whatever its status.
pub async fn reopening_with_another_workflow_leaves_the_run_unchanged<S: Store>(store: Arc<S>) {
    let cases = [
        ("other-running", RunUpdate::new(RunStatus::Running, 1_500)),
        ("other-waiting", RunUpdate::new(RunStatus::Waiting, 1_500).waiting_on("approval")),
        ("other-failed", RunUpdate::new(RunStatus::Failed, 1_500).error("boom")),
    ];
    for (run_id, change) in cases {
        open(&*store, new_run(run_id, Some("{}"), 1_000)).await;
        update(&*store, run_id, change).await;
        let before = expect_run(&*store, run_id).await;
        let history =
            open(&*store, NewRun::new(run_id, "a-different-workflow", Some("[]".into()), 2_000)).await;
        assert_eq!(history.run, before, "`{run_id}`: another workflow must not take over or change the run");
        assert_eq!(history.run.workflow, WF);
        assert_eq!(expect_run(&*store, run_id).await, before, "`{run_id}` must stay unchanged");
    }
}

/// `open_run` returns every step and every signal of the run, and none of another run.
pub async fn open_run_returns_every_step_and_signal_of_the_run<S: Store>(store: Arc<S>) {
    open(&*store, new_run("mine", None, 1_000)).await;
    open(&*store, new_run("theirs", None, 1_000)).await;
    let mut started = StepRecord::new("charge", "charge_card", StepStatus::Started, 1_300);
    started.attempts = 1;
    let mut failed = StepRecord::new("notify", "send_mail", StepStatus::Failed, 1_400);
    failed.error = Some("smtp down".into());
    failed.attempts = 4;
    let mine = vec![full_step("fetch"), step("fetch#1", 1_200), started, failed];
    for s in &mine {
        save(&*store, "mine", s).await;
    }
    save(&*store, "theirs", &step("theirs-step", 1_100)).await;
    assert!(deliver(&*store, "mine", "approval", r#"{"ok":true}"#, 1_500).await);
    assert!(deliver(&*store, "mine", "budget", "42", 1_600).await);
    assert!(deliver(&*store, "theirs", "theirs-signal", "1", 1_600).await);
    update(&*store, "mine", RunUpdate::new(RunStatus::Failed, 1_700).error("step notify failed")).await;

    let history = open(&*store, new_run("mine", None, 2_000)).await;
    assert_eq!(by_step_id(history.steps), by_step_id(mine), "every step, each record whole, no other run's");
    assert_eq!(
        by_name(history.signals),
        vec![
            SignalRecord::new("approval", r#"{"ok":true}"#, 1_500),
            SignalRecord::new("budget", "42", 1_600)
        ],
        "every signal, each record whole, no other run's"
    );
}

/// Signals delivered before the run was created are part of its history.
pub async fn open_run_returns_signals_delivered_before_the_run_existed<S: Store>(store: Arc<S>) {
    assert!(deliver(&*store, "early", "go", "true", 500).await);
    let history = open(&*store, new_run("early", None, 1_000)).await;
    assert_eq!(history.signals, vec![SignalRecord::new("go", "true", 500)]);
    assert_eq!(history.run.status, RunStatus::Running);
}

/// Many concurrent `open_run` calls for one new run create it once: all see the same record.
pub async fn concurrent_open_run_creates_the_run_once<S: Store>(store: Arc<S>) {
    let mut tasks = Vec::new();
    for i in 0..32i64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            open(&*store, new_run("contested", Some(&format!("{{\"caller\":{i}}}")), 1_000 + i)).await
        }));
    }
    let mut created = BTreeSet::new();
    let mut inputs = BTreeSet::new();
    for task in tasks {
        let history = task.await.expect("an open_run task panicked");
        assert_eq!(history.run.status, RunStatus::Running);
        created.insert(history.run.created_at_ms);
        inputs.insert(history.run.input.clone());
    }
    assert_eq!(created.len(), 1, "the run must be created once; creation times seen: {created:?}");
    assert_eq!(inputs.len(), 1, "the input of the first caller must stay; inputs seen: {inputs:?}");
    let stored = expect_run(&*store, "contested").await;
    assert_eq!(Some(stored.created_at_ms), created.first().copied());
    assert_eq!(list_runs(&*store, RunFilter::new()).await.len(), 1);
}

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
// update_run

/// `Completed` with an output is stored with it.
pub async fn update_run_sets_completed_with_output<S: Store>(store: Arc<S>) {
    open(&*store, new_run("r", None, 1_000)).await;
    update(&*store, "r", RunUpdate::new(RunStatus::Completed, 2_000).output("[1,2]")).await;
    let run = expect_run(&*store, "r").await;
    assert_eq!(
        (run.status, run.output.as_deref(), run.updated_at_ms),
        (RunStatus::Completed, Some("[1,2]"), 2_000)
    );
}

/// `Failed` with an error text is stored with it.
pub async fn update_run_sets_failed_with_error<S: Store>(store: Arc<S>) {
    open(&*store, new_run("r", None, 1_000)).await;
    update(&*store, "r", RunUpdate::new(RunStatus::Failed, 2_000).error("task `x` failed")).await;
    let run = expect_run(&*store, "r").await;
    assert_eq!(
        (run.status, run.error.as_deref(), run.updated_at_ms),
        (RunStatus::Failed, Some("task `x` failed"), 2_000)
    );
}

/// `Waiting` with the awaited signal is stored with it.
pub async fn update_run_sets_waiting_with_waiting_on<S: Store>(store: Arc<S>) {
    open(&*store, new_run("r", None, 1_000)).await;
    update(&*store, "r", RunUpdate::new(RunStatus::Waiting, 2_000).waiting_on("approval")).await;
    let run = expect_run(&*store, "r").await;
    assert_eq!(
        (run.status, run.waiting_on.as_deref(), run.updated_at_ms),
        (RunStatus::Waiting, Some("approval"), 2_000)
    );
}

/// `Cancelled` is stored.
pub async fn update_run_sets_cancelled<S: Store>(store: Arc<S>) {
    open(&*store, new_run("r", None, 1_000)).await;
    update(&*store, "r", RunUpdate::new(RunStatus::Cancelled, 2_000)).await;
    let run = expect_run(&*store, "r").await;
    assert_eq!((run.status, run.updated_at_ms), (RunStatus::Cancelled, 2_000));
}

/// Each of output, error and `waiting_on` is replaced by the update: `None` clears it.
pub async fn update_run_with_none_clears_output_error_and_waiting_on<S: Store>(store: Arc<S>) {
    open(&*store, new_run("r", None, 1_000)).await;
    let all = RunUpdate::new(RunStatus::Failed, 2_000).output("\"out\"").error("err").waiting_on("sig");
    update(&*store, "r", all).await;
    let run = expect_run(&*store, "r").await;
    assert_eq!(
        (run.output.as_deref(), run.error.as_deref(), run.waiting_on.as_deref()),
        (Some("\"out\""), Some("err"), Some("sig")),
        "every field of the update is stored"
    );
    update(&*store, "r", RunUpdate::new(RunStatus::Running, 3_000)).await;
    let run = expect_run(&*store, "r").await;
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!(run.output, None, "output must be cleared");
    assert_eq!(run.error, None, "error must be cleared");
    assert_eq!(run.waiting_on, None, "waiting_on must be cleared");
    assert_eq!(run.updated_at_ms, 3_000);
}

/// An update leaves the workflow, the input and the creation time alone.
pub async fn update_run_keeps_workflow_input_and_created_at<S: Store>(store: Arc<S>) {
    open(&*store, new_run("r", Some(r#"{"in":1}"#), 1_000)).await;
    update(&*store, "r", RunUpdate::new(RunStatus::Completed, 2_000).output("1")).await;
    let run = expect_run(&*store, "r").await;
    assert_eq!(run.workflow, WF);
    assert_eq!(run.input.as_deref(), Some(r#"{"in":1}"#));
    assert_eq!((run.created_at_ms, run.updated_at_ms), (1_000, 2_000));
}

/// Updating a run that does not exist fails with `RunNotFound` naming it, and creates nothing.
pub async fn update_run_of_an_unknown_run_is_run_not_found<S: Store>(store: Arc<S>) {
    let result = store.update_run("missing", &RunUpdate::new(RunStatus::Completed, 1_000)).await;
    match result {
        Err(Error::RunNotFound { run_id }) => assert_eq!(run_id, "missing"),
        other => panic!("expected Err(RunNotFound {{ run_id: \"missing\" }}), got {other:?}"),
    }
    assert_eq!(get_run(&*store, "missing").await, None, "a failed update must not create the run");
    assert!(list_runs(&*store, RunFilter::new()).await.is_empty());
}

/// An update touches no other run.
pub async fn update_run_changes_only_its_own_run<S: Store>(store: Arc<S>) {
    open(&*store, new_run("one", None, 1_000)).await;
    open(&*store, new_run("two", None, 1_000)).await;
    let before = expect_run(&*store, "two").await;
    update(&*store, "one", RunUpdate::new(RunStatus::Failed, 2_000).error("x")).await;
    assert_eq!(expect_run(&*store, "two").await, before);
    assert_eq!(expect_run(&*store, "one").await.status, RunStatus::Failed);
}

// ---------------------------------------------------------------------------------------------
// Signals

/// The first delivery wins: a second one returns `false` and changes nothing.
pub async fn deliver_signal_first_write_wins<S: Store>(store: Arc<S>) {
    open(&*store, new_run("r", None, 1_000)).await;
    assert!(
        deliver(&*store, "r", "approval", r#"{"approved":true}"#, 1_100).await,
        "first delivery returns true"
    );
    assert!(
        !deliver(&*store, "r", "approval", r#"{"approved":false}"#, 1_200).await,
        "a duplicate returns false"
    );
    assert!(
        !deliver(&*store, "r", "approval", r#"{"approved":true}"#, 1_300).await,
        "even with the same payload"
    );
    assert_eq!(get_signal(&*store, "r", "approval").await.as_deref(), Some(r#"{"approved":true}"#));
    let history = open(&*store, new_run("r", None, 2_000)).await;
    assert_eq!(history.signals, vec![SignalRecord::new("approval", r#"{"approved":true}"#, 1_100)]);
}

/// A signal may be delivered to a run that does not exist yet; that does not create the run.
pub async fn deliver_signal_works_before_the_run_exists<S: Store>(store: Arc<S>) {
    assert!(deliver(&*store, "future-run", "go", "\"now\"", 1_000).await);
    assert_eq!(get_signal(&*store, "future-run", "go").await.as_deref(), Some("\"now\""));
    assert_eq!(get_run(&*store, "future-run").await, None, "delivering a signal must not create the run");
    assert!(
        !deliver(&*store, "future-run", "go", "\"later\"", 1_100).await,
        "first write wins before the run too"
    );
}

/// `get_signal` is `None` for an unknown name, an unknown run, and a name delivered elsewhere.
pub async fn get_signal_of_an_undelivered_signal_is_none<S: Store>(store: Arc<S>) {
    assert_eq!(get_signal(&*store, "nobody", "nothing").await, None);
    assert!(deliver(&*store, "r", "delivered", "1", 1_000).await);
    assert_eq!(get_signal(&*store, "r", "other").await, None);
    assert_eq!(get_signal(&*store, "other-run", "delivered").await, None);
    assert_eq!(get_signal(&*store, "r", "delivered").await.as_deref(), Some("1"));
}

/// The same signal name in two runs is two signals.
pub async fn signals_of_the_same_name_in_different_runs_are_separate<S: Store>(store: Arc<S>) {
    assert!(deliver(&*store, "a", "approval", "\"a\"", 1_000).await);
    assert!(
        deliver(&*store, "b", "approval", "\"b\"", 1_000).await,
        "a signal in another run is not a duplicate"
    );
    assert_eq!(get_signal(&*store, "a", "approval").await.as_deref(), Some("\"a\""));
    assert_eq!(get_signal(&*store, "b", "approval").await.as_deref(), Some("\"b\""));
}

/// Payloads come back byte for byte, 1 MiB included.
pub async fn signal_payloads_round_trip_verbatim<S: Store>(store: Arc<S>) {
    let mut payloads = awkward_json();
    payloads.push(one_megabyte_json());
    for (i, payload) in payloads.iter().enumerate() {
        let name = format!("signal-{i}");
        assert!(deliver(&*store, "r", &name, payload, 1_000 + i as i64).await);
        let got = get_signal(&*store, "r", &name).await;
        assert!(got.as_deref() == Some(payload.as_str()), "payload {} must be verbatim", show(payload));
    }
    let history = open(&*store, new_run("r", None, 5_000)).await;
    let expected: Vec<SignalRecord> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| SignalRecord::new(format!("signal-{i}"), p.clone(), 1_000 + i as i64))
        .collect();
    assert!(by_name(history.signals) == by_name(expected), "open_run must return every payload verbatim");
}

/// Of many concurrent deliveries of one signal exactly one wins, and its payload is kept.
pub async fn concurrent_deliveries_of_one_signal_have_one_winner<S: Store>(store: Arc<S>) {
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let payload = format!("{{\"sender\":{i}}}");
            (payload.clone(), deliver(&*store, "r", "race", &payload, 1_000).await)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (payload, won) = task.await.expect("a delivery task panicked");
        if won {
            winners.push(payload);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one delivery must return true: {winners:?}");
    assert_eq!(get_signal(&*store, "r", "race").await, winners.pop(), "the winner's payload is the one kept");
}

// ---------------------------------------------------------------------------------------------
// Reading runs

/// `get_run` of an id never opened is `None`.
pub async fn get_run_of_an_unknown_run_is_none<S: Store>(store: Arc<S>) {
    assert_eq!(get_run(&*store, "never-opened").await, None);
    open(&*store, new_run("opened", None, 1_000)).await;
    assert_eq!(get_run(&*store, "never-opened").await, None);
    assert_eq!(get_run(&*store, "opene").await, None, "no prefix match");
}

/// A store with no runs lists none.
pub async fn list_runs_of_an_empty_store_is_empty<S: Store>(store: Arc<S>) {
    assert!(list_runs(&*store, RunFilter::new()).await.is_empty());
    assert!(deliver(&*store, "signal-only", "s", "1", 1_000).await);
    assert!(list_runs(&*store, RunFilter::new()).await.is_empty(), "a delivered signal is not a run");
}

/// Runs come newest first, by creation time.
pub async fn list_runs_returns_newest_first<S: Store>(store: Arc<S>) {
    for (run_id, at) in [("b", 3_000), ("d", 1_000), ("a", 4_000), ("c", 2_000)] {
        open(&*store, new_run(run_id, None, at)).await;
    }
    // Updating the oldest run must not move it: order is by creation, not by change.
    update(&*store, "d", RunUpdate::new(RunStatus::Completed, 9_000)).await;
    assert_eq!(ids(&list_runs(&*store, RunFilter::new()).await), ["a", "b", "c", "d"]);
}

/// Runs created in the same millisecond come in descending run id order.
pub async fn list_runs_breaks_ties_by_run_id_descending<S: Store>(store: Arc<S>) {
    for run_id in ["m", "z", "a", "k"] {
        open(&*store, new_run(run_id, None, 1_000)).await;
    }
    open(&*store, new_run("newer", None, 2_000)).await;
    assert_eq!(ids(&list_runs(&*store, RunFilter::new()).await), ["newer", "z", "m", "k", "a"]);
}

/// Listed runs are whole records, equal to what `get_run` returns.
pub async fn list_runs_returns_full_records<S: Store>(store: Arc<S>) {
    open(&*store, new_run("full", Some(r#"{"x":1}"#), 1_000)).await;
    update(&*store, "full", RunUpdate::new(RunStatus::Failed, 2_000).output("1").error("e").waiting_on("w"))
        .await;
    let listed = list_runs(&*store, RunFilter::new()).await;
    assert_eq!(listed, vec![expect_run(&*store, "full").await]);
    let run = &listed[0];
    assert_eq!(run.input.as_deref(), Some(r#"{"x":1}"#));
    assert_eq!(
        (run.output.as_deref(), run.error.as_deref(), run.waiting_on.as_deref()),
        (Some("1"), Some("e"), Some("w"))
    );
}

async fn seed_runs<S: Store>(store: &S) {
    // (run id, workflow, status, created at)
    let runs = [
        ("a1", "alpha", RunStatus::Running, 1_000),
        ("a2", "alpha", RunStatus::Completed, 2_000),
        ("a3", "alpha", RunStatus::Failed, 3_000),
        ("b1", "beta", RunStatus::Completed, 1_500),
        ("b2", "beta", RunStatus::Waiting, 2_500),
        ("b3", "beta", RunStatus::Completed, 3_500),
        ("c1", "gamma", RunStatus::Cancelled, 500),
    ];
    for (run_id, workflow, status, at) in runs {
        open(store, NewRun::new(run_id, workflow, None, at)).await;
        if status != RunStatus::Running {
            update(store, run_id, RunUpdate::new(status, at + 1)).await;
        }
    }
}

/// The status filter keeps exactly the runs in that status, newest first.
pub async fn list_runs_filters_by_status<S: Store>(store: Arc<S>) {
    seed_runs(&*store).await;
    let f = |s| RunFilter::new().status(s);
    assert_eq!(ids(&list_runs(&*store, f(RunStatus::Completed)).await), ["b3", "a2", "b1"]);
    assert_eq!(ids(&list_runs(&*store, f(RunStatus::Running)).await), ["a1"]);
    assert_eq!(ids(&list_runs(&*store, f(RunStatus::Waiting)).await), ["b2"]);
    assert_eq!(ids(&list_runs(&*store, f(RunStatus::Failed)).await), ["a3"]);
    assert_eq!(ids(&list_runs(&*store, f(RunStatus::Cancelled)).await), ["c1"]);
}

/// The workflow filter keeps exactly that workflow's runs, newest first.
pub async fn list_runs_filters_by_workflow<S: Store>(store: Arc<S>) {
    seed_runs(&*store).await;
    assert_eq!(ids(&list_runs(&*store, RunFilter::new().workflow("alpha")).await), ["a3", "a2", "a1"]);
    assert_eq!(ids(&list_runs(&*store, RunFilter::new().workflow("beta")).await), ["b3", "b2", "b1"]);
    assert!(list_runs(&*store, RunFilter::new().workflow("alph")).await.is_empty(), "no prefix match");
    assert!(list_runs(&*store, RunFilter::new().workflow("ALPHA")).await.is_empty(), "case-sensitive");
}

/// Status and workflow filters combine (both must match), with the limit on top.
pub async fn list_runs_combines_filters<S: Store>(store: Arc<S>) {
    seed_runs(&*store).await;
    let both = RunFilter::new().workflow("beta").status(RunStatus::Completed);
    assert_eq!(ids(&list_runs(&*store, both.clone()).await), ["b3", "b1"]);
    assert_eq!(ids(&list_runs(&*store, both.limit(1)).await), ["b3"]);
    let none = RunFilter::new().workflow("gamma").status(RunStatus::Running);
    assert!(list_runs(&*store, none).await.is_empty());
}

/// The limit keeps the newest runs; 0 gives none; a large limit gives all.
pub async fn list_runs_applies_the_limit_after_ordering<S: Store>(store: Arc<S>) {
    seed_runs(&*store).await;
    assert_eq!(ids(&list_runs(&*store, RunFilter::new().limit(3)).await), ["b3", "a3", "b2"]);
    assert!(list_runs(&*store, RunFilter::new().limit(0)).await.is_empty());
    assert_eq!(list_runs(&*store, RunFilter::new().limit(usize::MAX)).await.len(), 7);
    assert_eq!(list_runs(&*store, RunFilter::new()).await.len(), 7);
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

// ---------------------------------------------------------------------------------------------
// Awkward identifiers

/// Run ids with quotes, SQL, glob and LIKE characters, separators, unicode and 10 KB lengths are
/// stored verbatim, and each run sees only its own steps and signals.
pub async fn awkward_run_ids_are_stored_verbatim_and_kept_apart<S: Store>(store: Arc<S>) {
    let run_ids = awkward_ids();
    for (i, run_id) in run_ids.iter().enumerate() {
        let history = open(&*store, new_run(run_id, Some(&format!("{{\"i\":{i}}}")), 1_000 + i as i64)).await;
        assert_eq!(&history.run.run_id, run_id, "open_run must keep run id {} verbatim", show(run_id));
        let mut own = step(&format!("step-of-{i}"), 1_000);
        own.value = Some(i.to_string());
        save(&*store, run_id, &own).await;
        save(&*store, run_id, &step("shared-step", 1_001)).await;
        assert!(deliver(&*store, run_id, "shared-signal", &i.to_string(), 1_000).await);
        update(&*store, run_id, RunUpdate::new(RunStatus::Waiting, 2_000).waiting_on(format!("sig-{i}")))
            .await;
    }
    for (i, run_id) in run_ids.iter().enumerate() {
        let run = expect_run(&*store, run_id).await;
        assert_eq!(&run.run_id, run_id);
        assert_eq!(run.input, Some(format!("{{\"i\":{i}}}")), "run {} got another run's input", show(run_id));
        assert_eq!(run.waiting_on, Some(format!("sig-{i}")), "run {} got another run's update", show(run_id));
        let steps: Vec<String> = list_steps(&*store, run_id).await.into_iter().map(|s| s.step_id).collect();
        assert_eq!(
            steps,
            [format!("step-of-{i}"), "shared-step".to_owned()],
            "steps of run {}",
            show(run_id)
        );
        let signal = get_signal(&*store, run_id, "shared-signal").await;
        assert_eq!(signal, Some(i.to_string()), "signal of run {}", show(run_id));
        let history = open(&*store, new_run(run_id, None, 3_000)).await;
        assert_eq!(history.steps.len(), 2, "open_run of {} must return its own 2 steps", show(run_id));
        assert_eq!(history.signals.len(), 1, "open_run of {} must return its own signal", show(run_id));
    }
    let listed: BTreeSet<String> =
        list_runs(&*store, RunFilter::new()).await.into_iter().map(|r| r.run_id).collect();
    assert_eq!(
        listed,
        run_ids.iter().cloned().collect::<BTreeSet<_>>(),
        "list_runs must return each id verbatim"
    );
}

/// Ids that join to the same text under a naive `run:step` key scheme stay separate records.
pub async fn key_separators_in_ids_do_not_collide<S: Store>(store: Arc<S>) {
    // (run id, step id): "a" + "b:c" and "a:b" + "c" both join to "a:b:c".
    let pairs = [("a", "b:c"), ("a:b", "c"), ("a:", "b:c"), ("a", ":b:c"), ("a/b", "c"), ("a", "b/c")];
    for (i, (run_id, step_id)) in pairs.iter().enumerate() {
        let mut s = step(step_id, 1_000);
        s.value = Some(i.to_string());
        save(&*store, run_id, &s).await;
        assert!(
            deliver(&*store, run_id, step_id, &i.to_string(), 1_000).await,
            "({run_id}, {step_id}) collided"
        );
    }
    let mut expected: BTreeMap<&str, Vec<(String, Option<String>)>> = BTreeMap::new();
    for (i, (run_id, step_id)) in pairs.iter().enumerate() {
        expected.entry(run_id).or_default().push(((*step_id).to_owned(), Some(i.to_string())));
        assert_eq!(
            get_signal(&*store, run_id, step_id).await,
            Some(i.to_string()),
            "signal ({run_id}, {step_id})"
        );
    }
    for (run_id, mut want) in expected {
        want.sort();
        let mut got: Vec<(String, Option<String>)> =
            list_steps(&*store, run_id).await.into_iter().map(|s| (s.step_id, s.value)).collect();
        got.sort();
        assert_eq!(got, want, "steps of run `{run_id}`");
    }
}

/// Step ids and task names of every awkward kind are stored verbatim and stay distinct.
pub async fn awkward_step_ids_and_names_are_stored_verbatim<S: Store>(store: Arc<S>) {
    open(&*store, new_run("r", None, 1_000)).await;
    let mut expected = Vec::new();
    for (i, id) in awkward_ids().into_iter().enumerate() {
        let mut s = StepRecord::new(id.clone(), id, StepStatus::Completed, 1_000 + i as i64);
        s.value = Some(i.to_string());
        save(&*store, "r", &s).await;
        expected.push(s);
    }
    let stored = list_steps(&*store, "r").await;
    assert_eq!(stored.len(), expected.len(), "every awkward step id must be a record of its own");
    for (got, want) in stored.iter().zip(&expected) {
        assert_eq!(got.step_id, want.step_id, "step id {} must be verbatim", show(&want.step_id));
        assert_eq!(got.name, want.name, "task name {} must be verbatim", show(&want.name));
    }
    assert_eq!(stored, expected);
}

/// Signal names of every awkward kind are stored verbatim and stay distinct.
pub async fn awkward_signal_names_are_stored_verbatim<S: Store>(store: Arc<S>) {
    let names = awkward_ids();
    for (i, name) in names.iter().enumerate() {
        assert!(deliver(&*store, "r", name, &i.to_string(), 1_000).await, "signal {} collided", show(name));
    }
    for (i, name) in names.iter().enumerate() {
        assert_eq!(get_signal(&*store, "r", name).await, Some(i.to_string()), "signal {}", show(name));
    }
    let history = open(&*store, new_run("r", None, 1_000)).await;
    let got: BTreeSet<String> = history.signals.into_iter().map(|s| s.name).collect();
    assert_eq!(got, names.into_iter().collect::<BTreeSet<_>>(), "open_run must return every name verbatim");
}

/// Filtering by a workflow name with LIKE or glob characters matches that name only.
pub async fn awkward_workflow_names_filter_exactly<S: Store>(store: Arc<S>) {
    let workflows = awkward_ids();
    for (i, workflow) in workflows.iter().enumerate() {
        open(&*store, NewRun::new(format!("run-{i}"), workflow.clone(), None, 1_000 + i as i64)).await;
    }
    for (i, workflow) in workflows.iter().enumerate() {
        let runs = list_runs(&*store, RunFilter::new().workflow(workflow.clone())).await;
        assert_eq!(ids(&runs), [format!("run-{i}")], "filter on workflow {}", show(workflow));
        assert_eq!(&runs[0].workflow, workflow);
    }
}

// ---------------------------------------------------------------------------------------------
// Concurrency

/// 200 tasks, each driving a run of its own through open, steps, a signal and completion, all
/// at once: every write lands.
pub async fn concurrent_writes_of_many_runs_all_land<S: Store>(store: Arc<S>) {
    const RUNS: usize = 200;
    const STEPS: usize = 5;
    let mut tasks = Vec::new();
    for r in 0..RUNS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let run_id = format!("run-{r}");
            open(&*store, new_run(&run_id, Some(&r.to_string()), 1_000)).await;
            for s in 0..STEPS {
                let mut rec = step(&format!("step-{s}"), 1_000 + s as i64);
                rec.value = Some(format!("{r}.{s}"));
                save(&*store, &run_id, &rec).await;
            }
            assert!(deliver(&*store, &run_id, "done", &r.to_string(), 2_000).await);
            update(&*store, &run_id, RunUpdate::new(RunStatus::Completed, 3_000).output(r.to_string())).await;
        }));
    }
    for task in tasks {
        task.await.expect("a writer task panicked");
    }
    let completed = list_runs(&*store, RunFilter::new().status(RunStatus::Completed)).await;
    assert_eq!(completed.len(), RUNS, "every run must be completed");
    for r in 0..RUNS {
        let run_id = format!("run-{r}");
        let run = expect_run(&*store, &run_id).await;
        assert_eq!((run.input, run.output), (Some(r.to_string()), Some(r.to_string())), "run {run_id}");
        let values: Vec<Option<String>> =
            list_steps(&*store, &run_id).await.into_iter().map(|s| s.value).collect();
        let want: Vec<Option<String>> = (0..STEPS).map(|s| Some(format!("{r}.{s}"))).collect();
        assert_eq!(values, want, "steps of {run_id}");
        assert_eq!(get_signal(&*store, &run_id, "done").await, Some(r.to_string()));
    }
}

/// 100 tasks saving different steps of one run at once: every step lands.
pub async fn concurrent_saves_to_one_run_all_land<S: Store>(store: Arc<S>) {
    open(&*store, new_run("shared", None, 1_000)).await;
    let mut tasks = Vec::new();
    for i in 0..100i64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(
            async move { save(&*store, "shared", &step(&format!("item-{i:03}"), i)).await },
        ));
    }
    for task in tasks {
        task.await.expect("a writer task panicked");
    }
    let got: Vec<String> = list_steps(&*store, "shared").await.into_iter().map(|s| s.step_id).collect();
    let want: Vec<String> = (0..100).map(|i| format!("item-{i:03}")).collect();
    assert_eq!(got, want);
}

/// `wait_for_signal` returns by `max_wait` (a store may return sooner, never much later).
pub async fn wait_for_signal_returns_within_max_wait<S: Store>(store: Arc<S>) {
    let max_wait = Duration::from_millis(200);
    let started = Instant::now();
    let waited =
        tokio::time::timeout(Duration::from_secs(10), store.wait_for_signal("r", "s", max_wait)).await;
    assert!(waited.is_ok(), "wait_for_signal(max_wait = 200 ms) did not return within 10 s");
    let elapsed = started.elapsed();
    assert!(
        elapsed < max_wait + Duration::from_secs(2),
        "wait_for_signal took {elapsed:?} for max_wait {max_wait:?}"
    );
}

/// Behind `Arc<dyn Store>` the store behaves the same.
pub async fn store_works_as_arc_dyn_store<S: Store>(store: Arc<S>) {
    let store: Arc<dyn Store> = store;
    open(&store, new_run("dyn", Some("1"), 1_000)).await;
    save(&store, "dyn", &full_step("s")).await;
    assert!(deliver(&store, "dyn", "sig", "2", 1_100).await);
    update(&store, "dyn", RunUpdate::new(RunStatus::Completed, 1_200).output("3")).await;
    let run = expect_run(&store, "dyn").await;
    assert_eq!((run.status, run.output.as_deref()), (RunStatus::Completed, Some("3")));
    assert_eq!(list_steps(&store, "dyn").await, vec![full_step("s")]);
    assert_eq!(get_signal(&store, "dyn", "sig").await.as_deref(), Some("2"));
    assert_eq!(ids(&list_runs(&store, RunFilter::new().workflow(WF)).await), ["dyn"]);
}

// ---------------------------------------------------------------------------------------------
// Leases
//
// These tests pass the real time (`durably_core::now_ms()`) and real TTLs, and wait for expiry
// by sleeping, so that they hold for stores that take the time from their server and ignore
// `now_ms`.

/// A TTL no test outlives.
const LONG_TTL: Duration = Duration::from_secs(60);
/// A TTL short enough to wait out.
const SHORT_TTL: Duration = Duration::from_millis(500);
/// How long to sleep so that a `SHORT_TTL` lease has surely expired.
const PAST_SHORT_TTL: Duration = Duration::from_millis(1_200);
/// How far a store's clock (a server's) may be from this process's in the expiry checks.
const CLOCK_SLACK_MS: i64 = 5_000;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap()
}

async fn acquire<S: Store + ?Sized>(store: &S, run_id: &str, owner: &str, ttl: Duration) -> LeaseOutcome {
    store
        .acquire_lease(run_id, owner, ttl, durably_core::now_ms())
        .await
        .unwrap_or_else(|e| panic!("acquire_lease(`{run_id}`, `{owner}`) failed: {e}"))
}

async fn release<S: Store + ?Sized>(store: &S, run_id: &str, owner: &str) {
    store
        .release_lease(run_id, owner)
        .await
        .unwrap_or_else(|e| panic!("release_lease(`{run_id}`, `{owner}`) failed: {e}"));
}

async fn recoverable<S: Store + ?Sized>(store: &S, limit: usize) -> Vec<RunRecord> {
    store
        .recoverable_runs(durably_core::now_ms(), limit)
        .await
        .unwrap_or_else(|e| panic!("recoverable_runs(limit {limit}) failed: {e}"))
}

/// The lease another owner holds, or a failure naming what was found instead.
fn held_by(outcome: LeaseOutcome, context: &str) -> Lease {
    match outcome {
        LeaseOutcome::HeldBy(lease) => lease,
        other => panic!("{context}: expected HeldBy, got {other:?}"),
    }
}

/// A lease on a run nobody holds is granted, whether or not the run exists yet.
pub async fn acquire_lease_of_a_free_run_succeeds<S: Store>(store: Arc<S>) {
    assert_eq!(acquire(&*store, "not-yet-created", "owner-a", LONG_TTL).await, LeaseOutcome::Acquired);
    open(&*store, new_run("existing", None, 1_000)).await;
    assert_eq!(acquire(&*store, "existing", "owner-a", LONG_TTL).await, LeaseOutcome::Acquired);
}

/// While one owner holds a live lease, another owner gets `HeldBy` with the holder's id and
/// its expiry (about `now + ttl`), and the lease is unchanged.
pub async fn a_second_owner_gets_held_by_with_owner_and_expiry<S: Store>(store: Arc<S>) {
    open(&*store, new_run("r", None, 1_000)).await;
    let before = durably_core::now_ms();
    assert_eq!(acquire(&*store, "r", "owner-a", LONG_TTL).await, LeaseOutcome::Acquired);
    let after = durably_core::now_ms();
    let lease = held_by(acquire(&*store, "r", "owner-b", LONG_TTL).await, "second owner");
    assert_eq!(lease.owner, "owner-a");
    let (lo, hi) = (before + ms(LONG_TTL) - CLOCK_SLACK_MS, after + ms(LONG_TTL) + CLOCK_SLACK_MS);
    assert!(
        (lo..=hi).contains(&lease.expires_at_ms),
        "expiry {} should be about now + 60 s, within [{lo}, {hi}]",
        lease.expires_at_ms
    );
    // The refused attempt changed nothing: a third owner sees the same lease.
    let again = held_by(acquire(&*store, "r", "owner-c", LONG_TTL).await, "third owner");
    assert_eq!(again, lease, "a refused acquire must not change the lease");
}

/// The holder acquiring again renews its lease: still granted, expiry moved to `now + ttl`.
pub async fn the_same_owner_renews_and_extends_the_expiry<S: Store>(store: Arc<S>) {
    open(&*store, new_run("r", None, 1_000)).await;
    assert_eq!(acquire(&*store, "r", "owner-a", Duration::from_secs(10)).await, LeaseOutcome::Acquired);
    let first = held_by(acquire(&*store, "r", "owner-b", LONG_TTL).await, "before renewal");
    assert_eq!(acquire(&*store, "r", "owner-a", LONG_TTL).await, LeaseOutcome::Acquired, "renewal");
    let renewed = held_by(acquire(&*store, "r", "owner-b", LONG_TTL).await, "after renewal");
    assert_eq!(renewed.owner, "owner-a");
    assert!(
        renewed.expires_at_ms >= first.expires_at_ms + 40_000,
        "renewing a 10 s lease with 60 s must extend it by about 50 s: {} -> {}",
        first.expires_at_ms,
        renewed.expires_at_ms
    );
}

/// A short lease keeps a run held by renewing it before it lapses.
pub async fn renewing_a_short_lease_keeps_it<S: Store>(store: Arc<S>) {
    let ttl = Duration::from_millis(1_000);
    assert_eq!(acquire(&*store, "r", "owner-a", ttl).await, LeaseOutcome::Acquired);
    for i in 0..5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(acquire(&*store, "r", "owner-a", ttl).await, LeaseOutcome::Acquired, "renewal {i}");
    }
    // 1.5 s after the first acquire, longer than its TTL: only the renewals keep it held.
    let lease = held_by(acquire(&*store, "r", "owner-b", LONG_TTL).await, "after renewals");
    assert_eq!(lease.owner, "owner-a");
}

/// Once a lease has expired another owner takes it, and the former holder is then refused.
pub async fn an_expired_lease_can_be_taken_by_another_owner<S: Store>(store: Arc<S>) {
    open(&*store, new_run("r", None, 1_000)).await;
    assert_eq!(acquire(&*store, "r", "owner-a", SHORT_TTL).await, LeaseOutcome::Acquired);
    let live = held_by(acquire(&*store, "r", "owner-b", SHORT_TTL).await, "while live");
    assert_eq!(live.owner, "owner-a");
    tokio::time::sleep(PAST_SHORT_TTL).await;
    assert_eq!(acquire(&*store, "r", "owner-b", LONG_TTL).await, LeaseOutcome::Acquired, "after expiry");
    let taken = held_by(acquire(&*store, "r", "owner-a", LONG_TTL).await, "former holder");
    assert_eq!(taken.owner, "owner-b", "the former holder must learn that it lost the lease");
}

/// Releasing someone else's lease does nothing (and is not an error).
pub async fn release_by_a_non_owner_does_nothing<S: Store>(store: Arc<S>) {
    open(&*store, new_run("r", None, 1_000)).await;
    assert_eq!(acquire(&*store, "r", "owner-a", LONG_TTL).await, LeaseOutcome::Acquired);
    release(&*store, "r", "owner-b").await;
    let lease = held_by(acquire(&*store, "r", "owner-c", LONG_TTL).await, "after a stranger's release");
    assert_eq!(lease.owner, "owner-a");
    // Releasing a lease nobody holds is fine too.
    release(&*store, "never-leased", "owner-b").await;
}

/// The holder's release frees the lease at once, for anyone.
pub async fn release_by_the_owner_frees_the_lease<S: Store>(store: Arc<S>) {
    open(&*store, new_run("r", None, 1_000)).await;
    assert_eq!(acquire(&*store, "r", "owner-a", LONG_TTL).await, LeaseOutcome::Acquired);
    release(&*store, "r", "owner-a").await;
    assert_eq!(acquire(&*store, "r", "owner-b", LONG_TTL).await, LeaseOutcome::Acquired, "after release");
    let lease = held_by(acquire(&*store, "r", "owner-a", LONG_TTL).await, "former holder");
    assert_eq!(lease.owner, "owner-b");
}

/// Leases of different runs, including ids that share prefixes and separators, are independent.
pub async fn leases_of_different_runs_are_independent<S: Store>(store: Arc<S>) {
    let runs = ["r", "r:1", "r:", ":r", "r*", "r%", "🦀"];
    for (i, run_id) in runs.iter().enumerate() {
        let owner = format!("owner-{i}");
        assert_eq!(
            acquire(&*store, run_id, &owner, LONG_TTL).await,
            LeaseOutcome::Acquired,
            "run {run_id:?}"
        );
    }
    for (i, run_id) in runs.iter().enumerate() {
        let lease = held_by(acquire(&*store, run_id, "stranger", LONG_TTL).await, run_id);
        assert_eq!(lease.owner, format!("owner-{i}"), "run {run_id:?}");
    }
    release(&*store, "r", "owner-0").await;
    assert_eq!(acquire(&*store, "r", "stranger", LONG_TTL).await, LeaseOutcome::Acquired);
    let lease = held_by(acquire(&*store, "r:1", "stranger", LONG_TTL).await, "r:1 after r's release");
    assert_eq!(lease.owner, "owner-1", "releasing `r` must not touch `r:1`");
}

/// Of many owners racing for one free lease, exactly one gets it, and every other one is told
/// who did.
pub async fn racing_acquires_have_exactly_one_winner<S: Store>(store: Arc<S>) {
    open(&*store, new_run("contested", None, 1_000)).await;
    let start = Arc::new(tokio::sync::Barrier::new(32));
    let mut tasks = Vec::new();
    for i in 0..32 {
        let (store, start) = (Arc::clone(&store), Arc::clone(&start));
        tasks.push(tokio::spawn(async move {
            let owner = format!("owner-{i}");
            start.wait().await;
            let outcome = acquire(&*store, "contested", &owner, LONG_TTL).await;
            (owner, outcome)
        }));
    }
    let mut winners = Vec::new();
    let mut holders = BTreeSet::new();
    for task in tasks {
        let (owner, outcome) = task.await.expect("an acquire task panicked");
        match outcome {
            LeaseOutcome::Acquired => winners.push(owner),
            LeaseOutcome::HeldBy(lease) => {
                holders.insert(lease.owner);
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one owner must win; winners: {winners:?}");
    assert_eq!(holders.into_iter().collect::<Vec<_>>(), winners, "losers must name the winner");
}

/// `recoverable_runs` lists `running` and `waiting` runs that no live lease covers, oldest
/// first; never completed, failed or cancelled runs, nor runs under a live lease.
pub async fn recoverable_runs_lists_unfinished_runs_without_a_live_lease<S: Store>(store: Arc<S>) {
    let cases = [
        ("running-old", RunStatus::Running),
        ("completed", RunStatus::Completed),
        ("waiting", RunStatus::Waiting),
        ("failed", RunStatus::Failed),
        ("leased", RunStatus::Running),
        ("cancelled", RunStatus::Cancelled),
        ("leased-waiting", RunStatus::Waiting),
        ("running-new", RunStatus::Running),
    ];
    for (i, (run_id, status)) in cases.iter().enumerate() {
        open(&*store, new_run(run_id, Some("{}"), 1_000 + i as i64 * 10)).await;
        let mut change = RunUpdate::new(*status, 5_000);
        match status {
            RunStatus::Completed => change = change.output("1"),
            RunStatus::Failed => change = change.error("boom"),
            RunStatus::Waiting => change = change.waiting_on("approval"),
            _ => {}
        }
        update(&*store, run_id, change).await;
    }
    assert_eq!(acquire(&*store, "leased", "owner-a", LONG_TTL).await, LeaseOutcome::Acquired);
    assert_eq!(acquire(&*store, "leased-waiting", "owner-a", LONG_TTL).await, LeaseOutcome::Acquired);
    let runs = recoverable(&*store, 100).await;
    assert_eq!(ids(&runs), ["running-old", "waiting", "running-new"]);
    let waiting = &runs[1];
    assert_eq!(
        (waiting.status, waiting.waiting_on.as_deref(), waiting.input.as_deref(), waiting.workflow.as_str()),
        (RunStatus::Waiting, Some("approval"), Some("{}"), WF),
        "recoverable runs are full records"
    );
}

/// A run whose lease expired, or was released, is recoverable again.
pub async fn recoverable_runs_include_expired_and_released_leases<S: Store>(store: Arc<S>) {
    for (i, run_id) in ["expires", "released", "held"].iter().enumerate() {
        open(&*store, new_run(run_id, None, 1_000 + i as i64)).await;
    }
    assert_eq!(acquire(&*store, "expires", "owner-a", SHORT_TTL).await, LeaseOutcome::Acquired);
    assert_eq!(acquire(&*store, "released", "owner-a", LONG_TTL).await, LeaseOutcome::Acquired);
    assert_eq!(acquire(&*store, "held", "owner-a", LONG_TTL).await, LeaseOutcome::Acquired);
    assert!(recoverable(&*store, 100).await.is_empty(), "every run is leased");
    release(&*store, "released", "owner-a").await;
    assert_eq!(ids(&recoverable(&*store, 100).await), ["released"]);
    tokio::time::sleep(PAST_SHORT_TTL).await;
    assert_eq!(ids(&recoverable(&*store, 100).await), ["expires", "released"]);
}

/// `recoverable_runs` returns at most `limit` runs: the oldest ones (ties by run id).
pub async fn recoverable_runs_respects_the_limit<S: Store>(store: Arc<S>) {
    for (run_id, created) in [("d", 4_000), ("b", 2_000), ("c", 2_000), ("a", 5_000), ("e", 1_000)] {
        open(&*store, new_run(run_id, None, created)).await;
    }
    assert_eq!(ids(&recoverable(&*store, 3).await), ["e", "b", "c"]);
    assert_eq!(ids(&recoverable(&*store, 1).await), ["e"]);
    assert!(recoverable(&*store, 0).await.is_empty(), "limit 0 returns nothing");
    assert_eq!(ids(&recoverable(&*store, 10).await), ["e", "b", "c", "d", "a"]);
}

// ---------------------------------------------------------------------------------------------
// Batched questions about the runs an engine executes: cancellations and lease renewals

/// `cancelled_runs` names exactly the cancelled runs among the ids asked about: not runs in
/// another status, not ids of no run, not cancelled runs it was not asked about, whatever
/// characters the ids hold.
pub async fn cancelled_runs_names_exactly_the_cancelled_ones<S: Store>(store: Arc<S>) {
    let others = [RunStatus::Running, RunStatus::Waiting, RunStatus::Completed, RunStatus::Failed];
    let mut asked = Vec::new();
    let mut expected = BTreeSet::new();
    for (i, run_id) in awkward_ids().into_iter().enumerate() {
        open(&*store, new_run(&run_id, None, 1_000 + i as i64)).await;
        let status = if i % 2 == 0 { RunStatus::Cancelled } else { others[i / 2 % others.len()] };
        update(&*store, &run_id, RunUpdate::new(status, 2_000)).await;
        if status == RunStatus::Cancelled {
            expected.insert(run_id.clone());
        }
        asked.push(run_id);
    }
    open(&*store, new_run("cancelled but not asked about", None, 1_000)).await;
    update(&*store, "cancelled but not asked about", RunUpdate::new(RunStatus::Cancelled, 2_000)).await;
    asked.push("no such run".to_owned());
    asked.push("no such run 🦀'%".to_owned());

    let cancelled = |asked: Vec<String>| {
        let store = Arc::clone(&store);
        async move {
            let found =
                store.cancelled_runs(&asked).await.unwrap_or_else(|e| panic!("cancelled_runs failed: {e}"));
            let set: BTreeSet<String> = found.iter().cloned().collect();
            assert_eq!(set.len(), found.len(), "cancelled_runs named a run twice");
            set
        }
    };
    let found = cancelled(asked.clone()).await;
    let missing: Vec<String> = expected.difference(&found).map(|id| show(id)).collect();
    let extra: Vec<String> = found.difference(&expected).map(|id| show(id)).collect();
    assert!(missing.is_empty() && extra.is_empty(), "cancelled_runs missed {missing:?} and named {extra:?}");

    // A run cancelled since is named by the next call.
    update(&*store, &asked[1], RunUpdate::new(RunStatus::Cancelled, 3_000)).await;
    expected.insert(asked[1].clone());
    assert!(cancelled(asked).await == expected, "a run cancelled since the last call must be named");
    assert!(cancelled(Vec::new()).await.is_empty(), "no ids, no cancelled runs");
}

async fn renew<S: Store + ?Sized>(
    store: &S,
    run_ids: &[&str],
    owner: &str,
    ttl: Duration,
) -> Vec<(String, Option<String>)> {
    let run_ids: Vec<String> = run_ids.iter().map(|id| (*id).to_owned()).collect();
    let mut lost = store
        .renew_leases(&run_ids, owner, ttl, durably_core::now_ms())
        .await
        .unwrap_or_else(|e| panic!("renew_leases({run_ids:?}, `{owner}`) failed: {e}"));
    lost.sort();
    lost
}

/// `renew_leases` extends every lease the owner holds, and names each lease another owner
/// holds with its holder, leaving that lease as it is.
pub async fn renew_leases_extends_the_owners_leases_and_names_other_holders<S: Store>(store: Arc<S>) {
    let mine = ["mine", "mine:2", "🦀 '%_mine"];
    for run_id in mine {
        assert_eq!(acquire(&*store, run_id, "owner-a", SHORT_TTL).await, LeaseOutcome::Acquired);
    }
    assert_eq!(acquire(&*store, "theirs", "owner-b", LONG_TTL).await, LeaseOutcome::Acquired);
    let theirs = held_by(acquire(&*store, "theirs", "owner-c", LONG_TTL).await, "before the renewal");

    let before = durably_core::now_ms();
    let lost = renew(&*store, &["mine", "theirs", "mine:2", "🦀 '%_mine"], "owner-a", LONG_TTL).await;
    assert_eq!(lost, [("theirs".to_owned(), Some("owner-b".to_owned()))]);

    // Past the short TTL the renewed leases are still owner-a's, until about now + LONG_TTL.
    tokio::time::sleep(PAST_SHORT_TTL).await;
    for run_id in mine {
        let lease = held_by(acquire(&*store, run_id, "owner-c", LONG_TTL).await, run_id);
        assert_eq!(lease.owner, "owner-a", "run {run_id:?}: the renewal must keep the lease");
        assert!(
            lease.expires_at_ms >= before + ms(LONG_TTL) - CLOCK_SLACK_MS,
            "run {run_id:?}: renewed for {LONG_TTL:?} from {before}, but it expires at {}",
            lease.expires_at_ms
        );
    }
    let after = held_by(acquire(&*store, "theirs", "owner-c", LONG_TTL).await, "after the renewal");
    assert_eq!(after, theirs, "a renewal by another owner must not change the lease");
    assert!(renew(&*store, &[], "owner-a", LONG_TTL).await.is_empty(), "no ids, nothing lost");
}

/// `renew_leases` never takes a lease nobody holds (released, or never taken): it names it
/// with no holder, and anyone may take it afterwards. The default implementation, which can
/// only call `acquire_lease`, takes such a lease again: a store that keeps it lists this test
/// in `expected_failures`.
pub async fn renew_leases_names_free_leases_without_taking_them<S: Store>(store: Arc<S>) {
    assert_eq!(acquire(&*store, "released", "owner-a", LONG_TTL).await, LeaseOutcome::Acquired);
    release(&*store, "released", "owner-a").await;
    let lost = renew(&*store, &["released", "never leased"], "owner-a", LONG_TTL).await;
    assert_eq!(lost, [("never leased".to_owned(), None), ("released".to_owned(), None)]);
    for run_id in ["released", "never leased"] {
        assert_eq!(
            acquire(&*store, run_id, "owner-b", LONG_TTL).await,
            LeaseOutcome::Acquired,
            "run {run_id:?}: a renewal must not take a free lease"
        );
    }
}

// The operating methods (list_signals, delete_run, update_run_unless_cancelled) live in their own
// module; the macro finds every behaviour here.
pub use crate::conformance_admin::*;
