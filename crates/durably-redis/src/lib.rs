//! The Redis store of [durably](https://docs.rs/durably): runs shared by several processes and
//! machines, kept for a time-to-live.
//!
//! ```no_run
//! # async fn example() -> durably_core::Result<()> {
//! use std::time::Duration;
//! use durably_redis::RedisStore;
//!
//! let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
//! let kept_a_week = RedisStore::builder("redis://:secret@cache.internal:6379/2")
//!     .prefix("billing")
//!     .ttl(Duration::from_secs(7 * 24 * 3600))
//!     .connect()
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! # When to choose Redis
//! - Several worker processes or machines share runs, and a Redis server is already part of the
//!   system. Runs are claimed with leases, and a signal delivered by any process wakes the
//!   waiting run at once (pub/sub), with no polling delay.
//! - Runs matter for hours or days, not forever: every key expires after the TTL.
//! - Redis keeps data in memory and writes it to disk only as configured. For records that must
//!   survive anything, choose PostgreSQL (or SQLite on one machine).
//!
//! # Time to live
//! Every key of a run (its record, steps, signals and events) gets the store's TTL again on every
//! write to the run, and the shared indexes that list it on every status change and at least
//! every sixteenth of the TTL while steps are saved: a run expires
//! [`ttl`](RedisStoreBuilder::ttl) after its *last* write, never in the middle of being worked
//! on. The default is 24 hours;
//! `Duration::ZERO` keeps keys forever (and removes an expiry an earlier store set). A signal
//! delivered to a run that does not exist yet expires like any other key of that run. Once a
//! run has expired it is gone: executing its id again starts it afresh.
//!
//! # Restarts and persistence
//! Whatever Redis loses, durably loses: a server started with `--save ""` and
//! `--appendonly no` forgets every run when it restarts, and with RDB snapshots only, the writes
//! since the last snapshot. A run whose records were lost runs its steps again. Use
//! `appendonly yes` (and `appendfsync always` if no acknowledged step may be lost) when runs
//! must survive a Redis restart. With replicas, a failover can lose the last writes the old
//! primary acknowledged (replication is asynchronous).
//!
//! The connection is a [`ConnectionManager`]: when the connection drops, the call in flight fails with an [`Error::Store`] naming the operation and
//! the run, and the manager reconnects in the background; later calls go through once the
//! server is back. A call waits at most [`response_timeout`](RedisStoreBuilder::response_timeout)
//! (10 s) for its reply, so a frozen server gives errors, not hangs. A write that failed either
//! way may or may not have reached the server; the engine treats it like any failed step. Signal waits reconnect their pub/sub connection too.
//!
//! # Layout and limits
//! - Keys live under the prefix (default `durably`). Run ids enter keys as
//!   `<byte length>:<id>`, so ids with `:`, `*`, `{`, quotes or newlines never collide, and the
//!   verbatim id is kept inside the run's hash. Stores with different prefixes are independent,
//!   as long as neither prefix is the other followed by `:`.
//! - Multi-key changes run as Lua scripts: atomic, one round trip each. `open_run` creates or
//!   resumes the run and returns its whole history in one call.
//! - Values are kept byte for byte. One step record, input, output or payload may not exceed
//!   Redis's 512 MiB limit for a value: a larger one fails with an [`Error::Store`] naming the
//!   run and step, before anything is sent.
//! - `list_runs` walks sorted-set indexes (all runs, per status, per workflow, unfinished);
//!   a run id prefix is matched against the ids of the index walked, on the server.
//!   Index entries of runs that expired are dropped when met, and a few at each run creation
//!   (found through an index of last-write times), so indexes do not grow with runs long gone.
//!   Creation times are scores, exact up to 2^53 ms (the year 287 396).
//! - Leases are `SET … PXAT` keys holding the owner, with expiry by the **server's clock**: the
//!   `now_ms` argument of [`Store::acquire_lease`](durably_core::store::Leases::acquire_lease) and [`Store::recoverable_runs`](durably_core::store::Leases::recoverable_runs) is ignored, so
//!   clock skew between workers does not matter.
//! - Signal wake-ups: each store opens one pub/sub connection, at its first signal wait. A wait
//!   subscribes to the run's channel and only then looks for the signal, and a delivery
//!   publishes on that channel in the script that records it, so no delivery goes unnoticed.
//!   Waiters of one run share a subscription; a dropped connection wakes them, and the next
//!   wait opens a new one.
//! - Queues: `claim_runs` is one script that counts the queue's executing runs (those with a
//!   live lease, by the server's clock), prunes the rate window (server clock too), makes due
//!   parked runs and runs whose lease lapsed candidates again, and takes candidates by priority,
//!   then age, then run id. It looks at no more than 256 candidates per call, so a long head of
//!   runs whose key is at its limit delays the ones behind it to a later call. Wake times of
//!   parked runs are the engine's times, compared with the claim's `now_ms`; the `now_ms` of
//!   `queue_stats` is ignored (live leases are counted by the server's clock).
//!   `wait_for_work` and `wait_for_events` wake through pub/sub like signal waits: a channel
//!   per queue (published on enqueue and when a parked run's signal arrives) and per event log.
//! - Event logs are lists: an event's offset is its index, assigned by the append script, and
//!   a log expires with its run's other keys.
//! - The scripts touch index keys they compute, so the store needs a single Redis server (or a
//!   primary with replicas), not Redis Cluster.
//!
//! The store needs a Tokio runtime.
mod admin;
mod builder;
mod codec;
mod error;
mod events;
mod journal;
mod keys;
mod leases;
mod listener;
mod queues;
mod rates;
mod scripts;
mod signals;

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durably_core::{Error, Result, RunRecord, RunUpdate};
use redis::aio::ConnectionManager;

