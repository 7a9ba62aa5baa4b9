//! Wake-ups: one poller per store, instead of one poll per waiting run, worker or reader.
//!
//! A `wait_for_signal` call registers its `(run_id, name)` in the store's [`WaitRegistry`] and
//! waits to be woken. A delivery through this store wakes its waiters at once. Deliveries by other
//! processes (or other stores on the same file) are found by one thread per store, every
//! `poll_interval`: it reads `PRAGMA data_version` on a connection of its own, which changes
//! only when another connection committed, and only then asks, in one query, which of the
//! registered pairs were delivered, and wakes their waiters. While nothing is written a poll
//! costs one pragma, however many runs wait. The thread starts with the first registration and
//! ends when none is left or the store is dropped. An in-memory database has no other
//! connection, so it needs no thread.
//!
//! A wake-up only means "look again": the engine reads the signal itself. A wait registers
//! before its own last look, and the thread reads `data_version` before it takes the registered
//! pairs, so a delivery committed after that look changes the version the thread saw last and is
//! found by its next query.
//!
//! The same thread serves `wait_for_work` (by queue: it asks which waited queues have a runnable
//! run) and `wait_for_events` (by run and offset: it asks which logs reached the offset).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use durably_core::store::{WaitRegistry, Waiting};
use rusqlite::Connection;

use crate::connection::open_reader;
use crate::sql::{self, Fail};
use crate::writer::retry_busy;

/// What a wait is for: a run id and a signal name.
pub(crate) type Key = (String, String);

/// What an events wait is for: a run id and the offset it waits to exist.
pub(crate) type EventKey = (String, u64);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the slot consistent; a poisoned lock is usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The waits of one store, and its poll thread.
pub(crate) struct Poller {
    waits: Waits,
    task: Arc<Mutex<TaskSlot>>,
    /// The database file the thread reads; `None` for an in-memory database.
    path: Option<PathBuf>,
    interval: Duration,
    busy_timeout: Duration,
}

/// The running thread: its number (a thread that ends frees the slot only if no newer one took
/// it) and the flag that stops it when the store is dropped.
#[derive(Default)]
struct TaskSlot {
    running: Option<(u64, Arc<AtomicBool>)>,
    started: u64,
}

/// Every registry of waits of one store.
#[derive(Clone, Default)]
struct Waits {
    signals: WaitRegistry<Key>,
    work: WaitRegistry<String>,
    events: WaitRegistry<EventKey>,
}

impl Waits {
    fn is_empty(&self) -> bool {
        self.signals.is_empty() && self.work.is_empty() && self.events.is_empty()
    }
}

impl Poller {
    pub(crate) fn new(path: Option<PathBuf>, interval: Duration, busy_timeout: Duration) -> Self {
        Poller { waits: Waits::default(), task: Arc::default(), path, interval, busy_timeout }
    }

    /// Registers a wait for signal `name` of `run_id`, and starts the poll thread if it is not
    /// running.
    pub(crate) fn register(&self, run_id: &str, name: &str) -> Waiting<Key> {
        // Registered before the slot is read: a thread that is ending either still sees this wait
        // (and goes on) or has freed the slot by then (and a new one starts here).
        let waiting = self.waits.signals.register((run_id.to_owned(), name.to_owned()));
        self.ensure_thread();
        waiting
    }

    /// Registers a wait for work in `queue` (see [`register`](Self::register)).
    pub(crate) fn register_work(&self, queue: &str) -> Waiting<String> {
        let waiting = self.waits.work.register(queue.to_owned());
        self.ensure_thread();
        waiting
    }

    /// Registers a wait for an event at offset `from` of `run_id`'s log (see
    /// [`register`](Self::register)).
    pub(crate) fn register_events(&self, run_id: &str, from: u64) -> Waiting<EventKey> {
        let waiting = self.waits.events.register((run_id.to_owned(), from));
        self.ensure_thread();
        waiting
    }

    /// Starts the poll thread unless it runs (or the database is in memory).
    fn ensure_thread(&self) {
        let mut slot = lock(&self.task);
        if slot.running.is_none()
            && let Some(path) = &self.path
        {
            slot.started += 1;
            let number = slot.started;
            let look = Look {
                waits: self.waits.clone(),
                slot: Arc::downgrade(&self.task),
                path: path.clone(),
                busy_timeout: self.busy_timeout,
            };
            let stop = Arc::new(AtomicBool::new(false));
            let (interval, flag) = (self.interval, stop.clone());
            let spawned = std::thread::Builder::new()
                .name("durably-poll".into())
                .spawn(move || poll(look, interval, number, flag));
            match spawned {
                Ok(_) => slot.running = Some((number, stop)),
                // The waits still end by their own deadlines; the next registration tries again.
                Err(e) => tracing::warn!(error = %e, "durably-sqlite: cannot start the signal poll thread"),
            }
        }
    }

    /// Wakes the waits for signal `name` of `run_id` (delivered through this store).
    pub(crate) fn wake(&self, run_id: &str, name: &str) {
        self.waits.signals.wake(&(run_id.to_owned(), name.to_owned()));
    }

    /// Wakes the waits for work in `queue` (made runnable through this store).
    pub(crate) fn wake_work(&self, queue: &str) {
        self.waits.work.wake(queue);
    }

