//! The embedded SQLite store of [durably](https://docs.rs/durably): one file, zero
//! configuration, safe to share between processes.
//!
//! ```no_run
//! # async fn example() -> durably_core::Result<()> {
//! use durably_sqlite::{Durability, SqliteStore};
//!
//! let store = SqliteStore::open("durably.db").await?;
//! let fast = SqliteStore::builder("fast.db").durability(Durability::Normal).open().await?;
//! # Ok(())
//! # }
//! ```
//!
//! How it works:
//! - **WAL journal**, so readers never wait for the writer, and **`BEGIN IMMEDIATE`** write
//!   transactions, so two writers queue for the lock instead of deadlocking.
//! - **One writer thread** owns the writing connection. Writes from every run of the process
//!   are queued to it; it commits everything already queued in one transaction (group commit)
//!   and replies to each caller after the commit. A lone write costs one transaction; a burst of
//!   concurrent writes costs one `fsync` per batch instead of one per write.
//! - **Reads** use a small pool of read connections on Tokio's blocking threads.
//! - **Several processes** may share the file: each attempt waits up to `busy_timeout` for
//!   another process's lock, and a locked database is retried with a short backoff, so
//!   SQLite's "database is locked" never reaches you. Signals delivered by another process are
//!   noticed within [`SqliteOptions::poll_interval`], by one poller per store that looks for
//!   all waiting runs at once (and only when the file changed). A run being executed holds a lease (a row
//!   of the `leases` table, taken in a write transaction), so two processes never execute one
//!   run at once, and a run whose process died can be recovered once its lease expires.
//! - **Queues and event logs**: a claim, a park and an append are jobs of the writer thread, so
//!   each runs in its `BEGIN IMMEDIATE` transaction under the file's write lock: a claim's
//!   limits (executing runs, per-key counts, claims in the rate window) hold across processes,
//!   and concurrent appends never share an offset. The same poller wakes `wait_for_work` and
//!   `wait_for_events` callers when another process made work runnable or appended events;
//!   the store's own writes wake them at once.
//! - **Durability** is [`Durability::Full`] by default (`synchronous = FULL`: a returned write
//!   survives a power cut); [`Durability::Normal`] survives a process crash but may lose the
//!   last commits on power loss.
//! - The file is created readable and writable by its owner only (mode `0600` on Unix), and
//!   carries a schema version ([`SCHEMA_VERSION`]) so that later versions can migrate it and
//!   older ones refuse it cleanly.
//!
//! The store needs a Tokio runtime (the engine's).

mod connection;
mod options;
mod poller;
mod sql;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use durably_core::store::prelude::*;
use durably_core::{
    Claim, Error, EventRecord, LeaseOutcome, LeasedOpen, NewEvent, NewRun, QueueStats, QueuedRun,
    RateAcquire, RateCost, RateDecision, Result, RunFilter, RunHistory, RunRecord, RunUpdate, SignalRecord,
    StepRecord, StoreErrorKind,
};
use rusqlite::Connection;

use crate::connection::ReadPool;
use crate::poller::Poller;
use crate::sql::Fail;
use crate::writer::{Counters, Request, Writer};

pub use crate::options::{Durability, SqliteOptions};
pub use crate::sql::SCHEMA_VERSION;

/// The path that opens a private in-memory database instead of a file, as in SQLite.
const MEMORY: &str = ":memory:";

/// A [`Store`] in a SQLite file. See the [crate docs](crate) for how it works.
///
/// Share it between runs and tasks through `Arc` (the engine does). Dropping it waits for the
/// writes already queued to commit, then closes the file.
pub struct SqliteStore {
    // Declared first: dropping it finishes the queued writes before the readers close.
    writer: Writer,
    reads: Reads,
    /// Signal waits, and the one task that looks for deliveries by other processes.
    poller: Poller,
    counters: Arc<Counters>,
    path: Option<PathBuf>,
    options: SqliteOptions,
}

/// Where reads go.
enum Reads {
    /// Read connections to the file.
    Pool(Arc<ReadPool>),
    /// An in-memory database has only the writer's connection: reads queue behind writes.
    Writer,
}

