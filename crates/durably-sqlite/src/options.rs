//! The settings of a [`SqliteStore`](crate::SqliteStore): how durable a commit is, how long to
//! wait for another process's lock, how often to look for signals from other processes.

use std::time::Duration;

/// How much a returned write survives, mapped to SQLite's `PRAGMA synchronous` (the journal is
/// always WAL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Durability {
    /// `synchronous = FULL`: every commit is flushed to the disk (`fsync`) before the write
    /// returns, so a finished step survives a process crash *and* a power cut or OS crash.
    /// The default.
    #[default]
    Full,
    /// `synchronous = NORMAL`: commits reach the operating system but the disk is flushed only
    /// at checkpoints. A finished step survives a crash of the process; after a power cut or an
    /// OS crash the most recent commits may be lost (the database stays consistent, and the
    /// lost steps simply run again). Several times faster on disks with slow flushes.
    Normal,
}

impl Durability {
    /// The value given to `PRAGMA synchronous`.
    pub fn synchronous(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
}

/// Options of a [`SqliteStore`](crate::SqliteStore); pass them to
/// [`SqliteStoreBuilder::options`](crate::SqliteStoreBuilder::options) or set them one by one
/// on the builder.
///
/// ```
/// use std::time::Duration;
/// use durably_sqlite::{Durability, SqliteOptions};
///
/// let options = SqliteOptions::default()
///     .durability(Durability::Normal)
///     .poll_interval(Duration::from_millis(50));
/// assert_eq!(options.busy_timeout, Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// What a returned write survives. Default: [`Durability::Full`].
    pub durability: Durability,
    /// How long one attempt waits for a lock held by another connection (another store on the
    /// same file, another process) before backing off and trying again. Default: 5 s.
    pub busy_timeout: Duration,
    /// How often the store looks for signals delivered by another process to the runs waiting
    /// on it: one look for all of them, a single pragma while the file is unchanged, on one
    /// thread that runs only while some run waits. Deliveries through the store wake waiters at
    /// once. Default: 5 ms.
    pub poll_interval: Duration,
}

/// How often a store looks for signals delivered by other processes, unless set.
pub(crate) const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(5);

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            durability: Durability::Full,
            busy_timeout: Duration::from_secs(5),
            poll_interval: DEFAULT_POLL_INTERVAL,
        }
    }
}

impl SqliteOptions {
    /// The defaults: full durability, 5 s busy timeout, 5 ms signal poll.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets what a returned write survives.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets how long one attempt waits for another connection's lock.
    pub fn busy_timeout(mut self, busy_timeout: Duration) -> Self {
        self.busy_timeout = busy_timeout;
        self
    }

    /// Sets how often the store looks for signals delivered by other processes.
    pub fn poll_interval(mut self, poll_interval: Duration) -> Self {
        self.poll_interval = poll_interval;
        self
    }
}