    /// Wakes the waits for events of `run_id` below offset `end` (appended through this store).
    pub(crate) fn wake_events(&self, run_id: &str, end: u64) {
        for key in self.waits.events.keys() {
            if key.0 == run_id && key.1 < end {
                self.waits.events.wake(&key);
            }
        }
    }

    /// How many distinct signals are waited on.
    pub(crate) fn waited_on(&self) -> usize {
        self.waits.signals.len()
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        if let Some((_, stop)) = lock(&self.task).running.take() {
            stop.store(true, Ordering::Release);
        }
    }
}

/// What the poll thread needs to look.
struct Look {
    waits: Waits,
    /// The store's thread slot; gone with the store.
    slot: Weak<Mutex<TaskSlot>>,
    path: PathBuf,
    busy_timeout: Duration,
}

/// Frees the slot when the thread ends however it ends (returned or unwound), unless a newer
/// thread took it.
struct TaskEnd {
    slot: Weak<Mutex<TaskSlot>>,
    number: u64,
}

impl Drop for TaskEnd {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.upgrade() {
            let mut slot = lock(&slot);
            if slot.running.as_ref().is_some_and(|(n, _)| *n == self.number) {
                slot.running = None;
            }
        }
    }
}

/// The poll thread: every `interval`, one look on its own connection, until no wait is left or
/// the store is dropped. A thread, not a task: a look is a blocking SQLite call, and a thread
/// that sleeps costs one wake-up per tick, where a task would hand each look to the blocking
/// pool.
fn poll(look: Look, interval: Duration, number: u64, stop: Arc<AtomicBool>) {
    let _end = TaskEnd { slot: look.slot.clone(), number };
    let mut conn: Option<Connection> = None;
    let mut seen: Option<i64> = None;
    let mut failing = false;
    loop {
        std::thread::sleep(interval);
        if stop.load(Ordering::Acquire) {
            return;
        }
        {
            let Some(slot) = look.slot.upgrade() else { return };
            // Checked with the slot held, so a wait registered meanwhile finds the slot free.
            let mut slot = lock(&slot);
            if look.waits.is_empty() {
                if slot.running.as_ref().is_some_and(|(n, _)| *n == number) {
                    slot.running = None;
                }
                return;
            }
        }
        let (held, outcome) = look.once(conn.take(), seen);
        match outcome {
            Ok(version) => {
                conn = held;
                seen = Some(version);
                failing = false;
            }
            Err(fail) => {
                // A fresh connection next time, whose `data_version` starts anew; the waits' own
                // deadlines bound what is missed meanwhile.
                drop(held);
                seen = None;
                if !failing {
                    tracing::warn!(
                        path = %look.path.display(), error = %fail,
                        "durably-sqlite: could not look for signals delivered by other processes; trying again"
                    );
                }
                failing = true;
            }
        }
    }
}

impl Look {
    /// Reads `data_version`; if it changed since `seen`, finds the delivered signals among the
    /// waited ones and wakes their waits. Returns the connection (to reuse) and the version.
    fn once(&self, conn: Option<Connection>, seen: Option<i64>) -> (Option<Connection>, Result<i64, Fail>) {
        let conn = match conn {
            Some(conn) => conn,
            None => match open_reader(&self.path, self.busy_timeout) {
                Ok(conn) => conn,
                Err(fail) => return (None, Err(fail)),
            },
        };
        let result = self.look(&conn, seen);
        (Some(conn), result)
    }

    fn look(&self, conn: &Connection, seen: Option<i64>) -> Result<i64, Fail> {
        let version: i64 =
            retry_busy(|| Ok(conn.pragma_query_value(None, "data_version", |row| row.get(0))?))?;
        if seen == Some(version) {
            return Ok(version);
        }
        // Taken after the version was read: a wait registered meanwhile is asked about now.
        let pairs: Vec<[String; 2]> =
            self.waits.signals.keys().into_iter().map(|(run_id, name)| [run_id, name]).collect();
        if !pairs.is_empty() {
            let json = encoded(serde_json::to_string(&pairs))?;
            for key in retry_busy(|| sql::delivered_among(conn, &json))? {
                self.waits.signals.wake(&key);
            }
        }
        let queues = self.waits.work.keys();
        if !queues.is_empty() {
            let json = encoded(serde_json::to_string(&queues))?;
            let now = durably_core::now_ms();
            for queue in retry_busy(|| sql::runnable_queues(conn, &json, now))? {
                self.waits.work.wake(&queue);
            }
        }
        // An offset beyond what SQLite's integers hold is never reached: not asked about.
        let reads: Vec<(String, i64)> = self
            .waits
            .events
            .keys()
            .into_iter()
            .filter_map(|(run_id, from)| i64::try_from(from).ok().map(|from| (run_id, from)))
            .collect();
        if !reads.is_empty() {
            let json = encoded(serde_json::to_string(&reads))?;
            for key in retry_busy(|| sql::events_among(conn, &json))? {
                self.waits.events.wake(&key);
            }
        }
        Ok(version)
    }
}

/// The JSON array a poll query takes its keys from.
fn encoded(json: serde_json::Result<String>) -> Result<String, Fail> {
    json.map_err(|e| Fail::Message(format!("cannot encode the awaited keys: {e}")))
}
