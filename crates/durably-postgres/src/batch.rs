//! Group commit of checkpoints and event appends: the `save_step` and `append_events` calls of
//! concurrent runs are written together, one statement and one commit per batch, as the SQLite
//! writer does with its transactions.
//!
//! A call queues its write and waits for its answer. One task takes whatever is queued (up to
//! [`MAX_BATCH`] writes) and writes it with one statement on a pooled connection (the `checkpoints`
//! statement: an `INSERT … SELECT FROM unnest(…) ON CONFLICT` for the steps, and the event-log
//! appends of every run of the batch beside it); while [`IN_FLIGHT`] batches are being written,
//! the next calls queue, so the batch grows with the load and a lone call is written at once,
//! alone, with the single-record statement. The engine sends a step's events while its
//! checkpoint is written, so both usually share a batch and a commit.
//!
//! Each run's order is kept: a run waits for one checkpoint before it makes the next and for
//! one append before it sends the next (a call returns only once its batch committed); within
//! a batch the last record queued for a step wins, as it would have written last, and the
//! events of a run take their offsets in the order they were queued. When a batch fails for a
//! reason that is not the connection (one record the server refuses), its writes are made one
//! by one, so that each caller gets the answer about its own write and none is refused for
//! another's.

use std::collections::HashMap;
use std::sync::Arc;

use durably_core::{Error, NewEvent, Result, StepRecord, StoreErrorKind};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_postgres::types::ToSql;

use crate::error::Fail;

/// The most writes one statement makes.
pub(crate) const MAX_BATCH: usize = 512;

/// How many batches are written at once at most (each on its own pooled connection).
pub(crate) const IN_FLIGHT: usize = 4;

/// What one queued call writes.
enum Write {
    Step(StepRecord),
    /// Events to append to the run's log, keeping its newest `keep` (at least 1).
    Events {
        events: Vec<NewEvent>,
        keep: i64,
    },
    /// A step and events of its run, written together or not at all.
    Checkpoint {
        step: StepRecord,
        events: Vec<NewEvent>,
        keep: i64,
    },
}

impl Write {
    fn op(&self) -> &'static str {
        match self {
            Write::Step(_) | Write::Checkpoint { .. } => "save_step",
            Write::Events { .. } => "append_events",
        }
    }
}

/// One queued call: its answer is the offset of the first event appended (0 for a step).
struct Pending {
    run_id: String,
    write: Write,
    done: oneshot::Sender<Result<u64>>,
}

/// The statements a batch is written with.
pub(crate) struct BatchStatements {
    /// One step, as the single-record `save_step` statement.
    pub(crate) save_step: String,
    /// One run's events.
    pub(crate) append_events: String,
    /// Many steps and the events of many runs, from one array per column.
    pub(crate) checkpoints: String,
    /// The channel notified with the id of each run whose log grew.
    pub(crate) events_channel: String,
}

/// The queue of a store's checkpoints and appends, and its task (which ends with the store).
#[derive(Debug)]
pub(crate) struct Batcher {
    queue: mpsc::UnboundedSender<Pending>,
}

/// What the batch task needs to write.
struct Writer {
    pool: deadpool_postgres::Pool,
    statements: BatchStatements,
}

impl Batcher {
    pub(crate) fn start(pool: deadpool_postgres::Pool, statements: BatchStatements) -> Self {
        let (queue, calls) = mpsc::unbounded_channel();
        tokio::spawn(run(Arc::new(Writer { pool, statements }), calls));
        Batcher { queue }
    }

    /// Writes `step` of `run_id` in the next batch, and returns when that batch committed.
    pub(crate) async fn save_step(&self, run_id: &str, step: &StepRecord) -> Result<()> {
        self.send(run_id, Write::Step(step.clone())).await.map(|_| ())
    }

    /// Appends `events` to `run_id`'s log in the next batch, keeping its newest `keep`, and
    /// returns the offset of the first once that batch committed.
    pub(crate) async fn append_events(&self, run_id: &str, events: &[NewEvent], keep: u64) -> Result<u64> {
        let keep = i64::try_from(keep.max(1)).unwrap_or(i64::MAX);
        self.send(run_id, Write::Events { events: events.to_vec(), keep }).await
    }

    /// Writes `step` and appends `events` to the run's log in the same statement of the next
    /// batch, and returns when that batch committed.
    pub(crate) async fn save_step_with_events(
        &self,
        run_id: &str,
        step: &StepRecord,
        events: &[NewEvent],
        keep: u64,
    ) -> Result<()> {
        let keep = i64::try_from(keep.max(1)).unwrap_or(i64::MAX);
        let write = Write::Checkpoint { step: step.clone(), events: events.to_vec(), keep };
        self.send(run_id, write).await.map(|_| ())
    }

