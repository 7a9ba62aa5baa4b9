//! Rate limits (rule 28 of docs/design.md): named request and token budgets defined on an
//! engine and kept by the store ([`RateLimits`](crate::store::RateLimits)), so that every
//! worker sharing the store obeys one limit. A run waits for a grant with
//! [`RunContext::acquire_rate`] before a call the limit covers (an agent's model request), then
//! settles the grant with what the call really cost.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::context::{RunContext, current_step};
use crate::error::Result;
use crate::store::{RateAcquire, RateCost, RateDecision, RateLimit, Store, now_ms};
use crate::workflow::Workflow;

/// The limits an engine defines, by key.
#[derive(Debug, Default)]
pub(crate) struct RateLimitTable {
    limits: RwLock<HashMap<String, RateLimit>>,
}

impl RateLimitTable {
    pub(crate) fn get(&self, key: &str) -> Option<RateLimit> {
        self.limits.read().unwrap_or_else(|e| e.into_inner()).get(key).copied()
    }

    fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> =
            self.limits.read().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
        keys.sort();
        keys
    }

    fn insert(&self, key: String, limit: RateLimit) {
        self.limits.write().unwrap_or_else(|e| e.into_inner()).insert(key, limit);
    }
}

impl Workflow {
    /// Defines the rate limit `key` on this engine: runs that call
    /// [`RunContext::acquire_rate`] with that key wait until the store grants them room under
    /// `limit`, counted over every process sharing the store. Every engine sharing the store
    /// should define the same limit for a key. A limit of zero or a zero period is refused with
    /// [`Error::Invalid`](crate::Error::Invalid). Defining a key again replaces its limit.
    ///
    /// ```
    /// use std::time::Duration;
    /// use durably_core::{RateLimit, Workflow};
    ///
    /// let wf = Workflow::builder("app").build();
    /// wf.add_rate_limit("model:openai/gpt-4o-mini", RateLimit::per(Duration::from_secs(60)).requests(500).tokens(200_000))?;
    /// # Ok::<(), durably_core::Error>(())
    /// ```
    pub fn add_rate_limit(&self, key: impl Into<String>, limit: RateLimit) -> Result<&Self> {
        let key = key.into();
        limit.validate(&key)?;
        self.engine.env.rate_limits.insert(key, limit);
        Ok(self)
    }

    /// The rate limit defined for `key`.
    pub fn rate_limit(&self, key: &str) -> Option<RateLimit> {
        self.engine.env.rate_limits.get(key)
    }
}

/// Room granted under a rate limit: what [`RunContext::acquire_rate`] returns. Settle it with
/// the call's real cost once known ([`settle`](Self::settle)); a grant never settled keeps
/// counting its estimate for one period.
#[derive(Clone)]
#[must_use]
pub struct RateGrant {
    store: Arc<dyn Store>,
    key: String,
    id: String,
}

impl std::fmt::Debug for RateGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateGrant").field("key", &self.key).field("id", &self.id).finish_non_exhaustive()
    }
}

impl RateGrant {
    /// The limit's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The grant's id in the store.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Counts `actual` (the recorded usage) in place of the estimate, from now.
    pub async fn settle(&self, actual: RateCost) -> Result<()> {
        self.store.settle_rate(&self.key, &self.id, actual, now_ms()).await
    }

    /// Blocks the limit's key for everyone for `duration` (a provider's 429 `retry-after`).
    pub async fn block(&self, duration: Duration) -> Result<()> {
        self.store.block_rate(&self.key, duration, now_ms()).await
    }
}

impl RunContext {
    /// The rate limit defined for `key` on the engine executing this run.
    pub fn rate_limit(&self, key: &str) -> Option<RateLimit> {
        self.inner.env.rate_limits.get(key)
    }

    /// The keys of every rate limit defined on the engine executing this run, sorted.
    pub fn rate_limit_keys(&self) -> Vec<String> {
        self.inner.env.rate_limits.keys()
    }

    /// Waits until the store grants `cost` under the limit defined for `key`
    /// ([`Workflow::add_rate_limit`]), over every process sharing the store, and returns the
    /// grant; `None` at once when no limit is defined for `key`. The wait ends early with
    /// [`Error::Cancelled`](crate::Error::Cancelled) when the run is cancelled (or its lease
    /// lost). A cost above the limit is an [`Error::Invalid`](crate::Error::Invalid).
    ///
    /// Call it only where the call it covers is really made: never for a replayed step.
    pub async fn acquire_rate(&self, key: &str, cost: RateCost) -> Result<Option<RateGrant>> {
        let Some(limit) = self.rate_limit(key) else { return Ok(None) };
        let store = self.store().clone();
        let origin = current_step().map_or_else(|| self.run_id().to_owned(), |s| s.idempotency_key());
        let id = format!("{origin}#{:016x}", fastrand::u64(..));
        loop {
            self.check_cancelled()?;
            let acquire = RateAcquire::new(key, &id, limit, cost, now_ms());
            match store.acquire_rate(&acquire).await? {
                RateDecision::Granted => return Ok(Some(RateGrant { store, key: key.to_owned(), id })),
                RateDecision::RetryAt { wait, .. } => {
                    let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
                    tracing::debug!(target: "durably", run_id = %self.run_id(), rate_limit = %key, wait_ms, "waiting for the rate limit");
                    // At least a millisecond, so that a refusal at the window's edge cannot spin.
                    self.sleep_or_cancel(wait.max(Duration::from_millis(1))).await?;
                }
            }
        }
    }
}
