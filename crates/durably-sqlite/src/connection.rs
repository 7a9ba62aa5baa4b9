//! Opening connections: the database file (created owner-only), the pragmas, the schema and its
//! version, and the pool of read connections.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use durably_core::{BoxError, Error, Result, StoreErrorKind};
use rusqlite::{Connection, OpenFlags};

use crate::options::SqliteOptions;
use crate::sql::{Fail, SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_VERSION, kind_of};
use crate::writer::retry_busy;

/// How many idle read connections the pool keeps.
const MAX_IDLE_READERS: usize = 4;

/// Cached prepared statements per connection: every statement of the store fits, with the 16
/// filter combinations of `list_runs`.
const STATEMENT_CACHE: usize = 64;

/// An error while opening the database, naming the file.
#[derive(Debug)]
struct OpenError {
    path: PathBuf,
    doing: &'static str,
    source: BoxError,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot {} SQLite database `{}`: {}", self.doing, self.path.display(), self.source)
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

fn open_error(path: &Path, doing: &'static str, source: impl Into<BoxError>) -> Error {
    let source: BoxError = source.into();
    let kind = source.downcast_ref::<rusqlite::Error>().map_or(StoreErrorKind::Other, kind_of);
    Error::store_kind(kind, "open", None, OpenError { path: path.to_owned(), doing, source })
}

fn fail_error(path: &Path, doing: &'static str, fail: Fail) -> Error {
    match fail {
        Fail::Sql(e) => open_error(path, doing, e),
        Fail::Store(e) => e,
        Fail::Message(m) => open_error(path, doing, m),
    }
}

/// `busy_timeout` as SQLite takes it (whole milliseconds in an `i32`).
fn busy_timeout(timeout: Duration) -> Duration {
    timeout.min(Duration::from_millis(i32::MAX as u64))
}

/// Creates the file readable and writable by its owner only, if it does not exist. SQLite gives
/// its `-wal` and `-shm` files the same permissions as the database file.
fn create_owner_only(path: &Path) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(open_error(path, "create", e)),
    }
}

/// Opens the writing connection: creates the file if needed, sets WAL and the durability, and
/// creates or checks the schema. `None` opens a private in-memory database.
pub(crate) fn open_writer(path: Option<&Path>, options: &SqliteOptions) -> Result<Connection> {
    let conn = match path {
        Some(path) => {
            create_owner_only(path)?;
            let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            Connection::open_with_flags(path, flags).map_err(|e| open_error(path, "open", e))?
        }
        None => Connection::open_in_memory().map_err(|e| open_error(Path::new(":memory:"), "open", e))?,
    };
    let shown = path.unwrap_or(Path::new(":memory:"));
    let setup = |e: rusqlite::Error| open_error(shown, "configure", e);
    conn.busy_timeout(busy_timeout(options.busy_timeout)).map_err(setup)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    if path.is_some() {
        // Switching to WAL needs a moment of exclusive access; it is a no-op once the file is WAL.
        let mode = retry_busy(|| {
            Ok(conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))?)
        })
        .map_err(|f| fail_error(shown, "configure", f))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(
                path = %shown.display(), mode,
                "durably-sqlite: the file system refused WAL; concurrent readers will wait for writers"
            );
        }
    }
    conn.pragma_update(None, "synchronous", options.durability.synchronous()).map_err(setup)?;
    migrate(&conn, shown)?;
    Ok(conn)
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

fn check_version(found: i64, path: &Path) -> Result<()> {
    if (0..=SCHEMA_VERSION).contains(&found) {
        return Ok(());
    }
    Err(Error::Invalid {
        what: "SQLite database schema version",
        detail: format!(
            "`{}` has schema version {found}, but durably-sqlite {} knows versions up to {SCHEMA_VERSION}; \
             open it with the newer durably that wrote it",
            path.display(),
            env!("CARGO_PKG_VERSION"),
        ),
    })
}

/// Brings the schema to [`SCHEMA_VERSION`] (creating it, or upgrading an older file in place in
/// one transaction), refusing a file written by a newer version.
fn migrate(conn: &Connection, path: &Path) -> Result<()> {
    let found = retry_busy(|| Ok(user_version(conn)?)).map_err(|f| fail_error(path, "read", f))?;
    check_version(found, path)?;
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    retry_busy(|| {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let result = (|| -> Result<(), Fail> {
            // Another process may have migrated while this one waited for the lock.
            let found = user_version(conn)?;
            check_version(found, path).map_err(Fail::Store)?;
            // Each step upgrades the previous version in place, keeping every record.
            if found < 1 {
                conn.execute_batch(SCHEMA_V1)?;
            }
            if found < 2 {
                conn.execute_batch(SCHEMA_V2)?;
            }
            if found < 3 {
                conn.execute_batch(SCHEMA_V3)?;
            }
            if found < 4 {
                conn.execute_batch(SCHEMA_V4)?;
            }
            if found < 5 {
                conn.execute_batch(SCHEMA_V5)?;
            }
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            conn.execute_batch("COMMIT")?;
            Ok(())
        })();
        if result.is_err() && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        result
    })
    .map_err(|f| fail_error(path, "create the schema of", f))?;
    tracing::debug!(
        path = %path.display(), from = found, version = SCHEMA_VERSION,
        "durably-sqlite: schema created or upgraded"
    );
    Ok(())
}

/// Opens a read-only connection to the database file at `path` (the writer created and set it
/// up), waiting up to `busy_timeout` for another connection's lock.
pub(crate) fn open_reader(path: &Path, busy_timeout: Duration) -> Result<Connection, Fail> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(busy_timeout)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

/// The busy timeout of read connections: the writer's.
pub(crate) fn reader_busy_timeout(options: &SqliteOptions) -> Duration {
    busy_timeout(options.busy_timeout)
}

/// Read connections to a database file, opened on demand and kept for reuse. WAL lets them read
/// while the writer thread writes.
pub(crate) struct ReadPool {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    /// A pool for the file at `path`, opened with the same busy timeout as the writer.
    pub(crate) fn new(path: PathBuf, options: &SqliteOptions) -> Self {
        ReadPool { path, busy_timeout: reader_busy_timeout(options), idle: Mutex::new(Vec::new()) }
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Connection>> {
        // A poisoned lock only means a thread panicked while pushing or popping: the list is fine.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn connect(&self) -> Result<Connection, Fail> {
        open_reader(&self.path, self.busy_timeout)
    }

    /// Runs `work` on a pooled connection (blocking), retrying while the file is busy.
    pub(crate) fn with<T>(&self, mut work: impl FnMut(&Connection) -> Result<T, Fail>) -> Result<T, Fail> {
        let pooled = self.idle().pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => self.connect()?,
        };
        let result = retry_busy(|| work(&conn));
        let mut idle = self.idle();
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        result
    }
}
