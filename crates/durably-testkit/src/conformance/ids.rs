//! Awkward identifiers: SQL, glob and key-separator characters, unicode and 10 KB lengths in
//! run ids, step ids, signal names and workflow names are stored verbatim and kept apart.

// A test suite reports failure by panicking: the workspace's library lints do not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use durably_core::{NewRun, RunFilter, RunStatus, RunUpdate, StepRecord, StepStatus, Store};

use super::support::*;

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
