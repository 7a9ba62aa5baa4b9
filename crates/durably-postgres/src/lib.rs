//! The PostgreSQL store of [durably](https://docs.rs/durably): runs shared by worker processes
//! on several machines.
//!
//! ```no_run
//! # async fn example() -> durably_core::Result<()> {
//! use durably_postgres::PostgresStore;
//!
//! let store = PostgresStore::connect("postgres://app@db.internal/app").await?;
//! let tuned = PostgresStore::builder("postgres://app@db.internal/app")
//!     .schema("billing_runs")
//!     .pool_size(16)
//!     .connect()
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! # When to choose PostgreSQL
//!
//! Choose it when runs must be shared by worker processes on **several machines**, or when you
//! already operate PostgreSQL and want runs backed up, replicated and queryable with the rest
//! of your data. On one machine, the SQLite store is faster (no network round trip per
//! checkpoint) and needs no server. What this store adds:
//! - **Leases** in a `leases` table, taken atomically by one
//!   `INSERT … ON CONFLICT DO UPDATE … WHERE expired OR same owner` statement and timed by the
//!   **server's clock** (`now()`; the caller's `now_ms` is ignored), so workers whose clocks
//!   disagree still agree on when a lease lapsed. An engine renews all its leases in one
//!   `UPDATE`, on a connection of their own (`<application_name> background`, also used for
//!   the engine's cancellation checks), so renewals never queue behind busy runs.
//! - **Wake-ups without polling**: `deliver_signal` sends `pg_notify` in the statement that
//!   records the signal, and each store keeps one dedicated `LISTEN` connection that wakes the
//!   waiting runs of its process (and reconnects on its own if that connection drops).
//! - **One round trip per operation**: `open_run` creates or resumes the run and returns it
//!   with all its steps and signals in a single statement; `save_step` is one upsert.
//!
//! # Tables
//!
//! Everything lives in one schema (`durably` unless [`PostgresStoreBuilder::schema`] says
//! otherwise), created on first use:
//!
//! | table | key | holds |
//! |-------|-----|-------|
//! | `runs` | `run_id` | workflow, status, input, output, error, `waiting_on`, created/updated times (ms); indexed by `(status, created_at_ms)`, `(workflow, created_at_ms)` and `created_at_ms` |
//! | `steps` | `(run_id, step_id)` | task name, status, value, error, attempts, request hash, start/finish times |
//! | `signals` | `(run_id, name)` | payload, delivery time |
//! | `leases` | `run_id` | owner, `expires_at_ms` (server clock) |
//! | `durably_schema_version` | one row | the schema version |
//!
//! JSON values are kept twice. `input_text`, `output_text`, `value_text` and `payload_text`
//! hold the JSON text **verbatim**: the engine reads back exactly the bytes it wrote, which
//! `jsonb` cannot promise (it reorders keys, drops whitespace and duplicate keys, and refuses
//! `\u0000`). Next to each, a generated `jsonb` column (`input`, `output`, `value`, `payload`)
//! holds the parsed value for your own queries (`SELECT run_id FROM durably.steps WHERE
//! value->>'status' = 'paid'`), or NULL where the text is not valid `jsonb`. Text columns are
//! `COLLATE "C"`, so listings order by bytes as Rust does. Ids are stored verbatim and are
//! keys of btree indexes, whose entries PostgreSQL caps at about 2.7 KB after compression: ids
//! of 10 KB that compress well (repeated text) are fine, but a run id, step id or signal name
//! of several kilobytes of random text is refused with [`Error::Store`] (SQLSTATE 54000) and
//! nothing is written.
//!
//! # Migrations
//!
//! The schema carries a version ([`SCHEMA_VERSION`]) in `durably_schema_version`. When a store
//! connects, it takes a transaction-scoped advisory lock for its schema (so processes starting
//! together migrate once, one after the other), creates the schema if missing, and applies
//! every migration between the stored version and its own in that one transaction. Migrations
//! only add; they never rewrite or drop recorded data. A schema whose version is **newer** than
//! this code's is refused with [`Error::Invalid`] naming both versions, and left untouched:
//! upgrade every worker before (or together with) the schema, never after.
//!
//! # Faults
//!
//! Connections come from a deadpool pool; a connection whose backend died is dropped and
//! replaced. An operation interrupted by a lost connection is retried once on a fresh one when
//! repeating it is harmless (every operation but `deliver_signal`, whose outcome would be
//! ambiguous); otherwise it fails with [`Error::Store`] naming the operation and run, and the
//! next operation gets a fresh connection. A write either committed or did not: nothing
//! recorded is lost.
//!
//! The store needs a Tokio runtime.

