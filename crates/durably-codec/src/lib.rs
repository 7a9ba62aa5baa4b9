//! At-rest protection for durably's stored values (the facade's feature `encryption`, as
//! `durably::codec`): compression and authenticated
//! encryption applied to every value a store keeps — step values and errors, run inputs,
//! outputs and errors, signal payloads — by wrapping the store:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> durably_core::Result<()> {
//! use durably_codec::{Codec, CodecStore};
//!
//! let key = [7u8; 32]; // from your secret manager, never from source code
//! let store = CodecStore::new(durably_core::MemoryStore::new(), Codec::new().encrypt(key).compress(true));
//! let wf = durably_core::Workflow::builder("app").store(store).build();
//! let n: u32 = wf.run("r1", |_| async { durably_core::step("n", || async { Ok::<_, std::io::Error>(7u32) }).await }).await?;
//! assert_eq!(n, 7);
//! # Ok(()) }
//! ```
//!
//! Encryption is XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`) with a random 192-bit
//! nonce per value, and the run id, the record and the field as associated data: a value copied
//! into another run or another step fails to decrypt instead of being read there. Compression is
//! LZ4 (`lz4_flex`), applied before encryption to values of 256 bytes or more.
//!
//! An encoded value is stored as a JSON string, `"dv1:<flags>:<base64>"`, so every store keeps
//! accepting it (PostgreSQL's `jsonb` included). Values written before the codec was turned on
//! are read as they are. Ids, step and workflow names, statuses and `waiting_on` stay in clear:
//! stores need them for lookups. Losing the key loses the values: keep it safe.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use durably_core::store::prelude::*;
use durably_core::{
    Claim, Error, EventRecord, LeaseOutcome, NewEvent, NewRun, QueueStats, QueuedRun, Result, RunFilter,
    RunHistory, RunRecord, RunUpdate, SignalRecord, StepRecord,
};

const PREFIX: &str = "\"dv1:";
const COMPRESS_FROM: usize = 256;
const FLAG_LZ4: char = 'z';
const FLAG_AEAD: char = 'e';

/// What to apply to stored values. `Codec::new()` alone applies nothing.
#[derive(Clone)]
pub struct Codec {
    cipher: Option<XChaCha20Poly1305>,
    compress: bool,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Codec")
            .field("encrypt", &self.cipher.is_some())
            .field("compress", &self.compress)
            .finish()
    }
}

impl Default for Codec {
    fn default() -> Self {
        Codec::new()
    }
}

impl Codec {
    /// A codec that leaves values as they are until configured.
    pub fn new() -> Self {
        Codec { cipher: None, compress: false }
    }

    /// Encrypts every value with this 256-bit key.
    pub fn encrypt(mut self, key: [u8; 32]) -> Self {
        self.cipher = Some(XChaCha20Poly1305::new(&key.into()));
        self
    }

    /// Compresses values of 256 bytes or more.
    pub fn compress(mut self, yes: bool) -> Self {
        self.compress = yes;
        self
    }

    fn is_identity(&self) -> bool {
        self.cipher.is_none() && !self.compress
    }

    /// Encodes `text`; `aad` binds it to where it is stored.
    fn encode(&self, text: &str, aad: &str) -> Result<String> {
        if self.is_identity() {
            return Ok(text.to_owned());
        }
        let mut flags = String::new();
        let mut bytes = text.as_bytes().to_vec();
        if self.compress && bytes.len() >= COMPRESS_FROM {
            bytes = lz4_flex::compress_prepend_size(&bytes);
            flags.push(FLAG_LZ4);
        }
        if let Some(cipher) = &self.cipher {
            let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
            let sealed =
                cipher.encrypt(&nonce, Payload { msg: &bytes, aad: aad.as_bytes() }).map_err(|_| {
                    Error::Invalid { what: "encryption", detail: format!("could not encrypt {aad}") }
                })?;
            bytes = nonce.iter().copied().chain(sealed).collect();
            flags.push(FLAG_AEAD);
        }
        Ok(format!("{PREFIX}{flags}:{}\"", B64.encode(bytes)))
    }

