//! [`RedisStoreBuilder`]: the options of a `RedisStore` and connecting with them.

use std::sync::Mutex;
use std::time::Duration;

use durably_core::{Error, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::{ConnectError, kind_of, redact};
use crate::keys::Keys;
use crate::scripts::Scripts;
use crate::{CONNECTION_TIMEOUT, MAX_TTL, RedisStore};

/// Options of a [`RedisStore`]; see [`RedisStore::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `connect` is called"]
pub struct RedisStoreBuilder {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) ttl: Duration,
    pub(crate) response_timeout: Duration,
}

impl RedisStoreBuilder {
    /// The prefix of every key (default [`DEFAULT_PREFIX`](crate::DEFAULT_PREFIX)). Keys are `<prefix>:<kind>:…`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a run's keys live after its last write (default [`DEFAULT_TTL`](crate::DEFAULT_TTL), 24 hours).
    /// `Duration::ZERO` keeps them forever. Below a millisecond counts as one millisecond.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long one call waits for the server's reply before it fails with [`Error::Store`]
    /// (default [`DEFAULT_RESPONSE_TIMEOUT`](crate::DEFAULT_RESPONSE_TIMEOUT), 10 s; `Duration::ZERO` waits forever). A call that
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
            Error::store_kind(kind_of(&e), "connect", None, ConnectError { url: url.clone(), source: e })
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
