//! Repairing and keeping runs: fork (re-run from a step), purge (retention), and export /
//! import of a run as a JSON document (a replayable test fixture).

use std::time::Duration;

use futures::{StreamExt as _, stream};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::{NewRun, RunFilter, RunRecord, RunStatus, RunUpdate, SignalRecord, StepRecord, now_ms};
use crate::workflow::Workflow;

/// How many runs [`Workflow::purge`] deletes at once.
const PURGE_CONCURRENCY: usize = 32;

/// The `format` of the documents [`Workflow::export`] writes.
pub const EXPORT_FORMAT: &str = "durably-run/1";

/// A run with everything recorded for it: what [`Workflow::export`] returns and
/// [`Workflow::import`] loads. Its JSON form (`to_json`) is a self-contained fixture: imported
/// into any store, the run replays without calling a model or the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunExport {
    /// Always [`EXPORT_FORMAT`]; checked on import.
    pub format: String,
    /// The run record: workflow, status, input, output, error, times.
    pub run: RunRecord,
    /// Every step record, in `list_steps` order.
    pub steps: Vec<StepRecord>,
    /// Every delivered signal.
    pub signals: Vec<SignalRecord>,
}

impl RunExport {
    /// Assembles an export document.
    pub fn new(run: RunRecord, steps: Vec<StepRecord>, signals: Vec<SignalRecord>) -> Self {
        RunExport { format: EXPORT_FORMAT.to_owned(), run, steps, signals }
    }

    /// The document as pretty-printed JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|source| Error::Serialize {
            run_id: self.run.run_id.clone(),
            step_id: "export".into(),
            what: "run export",
            type_name: std::any::type_name::<RunExport>(),
            source,
        })
    }

    /// Parses a document written by [`to_json`](Self::to_json), checking its format.
    pub fn from_json(json: &str) -> Result<RunExport> {
        let doc: RunExport = serde_json::from_str(json).map_err(|source| Error::Deserialize {
            run_id: String::new(),
            step_id: "export".into(),
            what: "run export",
            type_name: std::any::type_name::<RunExport>(),
            source,
        })?;
        if doc.format != EXPORT_FORMAT {
            return Err(Error::Invalid {
                what: "run export",
                detail: format!("run `{}`: format `{}` is not `{EXPORT_FORMAT}`", doc.run.run_id, doc.format),
            });
        }
        Ok(doc)
    }

    /// The same recording set up to *replay*: status `running` with no output or error, so that
    /// executing the run (after [`Workflow::import`]) runs the workflow body again and every
    /// recorded step returns its recorded value. A test that does this checks that the current
    /// code still follows the recorded history (a changed task order fails with
    /// `NonDeterminism`) without any model or network call.
    pub fn for_replay(mut self) -> RunExport {
        self.run.status = RunStatus::Running;
        self.run.output = None;
        self.run.error = None;
        self.run.waiting_on = None;
        self
    }

    /// The same document under another run id.
    pub fn with_run_id(mut self, run_id: impl Into<String>) -> RunExport {
        self.run.run_id = run_id.into();
        self
    }
}

impl Workflow {
    /// Forks run `run_id` as `new_run_id`: a new run of the same workflow with the same input,
    /// holding copies of the source's step records that come before `from_step` (in
    /// [`list_steps`](Workflow::list_steps) order) and of the signals delivered before
    /// `from_step` started. Executing the new run (or recovering it) replays those steps and
    /// runs `from_step` and everything after it again: time travel after a bad model answer.
    /// The source run is not changed.
    ///
    /// Fails with [`Error::RunNotFound`] for an unknown source, and [`Error::Invalid`] when
    /// `from_step` is not a step of the source or `new_run_id` is taken.
    pub async fn fork(&self, run_id: &str, from_step: &str, new_run_id: &str) -> Result<RunRecord> {
        let store = self.store();
        let source =
            store.get_run(run_id).await?.ok_or_else(|| Error::RunNotFound { run_id: run_id.to_owned() })?;
        let steps = store.list_steps(run_id).await?;
        let Some(pos) = steps.iter().position(|s| s.step_id == from_step) else {
            let known: Vec<&str> = steps.iter().map(|s| s.step_id.as_str()).collect();
            return Err(Error::Invalid {
                what: "fork",
                detail: format!(
                    "run `{run_id}` has no step `{from_step}` (its steps: {})",
                    if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                ),
            });
        };
        if store.get_run(new_run_id).await?.is_some() {
            return Err(Error::Invalid {
                what: "fork",
                detail: format!(
                    "run `{new_run_id}` already exists; choose another id for the fork of `{run_id}`"
                ),
            });
        }
        let cutoff = steps[pos].started_at_ms;
        let signals: Vec<SignalRecord> =
            store.list_signals(run_id).await?.into_iter().filter(|s| s.delivered_at_ms < cutoff).collect();
        let history =
            store.open_run(NewRun::new(new_run_id, &source.workflow, source.input.clone(), now_ms())).await?;
        if history.run.workflow != source.workflow {
            return Err(Error::RunConflict {
                run_id: new_run_id.to_owned(),
                recorded: history.run.workflow,
                called: source.workflow,
            });
        }
        for step in &steps[..pos] {
            store.save_step(new_run_id, step).await?;
        }
        for signal in &signals {
            store.deliver_signal(new_run_id, signal).await?;
        }
        tracing::info!(
            target: "durably", run_id = %run_id, new_run_id = %new_run_id, from_step,
            copied_steps = pos, "run forked"
        );
        Ok(history.run)
    }

