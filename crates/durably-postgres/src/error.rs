//! How PostgreSQL errors reach the engine: one line naming the server's error or the I/O
//! cause, and `Fail`, the outcome of one attempt on a pooled connection.

use std::fmt;

use deadpool_postgres::PoolError;
use durably_core::{Error, StoreErrorKind};

/// The error of a connection that could not be opened, naming where it was going.
#[derive(Debug)]
pub(crate) struct ConnectError {
    pub(crate) target: String,
    pub(crate) source: tokio_postgres::Error,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot connect to PostgreSQL at {}: {}", self.target, describe(&self.source))
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// A tokio-postgres error, displayed with what it hides behind `db error` or `error connecting
/// to server`: the server's severity, SQLSTATE, message, detail and hint, or the I/O cause.
#[derive(Debug)]
pub(crate) struct PgError {
    text: String,
    source: tokio_postgres::Error,
}

impl PgError {
    pub(crate) fn new(source: tokio_postgres::Error) -> Self {
        PgError { text: describe(&source), source }
    }
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for PgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The whole story of a tokio-postgres error in one line.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
        if let Some(detail) = db.detail() {
            text.push_str(&format!(" (detail: {detail})"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!(" (hint: {hint})"));
        }
        return text;
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

pub(crate) fn connect_error(target: &str, e: PoolError) -> Error {
    match e {
        PoolError::Backend(source) => {
            let kind = kind_of(&source);
            Error::store_kind(kind, "connect", None, ConnectError { target: target.to_owned(), source })
        }
        other => Error::store_kind(
            StoreErrorKind::Transient,
            "connect",
            None,
            format!("cannot connect to PostgreSQL at {target}: {other}"),
        ),
    }
}

/// Why an operation failed.
pub(crate) enum Fail {
    /// From PostgreSQL or the connection to it.
    Pg(tokio_postgres::Error),
    /// From the pool (no connection could be had).
    Pool(PoolError),
    /// Already in durably's terms (`RunNotFound`, `Corrupt`).
    Store(Error),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::Pg(e)
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Store(e)
    }
}

impl Fail {
    /// True when the connection, not the statement, failed: a fresh connection may succeed.
    pub(crate) fn is_connection_lost(&self) -> bool {
        match self {
            Fail::Pg(e) => {
                e.is_closed()
                    || e.code().is_some_and(|c| {
                        let c = c.code();
                        c.starts_with("08") || c.starts_with("57P")
                    })
                    || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
            }
            Fail::Pool(_) | Fail::Store(_) => false,
        }
    }

    pub(crate) fn into_error(self, op: &'static str, run_id: Option<&str>) -> Error {
        match self {
            Fail::Pg(e) => Error::store_kind(kind_of(&e), op, run_id, PgError::new(e)),
            Fail::Pool(PoolError::Backend(e)) => {
                let kind = kind_of(&e);
                Error::store_kind(kind, op, run_id, format!("no connection to PostgreSQL: {}", describe(&e)))
            }
            Fail::Pool(e) => Error::store_kind(
                StoreErrorKind::Transient,
                op,
                run_id,
                format!("no connection to PostgreSQL: {e}"),
            ),
            Fail::Store(e) => e,
        }
    }
}

/// How a tokio-postgres error is classified for the engine, by its SQLSTATE class.
pub(crate) fn kind_of(e: &tokio_postgres::Error) -> StoreErrorKind {
    let Some(db) = e.as_db_error() else {
        // No answer from the server: the connection failed or closed.
        return StoreErrorKind::Transient;
    };
    let code = db.code().code();
    match &code[..2.min(code.len())] {
        // Connection exceptions, insufficient resources, operator intervention.
        "08" | "53" | "57" => StoreErrorKind::Transient,
        // Serialization failure and deadlock: the transaction may succeed again.
        "40" => StoreErrorKind::Transient,
        // Integrity constraints, and objects that do not match the expected schema.
        "23" | "42" if code != "42501" => StoreErrorKind::Conflict,
        // Data exceptions: a stored value the statement could not read.
        "22" | "XX" => StoreErrorKind::Corrupt,
        // Authorization, insufficient privilege, read-only transaction.
        "28" | "42" | "25" => StoreErrorKind::Refused,
        _ => StoreErrorKind::Other,
    }
}