mod listener;
mod sql;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use durably_core::store::prelude::*;
use durably_core::{
    Error, Lease, LeaseOutcome, NewRun, Result, RunFilter, RunHistory, RunRecord, RunStatus, RunUpdate,
    SignalRecord, StepRecord,
};
use tokio_postgres::NoTls;
use tokio_postgres::config::Host;
use tokio_postgres::types::{ToSql, Type};

use crate::listener::{Listener, Waiters};
use crate::sql::{
    HistoryRow, MIGRATIONS, Statements, decode_history_row, decode_run, decode_signal, decode_step,
    quote_ident,
};

pub use crate::sql::SCHEMA_VERSION;

/// The schema used unless the builder names another.
pub const DEFAULT_SCHEMA: &str = "durably";

/// The pool size used unless the builder sets another.
pub const DEFAULT_POOL_SIZE: usize = 8;

/// The `application_name` of the store's connections unless the URL or the builder sets one.
pub const DEFAULT_APPLICATION_NAME: &str = "durably";

/// How long a wait for a signal lasts at most while the listener is reconnecting: wake-ups may
/// be missed then, so waiters look at the store this often.
const POLL_WHILE_DISCONNECTED: Duration = Duration::from_millis(500);

/// A [`Store`] in a PostgreSQL database. See the [crate docs](crate) for how it works.
///
/// Share it between runs and tasks through `Arc` (the engine does). Dropping it closes its
/// listener connection; pooled connections close as they are released.
pub struct PostgresStore {
    pool: Pool,
    /// One connection for the engines' periodic work (lease renewals, cancellation checks), so
    /// that it never queues behind the runs' own statements: a renewal stuck behind them would
    /// let the leases of busy runs lapse.
    background: Pool,
    statements: Statements,
    schema: String,
    channel: String,
    target: String,
    waiters: Arc<Waiters>,
    _listener: Listener,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `target` names host, port, database and user, never the password.
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .field("schema", &self.schema)
            .field("pool_size", &self.pool.status().max_size)
            .finish_non_exhaustive()
    }
}

/// Builds a [`PostgresStore`] with options other than the defaults.
///
/// ```no_run
/// # async fn example() -> durably_core::Result<()> {
/// use std::time::Duration;
/// use durably_postgres::PostgresStore;
///
/// let store = PostgresStore::builder("postgres://app@db.internal/app")
///     .schema("durably_staging")
///     .pool_size(4)
///     .application_name("billing-worker")
///     .connect_timeout(Duration::from_secs(5))
///     .connect()
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use = "a builder does nothing until `connect` is awaited"]
pub struct PostgresStoreBuilder {
    url: String,
    schema: String,
    pool_size: usize,
    application_name: Option<String>,
    connect_timeout: Duration,
}