    /// Decodes what [`encode`](Self::encode) produced; other text passes through.
    fn decode(&self, stored: String, run_id: &str, step_id: Option<&str>, aad: &str) -> Result<String> {
        let Some(body) = stored.strip_prefix(PREFIX).and_then(|b| b.strip_suffix('"')) else {
            return Ok(stored);
        };
        let corrupt = |detail: String| Error::Corrupt {
            run_id: run_id.to_owned(),
            step_id: step_id.map(str::to_owned),
            detail,
        };
        let (flags, data) =
            body.split_once(':').ok_or_else(|| corrupt(format!("{aad}: malformed encoded value")))?;
        let mut bytes = B64.decode(data).map_err(|e| corrupt(format!("{aad}: bad base64 ({e})")))?;
        if flags.contains(FLAG_AEAD) {
            let cipher = self
                .cipher
                .as_ref()
                .ok_or_else(|| corrupt(format!("{aad} is encrypted and no key was given to the codec")))?;
            if bytes.len() < 24 {
                return Err(corrupt(format!("{aad}: encrypted value too short")));
            }
            let (nonce, sealed) = bytes.split_at(24);
            bytes = cipher
                .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: aad.as_bytes() })
                .map_err(|_| {
                corrupt(format!("{aad} does not decrypt: wrong key, tampered, or copied from elsewhere"))
            })?;
        }
        if flags.contains(FLAG_LZ4) {
            bytes = lz4_flex::decompress_size_prepended(&bytes)
                .map_err(|e| corrupt(format!("{aad}: bad compressed data ({e})")))?;
        }
        String::from_utf8(bytes).map_err(|_| corrupt(format!("{aad}: not UTF-8 after decoding")))
    }
}

/// A store whose values pass through a [`Codec`]. See the [module docs](self).
#[derive(Debug)]
pub struct CodecStore<S> {
    inner: S,
    codec: Codec,
}

impl<S: Store> CodecStore<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, codec: Codec) -> Self {
        CodecStore { inner, codec }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn enc_opt(&self, v: &Option<String>, aad: &str) -> Result<Option<String>> {
        v.as_deref().map(|t| self.codec.encode(t, aad)).transpose()
    }

    fn dec_opt(
        &self,
        v: Option<String>,
        run_id: &str,
        step: Option<&str>,
        aad: &str,
    ) -> Result<Option<String>> {
        v.map(|t| self.codec.decode(t, run_id, step, aad)).transpose()
    }

    fn decode_run(&self, mut run: RunRecord) -> Result<RunRecord> {
        let id = run.run_id.clone();
        run.input = self.dec_opt(run.input.take(), &id, None, &aad_run(&id, "input"))?;
        run.output = self.dec_opt(run.output.take(), &id, None, &aad_run(&id, "output"))?;
        run.error = self.dec_opt(run.error.take(), &id, None, &aad_run(&id, "error"))?;
        Ok(run)
    }

    fn encode_step(&self, run_id: &str, step: &StepRecord) -> Result<StepRecord> {
        let mut out = step.clone();
        out.value = self.enc_opt(&step.value, &aad_step(run_id, &step.step_id, "value"))?;
        out.error = self.enc_opt(&step.error, &aad_step(run_id, &step.step_id, "error"))?;
        Ok(out)
    }

    fn decode_step(&self, run_id: &str, mut step: StepRecord) -> Result<StepRecord> {
        let sid = step.step_id.clone();
        step.value = self.dec_opt(step.value.take(), run_id, Some(&sid), &aad_step(run_id, &sid, "value"))?;
        step.error = self.dec_opt(step.error.take(), run_id, Some(&sid), &aad_step(run_id, &sid, "error"))?;
        Ok(step)
    }
}

fn aad_run(run_id: &str, field: &str) -> String {
    format!("run {run_id:?} {field}")
}

fn aad_step(run_id: &str, step_id: &str, field: &str) -> String {
    format!("run {run_id:?} step {step_id:?} {field}")
}

fn aad_signal(run_id: &str, name: &str) -> String {
    format!("run {run_id:?} signal {name:?}")
}

