//! [`RateLimits`]: request and token budgets per period, shared through the store by every
//! process that uses it (a model's requests and tokens per minute), so that the limit holds
//! over all workers, not per worker.
//!
//! A limit keeps a log of *grants* per key: each grant counts its requests and tokens from the
//! time it was granted, and from the time it was settled once it is (see
//! [`RateLimits::settle_rate`]), for one period. An acquire that would take a window past the
//! limit is refused with the time at which enough of the log will have aged out, so that no
//! window of the period ever holds more than the limit.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::store::signals::unsupported_for;

/// At most `requests` requests and `tokens` tokens in any window of `period_ms` milliseconds
/// (`None`: that dimension is not limited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimit {
    /// Requests allowed per window.
    pub requests: Option<u32>,
    /// Tokens allowed per window.
    pub tokens: Option<u64>,
    /// The window, in milliseconds.
    pub period_ms: i64,
}

impl RateLimit {
    /// No limit yet, over windows of `period`: set [`requests`](Self::requests) and/or
    /// [`tokens`](Self::tokens).
    pub fn per(period: Duration) -> Self {
        RateLimit {
            requests: None,
            tokens: None,
            period_ms: i64::try_from(period.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// At most `requests` per window.
    pub fn requests(mut self, requests: u32) -> Self {
        self.requests = Some(requests);
        self
    }

    /// At most `tokens` per window.
    pub fn tokens(mut self, tokens: u64) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// Checks that the limit can ever grant anything: a zero limit or period is refused with
    /// [`Error::Invalid`] naming `key`.
    pub fn validate(&self, key: &str) -> Result<()> {
        let invalid = |detail: String| Err(Error::Invalid { what: "rate limit", detail });
        if self.requests == Some(0) {
            return invalid(format!(
                "rate limit `{key}`: 0 requests per period, so no request could ever be made"
            ));
        }
        if self.tokens == Some(0) {
            return invalid(format!(
                "rate limit `{key}`: 0 tokens per period, so no request could ever be made"
            ));
        }
        if self.period_ms <= 0 {
            return invalid(format!("rate limit `{key}`: the period must be at least 1 ms"));
        }
        Ok(())
    }

    /// Checks the limit ([`validate`](Self::validate)) and that `cost` fits in one window:
    /// a cost above the limit could never be granted and is refused with [`Error::Invalid`].
    pub fn check(&self, key: &str, cost: RateCost) -> Result<()> {
        self.validate(key)?;
        let too_big = |what: &str, cost: u64, limit: u64| {
            Err(Error::Invalid {
                what: "rate limit",
                detail: format!(
                    "rate limit `{key}`: a cost of {cost} {what} can never fit in a limit of {limit} per period"
                ),
            })
        };
        if let Some(limit) = self.requests
            && u64::from(cost.requests) > u64::from(limit)
        {
            return too_big("requests", u64::from(cost.requests), u64::from(limit));
        }
        if let Some(limit) = self.tokens
            && cost.tokens > limit
        {
            return too_big("tokens", cost.tokens, limit);
        }
        Ok(())
    }
}

/// What one grant counts: requests and tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateCost {
    /// Requests.
    pub requests: u32,
    /// Tokens (an estimate before the response; the recorded usage once settled).
    pub tokens: u64,
}

impl RateCost {
    /// `requests` requests and `tokens` tokens.
    pub fn new(requests: u32, tokens: u64) -> Self {
        RateCost { requests, tokens }
    }
}

/// The parameter of [`RateLimits::acquire_rate`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateAcquire {
    /// What is limited (`model:openai/gpt-4o`): keys are independent of each other.
    pub key: String,
    /// The grant's id, unique to this acquire (a random id): acquiring it again, after a lost
    /// reply, answers `Granted` without counting it twice; [`RateLimits::settle_rate`] names it.
    pub grant_id: String,
    /// The limit to keep.
    pub limit: RateLimit,
    /// What this grant counts.
    pub cost: RateCost,
    /// The current time, for stores on the caller's clock (a store on a server clock ignores
    /// it, as it does for leases and queue claims).
    pub now_ms: i64,
}

impl RateAcquire {
    /// An acquire of `cost` under `limit` for `key`, as grant `grant_id`.
    pub fn new(
        key: impl Into<String>,
        grant_id: impl Into<String>,
        limit: RateLimit,
        cost: RateCost,
        now_ms: i64,
    ) -> Self {
        RateAcquire { key: key.into(), grant_id: grant_id.into(), limit, cost, now_ms }
    }
}

/// The answer of [`RateLimits::acquire_rate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateDecision {
    /// Granted and counted: make the request.
    Granted,
    /// Refused, nothing counted: try again at `at_ms` (the store's clock), which is `wait` from
    /// now. The key is blocked until then, or the log must age until then for the cost to fit.
    RetryAt {
        /// When, by the store's clock.
        at_ms: i64,
        /// How long from now, so that callers on another clock wait the right time.
        wait: Duration,
    },
}