impl fmt::Debug for PostgresStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password: leave it out.
        f.debug_struct("PostgresStoreBuilder")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("application_name", &self.application_name)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl PostgresStoreBuilder {
    /// The schema that holds the store's tables (default [`DEFAULT_SCHEMA`]); created if
    /// missing. Stores on different schemas of one database are independent.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The most connections the pool opens (default [`DEFAULT_POOL_SIZE`]); the listener uses
    /// one more, and the engines' lease renewals and cancellation checks one more (named
    /// `<application_name> background`).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// The `application_name` of the pool's connections, shown in `pg_stat_activity` (the
    /// listener's is this name followed by ` listener`). Default: the URL's, else
    /// [`DEFAULT_APPLICATION_NAME`].
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }

    /// How long opening one connection may take (default 10 s, unless the URL sets
    /// `connect_timeout`).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Connects, brings the schema to [`SCHEMA_VERSION`] and starts the listener.
    ///
    /// Fails with [`Error::Invalid`] for a malformed URL, an unusable schema name or a schema
    /// of a newer version, and with [`Error::Store`] (naming host, port, database and user)
    /// when the server cannot be reached.
    pub async fn connect(self) -> Result<PostgresStore> {
        let invalid = |what, detail: String| Error::Invalid { what, detail };
        if self.schema.is_empty() || self.schema.len() > 63 || self.schema.contains('\0') {
            return Err(invalid(
                "PostgreSQL schema name",
                format!(
                    "`{}` must be 1 to 63 bytes without NUL (PostgreSQL truncates longer names)",
                    self.schema.escape_default()
                ),
            ));
        }
        if self.pool_size == 0 {
            return Err(invalid("pool size", "the pool needs at least one connection".to_owned()));
        }
        // tokio-postgres's parse errors do not repeat the URL, so no password leaks here.
        let mut config = tokio_postgres::Config::from_str(&self.url).map_err(|e| {
            invalid("PostgreSQL URL", format!("cannot parse the connection URL: {}", describe(&e)))
        })?;
        if let Some(name) = &self.application_name {
            config.application_name(name);
        } else if config.get_application_name().is_none() {
            config.application_name(DEFAULT_APPLICATION_NAME);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(self.connect_timeout);
        }
        let target = describe_target(&config);

        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(self.pool_size)
            .runtime(Runtime::Tokio1)
            .create_timeout(config.get_connect_timeout().copied())
            .build()
            .map_err(|e| Error::store("connect", None, format!("cannot build the connection pool: {e}")))?;
        let mut background_config = config.clone();
        background_config.application_name(format!(
            "{} background",
            config.get_application_name().unwrap_or(DEFAULT_APPLICATION_NAME)
        ));
        // Opened at its first use: a store whose engines hold no lease never opens it.
        let background = Pool::builder(Manager::from_config(
            background_config,
            NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        ))
        .max_size(1)
        .runtime(Runtime::Tokio1)
        .create_timeout(config.get_connect_timeout().copied())
        .build()
        .map_err(|e| Error::store("connect", None, format!("cannot build the connection pool: {e}")))?;

        let mut client = pool.get().await.map_err(|e| connect_error(&target, e))?;
        migrate(&mut client, &self.schema).await?;
        drop(client);

        let channel = channel_name(&self.schema);
        let waiters = Arc::new(Waiters::default());
        let mut listen_config = config.clone();
        let listen_name =
            format!("{} listener", config.get_application_name().unwrap_or(DEFAULT_APPLICATION_NAME));
        listen_config.application_name(&listen_name);
        // A dead network would otherwise go unnoticed for hours on an idle LISTEN connection.
        listen_config.keepalives(true).keepalives_idle(Duration::from_secs(30));
        let listener = Listener::start(listen_config, channel.clone(), Arc::clone(&waiters))
            .await
            .map_err(|e| Error::store("connect", None, ConnectError { target: target.clone(), source: e }))?;

        Ok(PostgresStore {
            pool,
            background,
            statements: Statements::new(&self.schema),
            schema: self.schema,
            channel,
            target,
            waiters,
            _listener: listener,
        })
    }
}

