//! The writer thread: the one connection that writes, and group commit.
//!
//! Callers send jobs over a channel and await a oneshot reply. The thread takes the first job,
//! drains whatever else is already queued (it never waits to collect more), runs all the writes
//! in one `BEGIN IMMEDIATE` transaction, commits once, and only then replies to each caller: a
//! reply means the write is durable. With several jobs in a batch each runs under its own
//! `SAVEPOINT`, so a failing job is rolled back alone and the others still commit. A batch of
//! one (the sequential case) runs without savepoints, so a lone write costs one transaction and
//! nothing more.
//!
//! `SQLITE_BUSY` (another store or process holds the write lock beyond `busy_timeout`) is retried
//! with a short backoff; a batch that fails for another reason as a whole (the transaction is
//! lost, the commit fails) is retried job by job so that one bad job cannot fail its neighbours.
//!
//! When every sender is gone (the store was dropped) the thread finishes the queued jobs and
//! ends; the store joins it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use durably_core::{Error, Result};
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::sql::Fail;

/// The most jobs committed in one transaction: bounds the latency of the first job of a burst.
const MAX_BATCH: usize = 1024;

/// How many times an operation that found the database locked is tried again, after the
/// `busy_timeout` that SQLite already waited inside each attempt.
pub(crate) const BUSY_RETRIES: u32 = 8;

/// The pause before retry `attempt` (0-based) of a locked operation: 5 ms doubling, at most 500 ms.
pub(crate) fn busy_backoff(attempt: u32) -> Duration {
    Duration::from_millis(5u64.saturating_mul(1 << attempt.min(10))).min(Duration::from_millis(500))
}

