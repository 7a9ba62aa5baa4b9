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
//! Every key of a run (its record, steps and signals) gets the store's TTL again on every
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
//! - `list_runs` walks sorted-set indexes (all runs, per status, per workflow, unfinished).
//!   Index entries of runs that expired are dropped when met, and a few at each run creation
//!   (found through an index of last-write times), so indexes do not grow with runs long gone.
//!   Creation times are scores, exact up to 2^53 ms (the year 287 396).
//! - Leases are `SET … PXAT` keys holding the owner, with expiry by the **server's clock**: the
//!   `now_ms` argument of [`Store::acquire_lease`] and [`Store::recoverable_runs`] is ignored, so
//!   clock skew between workers does not matter.
//! - Signal wake-ups: each store opens one pub/sub connection, at its first signal wait. A wait
//!   subscribes to the run's channel and only then looks for the signal, and a delivery
//!   publishes on that channel in the script that records it, so no delivery goes unnoticed.
//!   Waiters of one run share a subscription; a dropped connection wakes them, and the next
//!   wait opens a new one.
//! - The scripts touch index keys they compute, so the store needs a single Redis server (or a
//!   primary with replicas), not Redis Cluster.
//!
//! The store needs a Tokio runtime.

mod codec;
mod keys;
mod listener;
mod scripts;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use durably_core::store::prelude::*;
use durably_core::{
    Error, Lease, LeaseOutcome, NewRun, Result, RunFilter, RunHistory, RunRecord, RunUpdate, SignalRecord,
    StepRecord,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::codec::{
    check_size, decode_run, decode_signal, decode_step, encode_signal, encode_step, sort_signals, sort_steps,
};
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

/// A [`Store`] in Redis. See the [crate docs](crate) for how it works.
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

/// Options of a [`RedisStore`]; see [`RedisStore::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `connect` is called"]
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
    ttl: Duration,
    response_timeout: Duration,
}

impl RedisStoreBuilder {
    /// The prefix of every key (default [`DEFAULT_PREFIX`]). Keys are `<prefix>:<kind>:…`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a run's keys live after its last write (default [`DEFAULT_TTL`], 24 hours).
    /// `Duration::ZERO` keeps them forever. Below a millisecond counts as one millisecond.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long one call waits for the server's reply before it fails with [`Error::Store`]
    /// (default [`DEFAULT_RESPONSE_TIMEOUT`], 10 s; `Duration::ZERO` waits forever). A call that
    /// timed out may still have been carried out. Raise it for very large values or histories
    /// on a slow server.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Connects to the server. Fails with [`Error::Invalid`] for a malformed URL and with
    /// [`Error::Store`] (operation `connect`) when the server does not answer; both name the
    /// URL with its password hidden.
    pub async fn connect(self) -> Result<RedisStore> {
        let url = redact(&self.url);
        if self.prefix.is_empty() {
            return Err(Error::Invalid { what: "Redis key prefix", detail: "the prefix is empty".into() });
        }
        let client = redis::Client::open(self.url.as_str())
            .map_err(|e| Error::Invalid { what: "Redis URL", detail: format!("`{url}`: {e}") })?;
        let connect_error = |e: redis::RedisError| {
            Error::store("connect", None, ConnectError { url: url.clone(), source: e })
        };
        // One plain attempt first, so that a wrong address fails at once with its own error
        // instead of after the manager's reconnection backoff.
        let probe = redis::AsyncConnectionConfig::new().set_connection_timeout(Some(CONNECTION_TIMEOUT));
        let mut probe =
            client.get_multiplexed_async_connection_with_config(&probe).await.map_err(connect_error)?;
        let () =
            redis::cmd("PING").query_async::<String>(&mut probe).await.map(drop).map_err(connect_error)?;
        drop(probe);
        let response_timeout = (!self.response_timeout.is_zero()).then_some(self.response_timeout);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_response_timeout(response_timeout);
        let conn = ConnectionManager::new_with_config(client.clone(), config).await.map_err(connect_error)?;
        let ttl = self.ttl.min(MAX_TTL);
        let ttl_arg = if ttl.is_zero() { "0".to_owned() } else { ttl.as_millis().max(1).to_string() };
        Ok(RedisStore {
            conn,
            client,
            keys: Keys::new(&self.prefix),
            ttl,
            ttl_arg,
            url,
            scripts: Scripts::new(),
            listener: Mutex::new(None),
        })
    }
}

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