/// Counters of the writer thread, for tests and monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WriterStats {
    /// Transactions committed.
    pub commits: u64,
    /// Writes (`open_run`, `save_step`, `update_run`, `deliver_signal`, claims, appends…)
    /// committed. More writes than commits means group commit put several writes in one
    /// transaction.
    pub writes: u64,
}

/// Builds a [`SqliteStore`] with options other than the defaults.
///
/// ```no_run
/// # async fn example() -> durably_core::Result<()> {
/// use std::time::Duration;
/// use durably_sqlite::{Durability, SqliteStore};
///
/// let store = SqliteStore::builder("app.db")
///     .durability(Durability::Normal)
///     .busy_timeout(Duration::from_secs(10))
///     .poll_interval(Duration::from_millis(50))
///     .open()
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `open` is awaited"]
pub struct SqliteStoreBuilder {
    path: PathBuf,
    options: SqliteOptions,
}

impl SqliteStoreBuilder {
    /// Replaces every option at once.
    pub fn options(mut self, options: SqliteOptions) -> Self {
        self.options = options;
        self
    }

    /// Sets what a returned write survives; see [`Durability`].
    pub fn durability(mut self, durability: Durability) -> Self {
        self.options = self.options.durability(durability);
        self
    }

    /// Sets how long one attempt waits for another connection's lock (default 5 s).
    pub fn busy_timeout(mut self, busy_timeout: Duration) -> Self {
        self.options = self.options.busy_timeout(busy_timeout);
        self
    }

    /// Sets how often the store looks for signals delivered by other processes to its waiting
    /// runs (default 5 ms).
    pub fn poll_interval(mut self, poll_interval: Duration) -> Self {
        self.options = self.options.poll_interval(poll_interval);
        self
    }

    /// Opens (creating if needed) the database and starts the writer thread.
    ///
    /// Fails with [`Error::Invalid`] if the file was written by a newer version of
    /// durably-sqlite (its schema version is above [`SCHEMA_VERSION`]), and with
    /// [`Error::Store`] naming the file if it cannot be created or opened.
    pub async fn open(self) -> Result<SqliteStore> {
        tokio::task::spawn_blocking(move || self.open_blocking())
            .await
            .map_err(|e| Error::store("open", None, e))?
    }