/// Runs `f`, retrying while it fails with `SQLITE_BUSY`. A lock that outlasts every retry
/// becomes a message saying so, never SQLite's bare "database is locked".
pub(crate) fn retry_busy<T>(mut f: impl FnMut() -> Result<T, Fail>) -> Result<T, Fail> {
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        match f() {
            Err(fail) if fail.is_busy() => {
                if attempt >= BUSY_RETRIES {
                    return Err(locked_too_long(started.elapsed(), attempt + 1));
                }
                tracing::debug!(attempt, "durably-sqlite: database busy, retrying");
                thread::sleep(busy_backoff(attempt));
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn locked_too_long(elapsed: Duration, attempts: u32) -> Fail {
    Fail::Message(format!(
        "another connection kept the database file locked for {:.1} s ({attempts} attempts); \
         is another process holding a long transaction on it?",
        elapsed.as_secs_f64()
    ))
}

/// Counters of the writer thread.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    commits: AtomicU64,
    writes: AtomicU64,
}

impl Counters {
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
    pub(crate) fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
}

/// One request to the writer thread.
pub(crate) trait Job: Send {
    /// Writes run in the batch's transaction; reads (of an in-memory database, which has no
    /// other connection) run after it.
    fn is_write(&self) -> bool;
    /// Runs the work on `conn`, keeping the outcome; true if it succeeded.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Whether the kept outcome is a `SQLITE_BUSY` failure.
    fn busy(&self) -> bool;
    /// Replaces the outcome with a failure, unless the job had already failed on its own.
    fn fail(&mut self, fail: Fail);
    /// Sends the outcome to the caller.
    fn reply(self: Box<Self>);
}

/// A job running a closure and replying through a oneshot channel.
pub(crate) struct Request<T, F> {
    write: bool,
    op: &'static str,
    run_id: Option<String>,
    work: F,
    outcome: Option<Result<T, Fail>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> Request<T, F>
where
    T: Send + 'static,
    F: FnMut(&Connection) -> Result<T, Fail> + Send + 'static,
{
    /// A job, and the receiver of its reply.
    pub(crate) fn job(
        write: bool,
        op: &'static str,
        run_id: Option<&str>,
        work: F,
    ) -> (Box<dyn Job>, oneshot::Receiver<Result<T>>) {
        let (reply, rx) = oneshot::channel();
        let job = Request { write, op, run_id: run_id.map(str::to_owned), work, outcome: None, reply };
        (Box::new(job), rx)
    }
}

impl<T, F> Job for Request<T, F>
where
    T: Send + 'static,
    F: FnMut(&Connection) -> Result<T, Fail> + Send + 'static,
{
    fn is_write(&self) -> bool {
        self.write
    }

    fn run(&mut self, conn: &Connection) -> bool {
        let outcome = (self.work)(conn);
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn busy(&self) -> bool {
        matches!(&self.outcome, Some(Err(fail)) if fail.is_busy())
    }

    fn fail(&mut self, fail: Fail) {
        if !matches!(&self.outcome, Some(Err(f)) if !f.is_busy()) {
            self.outcome = Some(Err(fail));
        }
    }

    fn reply(self: Box<Self>) {
        let this = *self;
        let result = match this.outcome {
            Some(Ok(value)) => Ok(value),
            Some(Err(fail)) => Err(fail.into_error(this.op, this.run_id.as_deref())),
            None => {
                Err(Error::store(this.op, this.run_id.as_deref(), "the SQLite writer never ran this request"))
            }
        };
        // The caller may have stopped waiting (its future was dropped): the write stands anyway.
        let _ = this.reply.send(result);
    }
}

/// The handle on the writer thread: a sender of jobs, and the thread to join on drop.
pub(crate) struct Writer {
    jobs: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub(crate) fn spawn(conn: Connection, counters: Arc<Counters>) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>();
        let thread = thread::Builder::new()
            .name("durably-sqlite-writer".to_owned())
            .spawn(move || run_writer(conn, &rx, &counters))?;
        Ok(Writer { jobs: Some(tx), thread: Some(thread) })
    }

    /// Queues a job; false if the thread is gone.
    pub(crate) fn send(&self, job: Box<dyn Job>) -> bool {
        self.jobs.as_ref().is_some_and(|tx| tx.send(job).is_ok())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel lets the thread finish what is queued, then return.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take()
            && thread.thread().id() != thread::current().id()
            && thread.join().is_err()
        {
            tracing::error!("durably-sqlite: the writer thread panicked");
        }
    }
}

fn run_writer(mut conn: Connection, rx: &mpsc::Receiver<Box<dyn Job>>, counters: &Counters) {
    // `recv` keeps returning queued jobs after the senders are gone, and fails only then.
    while let Some(first) = next_job(rx) {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (mut writes, reads): (Vec<_>, Vec<_>) = batch.into_iter().partition(|job| job.is_write());
        if !writes.is_empty() {
            commit_group(&mut conn, &mut writes, counters);
            for job in writes {
                job.reply();
            }
        }
        for mut job in reads {
            run_read(&conn, job.as_mut());
            job.reply();
        }
    }
    tracing::debug!("durably-sqlite: writer thread finished");
}

/// How long the writer polls for the next job before it blocks. A run awaiting its steps one
/// by one sends the next write a few microseconds after the previous reply; catching it
/// without sleeping saves the thread's wake-up, a large part of a write's cost under
/// `synchronous = NORMAL`. It delays no commit: a queued job is taken at once.
const SPIN: Duration = Duration::from_micros(50);

/// The next job, or `None` once every sender is gone and the queue is empty.
fn next_job(rx: &mpsc::Receiver<Box<dyn Job>>) -> Option<Box<dyn Job>> {
    let started = Instant::now();
    while started.elapsed() < SPIN {
        match rx.try_recv() {
            Ok(job) => return Some(job),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) => thread::yield_now(),
        }
    }
    rx.recv().ok()
}

/// Runs a read job (of an in-memory database), retrying while the database is busy.
fn run_read(conn: &Connection, job: &mut dyn Job) {
    let started = Instant::now();
    let mut attempt = 0;
    while !job.run(conn) && job.busy() {
        if attempt >= BUSY_RETRIES {
            job.fail(locked_too_long(started.elapsed(), attempt + 1));
            return;
        }
        thread::sleep(busy_backoff(attempt));
        attempt += 1;
    }
}

/// How a whole batch failed.
enum GroupFail {
    /// The database was locked: roll back, wait, run the batch again.
    Busy,
    /// Anything else at the batch level: roll back, then run the jobs one by one.
    Other(Fail),
}

fn classify(e: rusqlite::Error) -> GroupFail {
    if crate::sql::is_busy(&e) { GroupFail::Busy } else { GroupFail::Other(Fail::Sql(e)) }
}

fn exec(conn: &Connection, sql: &str) -> Result<(), GroupFail> {
    conn.prepare_cached(sql).and_then(|mut stmt| stmt.execute([])).map(drop).map_err(classify)
}

/// Undoes an open transaction, if SQLite has not already.
fn rollback(conn: &Connection) {
    if !conn.is_autocommit()
        && let Err(e) = conn.execute_batch("ROLLBACK")
    {
        tracing::warn!(error = %e, "durably-sqlite: rollback failed");
    }
}

/// Runs `jobs` in transactions until each has an outcome that was committed (or failed).
fn commit_group(conn: &mut Connection, jobs: &mut [Box<dyn Job>], counters: &Counters) {
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        match try_group(conn, jobs) {
            Ok(committed) => {
                if committed > 0 {
                    counters.commits.fetch_add(1, Ordering::Relaxed);
                    counters.writes.fetch_add(committed, Ordering::Relaxed);
                }
                return;
            }
            Err(GroupFail::Busy) if attempt < BUSY_RETRIES => {
                tracing::debug!(
                    attempt,
                    jobs = jobs.len(),
                    "durably-sqlite: database busy, retrying the batch"
                );
                thread::sleep(busy_backoff(attempt));
                attempt += 1;
            }
            Err(GroupFail::Busy) => {
                for job in jobs.iter_mut() {
                    job.fail(locked_too_long(started.elapsed(), attempt + 1));
                }
                return;
            }
            Err(GroupFail::Other(fail)) => {
                if let [job] = jobs {
                    job.fail(fail);
                    return;
                }
                tracing::warn!(error = %fail, jobs = jobs.len(), "durably-sqlite: batch failed, retrying one by one");
                for job in jobs.iter_mut() {
                    commit_group(conn, std::slice::from_mut(job), counters);
                }
                return;
            }
        }
    }
}

/// One transaction over `jobs`; the number of jobs whose writes it committed.
fn try_group(conn: &Connection, jobs: &mut [Box<dyn Job>]) -> Result<u64, GroupFail> {
    exec(conn, "BEGIN IMMEDIATE")?;
    match run_jobs(conn, jobs) {
        Ok(0) => {
            rollback(conn);
            Ok(0)
        }
        Ok(succeeded) => match exec(conn, "COMMIT") {
            Ok(()) => Ok(succeeded),
            Err(e) => {
                rollback(conn);
                Err(e)
            }
        },
        Err(e) => {
            rollback(conn);
            Err(e)
        }
    }
}

/// Runs each job inside the open transaction; the number that succeeded.
fn run_jobs(conn: &Connection, jobs: &mut [Box<dyn Job>]) -> Result<u64, GroupFail> {
    let savepoints = jobs.len() > 1;
    let mut succeeded = 0;
    for job in jobs.iter_mut() {
        if savepoints {
            exec(conn, "SAVEPOINT job")?;
        }
        let ok = job.run(conn);
        if job.busy() {
            return Err(GroupFail::Busy);
        }
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (disk full, I/O error): what the earlier
            // jobs wrote is gone, so the batch as a whole has failed.
            return Err(GroupFail::Other(Fail::Message(
                "SQLite rolled back the transaction after an error".to_owned(),
            )));
        }
        if ok {
            succeeded += 1;
            if savepoints {
                exec(conn, "RELEASE job")?;
            }
        } else if savepoints {
            exec(conn, "ROLLBACK TO job")?;
            exec(conn, "RELEASE job")?;
        }
    }
    Ok(succeeded)
}
