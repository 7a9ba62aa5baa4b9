//! Opening the store named by `--store` / `DURABLY_STORE`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use durably_core::Store;

/// Where the runs are: parsed from a store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `sqlite:PATH` (or `sqlite://PATH`).
    Sqlite(PathBuf),
    /// `redis://…` or `rediss://…`.
    Redis(String),
    /// `postgres://…` or `postgresql://…`.
    Postgres(String),
}

impl StoreUrl {
    /// Parses a store URL, naming the accepted forms when it is wrong.
    pub fn parse(url: &str) -> Result<StoreUrl> {
        let url = url.trim();
        if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            if path.is_empty() {
                bail!("store URL `{url}` names no file: use sqlite:PATH, e.g. sqlite:./durably.db");
            }
            return Ok(StoreUrl::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("redis://") || url.starts_with("rediss://") {
            return Ok(StoreUrl::Redis(url.to_owned()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreUrl::Postgres(url.to_owned()));
        }
        bail!(
            "unsupported store URL `{url}`: use sqlite:PATH (e.g. sqlite:./durably.db), redis://HOST[:PORT] \
             or postgres://USER@HOST/DB"
        )
    }

    /// Opens the store. A SQLite file must exist unless `create` is set: a typo in a path
    /// must not silently show an empty store.
    pub async fn open(&self, create: bool) -> Result<Arc<dyn Store>> {
        match self {
            StoreUrl::Sqlite(path) => {
                if !create && !path.exists() {
                    bail!(
                        "no SQLite store at `{}`: the file does not exist (pass --store sqlite:PATH or set \
                         DURABLY_STORE)",
                        path.display()
                    );
                }
                let store = durably_sqlite::SqliteStore::open(path)
                    .await
                    .with_context(|| format!("could not open the SQLite store `{}`", path.display()))?;
                Ok(Arc::new(store))
            }
            StoreUrl::Redis(url) => open_redis(url).await,
            StoreUrl::Postgres(url) => open_postgres(url).await,
        }
    }
}

#[cfg(feature = "redis")]
async fn open_redis(url: &str) -> Result<Arc<dyn Store>> {
    let store = durably_redis::RedisStore::connect(url)
        .await
        .with_context(|| format!("could not connect to the Redis store `{url}`"))?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "redis"))]
async fn open_redis(url: &str) -> Result<Arc<dyn Store>> {
    bail!("store `{url}`: this durably binary was built without the `redis` feature")
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str) -> Result<Arc<dyn Store>> {
    let store = durably_postgres::PostgresStore::connect(url)
        .await
        .with_context(|| format!("could not connect to the PostgreSQL store `{url}`"))?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(url: &str) -> Result<Arc<dyn Store>> {
    bail!("store `{url}`: this durably binary was built without the `postgres` feature")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_each_scheme_and_refuses_others() {
        assert_eq!(StoreUrl::parse("sqlite:./a.db").unwrap(), StoreUrl::Sqlite("./a.db".into()));
        assert_eq!(StoreUrl::parse("sqlite:///tmp/a.db").unwrap(), StoreUrl::Sqlite("/tmp/a.db".into()));
        assert!(matches!(StoreUrl::parse("redis://127.0.0.1:6379").unwrap(), StoreUrl::Redis(_)));
        assert!(matches!(StoreUrl::parse("postgresql://u@h/db").unwrap(), StoreUrl::Postgres(_)));
        let err = StoreUrl::parse("mysql://h/db").unwrap_err().to_string();
        assert!(err.contains("unsupported store URL `mysql://h/db`"), "{err}");
        assert!(StoreUrl::parse("sqlite:").is_err());
    }
}
