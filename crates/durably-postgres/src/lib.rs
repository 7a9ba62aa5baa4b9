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
//! - **Queues**: a claim is one transaction serialized per queue by an advisory lock
//!   (`pg_advisory_xact_lock` on a hash of schema and queue), so the limits it reads (executing
//!   runs, per-key counts, claims in the rate window) hold across every worker; times are the
//!   server's, as for leases. `enqueue`, and a delivery that makes a parked run runnable,
//!   notify the queue on the schema's work channel; `append_events` notifies the run on its
//!   events channel. The same `LISTEN` connection wakes `wait_for_work` and `wait_for_events`.
//! - **One round trip per operation**: `open_run` creates or resumes the run and returns it
//!   with all its steps and signals in a single statement; `save_step` is one upsert.
//! - **Group commit**: the checkpoints of concurrent runs are written together, one
//!   `INSERT … SELECT FROM unnest(…)` statement and one transaction per batch (a lone
//!   checkpoint is written at once, alone); a call returns once its batch committed.
//!
//! # Tables
//!
//! Everything lives in one schema (`durably` unless [`PostgresStoreBuilder::schema`] says
//! otherwise), created on first use:
//!
//! | table | key | holds |
//! |-------|-----|-------|
//! | `runs` | `run_id` | workflow, status, input, output, error, `waiting_on`, created/updated times (ms), and for queued runs `queue`, `priority`, `queue_key`, `parent_id`, `wake_at_ms` (set while parked), `claimed_at_ms` (the last claim), `version` (the worker version it is bound to); indexed by `(status, created_at_ms)`, `(workflow, created_at_ms)`, `created_at_ms`, the runs per queue `(queue, status, priority DESC, created_at_ms, run_id)`, the unparked runnable runs per queue in claim order `(queue, priority DESC, created_at_ms, run_id)`, `parent_id` and `wake_at_ms` |
//! | `steps` | `(run_id, step_id)` | task name, status, value, error, attempts, request hash, start/finish times |
//! | `signals` | `(run_id, name)` | payload, delivery time |
//! | `leases` | `run_id` | owner, `expires_at_ms` (server clock) |
//! | `queue_claims` | `(queue, claimed_at_ms)` | how many runs of the queue were claimed that millisecond, for the rate limit; pruned by claims |
//! | `events` | `(run_id, event_offset)` | each run's event log: kind, data (verbatim text), time |
//! | `event_heads` | `run_id` | the next offset of each log (its row lock orders concurrent appends) |
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
//! of several kilobytes of random text is refused with [`Error::Store`](durably_core::Error::Store) (SQLSTATE 54000) and
//! nothing is written.
//!
//! # Migrations
//!
//! The schema carries a version ([`SCHEMA_VERSION`]) in `durably_schema_version`. When a store
//! connects, it takes a transaction-scoped advisory lock for its schema (so processes starting
//! together migrate once, one after the other), creates the schema if missing, and applies
//! every migration between the stored version and its own in that one transaction. Migrations
//! only add; they never rewrite or drop recorded data. A schema whose version is **newer** than
//! this code's is refused with [`Error::Invalid`](durably_core::Error::Invalid) naming both versions, and left untouched:
//! upgrade every worker before (or together with) the schema, never after.
//!
//! # Faults
//!
//! Connections come from a deadpool pool; a connection whose backend died is dropped and
//! replaced. An operation interrupted by a lost connection is retried once on a fresh one when
//! repeating it is harmless (every operation but `deliver_signal`, whose outcome would be
//! ambiguous); otherwise it fails with [`Error::Store`](durably_core::Error::Store) naming the operation and run, and the
//! next operation gets a fresh connection. A write either committed or did not: nothing
//! recorded is lost.
//!
//! The store needs a Tokio runtime.

mod builder;
mod error;
mod listener;
mod schema;
mod sql;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use durably_core::Result;

use crate::listener::{Listener, Waiters};
use crate::sql::Statements;

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

/// A [`Store`](durably_core::Store) in a PostgreSQL database. See the [crate docs](crate) for how it works.
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
    /// Writes the checkpoints of concurrent runs together.
    batcher: batch::Batcher,
    schema: String,
    channel: String,
    /// The channel `enqueue` and unparking deliveries notify (payload: the queue).
    work_channel: String,
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

/// Runs `$body` (an async block using the pooled client `$c`). A connection found lost is
/// taken out of the pool (so it is not handed out again before the pool notices) and the
/// failure is reported as transient: the engine decides whether to make the call again.
macro_rules! on_connection {
    ($self:ident, $op:literal, $run_id:expr, |$c:ident| $body:expr) => {
        on_connection!(pool = $self.pool, $op, $run_id, |$c| $body)
    };
    (pool = $pool:expr, $op:literal, $run_id:expr, |$c:ident| $body:expr) => {{
        match $pool.get().await {
            Err(e) => Err($crate::error::Fail::Pool(e).into_error($op, $run_id)),
            Ok(client) => {
                let attempt: std::result::Result<_, $crate::error::Fail> = async {
                    let $c = &client;
                    $body.await
                }
                .await;
                attempt.map_err(|fail| {
                    if fail.is_connection_lost() {
                        // Not back into the pool: the next call gets a fresh connection.
                        drop(deadpool_postgres::Object::take(client));
                    }
                    fail.into_error($op, $run_id)
                })
            }
        }
    }};
}

mod admin;
mod batch;
mod events;
mod journal;
mod leases;
#[cfg(test)]
mod plans;
mod queues;
mod rates;
mod signals;

pub use crate::builder::PostgresStoreBuilder;

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
        self.waiters.registry.len()
    }
}