impl RateDecision {
    /// `RetryAt` of `at_ms`, seen at `now_ms`.
    pub fn retry_at(at_ms: i64, now_ms: i64) -> Self {
        let wait = Duration::from_millis(u64::try_from(at_ms.saturating_sub(now_ms)).unwrap_or(0));
        RateDecision::RetryAt { at_ms, wait }
    }
}

/// A grant in a key's log, as [`decide`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggedGrant {
    /// When it counts from.
    pub at_ms: i64,
    /// Its requests.
    pub requests: u64,
    /// Its tokens.
    pub tokens: u64,
}

/// The decision for `cost` under `limit` at `now_ms`, given the key's log within the window
/// (grants counting from after `now_ms - period_ms`), oldest first, and the time the key is
/// blocked until: `Granted`, or `RetryAt` the first time at which the grants still in the
/// window leave room for `cost`. Stores that compute the log in memory share it.
pub fn decide(
    limit: &RateLimit,
    cost: RateCost,
    log: &[LoggedGrant],
    blocked_until_ms: i64,
    now_ms: i64,
) -> RateDecision {
    if blocked_until_ms > now_ms {
        return RateDecision::retry_at(blocked_until_ms, now_ms);
    }
    let mut requests: u64 = log.iter().map(|g| g.requests).sum();
    let mut tokens: u64 = log.iter().map(|g| g.tokens).sum();
    let fits = |requests: u64, tokens: u64| {
        limit.requests.is_none_or(|max| requests + u64::from(cost.requests) <= u64::from(max))
            && limit.tokens.is_none_or(|max| tokens.saturating_add(cost.tokens) <= max)
    };
    if fits(requests, tokens) {
        return RateDecision::Granted;
    }
    for grant in log {
        requests -= grant.requests;
        tokens -= grant.tokens;
        if fits(requests, tokens) {
            return RateDecision::retry_at(grant.at_ms.saturating_add(limit.period_ms), now_ms);
        }
    }
    // Unreachable for a cost that passed `RateLimit::check`: an empty window fits it.
    RateDecision::retry_at(now_ms.saturating_add(limit.period_ms), now_ms)
}

/// Request and token budgets per key, shared by every process using the store.
///
/// Every method must be atomic across the processes sharing the store. The defaults fail with
/// [`Error::Invalid`]: a store without them still runs workflows, but no rate limit can be
/// kept on it.
#[async_trait]
pub trait RateLimits: Send + Sync {
    /// In one atomic step: unless the key is blocked ([`block_rate`](Self::block_rate)) or
    /// the grants of `acquire.key` that count within the window ending now, plus
    /// `acquire.cost`, would exceed `acquire.limit`, records grant `acquire.grant_id` with its
    /// cost at now and answers `Granted`; otherwise records nothing and answers `RetryAt` the
    /// earliest time the cost can fit. A grant id already recorded answers `Granted` without
    /// counting again. Grants older than the period are forgotten. A limit or cost that
    /// [`RateLimit::check`] refuses is an [`Error::Invalid`], and nothing is stored.
    async fn acquire_rate(&self, acquire: &RateAcquire) -> Result<RateDecision> {
        Err(unsupported_for("acquire_rate", &format!("rate limit `{}`", acquire.key)))
    }

