//! Model rate limits (rule 28 of docs/design.md): a provider's requests and tokens per minute
//! for one model, defined once on the engine and kept by the store, so that every agent of every
//! worker sharing the store waits for room before a fresh model request.

use std::time::Duration;

use durably_core::{Error, RateLimit, Workflow};

/// A provider's limit for one model: requests and tokens per minute (or per
/// [`per`](Self::per) period), shared by every agent of every process using the store.
///
/// ```
/// use durably_agent::{ModelLimit, ModelLimits};
///
/// let wf = durably_core::Workflow::builder("app").build();
/// wf.add_model_limit(ModelLimit::new("openai", "gpt-4o-mini").requests_per_minute(500).tokens_per_minute(200_000))?;
/// # Ok::<(), durably_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct ModelLimit {
    provider: String,
    model: String,
    requests: Option<u32>,
    tokens: Option<u64>,
    period: Duration,
}

impl ModelLimit {
    /// No limit yet for `model` of `provider` (`gen_ai.provider.name`: `openai` for the OpenAI
    /// agent and any OpenAI-compatible server it talks to). `model` may be `*`: every model of
    /// the provider that has no limit of its own, in one window.
    pub fn new(provider: impl Into<String>, model: impl Into<String>) -> Self {
        ModelLimit {
            provider: provider.into(),
            model: model.into(),
            requests: None,
            tokens: None,
            period: Duration::from_secs(60),
        }
    }

    /// At most `requests` requests per minute (per period).
    pub fn requests_per_minute(mut self, requests: u32) -> Self {
        self.requests = Some(requests);
        self
    }

    /// At most `tokens` tokens (input and output) per minute (per period).
    pub fn tokens_per_minute(mut self, tokens: u64) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// Counts over windows of `period` instead of a minute (a provider's per-second or per-day
    /// limits; short periods in tests).
    pub fn per(mut self, period: Duration) -> Self {
        self.period = period;
        self
    }

    /// The provider.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The model.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The key of the limit in the store: `model:<provider>/<model>`.
    pub fn key(&self) -> String {
        model_key(&self.provider, &self.model)
    }

    /// The limit the store keeps.
    pub fn rate_limit(&self) -> RateLimit {
        let mut limit = RateLimit::per(self.period);
        limit.requests = self.requests;
        limit.tokens = self.tokens;
        limit
    }
}

/// The store key of a model's limit.
pub(crate) fn model_key(provider: &str, model: &str) -> String {
    format!("{KEY_PREFIX}{provider}/{model}")
}

const KEY_PREFIX: &str = "model:";

/// Defining model limits on an engine: `wf.add_model_limit(..)`.
pub trait ModelLimits {
    /// Defines `limit` on this engine: before each model request that is not a replay, every
    /// agent executing on it waits until the store grants the request under the limit, counted
    /// over every process sharing the store (each should define the same limit). A limit
    /// without requests or tokens, or with a zero one, is refused with [`Error::Invalid`].
    fn add_model_limit(&self, limit: ModelLimit) -> Result<&Self, Error>;
}

impl ModelLimits for Workflow {
    fn add_model_limit(&self, limit: ModelLimit) -> Result<&Self, Error> {
        if limit.requests.is_none() && limit.tokens.is_none() {
            return Err(Error::Invalid {
                what: "model limit",
                detail: format!("model limit `{}` sets neither requests nor tokens per period", limit.key()),
            });
        }
        self.add_rate_limit(limit.key(), limit.rate_limit())?;
        Ok(self)
    }
}

/// The key of the limit that covers a request for `model` of `provider` among `keys` (the
/// engine's limits): the model's own, else the provider's `*`. A provider the adapter does not
/// know before the answer (rig) matches any provider's limit for the model; a request that
/// names no model matches none.
pub(crate) fn covering_key(keys: &[String], provider: Option<&str>, model: Option<&str>) -> Option<String> {
    let model = model?;
    fn parse(key: &str) -> Option<(&str, &str)> {
        key.strip_prefix(KEY_PREFIX)?.rsplit_once('/')
    }
    let find = |wanted: &str| {
        keys.iter()
            .find(|key| {
                parse(key).is_some_and(|(p, m)| m == wanted && provider.is_none_or(|provider| p == provider))
            })
            .cloned()
    };
    find(model).or_else(|| find("*"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_covered_by_its_model_then_by_its_providers_wildcard() {
        let keys: Vec<String> = ["model:openai/*", "model:openai/gpt-4o", "model:other/m"]
            .iter()
            .map(|k| (*k).to_owned())
            .collect();
        let cover = |p, m| covering_key(&keys, p, m);
        assert_eq!(cover(Some("openai"), Some("gpt-4o")).as_deref(), Some("model:openai/gpt-4o"));
        assert_eq!(cover(Some("openai"), Some("o3")).as_deref(), Some("model:openai/*"));
        assert_eq!(cover(None, Some("m")).as_deref(), Some("model:other/m"));
        assert_eq!(cover(Some("openai"), Some("m")).as_deref(), Some("model:openai/*"));
        assert_eq!(cover(Some("anthropic"), Some("m")), None);
        assert_eq!(cover(Some("openai"), None), None);
    }

    #[test]
    fn a_limit_without_requests_or_tokens_is_refused() {
        let wf = Workflow::builder("app").build();
        assert!(wf.add_model_limit(ModelLimit::new("openai", "m")).is_err());
        assert!(wf.add_model_limit(ModelLimit::new("openai", "m").requests_per_minute(0)).is_err());
        assert!(wf.add_model_limit(ModelLimit::new("openai", "m").requests_per_minute(1)).is_ok());
        assert!(wf.rate_limit("model:openai/m").is_some());
    }
}
