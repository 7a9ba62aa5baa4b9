//! Runs: `open_run` (creating and re-opening), `update_run`, and reading runs back
//! (`get_run`, `list_runs`).

// A test suite reports failure by panicking: the workspace's library lints do not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;

use durably_core::{
    Error, NewRun, RunFilter, RunStatus, RunUpdate, SignalRecord, StepRecord, StepStatus, Store,
};

use super::support::*;

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

/// The run id prefix filter keeps exactly the runs whose id starts with it, byte for byte
/// (no wildcards, case-sensitive, up to the last character of the prefix), newest first, and
/// combines with the other filters and the limit.
pub async fn list_runs_filters_by_run_id_prefix<S: Store>(store: Arc<S>) {
    let runs = [
        ("chat:s#1", "alpha", 100),
        ("chat:s#2", "alpha", 200),
        ("chat:s#10", "beta", 300),
        ("chat:s#\u{10ffff}x", "alpha", 400),
        ("chat:s#é", "alpha", 500),
        ("chat:s", "alpha", 600),
        ("chat:s$", "alpha", 700),
        ("chat:s2#1", "alpha", 800),
        ("chat:S#1", "alpha", 900),
        ("chat:r#1", "alpha", 1_000),
        ("50%_*[x]?#1", "alpha", 1_100),
        ("50x_*[x]?#1", "alpha", 1_200),
    ];
    for (run_id, workflow, at) in runs {
        open(&*store, NewRun::new(run_id, workflow, None, at)).await;
    }
    update(&*store, "chat:s#2", RunUpdate::new(RunStatus::Completed, 250)).await;
    let f = |p: &str| RunFilter::new().run_id_prefix(p);
    assert_eq!(
        ids(&list_runs(&*store, f("chat:s#")).await),
        ["chat:s#é", "chat:s#\u{10ffff}x", "chat:s#10", "chat:s#2", "chat:s#1"]
    );
    assert_eq!(ids(&list_runs(&*store, f("chat:s#1")).await), ["chat:s#10", "chat:s#1"]);
    assert_eq!(ids(&list_runs(&*store, f("50%_*[x]?")).await), ["50%_*[x]?#1"], "no wildcards");
    assert_eq!(ids(&list_runs(&*store, f("chat:S")).await), ["chat:S#1"], "case-sensitive");
    assert!(list_runs(&*store, f("chat:t")).await.is_empty());
    assert_eq!(list_runs(&*store, f("")).await.len(), runs.len(), "the empty prefix keeps every run");
    let both = f("chat:s#").workflow("alpha");
    assert_eq!(
        ids(&list_runs(&*store, both.clone()).await),
        ["chat:s#é", "chat:s#\u{10ffff}x", "chat:s#2", "chat:s#1"]
    );
    assert_eq!(ids(&list_runs(&*store, both.clone().status(RunStatus::Completed)).await), ["chat:s#2"]);
    assert_eq!(ids(&list_runs(&*store, both.limit(2)).await), ["chat:s#é", "chat:s#\u{10ffff}x"]);
}

/// The limit keeps the newest runs; 0 gives none; a large limit gives all.
pub async fn list_runs_applies_the_limit_after_ordering<S: Store>(store: Arc<S>) {
    seed_runs(&*store).await;
    assert_eq!(ids(&list_runs(&*store, RunFilter::new().limit(3)).await), ["b3", "a3", "b2"]);
    assert!(list_runs(&*store, RunFilter::new().limit(0)).await.is_empty());
    assert_eq!(list_runs(&*store, RunFilter::new().limit(usize::MAX)).await.len(), 7);
    assert_eq!(list_runs(&*store, RunFilter::new()).await.len(), 7);
}