/// The error of a connection that could not be opened, naming where it was going.
#[derive(Debug)]
struct ConnectError {
    target: String,
    source: tokio_postgres::Error,
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
struct PgError {
    text: String,
    source: tokio_postgres::Error,
}

impl PgError {
    fn new(source: tokio_postgres::Error) -> Self {
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

fn connect_error(target: &str, e: PoolError) -> Error {
    match e {
        PoolError::Backend(source) => {
            Error::store("connect", None, ConnectError { target: target.to_owned(), source })
        }
        other => Error::store("connect", None, format!("cannot connect to PostgreSQL at {target}: {other}")),
    }
}

/// `host:port (database `db`, user `u`)`, from a config: never the password.
fn describe_target(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or_else(|| ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                #[cfg(unix)]
                Host::Unix(path) => format!("{}/.s.PGSQL.{port}", path.display()),
            }
        })
        .collect();
    let hosts = if hosts.is_empty() { "localhost:5432".to_owned() } else { hosts.join(",") };
    let user = config.get_user().unwrap_or("(default user)");
    let db = config.get_dbname().unwrap_or(user);
    format!("{hosts} (database `{db}`, user `{user}`)")
}

/// The notification channel of a schema: channels are database-wide, so each schema has its
/// own. A hash keeps it under PostgreSQL's 63-byte identifier limit.
fn channel_name(schema: &str) -> String {
    // FNV-1a, 64 bits: stable across processes, builds and platforms.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in schema.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("durably_signals_{hash:016x}")
}

/// Brings `schema` to [`SCHEMA_VERSION`] in one transaction under an advisory lock.
async fn migrate(client: &mut deadpool_postgres::Client, schema: &str) -> Result<()> {
    let fail = |e: tokio_postgres::Error| Error::store("migrate", None, PgError::new(e));
    let s = quote_ident(schema);
    let tx = client.transaction().await.map_err(fail)?;
    // Concurrent starts queue here; the lock is released at commit or rollback.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&format!("durably-postgres:{schema}")],
    )
    .await
    .map_err(fail)?;
    let exists = tx
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
        .await
        .map_err(fail)?
        .is_some();
    if !exists {
        tx.batch_execute(&format!("CREATE SCHEMA {s}")).await.map_err(fail)?;
    }
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {s}.durably_schema_version (
            singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            version    integer NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        )"
    ))
    .await
    .map_err(fail)?;
    let found: i32 = tx
        .query_opt(&format!("SELECT version FROM {s}.durably_schema_version"), &[])
        .await
        .map_err(fail)?
        .map(|row| row.try_get(0))
        .transpose()
        .map_err(fail)?
        .unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(Error::Invalid {
            what: "PostgreSQL schema",
            detail: format!(
                "schema `{schema}` is at durably schema version {found}, newer than this durably-postgres \
                 understands (up to {SCHEMA_VERSION}); upgrade durably-postgres, or use another schema"
            ),
        });
    }
    if found == SCHEMA_VERSION {
        return tx.commit().await.map_err(fail);
    }
    for (from, migration) in MIGRATIONS.iter().enumerate().skip(usize::try_from(found).unwrap_or(0)) {
        tx.batch_execute(&migration.replace("{s}", &s)).await.map_err(|e| {
            Error::store(
                "migrate",
                None,
                format!("migration of schema `{schema}` to version {}: {e}", from + 1),
            )
        })?;
    }
    tx.execute(
        &format!(
            "INSERT INTO {s}.durably_schema_version (version) VALUES ($1)
             ON CONFLICT (singleton) DO UPDATE SET version = excluded.version, updated_at = now()"
        ),
        &[&SCHEMA_VERSION],
    )
    .await
    .map_err(fail)?;
    tx.commit().await.map_err(fail)?;
    tracing::info!(target: "durably", schema, from = found, to = SCHEMA_VERSION, "PostgreSQL schema migrated");
    Ok(())
}