use crate::codec::{check_size, decode_run};
use crate::error::fail;
use crate::keys::Keys;
use crate::listener::Listener;
use crate::scripts::Scripts;

/// The key prefix when none is given.
pub const DEFAULT_PREFIX: &str = "durably";

/// The time-to-live of a run's keys when none is given: 24 hours.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The longest TTL kept as given; longer ones are cut to it (Redis rejects expiry times far in
/// the future). Use `Duration::ZERO` to keep keys forever.
const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// How long to wait for a TCP connection to the server.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a call waits for the server's reply when none is given.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a signal wait sleeps when no pub/sub connection can be had (the engine then
/// checks the store again).
const POLL_FALLBACK: Duration = Duration::from_secs(1);

/// The most run ids one script call of `renew_leases` or `cancelled_runs` takes: a script
/// blocks the server while it runs, so a long list goes in several calls.
const BATCH: usize = 1_000;

/// A [`Store`](durably_core::Store) in Redis. See the [crate docs](crate) for how it works.
///
/// Cheap to share through `Arc` (the engine does); every call goes through one multiplexed
/// connection that reconnects on its own.
pub struct RedisStore {
    conn: ConnectionManager,
    client: redis::Client,
    keys: Keys,
    ttl: Duration,
    /// The TTL in milliseconds as the scripts take it; `"0"` keeps keys forever.
    ttl_arg: String,
    url: String,
    scripts: Scripts,
    listener: Mutex<Option<Arc<Listener>>>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.url)
            .field("prefix", &self.keys.prefix())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

pub use crate::builder::RedisStoreBuilder;

impl RedisStore {
    /// Connects with the default prefix and TTL. See [`RedisStoreBuilder::connect`].
    pub async fn connect(url: impl Into<String>) -> Result<Self> {
        Self::builder(url).connect().await
    }

