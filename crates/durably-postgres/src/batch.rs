//! Group commit of checkpoints: the `save_step` calls of concurrent runs are written together,
//! one statement and one commit per batch, as the SQLite writer does with its transactions.
//!
//! A call queues its record and waits for its answer. One task takes whatever is queued (up to
//! [`MAX_BATCH`] records) and writes it with one `INSERT … SELECT FROM unnest(…) ON CONFLICT`
//! on a pooled connection; while [`IN_FLIGHT`] batches are being written, the next calls queue,
//! so the batch grows with the load and a lone call is written at once, alone.
//!
//! Each run's order is kept: a run waits for one checkpoint before it makes the next (a call
//! returns only once its batch committed), and within a batch the last record queued for a
//! step wins, as it would have written last. When a batch fails for a reason that is not the
//! connection (one record the server refuses), its records are written one by one, so that each
//! caller gets the answer about its own record and no record is refused for another's.

use std::collections::HashMap;
use std::sync::Arc;

use durably_core::{Error, Result, StepRecord, StoreErrorKind};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_postgres::types::ToSql;

use crate::error::Fail;

/// The most records one statement writes.
pub(crate) const MAX_BATCH: usize = 512;

/// How many batches are written at once at most (each on its own pooled connection).
pub(crate) const IN_FLIGHT: usize = 4;

/// One queued `save_step` call.
struct Pending {
    run_id: String,
    step: StepRecord,
    done: oneshot::Sender<Result<()>>,
}

/// The queue of a store's checkpoints, and its task (which ends with the store).
#[derive(Debug)]
pub(crate) struct StepBatcher {
    queue: mpsc::UnboundedSender<Pending>,
}

/// What the batch task needs to write.
struct Writer {
    pool: deadpool_postgres::Pool,
    /// One row, as the single-record `save_step` statement.
    one: String,
    /// Many rows, from arrays.
    many: String,
}

impl StepBatcher {
    pub(crate) fn start(pool: deadpool_postgres::Pool, one: String, many: String) -> Self {
        let (queue, calls) = mpsc::unbounded_channel();
        tokio::spawn(run(Arc::new(Writer { pool, one, many }), calls));
        StepBatcher { queue }
    }

    /// Writes `step` of `run_id` in the next batch, and returns when that batch committed.
    pub(crate) async fn save(&self, run_id: &str, step: &StepRecord) -> Result<()> {
        let (done, answer) = oneshot::channel();
        let pending = Pending { run_id: run_id.to_owned(), step: step.clone(), done };
        if self.queue.send(pending).is_err() {
            return Err(stopped(run_id));
        }
        answer.await.unwrap_or_else(|_| Err(stopped(run_id)))
    }
}

fn stopped(run_id: &str) -> Error {
    Error::store(
        "save_step",
        Some(run_id),
        "the store's checkpoint writer has stopped (the runtime is shutting down)",
    )
}

/// The batch task: takes what is queued, and writes it once a batch slot is free.
async fn run(writer: Arc<Writer>, mut calls: mpsc::UnboundedReceiver<Pending>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = calls.recv().await {
        // Wait for a slot first: what arrives meanwhile joins this batch.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match calls.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let writer = Arc::clone(&writer);
        tokio::spawn(async move {
            writer.write(batch).await;
            drop(slot);
        });
    }
}