fn aad_event(run_id: &str) -> String {
    format!("run {run_id:?} event")
}

#[async_trait]
impl<S: Store> Journal for CodecStore<S> {
    async fn open_run(&self, mut run: NewRun) -> Result<RunHistory> {
        run.input = self.enc_opt(&run.input, &aad_run(&run.run_id, "input"))?;
        let history = self.inner.open_run(run).await?;
        let run = self.decode_run(history.run)?;
        let id = run.run_id.clone();
        let steps =
            history.steps.into_iter().map(|s| self.decode_step(&id, s)).collect::<Result<Vec<_>>>()?;
        let signals = history
            .signals
            .into_iter()
            .map(|mut s| {
                s.payload = self.codec.decode(s.payload, &id, None, &aad_signal(&id, &s.name))?;
                Ok(s)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RunHistory::new(run, steps, signals))
    }
    async fn save_step(&self, run_id: &str, step: &StepRecord) -> Result<()> {
        let encoded = self.encode_step(run_id, step)?;
        self.inner.save_step(run_id, &encoded).await
    }
    async fn update_run(&self, run_id: &str, update: &RunUpdate) -> Result<()> {
        let mut encoded = update.clone();
        encoded.output = self.enc_opt(&update.output, &aad_run(run_id, "output"))?;
        encoded.error = self.enc_opt(&update.error, &aad_run(run_id, "error"))?;
        self.inner.update_run(run_id, &encoded).await
    }
    async fn get_run(&self, run_id: &str) -> Result<Option<RunRecord>> {
        self.inner.get_run(run_id).await?.map(|r| self.decode_run(r)).transpose()
    }
    async fn list_steps(&self, run_id: &str) -> Result<Vec<StepRecord>> {
        self.inner.list_steps(run_id).await?.into_iter().map(|s| self.decode_step(run_id, s)).collect()
    }
}

#[async_trait]
impl<S: Store> Signals for CodecStore<S> {
    async fn deliver_signal(&self, run_id: &str, signal: &SignalRecord) -> Result<bool> {
        let mut encoded = signal.clone();
        encoded.payload = self.codec.encode(&signal.payload, &aad_signal(run_id, &signal.name))?;
        self.inner.deliver_signal(run_id, &encoded).await
    }
    async fn get_signal(&self, run_id: &str, name: &str) -> Result<Option<String>> {
        let stored = self.inner.get_signal(run_id, name).await?;
        self.dec_opt(stored, run_id, None, &aad_signal(run_id, name))
    }
    async fn list_signals(&self, run_id: &str) -> Result<Vec<SignalRecord>> {
        self.inner
            .list_signals(run_id)
            .await?
            .into_iter()
            .map(|mut s| {
                s.payload = self.codec.decode(s.payload, run_id, None, &aad_signal(run_id, &s.name))?;
                Ok(s)
            })
            .collect()
    }
    async fn wait_for_signal(&self, run_id: &str, name: &str, max_wait: Duration) {
        self.inner.wait_for_signal(run_id, name, max_wait).await
    }
}

#[async_trait]
impl<S: Store> Leases for CodecStore<S> {
    fn now_ms(&self) -> i64 {
        self.inner.now_ms()
    }
    async fn acquire_lease(
        &self,
        run_id: &str,
        owner: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<LeaseOutcome> {
        self.inner.acquire_lease(run_id, owner, ttl, now_ms).await
    }
    async fn release_lease(&self, run_id: &str, owner: &str) -> Result<()> {
        self.inner.release_lease(run_id, owner).await
    }
    async fn renew_leases(
        &self,
        run_ids: &[String],
        owner: &str,
        ttl: Duration,
        now_ms: i64,
    ) -> Result<Vec<(String, Option<String>)>> {
        self.inner.renew_leases(run_ids, owner, ttl, now_ms).await
    }
    async fn cancelled_runs(&self, run_ids: &[String]) -> Result<Vec<String>> {
        self.inner.cancelled_runs(run_ids).await
    }
    async fn recoverable_runs(&self, now_ms: i64, limit: usize) -> Result<Vec<RunRecord>> {
        self.inner.recoverable_runs(now_ms, limit).await?.into_iter().map(|r| self.decode_run(r)).collect()
    }
    async fn update_run_unless_cancelled(&self, run_id: &str, update: &RunUpdate) -> Result<bool> {
        let mut encoded = update.clone();
        encoded.output = self.enc_opt(&update.output, &aad_run(run_id, "output"))?;
        encoded.error = self.enc_opt(&update.error, &aad_run(run_id, "error"))?;
        self.inner.update_run_unless_cancelled(run_id, &encoded).await
    }
}

#[async_trait]
impl<S: Store> Admin for CodecStore<S> {
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        self.inner.list_runs(filter).await?.into_iter().map(|r| self.decode_run(r)).collect()
    }
    async fn delete_run(&self, run_id: &str) -> Result<bool> {
        self.inner.delete_run(run_id).await
    }
}

#[async_trait]
impl<S: Store> Queues for CodecStore<S> {
    async fn enqueue(&self, run: &QueuedRun) -> Result<(RunRecord, bool)> {
        let mut encoded = run.clone();
        encoded.input = self.enc_opt(&run.input, &aad_run(&run.run_id, "input"))?;
        let (stored, created) = self.inner.enqueue(&encoded).await?;
        Ok((self.decode_run(stored)?, created))
    }
    async fn claim_runs(&self, claim: &Claim) -> Result<Vec<RunRecord>> {
        let runs = self.inner.claim_runs(claim).await?;
        runs.into_iter().map(|run| self.decode_run(run)).collect()
    }
    async fn park_run(
        &self,
        run_id: &str,
        owner: &str,
        waiting_on: &str,
        wake_at_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<bool> {
        self.inner.park_run(run_id, owner, waiting_on, wake_at_ms, now_ms).await
    }
    async fn queue_stats(&self, queue: &str, now_ms: i64) -> Result<QueueStats> {
        self.inner.queue_stats(queue, now_ms).await
    }
    async fn queue_names(&self) -> Result<Vec<String>> {
        self.inner.queue_names().await
    }
    async fn wait_for_work(&self, queues: &[String], max_wait: Duration) {
        self.inner.wait_for_work(queues, max_wait).await
    }
}

/// Rate limits hold counts, not values: nothing to encode.
#[async_trait]
impl<S: Store> RateLimits for CodecStore<S> {
    async fn acquire_rate(&self, acquire: &durably_core::RateAcquire) -> Result<durably_core::RateDecision> {
        self.inner.acquire_rate(acquire).await
    }
    async fn settle_rate(
        &self,
        key: &str,
        grant_id: &str,
        actual: durably_core::RateCost,
        now_ms: i64,
    ) -> Result<()> {
        self.inner.settle_rate(key, grant_id, actual, now_ms).await
    }
    async fn block_rate(&self, key: &str, duration: Duration, now_ms: i64) -> Result<()> {
        self.inner.block_rate(key, duration, now_ms).await
    }
}

/// Event data is encoded like every other value; kinds stay in clear.
#[async_trait]
impl<S: Store> Events for CodecStore<S> {
    async fn append_events(&self, run_id: &str, events: &[NewEvent], keep: u64) -> Result<u64> {
        let aad = aad_event(run_id);
        let encoded = events
            .iter()
            .map(|e| Ok(NewEvent::new(e.kind.clone(), self.codec.encode(&e.data, &aad)?, e.at_ms)))
            .collect::<Result<Vec<_>>>()?;
        self.inner.append_events(run_id, &encoded, keep).await
    }
    async fn read_events(&self, run_id: &str, from: u64, limit: usize) -> Result<Vec<EventRecord>> {
        let aad = aad_event(run_id);
        let events = self.inner.read_events(run_id, from, limit).await?;
        events
            .into_iter()
            .map(|mut e| {
                e.data = self.codec.decode(e.data, run_id, None, &aad)?;
                Ok(e)
            })
            .collect()
    }
    async fn wait_for_events(&self, run_id: &str, from: u64, max_wait: Duration) {
        self.inner.wait_for_events(run_id, from, max_wait).await
    }
}