    async fn send(&self, run_id: &str, write: Write) -> Result<u64> {
        let op = write.op();
        let (done, answer) = oneshot::channel();
        if self.queue.send(Pending { run_id: run_id.to_owned(), write, done }).is_err() {
            return Err(stopped(op, run_id));
        }
        answer.await.unwrap_or_else(|_| Err(stopped(op, run_id)))
    }
}

fn stopped(op: &'static str, run_id: &str) -> Error {
    Error::store(op, Some(run_id), "the store's checkpoint writer has stopped (the runtime is shutting down)")
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

/// The writes of a batch that go into the statement: the last record of each step (as it
/// would have been written last), and every append and checkpoint with events, in the order
/// they were queued.
fn picked(batch: &[Pending]) -> Vec<usize> {
    let mut last: HashMap<(&str, &str), usize> = HashMap::new();
    let mut rows = Vec::with_capacity(batch.len());
    for (i, p) in batch.iter().enumerate() {
        match &p.write {
            Write::Step(step) => {
                last.insert((p.run_id.as_str(), step.step_id.as_str()), i);
            }
            Write::Events { .. } | Write::Checkpoint { .. } => rows.push(i),
        }
    }
    rows.extend(last.into_values());
    rows.sort_unstable();
    rows
}

impl Writer {
    async fn write(&self, batch: Vec<Pending>) {
        let rows = picked(&batch);
        let outcome = match rows.as_slice() {
            [only] => {
                let p = &batch[*only];
                self.write_one(&p.run_id, &p.write)
                    .await
                    .map(|first| HashMap::from([(p.run_id.clone(), first)]))
            }
            _ => {
                let writes: Vec<(&str, &Write)> =
                    rows.iter().map(|&i| (batch[i].run_id.as_str(), &batch[i].write)).collect();
                self.write_many(&writes).await
            }
        };
        match outcome {
            Ok(firsts) => {
                // Each append's first offset: the run's first one in this batch, then those
                // of the appends queued before it.
                let mut next = firsts;
                for p in batch {
                    let first = match &p.write {
                        Write::Step(_) => Ok(0),
                        Write::Checkpoint { events, .. } => {
                            if let Some(offset) = next.get_mut(p.run_id.as_str()) {
                                *offset += events.len() as i64;
                            }
                            Ok(0)
                        }
                        // No event, so no row in the statement: the log's head is read alone.
                        Write::Events { events, .. } if events.is_empty() => self
                            .write_one(&p.run_id, &p.write)
                            .await
                            .map_err(|f| f.into_error("append_events", Some(&p.run_id)))
                            .and_then(|first| to_offset(first, &p.run_id)),
                        Write::Events { events, .. } => match next.get_mut(p.run_id.as_str()) {
                            Some(offset) => {
                                let first = *offset;
                                *offset += events.len() as i64;
                                to_offset(first, &p.run_id)
                            }
                            None => Err(Error::Corrupt {
                                run_id: p.run_id.clone(),
                                step_id: None,
                                detail: "the append wrote no event head".to_owned(),
                            }),
                        },
                    };
                    // A caller that gave up (its future dropped) needs no answer.
                    let _ = p.done.send(first);
                }
            }
            Err(fail) if rows.len() > 1 && !fail.is_connection_lost() && !matches!(fail, Fail::Pool(_)) => {
                // One write the server refuses must not fail the others: one by one.
                for p in batch {
                    let result = self.write_one(&p.run_id, &p.write).await;
                    let result = result
                        .map_err(|f| f.into_error(p.write.op(), Some(&p.run_id)))
                        .and_then(|first| to_offset(first, &p.run_id));
                    let _ = p.done.send(result);
                }
            }
            Err(fail) => {
                // The connection or the pool failed: every write of the batch shares the fate.
                let error = fail.into_error("save_step", None);
                let kind = error.kind().unwrap_or(StoreErrorKind::Other);
                let source = match &error {
                    Error::Store { source, .. } => source.to_string(),
                    other => other.to_string(),
                };
                for p in batch {
                    let error = Error::store_kind(kind, p.write.op(), Some(&p.run_id), source.clone());
                    let _ = p.done.send(Err(error));
                }
            }
        }
    }

    /// One write with its single-record statement; the first offset of an append, else 0.
    async fn write_one(&self, run_id: &str, write: &Write) -> std::result::Result<i64, Fail> {
        let client = self.pool.get().await.map_err(Fail::Pool)?;
        let result: std::result::Result<i64, Fail> = async {
            match write {
                Write::Step(step) => {
                    let stmt = client.prepare_cached(&self.statements.save_step).await?;
                    let attempts = i64::from(step.attempts);
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
                    Ok(0)
                }
                // A step with its events: the batch statement, for this one write.
                Write::Checkpoint { .. } => self.checkpoints(&client, &[(run_id, write)]).await.map(|_| 0),
                Write::Events { events, keep } => {
                    let stmt = client.prepare_cached(&self.statements.append_events).await?;
                    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
                    let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
                    let at: Vec<i64> = events.iter().map(|e| e.at_ms).collect();
                    let channel = &self.statements.events_channel;
                    let params: [&(dyn ToSql + Sync); 6] = [&run_id, &kinds, &data, &at, channel, keep];
                    let row = client.query_one(&stmt, &params).await?;
                    Ok(row.try_get(0)?)
                }
            }
        }
        .await;
        release(client, &result);
        result
    }

    /// `writes` in one statement; the first offset of each run's events.
    async fn write_many(&self, writes: &[(&str, &Write)]) -> std::result::Result<HashMap<String, i64>, Fail> {
        let client = self.pool.get().await.map_err(Fail::Pool)?;
        let result = self.checkpoints(&client, writes).await;
        release(client, &result);
        let rows = result?;
        let mut firsts = HashMap::with_capacity(rows.len());
        for row in rows {
            firsts.insert(row.try_get::<_, String>(0)?, row.try_get::<_, i64>(1)?);
        }
        Ok(firsts)
    }

    /// Runs the `checkpoints` statement over `writes` on `client`: a row per run whose log grew.
    async fn checkpoints(
        &self,
        client: &deadpool_postgres::Object,
        writes: &[(&str, &Write)],
    ) -> std::result::Result<Vec<tokio_postgres::Row>, Fail> {
        let mut s = StepColumns::default();
        let mut e = EventColumns::default();
        for &(run_id, write) in writes {
            match write {
                Write::Step(step) => s.push(run_id, step),
                Write::Events { events, keep } => e.push(run_id, events, *keep),
                Write::Checkpoint { step, events, keep } => {
                    s.push(run_id, step);
                    e.push(run_id, events, *keep);
                }
            }
        }
        let stmt = client.prepare_cached(&self.statements.checkpoints).await?;
        let params: [&(dyn ToSql + Sync); 16] = [
            &s.run_ids,
            &s.step_ids,
            &s.names,
            &s.statuses,
            &s.values,
            &s.errors,
            &s.attempts,
            &s.hashes,
            &s.started,
            &s.finished,
            &e.run_ids,
            &e.kinds,
            &e.data,
            &e.at,
            &e.keeps,
            &self.statements.events_channel,
        ];
        Ok(client.query(&stmt, &params).await?)
    }
}

/// The steps of a batch, one array per column of the `checkpoints` statement.
#[derive(Default)]
struct StepColumns<'a> {
    run_ids: Vec<&'a str>,
    step_ids: Vec<&'a str>,
    names: Vec<&'a str>,
    statuses: Vec<&'a str>,
    values: Vec<Option<&'a str>>,
    errors: Vec<Option<&'a str>>,
    attempts: Vec<i64>,
    hashes: Vec<Option<&'a str>>,
    started: Vec<i64>,
    finished: Vec<Option<i64>>,
}

