//! The stores a scenario runs on, and how each one is opened fresh for a scenario.
//!
//! To add a store: a variant of [`StoreKind`] (behind the crate feature that brings its
//! driver), a branch in [`open_store`] that gives it a fresh namespace per call (a new file, a
//! key prefix, a schema), and its raw round trip in `floor.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use durably::store::prelude::*;
use durably::{Durability, MemoryStore, SqliteStore, Workflow};

/// A store to benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum StoreKind {
    /// SQLite, `Durability::Full` (`synchronous = FULL`, the default).
    SqliteFull,
    /// SQLite, `Durability::Normal` (`synchronous = NORMAL`).
    SqliteNormal,
    /// The in-process `MemoryStore`: the engine's own cost, no I/O.
    Memory,
    /// Redis (feature `redis`), at `DURABLY_REDIS_URL` or redis://127.0.0.1:6379; a key prefix
    /// of its own per scenario, removed afterwards.
    #[cfg(feature = "redis")]
    Redis,
    /// PostgreSQL (feature `postgres`), at `DURABLY_POSTGRES_URL` or
    /// postgres://postgres@127.0.0.1:5432/test; a schema of its own per scenario, dropped
    /// afterwards.
    #[cfg(feature = "postgres")]
    Postgres,
}

impl StoreKind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            StoreKind::SqliteFull => "sqlite-full",
            StoreKind::SqliteNormal => "sqlite-normal",
            StoreKind::Memory => "memory",
            #[cfg(feature = "redis")]
            StoreKind::Redis => "redis",
            #[cfg(feature = "postgres")]
            StoreKind::Postgres => "postgres",
        }
    }

    pub(crate) fn durability(self) -> Option<Durability> {
        match self {
            StoreKind::SqliteFull => Some(Durability::Full),
            StoreKind::SqliteNormal => Some(Durability::Normal),
            _ => None,
        }
    }

    /// Whether another process (or another store object in this one) can reach the same data,
    /// so that the cross-process signal scenarios make sense.
    pub(crate) fn shared(self) -> bool {
        self != StoreKind::Memory
    }
}

/// Where a store keeps a scenario's data: a file for SQLite, a URL plus a namespace for servers.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) kind: StoreKind,
    /// The SQLite file, or the server's URL.
    pub(crate) location: PathBuf,
    /// The key prefix (Redis) or schema (PostgreSQL) of this scenario, so that it starts
    /// empty as a fresh SQLite file does; unused for SQLite and memory.
    pub(crate) namespace: String,
    pub(crate) poll: Duration,
}

impl Target {
    /// A fresh target for `scenario` under `dir`.
    pub(crate) fn fresh(
        kind: StoreKind,
        dir: &Path,
        scenario: &str,
        poll: Duration,
    ) -> anyhow::Result<Target> {
        let name = format!("{scenario}-{}", kind.label());
        let location = match kind {
            StoreKind::SqliteFull | StoreKind::SqliteNormal => {
                let path = dir.join(format!("{name}.db"));
                remove_db(&path)?;
                path
            }
            // Unused: each store object is its own memory.
            StoreKind::Memory => PathBuf::from("memory"),
            #[cfg(feature = "redis")]
            StoreKind::Redis => PathBuf::from(redis_url()),
            #[cfg(feature = "postgres")]
            StoreKind::Postgres => PathBuf::from(postgres_url()),
        };
        let namespace = format!(
            "durably_bench_{}_{}_{}",
            std::process::id(),
            durably::now_ms(),
            scenario.replace('-', "_")
        );
        Ok(Target { kind, location, namespace, poll })
    }

    /// Removes what the scenario left on a server (keys, schema); files go with the work
    /// directory.
    pub(crate) async fn cleanup(&self) -> anyhow::Result<()> {
        match self.kind {
            #[cfg(feature = "redis")]
            StoreKind::Redis => {
                crate::servers::redis_cleanup(&self.location.to_string_lossy(), &self.namespace).await
            }
            #[cfg(feature = "postgres")]
            StoreKind::Postgres => {
                crate::servers::postgres_cleanup(&self.location.to_string_lossy(), &self.namespace).await
            }
            _ => Ok(()),
        }
    }
}

#[cfg(feature = "redis")]
pub(crate) fn redis_url() -> String {
    std::env::var("DURABLY_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

#[cfg(feature = "postgres")]
pub(crate) fn postgres_url() -> String {
    std::env::var("DURABLY_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Removes a SQLite file and its `-wal` / `-shm` companions.
pub(crate) fn remove_db(path: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", PathBuf::from(p).display())),
        }
    }
    Ok(())
}

/// An opened store: the trait object the engine uses, and the SQLite store itself for its
/// writer statistics.
#[derive(Clone)]
pub(crate) struct Opened {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) sqlite: Option<Arc<SqliteStore>>,
}

/// Opens a new store object on `target` (a second call on the same target opens a second
/// object on the same data, as another process would).
pub(crate) async fn open_store(target: &Target) -> anyhow::Result<Opened> {
    match target.kind {
        StoreKind::SqliteFull | StoreKind::SqliteNormal => {
            let durability = target.kind.durability().unwrap_or(Durability::Full);
            let store = SqliteStore::builder(&target.location)
                .durability(durability)
                .poll_interval(target.poll)
                .open()
                .await
                .with_context(|| format!("opening SQLite store {}", target.location.display()))?;
            let store = Arc::new(store);
            Ok(Opened { store: store.clone(), sqlite: Some(store) })
        }
        StoreKind::Memory => Ok(Opened { store: Arc::new(MemoryStore::new()), sqlite: None }),
        #[cfg(feature = "redis")]
        StoreKind::Redis => {
            let url = target.location.to_string_lossy().into_owned();
            let store = durably::redis::RedisStore::builder(&url)
                .prefix(&target.namespace)
                .ttl(Duration::from_secs(3600))
                .connect()
                .await
                .with_context(|| format!("connecting the Redis store to {url}"))?;
            Ok(Opened { store: Arc::new(store), sqlite: None })
        }
        #[cfg(feature = "postgres")]
        StoreKind::Postgres => {
            let url = target.location.to_string_lossy().into_owned();
            let store = durably::postgres::PostgresStore::builder(&url)
                .schema(&target.namespace)
                .connect()
                .await
                .with_context(|| format!("connecting the PostgreSQL store to {url}"))?;
            Ok(Opened { store: Arc::new(store), sqlite: None })
        }
    }
}

/// An engine on an opened store. Tasks get no retries, as in the python-durable script
/// (`default_retries=0`).
pub(crate) fn engine(app: &str, opened: &Opened) -> Workflow {
    Workflow::builder(app).shared_store(opened.store.clone()).default_retries(0).build()
}

/// The SQLite writer's commits and writes since `before`, as extra fields.
pub(crate) fn writer_stats(opened: &Opened) -> Option<(u64, u64)> {
    opened.sqlite.as_ref().map(|s| {
        let st = s.stats();
        (st.commits, st.writes)
    })
}