/// Why an operation failed.
enum Fail {
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
    fn is_connection_lost(&self) -> bool {
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

    fn into_error(self, op: &'static str, run_id: Option<&str>) -> Error {
        match self {
            Fail::Pg(e) => Error::store(op, run_id, PgError::new(e)),
            Fail::Pool(PoolError::Backend(e)) => {
                Error::store(op, run_id, format!("no connection to PostgreSQL: {}", describe(&e)))
            }
            Fail::Pool(e) => Error::store(op, run_id, format!("no connection to PostgreSQL: {e}")),
            Fail::Store(e) => e,
        }
    }
}

/// Runs `$body` (an async block using the pooled client `$c`). A connection found lost is
/// taken out of the pool (so it is not handed out again before the pool notices), and when
/// `$retry` is true the body runs once more on a fresh connection.
macro_rules! on_connection {
    ($self:ident, $op:literal, $run_id:expr, retry = $retry:expr, |$c:ident| $body:expr) => {
        on_connection!(pool = $self.pool, $op, $run_id, retry = $retry, |$c| $body)
    };
    (pool = $pool:expr, $op:literal, $run_id:expr, retry = $retry:expr, |$c:ident| $body:expr) => {{
        let mut tries = 0u32;
        loop {
            let client = match $pool.get().await {
                Ok(client) => client,
                Err(e) => break Err(Fail::Pool(e).into_error($op, $run_id)),
            };
            let attempt: std::result::Result<_, Fail> = async {
                let $c = &client;
                $body.await
            }
            .await;
            match attempt {
                Ok(value) => break Ok(value),
                Err(fail) if fail.is_connection_lost() => {
                    drop(deadpool_postgres::Object::take(client));
                    if $retry && tries == 0 {
                        tries += 1;
                        tracing::warn!(
                            target: "durably",
                            op = $op,
                            run_id = ?$run_id,
                            "PostgreSQL connection lost; trying once more on a fresh connection"
                        );
                        continue;
                    }
                    break Err(fail.into_error($op, $run_id));
                }
                Err(fail) => break Err(fail.into_error($op, $run_id)),
            }
        }
    }};
}

impl PostgresStore {
    /// Connects with the default options (schema [`DEFAULT_SCHEMA`], pool of
    /// [`DEFAULT_POOL_SIZE`]). See [`PostgresStoreBuilder::connect`].
    pub async fn connect(url: impl Into<String>) -> Result<Self> {
        Self::builder(url).connect().await
    }