impl<'a> StepColumns<'a> {
    fn push(&mut self, run_id: &'a str, step: &'a StepRecord) {
        self.run_ids.push(run_id);
        self.step_ids.push(&step.step_id);
        self.names.push(&step.name);
        self.statuses.push(step.status.as_str());
        self.values.push(step.value.as_deref());
        self.errors.push(step.error.as_deref());
        self.attempts.push(i64::from(step.attempts));
        self.hashes.push(step.request_hash.as_deref());
        self.started.push(step.started_at_ms);
        self.finished.push(step.finished_at_ms);
    }
}

/// The events of a batch, one array per column of the `checkpoints` statement: one row per
/// event, each with its run and that append's retention.
#[derive(Default)]
struct EventColumns<'a> {
    run_ids: Vec<&'a str>,
    kinds: Vec<&'a str>,
    data: Vec<&'a str>,
    at: Vec<i64>,
    keeps: Vec<i64>,
}

impl<'a> EventColumns<'a> {
    fn push(&mut self, run_id: &'a str, events: &'a [NewEvent], keep: i64) {
        for event in events {
            self.run_ids.push(run_id);
            self.kinds.push(&event.kind);
            self.data.push(&event.data);
            self.at.push(event.at_ms);
            self.keeps.push(keep);
        }
    }
}

fn to_offset(first: i64, run_id: &str) -> Result<u64> {
    u64::try_from(first).map_err(|_| Error::Corrupt {
        run_id: run_id.to_owned(),
        step_id: None,
        detail: format!("event offset {first} is negative"),
    })
}

/// A connection found lost is not handed back to the pool.
fn release<T>(client: deadpool_postgres::Object, result: &std::result::Result<T, Fail>) {
    if result.as_ref().is_err_and(Fail::is_connection_lost) {
        drop(deadpool_postgres::Object::take(client));
    }
}