impl Writer {
    async fn write(&self, batch: Vec<Pending>) {
        // The last record of each step wins, as it would have been written last.
        let mut last: HashMap<(&str, &str), usize> = HashMap::with_capacity(batch.len());
        for (i, p) in batch.iter().enumerate() {
            last.insert((p.run_id.as_str(), p.step.step_id.as_str()), i);
        }
        let mut rows: Vec<usize> = last.into_values().collect();
        rows.sort_unstable();
        let outcome = if rows.len() == 1 {
            let p = &batch[rows[0]];
            self.write_one(&p.run_id, &p.step).await
        } else {
            self.write_many(&batch, &rows).await
        };
        match outcome {
            Ok(()) => {
                for p in batch {
                    // A caller that gave up (its future dropped) needs no answer.
                    let _ = p.done.send(Ok(()));
                }
            }
            Err(fail) if rows.len() > 1 && !fail.is_connection_lost() && !matches!(fail, Fail::Pool(_)) => {
                // One record the server refuses must not fail the others: one by one.
                for p in batch {
                    let result = self.write_one(&p.run_id, &p.step).await;
                    let _ = p.done.send(result.map_err(|f| f.into_error("save_step", Some(&p.run_id))));
                }
            }
            Err(fail) => {
                // The connection or the pool failed: every record of the batch shares the fate.
                let error = fail.into_error("save_step", None);
                let kind = error.kind().unwrap_or(StoreErrorKind::Other);
                let source = match &error {
                    Error::Store { source, .. } => source.to_string(),
                    other => other.to_string(),
                };
                for p in batch {
                    let _ = p.done.send(Err(Error::store_kind(
                        kind,
                        "save_step",
                        Some(&p.run_id),
                        source.clone(),
                    )));
                }
            }
        }
    }

    async fn write_one(&self, run_id: &str, step: &StepRecord) -> std::result::Result<(), Fail> {
        let client = self.pool.get().await.map_err(Fail::Pool)?;
        let attempts = i64::from(step.attempts);
        let result: std::result::Result<(), Fail> = async {
            let stmt = client.prepare_cached(&self.one).await?;
            let params: [&(dyn ToSql + Sync); 10] = [
                &run_id,
                &step.step_id,
                &step.name,
                &step.status.as_str(),
                &step.value,
                &step.error,
                &attempts,
                &step.request_hash,
                &step.started_at_ms,
                &step.finished_at_ms,
            ];
            client.execute(&stmt, &params).await?;
            Ok(())
        }
        .await;
        release(client, &result);
        result
    }

    async fn write_many(&self, batch: &[Pending], rows: &[usize]) -> std::result::Result<(), Fail> {
        let client = self.pool.get().await.map_err(Fail::Pool)?;
        let picked = || rows.iter().map(|&i| &batch[i]);
        let run_ids: Vec<&str> = picked().map(|p| p.run_id.as_str()).collect();
        let step_ids: Vec<&str> = picked().map(|p| p.step.step_id.as_str()).collect();
        let names: Vec<&str> = picked().map(|p| p.step.name.as_str()).collect();
        let statuses: Vec<&str> = picked().map(|p| p.step.status.as_str()).collect();
        let values: Vec<Option<&str>> = picked().map(|p| p.step.value.as_deref()).collect();
        let errors: Vec<Option<&str>> = picked().map(|p| p.step.error.as_deref()).collect();
        let attempts: Vec<i64> = picked().map(|p| i64::from(p.step.attempts)).collect();
        let hashes: Vec<Option<&str>> = picked().map(|p| p.step.request_hash.as_deref()).collect();
        let started: Vec<i64> = picked().map(|p| p.step.started_at_ms).collect();
        let finished: Vec<Option<i64>> = picked().map(|p| p.step.finished_at_ms).collect();
        let result: std::result::Result<(), Fail> = async {
            let stmt = client.prepare_cached(&self.many).await?;
            let params: [&(dyn ToSql + Sync); 10] = [
                &run_ids, &step_ids, &names, &statuses, &values, &errors, &attempts, &hashes, &started,
                &finished,
            ];
            client.execute(&stmt, &params).await?;
            Ok(())
        }
        .await;
        release(client, &result);
        result
    }
}

/// A connection found lost is not handed back to the pool.
fn release(client: deadpool_postgres::Object, result: &std::result::Result<(), Fail>) {
    if result.as_ref().is_err_and(Fail::is_connection_lost) {
        drop(deadpool_postgres::Object::take(client));
    }
}