    /// Deletes the runs in one of `statuses` (all of `completed`, `failed` and `cancelled` when
    /// empty) that last changed more than `older_than` ago, with their steps and signals, and
    /// returns how many were deleted. Age is measured from the run's last change. Asking for
    /// `running` or `waiting` deletes such runs too, even if an engine is executing them.
    pub async fn purge(&self, older_than: Duration, statuses: &[RunStatus]) -> Result<usize> {
        let statuses: &[RunStatus] = if statuses.is_empty() {
            &[RunStatus::Completed, RunStatus::Failed, RunStatus::Cancelled]
        } else {
            statuses
        };
        let cutoff = now_ms().saturating_sub(i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX));
        let store = self.store();
        let mut deleted = 0;
        for &status in statuses {
            let old = store
                .list_runs(&RunFilter::new().status(status))
                .await?
                .into_iter()
                .filter(|run| run.updated_at_ms <= cutoff);
            // Several deletes in flight at once, so that a store with group commit (SQLite)
            // commits them together instead of one commit per run.
            let mut deletes = stream::iter(old)
                .map(|run| {
                    let store = store.clone();
                    async move { store.delete_run(&run.run_id).await }
                })
                .buffer_unordered(PURGE_CONCURRENCY);
            while let Some(gone) = deletes.next().await {
                if gone? {
                    deleted += 1;
                }
            }
        }
        tracing::info!(target: "durably", deleted, "runs purged");
        Ok(deleted)
    }

    /// The run `run_id` with its steps and signals, as a document that [`import`](Self::import)
    /// loads into any store.
    pub async fn export(&self, run_id: &str) -> Result<RunExport> {
        let store = self.store();
        let run =
            store.get_run(run_id).await?.ok_or_else(|| Error::RunNotFound { run_id: run_id.to_owned() })?;
        let steps = store.list_steps(run_id).await?;
        let signals = store.list_signals(run_id).await?;
        Ok(RunExport::new(run, steps, signals))
    }

    /// Loads an exported run into this engine's store: its record (status, input, output,
    /// times), steps and signals. Fails with [`Error::Invalid`] when the run id exists already
    /// (use [`RunExport::with_run_id`] to load it under another id).
    ///
    /// A completed run then returns its recorded output when executed; an export passed
    /// through [`RunExport::for_replay`] runs the body with every recorded step replayed.
    pub async fn import(&self, doc: &RunExport) -> Result<RunRecord> {
        if doc.format != EXPORT_FORMAT {
            return Err(Error::Invalid {
                what: "run export",
                detail: format!("run `{}`: format `{}` is not `{EXPORT_FORMAT}`", doc.run.run_id, doc.format),
            });
        }
        let run = &doc.run;
        let store = self.store();
        if store.get_run(&run.run_id).await?.is_some() {
            return Err(Error::Invalid {
                what: "import",
                detail: format!("run `{}` already exists in the store", run.run_id),
            });
        }
        store.open_run(NewRun::new(&run.run_id, &run.workflow, run.input.clone(), run.created_at_ms)).await?;
        for step in &doc.steps {
            store.save_step(&run.run_id, step).await?;
        }
        for signal in &doc.signals {
            store.deliver_signal(&run.run_id, signal).await?;
        }
        let mut update = RunUpdate::new(run.status, run.updated_at_ms);
        update.output.clone_from(&run.output);
        update.error.clone_from(&run.error);
        update.waiting_on.clone_from(&run.waiting_on);
        store.update_run(&run.run_id, &update).await?;
        tracing::info!(target: "durably", run_id = %run.run_id, steps = doc.steps.len(), "run imported");
        store.get_run(&run.run_id).await?.ok_or_else(|| Error::RunNotFound { run_id: run.run_id.clone() })
    }
}