/// Maps a driver error to a store error naming the operation and run.
fn fail<'a>(op: &'static str, run_id: impl Into<Option<&'a str>>) -> impl FnOnce(redis::RedisError) -> Error {
    let run_id = run_id.into().map(str::to_owned);
    move |e| Error::Store { op, run_id, source: Box::new(e) }
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

#[async_trait]
impl Journal for RedisStore {
    async fn open_run(&self, run: NewRun) -> Result<RunHistory> {
        let op = "open_run";
        if let Some(input) = &run.input {
            check_size(op, &run.run_id, || "the run's input".to_owned(), input.len())?;
        }
        let mut call = self.invoke(&self.scripts.open_run);
        call.arg(&run.run_id).arg(&run.workflow).arg(run.now_ms);
        opt_arg(&mut call, run.input.as_deref());
        let (flat, steps, signals): (Vec<String>, Vec<String>, Vec<String>) =
            call.invoke_async(&mut self.conn.clone()).await.map_err(fail(op, run.run_id.as_str()))?;
        let record = decode_run(&run.run_id, flat)?;
        let mut steps =
            steps.iter().map(|text| decode_step(&run.run_id, text)).collect::<Result<Vec<StepRecord>>>()?;
        sort_steps(&mut steps);
        let mut fields = signals.into_iter();
        let mut delivered = Vec::new();
        while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
            delivered.push(decode_signal(&run.run_id, name, &value)?);
        }
        sort_signals(&mut delivered);
        Ok(RunHistory::new(record, steps, delivered))
    }
    async fn save_step(&self, run_id: &str, step: &StepRecord) -> Result<()> {
        let text = encode_step(run_id, step)?;
        let mut call = self.invoke(&self.scripts.save_step);
        let bytes = text.len();
        call.arg(run_id).arg(&step.step_id).arg(text);
        let _: i64 = call.invoke_async(&mut self.conn.clone()).await.map_err(|e| {
            let mut what = format!("step `{}`", step.step_id);
            if bytes > 1024 * 1024 && (e.is_io_error() || e.to_string().contains("bulk length")) {
                // A server refuses an argument over its `proto-max-bulk-len` with a protocol
                // error and closes the connection; the client may see only the reset.
                what.push_str(&format!(
                    " (its record is {bytes} bytes: a server whose proto-max-bulk-len is lower closes the connection)"
                ));
            }
            Error::store("save_step", Some(run_id), Context::new(what, e))
        })?;
        Ok(())
    }
    async fn update_run(&self, run_id: &str, update: &RunUpdate) -> Result<()> {
        self.update(run_id, update, false).await.map(drop)
    }
    async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        let fields: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(self.keys.run(run_id))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(fail("get_run", run_id))?;
        if fields.is_empty() {
            return Ok(None);
        }
        let flat = fields.into_iter().flat_map(|(k, v)| [k, v]).collect();
        decode_run(run_id, flat).map(Some)
    }
    async fn list_steps(&self, run_id: &str) -> Result<Vec<StepRecord>> {
        let texts: Vec<String> = redis::cmd("HVALS")
            .arg(self.keys.steps(run_id))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(fail("list_steps", run_id))?;
        let mut steps = texts.iter().map(|t| decode_step(run_id, t)).collect::<Result<Vec<_>>>()?;
        sort_steps(&mut steps);
        Ok(steps)
    }
}

