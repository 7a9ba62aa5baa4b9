//! Helpers of the conformance behaviours: store calls that fail naming the call, fixed
//! records, and the awkward identifiers and texts every store must keep verbatim.

// A test suite reports failure by panicking: the workspace's library lints do not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use durably_core::{
    Lease, LeaseOutcome, NewRun, RunFilter, RunHistory, RunRecord, RunUpdate, SignalRecord, StepRecord,
    StepStatus, Store,
};

pub(super) const WF: &str = "conformance-workflow";

// ---------------------------------------------------------------------------------------------
// Helpers

pub(super) fn new_run(run_id: &str, input: Option<&str>, now_ms: i64) -> NewRun {
    NewRun::new(run_id, WF, input.map(str::to_owned), now_ms)
}

/// A completed step with a value and no other optional field.
pub(super) fn step(step_id: &str, started_at_ms: i64) -> StepRecord {
    let mut step = StepRecord::new(step_id, "task", StepStatus::Completed, started_at_ms);
    step.value = Some(format!("\"value of {}\"", step_id.escape_default()));
    step.attempts = 1;
    step
}

/// A step with every optional field present.
pub(super) fn full_step(step_id: &str) -> StepRecord {
    let mut step = StepRecord::new(step_id, "fetch_data", StepStatus::Completed, 1_000);
    step.value = Some(r#"{"rows":[1,2,3],"next":null}"#.to_owned());
    step.error = Some("attempt 1: connection reset".to_owned());
    step.attempts = 3;
    step.request_hash = Some("sha256:9f86d081884c7d659a2feaa0c55ad015".to_owned());
    step.started_at_ms = 1_000;
    step.finished_at_ms = Some(1_250);
    step
}

pub(super) async fn open<S: Store>(store: &S, run: NewRun) -> RunHistory {
    let run_id = run.run_id.clone();
    store.open_run(run).await.unwrap_or_else(|e| panic!("open_run(`{run_id}`) failed: {e}"))
}

pub(super) async fn save<S: Store>(store: &S, run_id: &str, step: &StepRecord) {
    store
        .save_step(run_id, step)
        .await
        .unwrap_or_else(|e| panic!("save_step(`{run_id}`, `{}`) failed: {e}", step.step_id));
}

pub(super) async fn update<S: Store>(store: &S, run_id: &str, update: RunUpdate) {
    store.update_run(run_id, &update).await.unwrap_or_else(|e| panic!("update_run(`{run_id}`) failed: {e}"));
}

pub(super) async fn deliver<S: Store>(
    store: &S,
    run_id: &str,
    name: &str,
    payload: &str,
    at_ms: i64,
) -> bool {
    store
        .deliver_signal(run_id, &SignalRecord::new(name, payload, at_ms))
        .await
        .unwrap_or_else(|e| panic!("deliver_signal(`{run_id}`, `{name}`) failed: {e}"))
}

pub(super) async fn get_run<S: Store>(store: &S, run_id: &str) -> Option<RunRecord> {
    store.get_run(run_id).await.unwrap_or_else(|e| panic!("get_run(`{run_id}`) failed: {e}"))
}

pub(super) async fn expect_run<S: Store>(store: &S, run_id: &str) -> RunRecord {
    get_run(store, run_id).await.unwrap_or_else(|| panic!("get_run(`{run_id}`) found no run"))
}

pub(super) async fn list_runs<S: Store>(store: &S, filter: RunFilter) -> Vec<RunRecord> {
    store.list_runs(&filter).await.unwrap_or_else(|e| panic!("list_runs({filter:?}) failed: {e}"))
}

pub(super) async fn list_steps<S: Store>(store: &S, run_id: &str) -> Vec<StepRecord> {
    store.list_steps(run_id).await.unwrap_or_else(|e| panic!("list_steps(`{run_id}`) failed: {e}"))
}

pub(super) async fn get_signal<S: Store>(store: &S, run_id: &str, name: &str) -> Option<String> {
    store
        .get_signal(run_id, name)
        .await
        .unwrap_or_else(|e| panic!("get_signal(`{run_id}`, `{name}`) failed: {e}"))
}

pub(super) fn ids(runs: &[RunRecord]) -> Vec<&str> {
    runs.iter().map(|r| r.run_id.as_str()).collect()
}

pub(super) fn by_step_id(mut steps: Vec<StepRecord>) -> Vec<StepRecord> {
    steps.sort_by(|a, b| a.step_id.cmp(&b.step_id));
    steps
}

pub(super) fn by_name(mut signals: Vec<SignalRecord>) -> Vec<SignalRecord> {
    signals.sort_by(|a, b| a.name.cmp(&b.name));
    signals
}

/// Shortens long texts in assertion messages.
pub(super) fn show(text: &str) -> String {
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
pub(super) fn awkward_json() -> Vec<String> {
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
pub(super) fn awkward_texts() -> Vec<String> {
    let mut texts = awkward_ids();
    texts.push(String::new());
    texts.push("multi\nline\nerror: caused by: io".to_owned());
    texts
}

/// A JSON string of about 1 MiB mixing ASCII, escapes and multi-byte characters.
pub(super) fn one_megabyte_json() -> String {
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
// Leases
//
// These tests pass the real time (`durably_core::now_ms()`) and real TTLs, and wait for expiry
// by sleeping, so that they hold for stores that take the time from their server and ignore
// `now_ms`.

/// A TTL no test outlives.
pub(super) const LONG_TTL: Duration = Duration::from_secs(60);
/// A TTL short enough to wait out.
pub(super) const SHORT_TTL: Duration = Duration::from_millis(500);
/// How long to sleep so that a `SHORT_TTL` lease has surely expired.
pub(super) const PAST_SHORT_TTL: Duration = Duration::from_millis(1_200);
/// How far a store's clock (a server's) may be from this process's in the expiry checks.
pub(super) const CLOCK_SLACK_MS: i64 = 5_000;

pub(super) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap()
}

pub(super) async fn acquire<S: Store + ?Sized>(
    store: &S,
    run_id: &str,
    owner: &str,
    ttl: Duration,
) -> LeaseOutcome {
    store
        .acquire_lease(run_id, owner, ttl, durably_core::now_ms())
        .await
        .unwrap_or_else(|e| panic!("acquire_lease(`{run_id}`, `{owner}`) failed: {e}"))
}

pub(super) async fn release<S: Store + ?Sized>(store: &S, run_id: &str, owner: &str) {
    store
        .release_lease(run_id, owner)
        .await
        .unwrap_or_else(|e| panic!("release_lease(`{run_id}`, `{owner}`) failed: {e}"));
}

pub(super) async fn recoverable<S: Store + ?Sized>(store: &S, limit: usize) -> Vec<RunRecord> {
    store
        .recoverable_runs(durably_core::now_ms(), limit)
        .await
        .unwrap_or_else(|e| panic!("recoverable_runs(limit {limit}) failed: {e}"))
}

/// The lease another owner holds, or a failure naming what was found instead.
pub(super) fn held_by(outcome: LeaseOutcome, context: &str) -> Lease {
    match outcome {
        LeaseOutcome::HeldBy(lease) => lease,
        other => panic!("{context}: expected HeldBy, got {other:?}"),
    }
}
