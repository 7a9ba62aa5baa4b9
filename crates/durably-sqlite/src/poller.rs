//! Signal wake-ups: one poller per store, instead of one poll per waiting run.
//!
//! A `wait_for_signal` call registers its `(run_id, name)` here and waits on the registration's
//! [`Notify`]. A delivery through this store wakes its waiters at once. Deliveries by other
//! processes (or other stores on the same file) are found by one task per store, every
//! `poll_interval`: it reads `PRAGMA data_version` on a connection of its own, which changes
//! only when another connection committed, and only then asks, in one query, which of the
//! registered pairs were delivered, and wakes their waiters. While nothing is written a poll
//! costs one pragma, however many runs wait. The task starts with the first registration and
//! ends when none is left or the store is dropped. An in-memory database has no other
//! connection, so it needs no task.
//!
//! A wake-up only means "look again": the engine reads the signal itself. A wait registers
//! before its own last look, and the task reads `data_version` before it takes the registered
//! pairs, so a delivery committed after that look changes the version the task saw last and is
//! found by its next query.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::connection::open_reader;
use crate::sql::{self, Fail};
use crate::writer::retry_busy;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the maps consistent; a poisoned lock is usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The signal waits of one store, and its poll task.
pub(crate) struct Poller {
    shared: Arc<Shared>,
    /// The database file the task reads; `None` for an in-memory database.
    path: Option<PathBuf>,
    interval: Duration,
    busy_timeout: Duration,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Each awaited `(run_id, name)`, with how many waits share it.
    waits: HashMap<(String, String), (Arc<Notify>, usize)>,
    /// The running task: its number (a task that ends frees the slot only if no newer one took
    /// it) and a handle to stop it when the store is dropped.
    task: Option<(u64, AbortHandle)>,
    tasks_started: u64,
}

/// One wait, registered until dropped.
pub(crate) struct Registration {
    shared: Arc<Shared>,
    key: (String, String),
    notify: Arc<Notify>,
}

impl Registration {
    /// Notified when the signal may have been delivered.
    pub(crate) fn notify(&self) -> &Notify {
        &self.notify
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        if let Some((_, count)) = state.waits.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                state.waits.remove(&self.key);
            }
        }
    }
}

impl Poller {
    pub(crate) fn new(path: Option<PathBuf>, interval: Duration, busy_timeout: Duration) -> Self {
        Poller { shared: Arc::default(), path, interval, busy_timeout }
    }

    /// Registers a wait for signal `name` of `run_id`, and starts the poll task if it is not
    /// running.
    pub(crate) fn register(&self, run_id: &str, name: &str) -> Registration {
        let key = (run_id.to_owned(), name.to_owned());
        let mut state = lock(&self.shared.state);
        let entry = state.waits.entry(key.clone()).or_insert_with(|| (Arc::new(Notify::new()), 0));
        entry.1 += 1;
        let notify = entry.0.clone();
        if state.task.is_none()
            && let Some(path) = &self.path
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            state.tasks_started += 1;
            let number = state.tasks_started;
            let look = Look {
                shared: Arc::downgrade(&self.shared),
                path: path.clone(),
                busy_timeout: self.busy_timeout,
            };
            let handle = runtime.spawn(poll(look, self.interval, number));
            state.task = Some((number, handle.abort_handle()));
        }
        drop(state);
        Registration { shared: self.shared.clone(), key, notify }
    }

    /// Wakes the waits for signal `name` of `run_id` (delivered through this store).
    pub(crate) fn wake(&self, run_id: &str, name: &str) {
        let state = lock(&self.shared.state);
        if let Some((notify, _)) = state.waits.get(&(run_id.to_owned(), name.to_owned())) {
            notify.notify_waiters();
        }
    }

    /// How many distinct signals are waited on.
    pub(crate) fn waited_on(&self) -> usize {
        lock(&self.shared.state).waits.len()
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        if let Some((_, task)) = lock(&self.shared.state).task.take() {
            task.abort();
        }
    }
}

/// What the poll task needs to look.
struct Look {
    shared: Weak<Shared>,
    path: PathBuf,
    busy_timeout: Duration,
}

/// Frees the task slot when the task ends however it ends (returned, aborted, or dropped with
/// its runtime), unless a newer task took it.
struct TaskEnd {
    shared: Weak<Shared>,
    number: u64,
}

impl Drop for TaskEnd {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            let mut state = lock(&shared.state);
            if state.task.as_ref().is_some_and(|(n, _)| *n == self.number) {
                state.task = None;
            }
        }
    }
}

/// The poll task: every `interval`, one look on its own connection, until no wait is left.
async fn poll(look: Look, interval: Duration, number: u64) {
    let _end = TaskEnd { shared: look.shared.clone(), number };
    let look = Arc::new(look);
    let mut conn: Option<Connection> = None;
    let mut seen: Option<i64> = None;
    let mut failing = false;
    loop {
        tokio::time::sleep(interval).await;
        {
            let Some(shared) = look.shared.upgrade() else { return };
            let mut state = lock(&shared.state);
            if state.waits.is_empty() {
                if state.task.as_ref().is_some_and(|(n, _)| *n == number) {
                    state.task = None;
                }
                return;
            }
        }
        let (look_now, held) = (look.clone(), conn.take());
        let outcome = tokio::task::spawn_blocking(move || look_now.once(held, seen)).await;
        match outcome {
            Ok((held, Ok(version))) => {
                conn = held;
                seen = Some(version);
                failing = false;
            }
            Ok((held, Err(fail))) => {
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
            Err(e) => {
                seen = None;
                tracing::warn!(error = %e, "durably-sqlite: the signal poll stopped unexpectedly; trying again");
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
        let Some(shared) = self.shared.upgrade() else { return Ok(version) };
        let pairs: Vec<[String; 2]> =
            lock(&shared.state).waits.keys().map(|(run_id, name)| [run_id.clone(), name.clone()]).collect();
        if pairs.is_empty() {
            return Ok(version);
        }
        let json = serde_json::to_string(&pairs)
            .map_err(|e| Fail::Message(format!("cannot encode the awaited signals: {e}")))?;
        let delivered = retry_busy(|| sql::delivered_among(conn, &json))?;
        let state = lock(&shared.state);
        for key in delivered {
            if let Some((notify, _)) = state.waits.get(&key) {
                notify.notify_waiters();
            }
        }
        Ok(version)
    }
}