#[async_trait]
impl Signals for RedisStore {
    async fn deliver_signal(&self, run_id: &str, signal: &SignalRecord) -> Result<bool> {
        let op = "deliver_signal";
        check_size(
            op,
            run_id,
            || format!("the payload of signal `{}`", signal.name),
            signal.payload.len() + 21,
        )?;
        let mut call = self.invoke(&self.scripts.deliver_signal);
        call.arg(run_id).arg(&signal.name).arg(encode_signal(signal));
        let delivered: i64 = call.invoke_async(&mut self.conn.clone()).await.map_err(|e| {
            Error::store(op, Some(run_id), Context::new(format!("signal `{}`", signal.name), e))
        })?;
        Ok(delivered == 1)
    }
    async fn get_signal(&self, run_id: &str, name: &str) -> Result<Option<String>> {
        let value: Option<String> = redis::cmd("HGET")
            .arg(self.keys.signals(run_id))
            .arg(name)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(fail("get_signal", run_id))?;
        value.map(|v| decode_signal(run_id, name.to_owned(), &v).map(|s| s.payload)).transpose()
    }
    async fn list_signals(&self, run_id: &str) -> Result<Vec<SignalRecord>> {
        let fields: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(self.keys.signals(run_id))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(fail("list_signals", run_id))?;
        let mut signals = fields
            .into_iter()
            .map(|(name, value)| decode_signal(run_id, name, &value))
            .collect::<Result<Vec<_>>>()?;
        sort_signals(&mut signals);
        Ok(signals)
    }
    async fn wait_for_signal(&self, run_id: &str, name: &str, max_wait: Duration) {
        let deadline = tokio::time::Instant::now() + max_wait;
        let Some(listener) = self.listener().await else {
            tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + POLL_FALLBACK)).await;
            return;
        };
        let mut waiter = listener.waiter(self.keys.wake(run_id));
        let notify = waiter.notify();
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // Subscribe before looking, so that a delivery after the look is announced to us.
        match tokio::time::timeout_at(deadline, waiter.subscribe()).await {
            Ok(true) => {}
            Ok(false) => {
                tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + POLL_FALLBACK)).await;
                return;
            }
            Err(_) => return,
        }
        match self.get_signal(run_id, name).await {
            // Delivered already, or the store failed: the engine's own look will tell.
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => {}
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}

#[async_trait]
impl Leases for RedisStore {
    async fn acquire_lease(
        &self,
        run_id: &str,
        owner: &str,
        ttl: Duration,
        _now_ms: i64,
    ) -> Result<LeaseOutcome> {
        let ttl_ms = ttl.min(MAX_TTL).as_millis().max(1);
        let mut call = self.invoke(&self.scripts.acquire_lease);
        call.arg(run_id).arg(owner).arg(ttl_ms.to_string());
        let reply: Vec<String> =
            call.invoke_async(&mut self.conn.clone()).await.map_err(fail("acquire_lease", run_id))?;
        match reply.as_slice() {
            [granted] if granted == "1" => Ok(LeaseOutcome::Acquired),
            [_, holder, expires] => {
                let expires_at_ms = expires.parse().map_err(|_| Error::Corrupt {
                    run_id: run_id.to_owned(),
                    step_id: None,
                    detail: format!("the lease's expiry `{expires}` is not a time in milliseconds"),
                })?;
                Ok(LeaseOutcome::HeldBy(Lease::new(holder.clone(), expires_at_ms)))
            }
            other => Err(Error::Corrupt {
                run_id: run_id.to_owned(),
                step_id: None,
                detail: format!("unexpected reply from the lease script: {other:?}"),
            }),
        }
    }
    async fn release_lease(&self, run_id: &str, owner: &str) -> Result<()> {
        let mut call = self.invoke(&self.scripts.release_lease);
        call.arg(run_id).arg(owner);
        let _: i64 =
            call.invoke_async(&mut self.conn.clone()).await.map_err(fail("release_lease", run_id))?;
        Ok(())
    }
    /// One script call per 1,000 leases, extending only `owner`'s, by the server's clock
    /// (`now_ms` is ignored, as in `acquire_lease`).
    async fn renew_leases(
        &self,
        run_ids: &[String],
        owner: &str,
        ttl: Duration,
        _now_ms: i64,
    ) -> Result<Vec<(String, Option<String>)>> {
        let ttl_ms = ttl.min(MAX_TTL).as_millis().max(1).to_string();
        let mut lost = Vec::new();
        for chunk in run_ids.chunks(BATCH) {
            let mut call = self.invoke(&self.scripts.renew_leases);
            call.arg(owner).arg(&ttl_ms).arg(chunk);
            let reply: Vec<String> =
                call.invoke_async(&mut self.conn.clone()).await.map_err(fail("renew_leases", None))?;
            for found in reply.chunks(3) {
                match found {
                    [run_id, held, holder] => {
                        lost.push((run_id.clone(), (held == "1").then(|| holder.clone())));
                    }
                    other => {
                        return Err(Error::Corrupt {
                            run_id: other.first().cloned().unwrap_or_default(),
                            step_id: None,
                            detail: format!("unexpected reply from the lease renewal script: {other:?}"),
                        });
                    }
                }
            }
        }
        Ok(lost)
    }
    /// One script call per 1,000 ids.
    async fn cancelled_runs(&self, run_ids: &[String]) -> Result<Vec<String>> {
        let mut cancelled = Vec::new();
        for chunk in run_ids.chunks(BATCH) {
            let mut call = self.invoke(&self.scripts.cancelled_runs);
            call.arg(chunk);
            let found: Vec<String> =
                call.invoke_async(&mut self.conn.clone()).await.map_err(fail("cancelled_runs", None))?;
            cancelled.extend(found);
        }
        Ok(cancelled)
    }
    async fn recoverable_runs(&self, _now_ms: i64, limit: usize) -> Result<Vec<RunRecord>> {
        let mut call = self.invoke(&self.scripts.recoverable_runs);
        call.arg(limit.to_string());
        let flats: Vec<Vec<String>> =
            call.invoke_async(&mut self.conn.clone()).await.map_err(fail("recoverable_runs", None))?;
        decode_runs(flats)
    }
    async fn update_run_unless_cancelled(&self, run_id: &str, update: &RunUpdate) -> Result<bool> {
        self.update(run_id, update, true).await
    }
}

