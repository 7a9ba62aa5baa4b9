//! [`PostgresStoreBuilder`]: the options of a `PostgresStore` and connecting with them.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use durably_core::{Error, Result};
use tokio_postgres::NoTls;
use tokio_postgres::config::Host;

use crate::DEFAULT_APPLICATION_NAME;
use crate::PostgresStore;
use crate::batch::{BatchStatements, Batcher};
use crate::error::{ConnectError, connect_error, describe};
use crate::listener::{Channels, Listener, Waiters};
use crate::schema::migrate;
use crate::sql::Statements;

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
    pub(crate) url: String,
    pub(crate) schema: String,
    pub(crate) pool_size: usize,
    pub(crate) application_name: Option<String>,
    pub(crate) connect_timeout: Duration,
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
    /// The schema that holds the store's tables (default [`DEFAULT_SCHEMA`](crate::DEFAULT_SCHEMA)); created if
    /// missing. Stores on different schemas of one database are independent.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The most connections the pool opens (default [`DEFAULT_POOL_SIZE`](crate::DEFAULT_POOL_SIZE)); the listener uses
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

    /// Connects, brings the schema to [`SCHEMA_VERSION`](crate::SCHEMA_VERSION) and starts the listener.
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
        let channels = Channels {
            signals: channel.clone(),
            work: channel_name_of("work", &self.schema),
            events: channel_name_of("events", &self.schema),
        };
        let waiters = Arc::new(Waiters::default());
        let mut listen_config = config.clone();
        let listen_name =
            format!("{} listener", config.get_application_name().unwrap_or(DEFAULT_APPLICATION_NAME));
        listen_config.application_name(&listen_name);
        // A dead network would otherwise go unnoticed for hours on an idle LISTEN connection.
        listen_config.keepalives(true).keepalives_idle(Duration::from_secs(30));
        let listener = Listener::start(listen_config, channels.clone(), Arc::clone(&waiters))
            .await
            .map_err(|e| Error::store("connect", None, ConnectError { target: target.clone(), source: e }))?;

        let statements = Statements::new(&self.schema);
        let batcher = Batcher::start(
            pool.clone(),
            BatchStatements {
                save_step: statements.save_step.clone(),
                append_events: statements.append_events.clone(),
                checkpoints: statements.checkpoints.clone(),
                events_channel: channels.events,
            },
        );
        Ok(PostgresStore {
            pool,
            background,
            statements,
            batcher,
            schema: self.schema,
            channel,
            work_channel: channels.work,
            target,
            waiters,
            _listener: listener,
        })
    }
}

/// `host:port (database `db`, user `u`)`, from a config: never the password.
pub(crate) fn describe_target(config: &tokio_postgres::Config) -> String {
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
pub(crate) fn channel_name(schema: &str) -> String {
    channel_name_of("signals", schema)
}

/// The channel of `kind` (`signals`, `work`, `events`) of a schema.
pub(crate) fn channel_name_of(kind: &str, schema: &str) -> String {
    // FNV-1a, 64 bits: stable across processes, builds and platforms.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in schema.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("durably_{kind}_{hash:016x}")
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
        assert!(channel_name_of("events", &"x".repeat(63)).len() < 63);
        assert_ne!(channel_name_of("work", "durably"), a, "each kind has its own channel");
    }

    #[test]
    fn the_target_names_host_port_database_and_user_but_not_the_password() {
        let config = tokio_postgres::Config::from_str("postgres://alice:s3cret@db.example:6543/app").unwrap();
        let target = describe_target(&config);
        assert_eq!(target, "db.example:6543 (database `app`, user `alice`)");
        assert!(!target.contains("s3cret"));
    }
}
