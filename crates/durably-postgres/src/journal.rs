//! [`Journal`] for [`PostgresStore`]: runs and their steps.

use async_trait::async_trait;
use durably_core::store::prelude::*;
use durably_core::{Error, NewEvent, NewRun, Result, RunHistory, RunRecord, RunUpdate, StepRecord};
use tokio_postgres::types::{ToSql, Type};

use crate::PostgresStore;
use crate::sql::{HistoryRow, decode_history_row, decode_run, decode_step};

#[async_trait]
impl Journal for PostgresStore {
    async fn open_run(&self, new: NewRun) -> Result<RunHistory> {
        let run_id = new.run_id.as_str();
        let sql = &self.statements.open_run;
        // A run created by a concurrent transaction of another workflow may be invisible to
        // the statement's snapshot (see `Statements::open_run`): the next attempt sees it.
        for _ in 0..3 {
            let rows = on_connection!(self, "open_run", Some(run_id), |client| async {
                let stmt = client
                    .prepare_typed_cached(sql, &[Type::TEXT, Type::TEXT, Type::TEXT, Type::INT8])
                    .await?;
                Ok(client.query(&stmt, &[&new.run_id, &new.workflow, &new.input, &new.now_ms]).await?)
            })?;
            if let Some(history) = history_of(&rows, run_id)? {
                return Ok(history);
            }
        }
        Err(Error::store("open_run", Some(run_id), "the run was neither created nor found; try again"))
    }
    /// Written with the checkpoints and event appends of concurrent runs, one statement per
    /// batch (see `batch.rs`); returns once the batch committed.
    async fn save_step(&self, run_id: &str, step: &StepRecord) -> Result<()> {
        self.batcher.save_step(run_id, step).await
    }
    /// The step and the events in the same statement of a batch: one commit, both or neither.
    async fn save_step_with_events(
        &self,
        run_id: &str,
        step: &StepRecord,
        events: &[NewEvent],
        keep: u64,
    ) -> Option<Result<()>> {
        Some(self.batcher.save_step_with_events(run_id, step, events, keep).await)
    }
    async fn update_run(&self, run_id: &str, update: &RunUpdate) -> Result<()> {
        let sql = &self.statements.update_run;
        let changed = on_connection!(self, "update_run", Some(run_id), |client| async {
            let stmt = client.prepare_cached(sql).await?;
            let params: [&(dyn ToSql + Sync); 6] = [
                &run_id,
                &update.status.as_str(),
                &update.output,
                &update.error,
                &update.waiting_on,
                &update.now_ms,
            ];
            Ok(client.execute(&stmt, &params).await?)
        })?;
        if changed == 0 {
            return Err(Error::RunNotFound { run_id: run_id.to_owned() });
        }
        Ok(())
    }
    async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        let sql = &self.statements.get_run;
        let row = on_connection!(self, "get_run", Some(run_id), |client| async {
            let stmt = client.prepare_cached(sql).await?;
            Ok(client.query_opt(&stmt, &[&run_id]).await?)
        })?;
        row.map(|row| decode_run(&row, run_id)).transpose()
    }
    async fn list_steps(&self, run_id: &str) -> Result<Vec<StepRecord>> {
        let sql = &self.statements.list_steps;
        let rows = on_connection!(self, "list_steps", Some(run_id), |client| async {
            let stmt = client.prepare_cached(sql).await?;
            Ok(client.query(&stmt, &[&run_id]).await?)
        })?;
        rows.iter().map(|row| decode_step(row, run_id)).collect()
    }
}

/// The run's history from the rows of the `open_run` statement (see `sql::open_run`); `None`
/// when they hold no run row.
pub(crate) fn history_of(rows: &[tokio_postgres::Row], run_id: &str) -> Result<Option<RunHistory>> {
    let mut run = None;
    let mut steps = Vec::new();
    let mut signals = Vec::new();
    for row in rows {
        match decode_history_row(row, run_id)? {
            HistoryRow::Run(r) => run = Some(r),
            HistoryRow::Step(s) => steps.push(s),
            HistoryRow::Signal(s) => signals.push(s),
        }
    }
    Ok(run.map(|run| {
        steps.sort_by(|a, b| a.started_at_ms.cmp(&b.started_at_ms).then_with(|| a.step_id.cmp(&b.step_id)));
        RunHistory::new(run, steps, signals)
    }))
}