#[async_trait]
impl Admin for RedisStore {
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let mut call = self.invoke(&self.scripts.list_runs);
        call.arg(filter.status.map(|s| s.as_str()).unwrap_or(""));
        opt_arg(&mut call, filter.workflow.as_deref());
        call.arg(filter.limit.map(|l| l.to_string()).unwrap_or_else(|| "-1".to_owned()));
        let flats: Vec<Vec<String>> =
            call.invoke_async(&mut self.conn.clone()).await.map_err(fail("list_runs", None))?;
        decode_runs(flats)
    }
    async fn delete_run(&self, run_id: &str) -> Result<bool> {
        let mut call = self.invoke(&self.scripts.delete_run);
        call.arg(run_id);
        let existed: i64 =
            call.invoke_async(&mut self.conn.clone()).await.map_err(fail("delete_run", run_id))?;
        Ok(existed == 1)
    }
}

/// A driver error with what it concerned (`step `fetch``).
#[derive(Debug)]
struct Context {
    what: String,
    source: redis::RedisError,
}

impl Context {
    fn new(what: String, source: redis::RedisError) -> Self {
        Context { what, source }
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

impl std::error::Error for Context {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// A failed connection, naming the server.
#[derive(Debug)]
struct ConnectError {
    url: String,
    source: redis::RedisError,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot connect to Redis at {}: {}", self.url, self.source)
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The URL with its password (user-info after `:`, or a `password=` query parameter) replaced
/// by `***`.
fn redact(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            let userinfo = &rest[..at];
            if let Some(colon) = userinfo.find(':') {
                let start = scheme_end + 3 + colon + 1;
                out.replace_range(start..scheme_end + 3 + at, "***");
            }
        }
    }
    if let Some(query) = out.find('?') {
        let (head, tail) = out.split_at(query + 1);
        let params: Vec<String> = tail
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("pass") => {
                    format!("{k}=***")
                }
                _ => p.to_owned(),
            })
            .collect();
        out = format!("{head}{}", params.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_hidden_in_urls() {
        assert_eq!(redact("redis://:s3cret@host:6379/0"), "redis://:***@host:6379/0");
        assert_eq!(redact("redis://user:s3cret@host"), "redis://user:***@host");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact("redis://user@host"), "redis://user@host");
        assert_eq!(
            redact("redis+unix:///tmp/r.sock?db=1&pass=s3cret"),
            "redis+unix:///tmp/r.sock?db=1&pass=***"
        );
    }
}