    /// A builder for a store at `url` (`redis://[:password@]host[:port][/db]`,
    /// `rediss://` for TLS if the `redis` crate is built with it).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            prefix: DEFAULT_PREFIX.to_owned(),
            ttl: DEFAULT_TTL,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
        }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// The TTL of a run's keys; zero when they are kept forever.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The server's URL, with any password hidden.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A script call with the prefix and TTL arguments every script takes.
    fn invoke<'a>(&self, script: &'a redis::Script) -> redis::ScriptInvocation<'a> {
        let mut call = script.prepare_invoke();
        call.arg(self.keys.prefix()).arg(&self.ttl_arg);
        call
    }

    /// `update_run`, optionally leaving a cancelled run alone (then `Ok(false)`), in one script.
    async fn update(&self, run_id: &str, update: &RunUpdate, unless_cancelled: bool) -> Result<bool> {
        let op = if unless_cancelled { "update_run_unless_cancelled" } else { "update_run" };
        for (what, value) in
            [("output", &update.output), ("error", &update.error), ("waiting_on", &update.waiting_on)]
        {
            if let Some(value) = value {
                check_size(op, run_id, || format!("the run's {what}"), value.len())?;
            }
        }
        let mut call = self.invoke(&self.scripts.update_run);
        call.arg(run_id).arg(update.status.as_str()).arg(update.now_ms);
        opt_arg(&mut call, update.output.as_deref());
        opt_arg(&mut call, update.error.as_deref());
        opt_arg(&mut call, update.waiting_on.as_deref());
        call.arg(if unless_cancelled { "1" } else { "0" });
        match call.invoke_async::<i64>(&mut self.conn.clone()).await.map_err(fail(op, run_id))? {
            0 => Err(Error::RunNotFound { run_id: run_id.to_owned() }),
            2 => Ok(false),
            _ => Ok(true),
        }
    }

    /// Waits for a message on pub/sub `channel`, or at most `max_wait`, unless `done` says there
    /// is no need. `done` runs once the subscription is active, so that whatever is published
    /// after it looked wakes the wait (it also returns `true` when the store cannot tell: the
    /// caller then looks again itself). Without a pub/sub connection, sleeps a short while.
    async fn wait_on(&self, channel: String, done: impl Future<Output = bool> + Send, max_wait: Duration) {
        let deadline = tokio::time::Instant::now() + max_wait;
        let fallback = || tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + POLL_FALLBACK));
        let Some(listener) = self.listener().await else {
            fallback().await;
            return;
        };
        let waiter = listener.waiter(channel);
        let look = async {
            match tokio::time::timeout_at(deadline, waiter.subscribe()).await {
                Ok(true) => {}
                Ok(false) => {
                    fallback().await;
                    return true;
                }
                Err(_) => return true,
            }
            done.await
        };
        waiter.waiting().wait_unless(look, max_wait).await;
    }

    /// The shared pub/sub connection, opened on first use and again after it dropped.
    async fn listener(&self) -> Option<Arc<Listener>> {
        if let Some(listener) = self.current_listener() {
            return Some(listener);
        }
        let fresh = match Listener::connect(&self.client).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(target: "durably", error = %e, url = %self.url, "cannot open a Redis pub/sub connection");
                return None;
            }
        };
        let mut slot = self.listener.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            // Another call opened one meanwhile: use it, and let ours close.
            Some(other) if other.is_alive() => Some(Arc::clone(other)),
            _ => {
                *slot = Some(Arc::clone(&fresh));
                Some(fresh)
            }
        }
    }

    fn current_listener(&self) -> Option<Arc<Listener>> {
        let slot = self.listener.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref().filter(|l| l.is_alive()).map(Arc::clone)
    }
}

fn opt_arg(call: &mut redis::ScriptInvocation<'_>, value: Option<&str>) {
    match value {
        Some(v) => call.arg("1").arg(v),
        None => call.arg("0").arg(""),
    };
}

fn decode_runs(flats: Vec<Vec<String>>) -> Result<Vec<RunRecord>> {
    flats
        .into_iter()
        .map(|flat| {
            let hint = id_field(&flat).unwrap_or_default();
            decode_run(&hint, flat)
        })
        .collect()
}

/// The `id` field of a flat run hash, to name the run in an error about the rest.
fn id_field(flat: &[String]) -> Option<String> {
    flat.chunks(2).find(|pair| pair[0] == "id").and_then(|pair| pair.get(1)).cloned()
}
