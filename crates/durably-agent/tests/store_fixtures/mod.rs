//! A fresh store of each kind for the tests that run on every store (sessions, model limits):
//! memory, SQLite in a temporary directory, Redis under a key prefix of its own, PostgreSQL in
//! a schema of its own that is dropped afterwards.
//!
//! Redis and PostgreSQL are the servers at `DURABLY_REDIS_URL` and `DURABLY_POSTGRES_URL`
//! (defaults on 127.0.0.1); a fixture fails naming a server that does not answer, unless
//! `DURABLY_SKIP_SERVICES=1` asks to skip it (`None`).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use durably_core::MemoryStore;
use durably_core::store::Store;

/// A fresh store, and what must outlive it (a temporary directory, a schema to drop).
pub struct Fixture {
    pub store: Arc<dyn Store>,
    _guard: Box<dyn Any + Send>,
}

/// Skips (`None`) when `DURABLY_SKIP_SERVICES=1`, fails naming the server otherwise.
fn unreachable(server: &str, error: impl std::fmt::Display) -> Option<Fixture> {
    if std::env::var("DURABLY_SKIP_SERVICES").as_deref() == Ok("1") {
        eprintln!("skipped: {server} does not answer ({error}) and DURABLY_SKIP_SERVICES=1");
        return None;
    }
    panic!("{server} does not answer: {error}; start it, or set DURABLY_SKIP_SERVICES=1 to skip")
}

/// A name no other test or process uses.
fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}_{}_{}_{nanos:x}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

pub async fn memory() -> Option<Fixture> {
    Some(Fixture { store: Arc::new(MemoryStore::new()), _guard: Box::new(()) })
}

pub async fn sqlite() -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let store = durably_sqlite::SqliteStore::open(dir.path().join("store.db")).await.unwrap();
    Some(Fixture { store: Arc::new(store), _guard: Box::new(dir) })
}

pub async fn redis() -> Option<Fixture> {
    let url = std::env::var("DURABLY_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    // The keys expire on their own: nothing to clean up.
    let built = durably_redis::RedisStore::builder(url.as_str())
        .prefix(unique("durably-agent"))
        .ttl(Duration::from_secs(600))
        .connect()
        .await;
    match built {
        Ok(store) => Some(Fixture { store: Arc::new(store), _guard: Box::new(()) }),
        Err(e) => unreachable(&format!("Redis at {url}"), e),
    }
}

/// Drops its schema when dropped.
struct Schema(String, String);

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, schema) = (self.0.clone(), self.1.clone());
        // Drop cannot await; a thread with its own runtime can, even inside a Tokio worker.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                if let Ok((client, connection)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                    tokio::spawn(connection);
                    let _ =
                        client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await;
                }
            });
        })
        .join();
    }
}

pub async fn postgres() -> Option<Fixture> {
    let url = std::env::var("DURABLY_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = unique("durably_agent");
    let guard = Schema(url.clone(), schema.clone());
    match durably_postgres::PostgresStore::builder(url.as_str()).schema(&schema).pool_size(8).connect().await
    {
        Ok(store) => Some(Fixture { store: Arc::new(store), _guard: Box::new(guard) }),
        Err(e) => unreachable("PostgreSQL", e),
    }
}