    fn open_blocking(self) -> Result<SqliteStore> {
        let path = (self.path.as_os_str() != MEMORY).then_some(self.path);
        let conn = connection::open_writer(path.as_deref(), &self.options)?;
        let counters = Arc::new(Counters::default());
        let writer = Writer::spawn(conn, Arc::clone(&counters)).map_err(|e| Error::store("open", None, e))?;
        let reads = match &path {
            Some(path) => Reads::Pool(Arc::new(ReadPool::new(path.clone(), &self.options))),
            None => Reads::Writer,
        };
        let poller = Poller::new(
            path.clone(),
            self.options.poll_interval,
            connection::reader_busy_timeout(&self.options),
        );
        tracing::debug!(path = ?path, durability = ?self.options.durability, "durably-sqlite: store opened");
        Ok(SqliteStore { writer, reads, poller, counters, path, options: self.options })
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` with the default options: full
    /// durability, 5 s busy timeout, 5 ms signal poll. See [`SqliteStoreBuilder::open`] for
    /// the errors.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        Self::builder(path).open().await
    }

    /// A builder for the database at `path` (`":memory:"` for a private in-memory database).
    pub fn builder(path: impl AsRef<Path>) -> SqliteStoreBuilder {
        SqliteStoreBuilder { path: path.as_ref().to_owned(), options: SqliteOptions::default() }
    }

    /// A private in-memory database, gone with the store: for tests and throw-away runs.
    pub async fn in_memory() -> Result<SqliteStore> {
        Self::builder(MEMORY).open().await
    }

    /// The database file, or `None` for an in-memory database.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &SqliteOptions {
        &self.options
    }

    /// What the writer thread has committed so far.
    pub fn stats(&self) -> WriterStats {
        WriterStats { commits: self.counters.commits(), writes: self.counters.writes() }
    }

    /// How many signals `wait_for_signal` callers wait on right now.
    pub fn runs_waited_on(&self) -> usize {
        self.poller.waited_on()
    }

    /// The value of `PRAGMA <name>` on the writing connection (per-connection settings such as
    /// `synchronous` cannot be seen from another connection). For this crate's tests.
    #[doc(hidden)]
    pub async fn writer_pragma(&self, name: &'static str) -> Result<String> {
        self.submit(false, "pragma", None, move |conn| {
            Ok(conn.pragma_query_value(None, name, |row| {
                Ok(match row.get_ref(0)? {
                    rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                    other => other.as_str().unwrap_or_default().to_owned(),
                })
            })?)
        })
        .await
    }

    /// Runs `work` on the writer thread (`write`: inside its group transaction) and awaits the
    /// reply, which comes after the commit.
    async fn submit<T, F>(&self, write: bool, op: &'static str, run_id: Option<&str>, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> Result<T, Fail> + Send + 'static,
    {
        let (job, reply) = Request::job(write, op, run_id, work);
        if !self.writer.send(job) {
            return Err(writer_gone(op, run_id));
        }
        reply.await.unwrap_or_else(|_| Err(writer_gone(op, run_id)))
    }

    async fn write<T, F>(&self, op: &'static str, run_id: &str, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> Result<T, Fail> + Send + 'static,
    {
        self.submit(true, op, Some(run_id), work).await
    }

    async fn read<T, F>(&self, op: &'static str, run_id: Option<&str>, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> Result<T, Fail> + Send + 'static,
    {
        match &self.reads {
            Reads::Writer => self.submit(false, op, run_id, work).await,
            Reads::Pool(pool) => {
                let pool = Arc::clone(pool);
                match tokio::task::spawn_blocking(move || pool.with(work)).await {
                    Ok(result) => result.map_err(|fail| fail.into_error(op, run_id)),
                    Err(e) => Err(Error::store(op, run_id, e)),
                }
            }
        }
    }
}

fn writer_gone(op: &'static str, run_id: Option<&str>) -> Error {
    Error::store_kind(StoreErrorKind::Transient, op, run_id, "the SQLite writer thread has stopped")
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("options", &self.options)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Journal for SqliteStore {
    async fn open_run(&self, run: NewRun) -> Result<RunHistory> {
        let run_id = run.run_id.clone();
        self.write("open_run", &run_id, move |conn| sql::open_run(conn, &run)).await
    }
    async fn save_step(&self, run_id: &str, step: &StepRecord) -> Result<()> {
        let (owned, step) = (run_id.to_owned(), step.clone());
        self.write("save_step", run_id, move |conn| sql::save_step(conn, &owned, &step)).await
    }
    /// One job of the writer: the step and the events share a savepoint, and the commit of
    /// whatever else the writer batched with them.
    async fn save_step_with_events(
        &self,
        run_id: &str,
        step: &StepRecord,
        events: &[NewEvent],
        keep: u64,
    ) -> Option<Result<()>> {
        let (owned, step, batch) = (run_id.to_owned(), step.clone(), events.to_vec());
        let written = self
            .write("save_step", run_id, move |conn| {
                sql::save_step(conn, &owned, &step)?;
                sql::append_events(conn, &owned, &batch, keep)
            })
            .await;
        Some(written.map(|first| self.poller.wake_events(run_id, first.saturating_add(events.len() as u64))))
    }
    async fn update_run(&self, run_id: &str, update: &RunUpdate) -> Result<()> {
        let (owned, update) = (run_id.to_owned(), update.clone());
        self.write("update_run", run_id, move |conn| sql::update_run(conn, &owned, &update)).await
    }
    async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        let owned = run_id.to_owned();
        self.read("get_run", Some(run_id), move |conn| sql::get_run(conn, &owned)).await
    }
    async fn list_steps(&self, run_id: &str) -> Result<Vec<StepRecord>> {
        let owned = run_id.to_owned();
        self.read("list_steps", Some(run_id), move |conn| sql::list_steps(conn, &owned)).await
    }
}

#[async_trait]
impl Signals for SqliteStore {
    async fn deliver_signal(&self, run_id: &str, signal: &SignalRecord) -> Result<bool> {
        let (owned, record) = (run_id.to_owned(), signal.clone());
        let delivery = self
            .write("deliver_signal", run_id, move |conn| sql::deliver_signal(conn, &owned, &record))
            .await?;
        if delivery.delivered {
            self.poller.wake(run_id, &signal.name);
        }
        if let Some(queue) = &delivery.unparked {
            self.poller.wake_work(queue);
        }
        Ok(delivery.delivered)
    }
    async fn get_signal(&self, run_id: &str, name: &str) -> Result<Option<String>> {
        let (owned, name) = (run_id.to_owned(), name.to_owned());
        self.read("get_signal", Some(run_id), move |conn| sql::get_signal(conn, &owned, &name)).await
    }
    async fn list_signals(&self, run_id: &str) -> Result<Vec<SignalRecord>> {
        let owned = run_id.to_owned();
        self.read("list_signals", Some(run_id), move |conn| sql::list_signals(conn, &owned)).await
    }
    /// Returns when the signal was delivered through this store, or the store's poller found it
    /// delivered by another process (it looks every poll interval for all waits at once), or
    /// after `max_wait`.
    async fn wait_for_signal(&self, run_id: &str, name: &str, max_wait: Duration) {
        // Register before looking, so that a delivery after the look wakes this wait.
        let waiting = self.poller.register(run_id, name);
        // Delivered already, or the store failed: the engine's own look will tell.
        let look = async { !matches!(self.get_signal(run_id, name).await, Ok(None)) };
        waiting.wait_unless(look, max_wait).await;
    }
}

#[async_trait]
impl Leases for SqliteStore {
    /// Takes or renews the lease in one write transaction on the writer thread, so that it is
    /// atomic against other stores and processes sharing the file. Times are `now_ms`, by the
    /// clock of the machine the processes share.
    async fn acquire_lease(
        &self,
        run_id: &str,
        owner: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<LeaseOutcome> {
        let (owned, owner) = (run_id.to_owned(), owner.to_owned());
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self.write("acquire_lease", run_id, move |conn| {
            sql::acquire_lease(conn, &owned, &owner, ttl_ms, now_ms)
        })
        .await
    }
    async fn release_lease(&self, run_id: &str, owner: &str) -> Result<()> {
        let (owned, owner) = (run_id.to_owned(), owner.to_owned());
        self.write("release_lease", run_id, move |conn| sql::release_lease(conn, &owned, &owner)).await
    }
    /// One write transaction on the writer thread for every lease, extending only `owner`'s.
    async fn renew_leases(
        &self,
        run_ids: &[String],
        owner: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<Vec<(String, Option<String>)>> {
        if run_ids.is_empty() {
            return Ok(Vec::new());
        }
        let (run_ids, owner) = (run_ids.to_vec(), owner.to_owned());
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self.submit(true, "renew_leases", None, move |conn| {
            sql::renew_leases(conn, &run_ids, &owner, ttl_ms, now_ms)
        })
        .await
    }
    /// One query for every id (they travel as one JSON array, so no list is too long).
    async fn cancelled_runs(&self, run_ids: &[String]) -> Result<Vec<String>> {
        if run_ids.is_empty() {
            return Ok(Vec::new());
        }
        let json = serde_json::to_string(run_ids).map_err(|e| Error::store("cancelled_runs", None, e))?;
        self.read("cancelled_runs", None, move |conn| sql::cancelled_runs(conn, &json)).await
    }
    async fn recoverable_runs(&self, now_ms: i64, limit: usize) -> Result<Vec<RunRecord>> {
        self.read("recoverable_runs", None, move |conn| sql::recoverable_runs(conn, now_ms, limit)).await
    }
    /// One conditional `UPDATE` on the writer thread: atomic against a cancellation written by
    /// another process sharing the file.
    async fn update_run_unless_cancelled(&self, run_id: &str, update: &RunUpdate) -> Result<bool> {
        let (owned, update) = (run_id.to_owned(), update.clone());
        self.write("update_run_unless_cancelled", run_id, move |conn| {
            sql::update_run_unless_cancelled(conn, &owned, &update)
        })
        .await
    }

    /// One writer job, so one transaction (and one commit) for the events and the status.
    async fn update_run_unless_cancelled_with_events(
        &self,
        run_id: &str,
        update: &RunUpdate,
        events: &[NewEvent],
        keep: u64,
    ) -> Option<Result<bool>> {
        let (owned, update, batch) = (run_id.to_owned(), update.clone(), events.to_vec());
        let written = self
            .write("update_run_unless_cancelled", run_id, move |conn| {
                let first = sql::append_events(conn, &owned, &batch, keep)?;
                sql::update_run_unless_cancelled(conn, &owned, &update).map(|applied| (first, applied))
            })
            .await;
        Some(written.map(|(first, applied)| {
            self.poller.wake_events(run_id, first.saturating_add(events.len() as u64));
            applied
        }))
    }
    /// One job of the writer: the events, the status and the lease's release share a
    /// savepoint, and the commit of whatever else the writer batched with them.
    async fn end_run(
        &self,
        run_id: &str,
        update: &RunUpdate,
        events: &[NewEvent],
        keep: u64,
        owner: &str,
    ) -> Option<Result<bool>> {
        let (owned, update, batch, owner) =
            (run_id.to_owned(), update.clone(), events.to_vec(), owner.to_owned());
        let written = self
            .write("update_run_unless_cancelled", run_id, move |conn| {
                let first = if batch.is_empty() {
                    None
                } else {
                    Some(sql::append_events(conn, &owned, &batch, keep)?)
                };
                let applied = sql::update_run_unless_cancelled(conn, &owned, &update)?;
                sql::release_lease(conn, &owned, &owner)?;
                Ok((first, applied))
            })
            .await;
        Some(written.map(|(first, applied)| {
            if let Some(first) = first {
                self.poller.wake_events(run_id, first.saturating_add(events.len() as u64));
            }
            applied
        }))
    }
    /// One job of the writer: the lease, then the run only if the lease was taken, in one
    /// savepoint and the commit of whatever else the writer batched with them.
    async fn open_run_leased(
        &self,
        new: &NewRun,
        owner: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Option<Result<LeasedOpen>> {
        let (new, owner) = (new.clone(), owner.to_owned());
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let run_id = new.run_id.clone();
        Some(
            self.write("open_run", &run_id, move |conn| {
                match sql::acquire_lease(conn, &new.run_id, &owner, ttl_ms, now_ms)? {
                    LeaseOutcome::Acquired => {
                        sql::open_run(conn, &new).map(|history| LeasedOpen::Opened(Box::new(history)))
                    }
                    LeaseOutcome::HeldBy(lease) => Ok(LeasedOpen::HeldBy(lease)),
                    other => Err(Fail::Message(format!("unexpected lease outcome {other:?}"))),
                }
            })
            .await,
        )
    }
}

#[async_trait]
impl Admin for SqliteStore {
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let filter = filter.clone();
        self.read("list_runs", None, move |conn| sql::list_runs(conn, &filter)).await
    }
    async fn delete_run(&self, run_id: &str) -> Result<bool> {
        let owned = run_id.to_owned();
        self.write("delete_run", run_id, move |conn| sql::delete_run(conn, &owned)).await
    }
}

/// Every write is one job of the writer thread, so it runs in a `BEGIN IMMEDIATE` transaction
/// holding the file's write lock: a claim's counts, choice and writes are one atomic step
/// against every store and process sharing the file. Times are the callers' `now_ms`, by the
/// clock of the machine the processes share, as for leases; a claim reads that clock again
/// under the lock (see `sql::claim_runs`).
#[async_trait]
impl Queues for SqliteStore {
    async fn enqueue(&self, run: &QueuedRun) -> Result<(RunRecord, bool)> {
        let queued = run.clone();
        let (stored, created) =
            self.write("enqueue", &run.run_id, move |conn| sql::enqueue(conn, &queued)).await?;
        if created {
            self.poller.wake_work(&run.queue);
        }
        Ok((stored, created))
    }

    async fn claim_runs(&self, claim: &Claim) -> Result<Vec<RunRecord>> {
        if claim.max == 0 {
            return Ok(Vec::new());
        }
        let request = claim.clone();
        self.submit(true, "claim_runs", None, move |conn| sql::claim_runs(conn, &request)).await
    }

    async fn park_run(
        &self,
        run_id: &str,
        owner: &str,
        waiting_on: &str,
        wake_at_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<bool> {
        let (owned, owner, waiting_on) = (run_id.to_owned(), owner.to_owned(), waiting_on.to_owned());
        let parked = self
            .write("park_run", run_id, move |conn| {
                sql::park_run(conn, &owned, &owner, &waiting_on, wake_at_ms, now_ms)
            })
            .await?;
        if let Some(queue) = &parked.runnable_in {
            self.poller.wake_work(queue);
        }
        Ok(parked.parked)
    }

    async fn queue_stats(&self, queue: &str, now_ms: i64) -> Result<QueueStats> {
        let queue = queue.to_owned();
        self.read("queue_stats", None, move |conn| sql::queue_stats(conn, &queue, now_ms)).await
    }

    async fn queue_names(&self) -> Result<Vec<String>> {
        self.read("queue_names", None, sql::queue_names).await
    }

    /// Returns when this store made work runnable in one of `queues`, or the poller found a
    /// runnable run there after another process wrote to the file, or after `max_wait`.
    async fn wait_for_work(&self, queues: &[String], max_wait: Duration) {
        if queues.is_empty() {
            tokio::time::sleep(max_wait).await;
            return;
        }
        let waiting: Vec<_> = queues.iter().map(|queue| self.poller.register_work(queue)).collect();
        let look = || async {
            let Ok(json) = serde_json::to_string(queues) else { return true };
            let now = durably_core::now_ms();
            let found =
                self.read("wait_for_work", None, move |conn| sql::runnable_queues(conn, &json, now)).await;
            // Work already, or the store failed: the worker's claim will tell.
            !matches!(found, Ok(queues) if queues.is_empty())
        };
        // The last wait looks: `select_all` polls the waits in order, so every wake-up is armed
        // before the look, and work made runnable after the look wakes one of them.
        let last = waiting.len() - 1;
        let waits = waiting
            .iter()
            .enumerate()
            .map(|(i, w)| Box::pin(w.wait_unless(async move { i == last && look().await }, max_wait)));
        futures::future::select_all(waits).await;
    }
}

/// Every call is a job of the writer thread, so an acquire's read of the log and its grant are
/// one step under the file's write lock, against every store and process sharing the file.
/// Times are the callers' `now_ms`, by the clock of the machine the processes share, as for
/// leases and queue rates.
#[async_trait]
impl RateLimits for SqliteStore {
    async fn acquire_rate(&self, acquire: &RateAcquire) -> Result<RateDecision> {
        acquire.limit.check(&acquire.key, acquire.cost)?;
        let request = acquire.clone();
        self.submit(true, "acquire_rate", None, move |conn| sql::acquire_rate(conn, &request)).await
    }

    async fn settle_rate(&self, key: &str, grant_id: &str, actual: RateCost, now_ms: i64) -> Result<()> {
        let (key, grant_id) = (key.to_owned(), grant_id.to_owned());
        self.submit(true, "settle_rate", None, move |conn| {
            sql::settle_rate(conn, &key, &grant_id, actual, now_ms)
        })
        .await
    }

    async fn block_rate(&self, key: &str, duration: Duration, now_ms: i64) -> Result<()> {
        let key = key.to_owned();
        let until = now_ms.saturating_add(durably_core::store::duration_ms(duration));
        self.submit(true, "block_rate", None, move |conn| sql::block_rate(conn, &key, until)).await
    }
}

/// Appends are writes of the writer thread: the next offset is read and the events written in
/// one transaction under the file's write lock, so concurrent appends never share an offset.
#[async_trait]
impl Events for SqliteStore {
    async fn append_events(&self, run_id: &str, events: &[NewEvent], keep: u64) -> Result<u64> {
        let (owned, batch) = (run_id.to_owned(), events.to_vec());
        let first = self
            .write("append_events", run_id, move |conn| sql::append_events(conn, &owned, &batch, keep))
            .await?;
        self.poller.wake_events(run_id, first.saturating_add(events.len() as u64));
        Ok(first)
    }

    async fn read_events(&self, run_id: &str, from: u64, limit: usize) -> Result<Vec<EventRecord>> {
        let owned = run_id.to_owned();
        self.read("read_events", Some(run_id), move |conn| sql::read_events(conn, &owned, from, limit)).await
    }

    /// Returns when this store appended at or past `from`, or the poller found such an event
    /// appended by another process, or after `max_wait`.
    async fn wait_for_events(&self, run_id: &str, from: u64, max_wait: Duration) {
        let waiting = self.poller.register_events(run_id, from);
        let look = async {
            // Appended already, or the store failed: the reader's own read will tell.
            !matches!(self.read_events(run_id, from, 1).await, Ok(events) if events.is_empty())
        };
        waiting.wait_unless(look, max_wait).await;
    }
}