    /// Settles grant `grant_id` of `key` once its response is known: from now on it counts
    /// `actual` (the recorded usage in place of the estimate) and it counts from the end of the
    /// current millisecond (`now_ms + 1`), so that a request counts for a whole period after
    /// its response, whatever the rounding of the clock. A grant already forgotten is recorded
    /// again.
    async fn settle_rate(&self, key: &str, grant_id: &str, actual: RateCost, now_ms: i64) -> Result<()> {
        let _ = (grant_id, actual, now_ms);
        Err(unsupported_for("settle_rate", &format!("rate limit `{key}`")))
    }

    /// Blocks `key` for `duration` from now (a provider answered 429 with a `retry-after`):
    /// until then every acquire is refused with `RetryAt` the end of the block. A shorter
    /// block than one in place changes nothing.
    async fn block_rate(&self, key: &str, duration: Duration, now_ms: i64) -> Result<()> {
        let _ = (duration, now_ms);
        Err(unsupported_for("block_rate", &format!("rate limit `{key}`")))
    }
}

#[async_trait]
impl<S: RateLimits + ?Sized> RateLimits for Arc<S> {
    async fn acquire_rate(&self, acquire: &RateAcquire) -> Result<RateDecision> {
        (**self).acquire_rate(acquire).await
    }
    async fn settle_rate(&self, key: &str, grant_id: &str, actual: RateCost, now_ms: i64) -> Result<()> {
        (**self).settle_rate(key, grant_id, actual, now_ms).await
    }
    async fn block_rate(&self, key: &str, duration: Duration, now_ms: i64) -> Result<()> {
        (**self).block_rate(key, duration, now_ms).await
    }
}

/// Milliseconds of `duration`, saturating.
pub fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(at_ms: i64, requests: u64, tokens: u64) -> LoggedGrant {
        LoggedGrant { at_ms, requests, tokens }
    }

    #[test]
    fn decide_waits_for_the_oldest_grants_to_age_out() {
        let limit = RateLimit::per(Duration::from_millis(1000)).requests(2).tokens(100);
        let one = RateCost::new(1, 10);
        assert_eq!(decide(&limit, one, &[grant(0, 1, 10)], 0, 10), RateDecision::Granted);
        let log = [grant(0, 1, 10), grant(5, 1, 10)];
        assert_eq!(decide(&limit, one, &log, 0, 10), RateDecision::retry_at(1000, 10));
        // Tokens: 90 of 100 used by two grants, 20 more fit once the first (80) aged out.
        let log = [grant(0, 1, 80), grant(5, 0, 10)];
        assert_eq!(decide(&limit, RateCost::new(0, 20), &log, 0, 10), RateDecision::retry_at(1000, 10));
        assert_eq!(decide(&limit, one, &[], 500, 10), RateDecision::retry_at(500, 10));
    }

    #[test]
    fn zero_limits_and_oversized_costs_are_refused() {
        let period = Duration::from_secs(1);
        assert!(RateLimit::per(period).requests(0).validate("k").is_err());
        assert!(RateLimit::per(period).tokens(0).validate("k").is_err());
        assert!(RateLimit::per(Duration::ZERO).requests(1).validate("k").is_err());
        assert!(RateLimit::per(period).tokens(5).check("k", RateCost::new(1, 6)).is_err());
        assert!(RateLimit::per(period).requests(1).check("k", RateCost::new(1, 6)).is_ok());
    }
}