    /// A builder for a store on `url` (`postgres://user@host:port/db` or `host=… dbname=…`).
    pub fn builder(url: impl Into<String>) -> PostgresStoreBuilder {
        PostgresStoreBuilder {
            url: url.into(),
            schema: DEFAULT_SCHEMA.to_owned(),
            pool_size: DEFAULT_POOL_SIZE,
            application_name: None,
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// The schema holding the store's tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The notification channel `deliver_signal` notifies and the listener listens on.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Whether the listener connection is up (wake-ups from other processes arrive at once;
    /// while it reconnects, waiting runs look at the store twice a second).
    pub fn is_listening(&self) -> bool {
        self.waiters.is_connected()
    }

    /// How many runs this store's `wait_for_signal` callers wait on right now.
    pub fn runs_waited_on(&self) -> usize {
        self.waiters.runs_waited_on()
    }
}

#[async_trait]
impl Journal for PostgresStore {
    async fn open_run(&self, new: NewRun) -> Result<RunHistory> {
        let run_id = new.run_id.as_str();
        let sql = &self.statements.open_run;
        // A run created by a concurrent transaction of another workflow may be invisible to
        // the statement's snapshot (see `Statements::open_run`): the next attempt sees it.
        for _ in 0..3 {
            let rows = on_connection!(self, "open_run", Some(run_id), retry = true, |client| async {
                let stmt = client
                    .prepare_typed_cached(sql, &[Type::TEXT, Type::TEXT, Type::TEXT, Type::INT8])
                    .await?;
                Ok(client.query(&stmt, &[&new.run_id, &new.workflow, &new.input, &new.now_ms]).await?)
            })?;
            let mut run = None;
            let mut steps = Vec::new();
            let mut signals = Vec::new();
            for row in &rows {
                match decode_history_row(row, run_id)? {
                    HistoryRow::Run(r) => run = Some(r),
                    HistoryRow::Step(s) => steps.push(s),
                    HistoryRow::Signal(s) => signals.push(s),
                }
            }
            if let Some(run) = run {
                steps.sort_by(|a, b| {
                    a.started_at_ms.cmp(&b.started_at_ms).then_with(|| a.step_id.cmp(&b.step_id))
                });
                return Ok(RunHistory::new(run, steps, signals));
            }
        }
        Err(Error::store("open_run", Some(run_id), "the run was neither created nor found; try again"))
    }
    async fn save_step(&self, run_id: &str, step: &StepRecord) -> Result<()> {
        let sql = &self.statements.save_step;
        let attempts = i64::from(step.attempts);
        on_connection!(self, "save_step", Some(run_id), retry = true, |client| async {
            let stmt = client.prepare_cached(sql).await?;
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
        })
    }
    async fn update_run(&self, run_id: &str, update: &RunUpdate) -> Result<()> {
        let sql = &self.statements.update_run;
        let changed = on_connection!(self, "update_run", Some(run_id), retry = true, |client| async {
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
        let row = on_connection!(self, "get_run", Some(run_id), retry = true, |client| async {
            let stmt = client.prepare_cached(sql).await?;
            Ok(client.query_opt(&stmt, &[&run_id]).await?)
        })?;
        row.map(|row| decode_run(&row, run_id)).transpose()
    }
    async fn list_steps(&self, run_id: &str) -> Result<Vec<StepRecord>> {
        let sql = &self.statements.list_steps;
        let rows = on_connection!(self, "list_steps", Some(run_id), retry = true, |client| async {
            let stmt = client.prepare_cached(sql).await?;
            Ok(client.query(&stmt, &[&run_id]).await?)
        })?;
        rows.iter().map(|row| decode_step(row, run_id)).collect()
    }
}

#[async_trait]
impl Signals for PostgresStore {
    async fn deliver_signal(&self, run_id: &str, signal: &SignalRecord) -> Result<bool> {
        let sql = &self.statements.deliver_signal;
        // Not retried: if the connection died after the insert committed, a second attempt
        // would report the delivery as a duplicate.
        let rows = on_connection!(self, "deliver_signal", Some(run_id), retry = false, |client| async {
            let stmt = client.prepare_cached(sql).await?;
            let params: [&(dyn ToSql + Sync); 5] =
                [&run_id, &signal.name, &signal.payload, &signal.delivered_at_ms, &self.channel];
            Ok(client.query(&stmt, &params).await?)
        })?;
        Ok(!rows.is_empty())
    }
    async fn get_signal(&self, run_id: &str, name: &str) -> Result<Option<String>> {
        let sql = &self.statements.get_signal;
        let row = on_connection!(self, "get_signal", Some(run_id), retry = true, |client| async {
            let stmt = client.prepare_cached(sql).await?;
            Ok(client.query_opt(&stmt, &[&run_id, &name]).await?)
        })?;
        row.map(|row| {
            row.try_get(0).map_err(|e| Error::Corrupt {
                run_id: run_id.to_owned(),
                step_id: None,
                detail: format!("payload of signal `{name}`: {e}"),
            })
        })
        .transpose()
    }
    async fn list_signals(&self, run_id: &str) -> Result<Vec<SignalRecord>> {
        let sql = &self.statements.list_signals;
        let rows = on_connection!(self, "list_signals", Some(run_id), retry = true, |client| async {
            let stmt = client.prepare_cached(sql).await?;
            Ok(client.query(&stmt, &[&run_id]).await?)
        })?;
        rows.iter().map(|row| decode_signal(row, run_id)).collect()
    }
    async fn wait_for_signal(&self, run_id: &str, name: &str, max_wait: Duration) {
        // Register before looking, so a notification between the look and the wait is kept.
        let registration = self.waiters.register(run_id);
        let notified = registration.notify().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Ok(Some(_)) = self.get_signal(run_id, name).await {
            return;
        }
        let wait = if self.waiters.is_connected() { max_wait } else { max_wait.min(POLL_WHILE_DISCONNECTED) };
        let _ = tokio::time::timeout(wait, notified).await;
    }
}

#[async_trait]
impl Leases for PostgresStore {
    async fn acquire_lease(
        &self,
        run_id: &str,
        owner: &str,
        ttl: Duration,
        _now_ms: i64,
    ) -> Result<LeaseOutcome> {
        let sql = &self.statements.acquire_lease;
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        // NULL: the server's clock decides (see the crate docs).
        let clock: Option<i64> = None;
        // The holder's row can be invisible to the statement's snapshot when it was created
        // concurrently; a later attempt sees it.
        for _ in 0..5 {
            let row = on_connection!(self, "acquire_lease", Some(run_id), retry = true, |client| async {
                let stmt = client.prepare_cached(sql).await?;
                Ok(client.query_opt(&stmt, &[&run_id, &owner, &ttl_ms, &clock]).await?)
            })?;
            let Some(row) = row else { continue };
            let decode = |e: tokio_postgres::Error| Error::Corrupt {
                run_id: run_id.to_owned(),
                step_id: None,
                detail: format!("lease row: {e}"),
            };
            let acquired: bool = row.try_get(0).map_err(decode)?;
            if acquired {
                return Ok(LeaseOutcome::Acquired);
            }
            return Ok(LeaseOutcome::HeldBy(Lease::new(
                row.try_get::<_, String>(1).map_err(decode)?,
                row.try_get::<_, i64>(2).map_err(decode)?,
            )));
        }
        Err(Error::store("acquire_lease", Some(run_id), "the lease was neither taken nor found; try again"))
    }
    async fn release_lease(&self, run_id: &str, owner: &str) -> Result<()> {
        let sql = &self.statements.release_lease;
        on_connection!(self, "release_lease", Some(run_id), retry = true, |client| async {
            let stmt = client.prepare_cached(sql).await?;
            client.execute(&stmt, &[&run_id, &owner]).await?;
            Ok(())
        })
    }
    /// One statement for every lease, extending only `owner`'s rows, by the server's clock
    /// (`now_ms` is ignored, as in `acquire_lease`), on the store's background connection: it
    /// never waits behind the runs' statements for a pooled one.
    async fn renew_leases(
        &self,
        run_ids: &[String],
        owner: &str,
        ttl: Duration,
        _now_ms: i64,
    ) -> Result<Vec<(String, Option<String>)>> {
        if run_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = &self.statements.renew_leases;
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let rows = on_connection!(
            pool = self.background,
            "renew_leases",
            None::<&str>,
            retry = true,
            |client| async {
                let stmt = client.prepare_cached(sql).await?;
                Ok(client.query(&stmt, &[&run_ids, &owner, &ttl_ms]).await?)
            }
        )?;
        rows.iter()
            .map(|row| {
                let decode = |e: tokio_postgres::Error| Error::Corrupt {
                    run_id: row.try_get::<_, String>(0).unwrap_or_default(),
                    step_id: None,
                    detail: format!("lease row: {e}"),
                };
                Ok((row.try_get(0).map_err(decode)?, row.try_get(1).map_err(decode)?))
            })
            .collect()
    }
    /// One query for every id (`= ANY` of one array parameter), on the background connection.
    async fn cancelled_runs(&self, run_ids: &[String]) -> Result<Vec<String>> {
        if run_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = &self.statements.cancelled_runs;
        let rows = on_connection!(
            pool = self.background,
            "cancelled_runs",
            None::<&str>,
            retry = true,
            |client| async {
                let stmt = client.prepare_cached(sql).await?;
                Ok(client.query(&stmt, &[&run_ids]).await?)
            }
        )?;
        rows.iter()
            .map(|row| {
                row.try_get(0).map_err(|e| Error::Corrupt {
                    run_id: "(cancelled run)".to_owned(),
                    step_id: None,
                    detail: format!("run id: {e}"),
                })
            })
            .collect()
    }
    async fn recoverable_runs(&self, _now_ms: i64, limit: usize) -> Result<Vec<RunRecord>> {
        let sql = &self.statements.recoverable_runs;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let clock: Option<i64> = None;
        let rows = on_connection!(self, "recoverable_runs", None::<&str>, retry = true, |client| async {
            let stmt = client.prepare_cached(sql).await?;
            Ok(client.query(&stmt, &[&clock, &limit]).await?)
        })?;
        rows.iter().map(|row| decode_run(row, "(recoverable run)")).collect()
    }
    async fn update_run_unless_cancelled(&self, run_id: &str, update: &RunUpdate) -> Result<bool> {
        let sql = &self.statements.update_run_unless_cancelled;
        let row = on_connection!(self, "update_run", Some(run_id), retry = true, |client| async {
            let stmt = client.prepare_cached(sql).await?;
            let params: [&(dyn ToSql + Sync); 6] = [
                &run_id,
                &update.status.as_str(),
                &update.output,
                &update.error,
                &update.waiting_on,
                &update.now_ms,
            ];
            Ok(client.query_one(&stmt, &params).await?)
        })?;
        let decode = |e: tokio_postgres::Error| Error::Corrupt {
            run_id: run_id.to_owned(),
            step_id: None,
            detail: format!("update result: {e}"),
        };
        let (updated, exists): (bool, bool) =
            (row.try_get(0).map_err(decode)?, row.try_get(1).map_err(decode)?);
        if !exists {
            return Err(Error::RunNotFound { run_id: run_id.to_owned() });
        }
        Ok(updated)
    }
}

#[async_trait]
impl Admin for PostgresStore {
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        // NULL is `LIMIT ALL`.
        let limit: Option<i64> = filter.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        let status = filter.status.map(RunStatus::as_str);
        let workflow = filter.workflow.as_deref();
        let (sql, params): (&str, Vec<&(dyn ToSql + Sync)>) = match (&status, &workflow) {
            (None, None) => (&self.statements.list_runs[0], vec![&limit]),
            (Some(s), None) => (&self.statements.list_runs[1], vec![&limit, s]),
            (None, Some(w)) => (&self.statements.list_runs[2], vec![&limit, w]),
            (Some(s), Some(w)) => (&self.statements.list_runs[3], vec![&limit, s, w]),
        };
        let rows = on_connection!(self, "list_runs", None::<&str>, retry = true, |client| async {
            let stmt = client.prepare_cached(sql).await?;
            Ok(client.query(&stmt, &params).await?)
        })?;
        rows.iter().map(|row| decode_run(row, "(listed run)")).collect()
    }
    async fn delete_run(&self, run_id: &str) -> Result<bool> {
        let sql = &self.statements.delete_run;
        let rows = on_connection!(self, "delete_run", Some(run_id), retry = true, |client| async {
            let stmt = client.prepare_cached(sql).await?;
            Ok(client.query(&stmt, &[&run_id]).await?)
        })?;
        Ok(!rows.is_empty())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_are_short_stable_and_differ_per_schema() {
        let a = channel_name("durably");
        assert_eq!(a, channel_name("durably"));
        assert_ne!(a, channel_name("durably2"));
        assert!(channel_name(&"x".repeat(63)).len() < 63);
    }

    #[test]
    fn the_target_names_host_port_database_and_user_but_not_the_password() {
        let config = tokio_postgres::Config::from_str("postgres://alice:s3cret@db.example:6543/app").unwrap();
        let target = describe_target(&config);
        assert_eq!(target, "db.example:6543 (database `app`, user `alice`)");
        assert!(!target.contains("s3cret"));
    }
}
