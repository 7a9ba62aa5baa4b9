//! Helpers shared by the PostgreSQL store's tests: the server's URL, a fresh schema per test
//! (dropped afterwards), raw connections to poke at it, and records to write.
//!
//! The server is the one at `DURABLY_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). When it does not answer, a test fails naming it,
//! unless `DURABLY_SKIP_SERVICES=1` asks to skip: then it prints why and passes.

#![allow(dead_code, unreachable_pub, clippy::print_stdout)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use durably_core::store::prelude::*;
use durably_core::{NewRun, StepRecord, StepStatus};
use durably_postgres::{PostgresStore, PostgresStoreBuilder};
use durably_testkit::Fixture;
use tokio_postgres::NoTls;

pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn url() -> String {
    std::env::var("DURABLY_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// The URL without its password, for messages.
pub fn shown_url() -> String {
    let url = url();
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if scheme + 3 < at => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url,
            }
        }
        _ => url,
    }
}

/// An error with its causes, as tokio-postgres's own `Display` leaves them out.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// A name no other test, process or earlier run uses: for schemas and application names.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}_{}_{n}_{nanos:x}", std::process::id())
}

/// A raw connection, as a DBA or another program would have. `None` when the server does not
/// answer and `DURABLY_SKIP_SERVICES=1`; panics naming the server otherwise.
pub async fn try_raw() -> Option<tokio_postgres::Client> {
    match tokio_postgres::connect(&url(), NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Some(client)
        }
        Err(e) if std::env::var("DURABLY_SKIP_SERVICES").as_deref() == Ok("1") => {
            println!(
                "skipped: PostgreSQL at {} does not answer ({}) and DURABLY_SKIP_SERVICES=1",
                shown_url(),
                with_causes(&e)
            );
            None
        }
        Err(e) => panic!(
            "PostgreSQL at {} does not answer: {} (set DURABLY_POSTGRES_URL, or DURABLY_SKIP_SERVICES=1 to skip)",
            shown_url(),
            with_causes(&e)
        ),
    }
}

pub async fn raw() -> tokio_postgres::Client {
    try_raw().await.expect("PostgreSQL answers")
}

/// Drops its schema (and everything in it) when dropped.
pub struct SchemaGuard(pub String);

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let schema = self.0.clone();
        // Drop cannot await; a thread with its own runtime can, even inside a Tokio worker.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                if let Ok((client, connection)) = tokio_postgres::connect(&url(), NoTls).await {
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", schema.replace('"', "\"\""));
                    let _ = client.batch_execute(&sql).await;
                }
            });
        })
        .join();
    }
}

/// A fresh schema name (with its guard) and a builder on it, or `None` to skip.
pub async fn fresh() -> Option<(PostgresStoreBuilder, SchemaGuard)> {
    try_raw().await?;
    let schema = unique("durably_t");
    let builder = PostgresStore::builder(url()).schema(&schema).pool_size(4).application_name(&schema);
    Some((builder, SchemaGuard(schema)))
}

/// A store on a fresh schema, dropped with the fixture; `None` to skip.
pub async fn fixture() -> Option<Fixture<PostgresStore>> {
    let (builder, guard) = fresh().await?;
    let store = builder.connect().await.expect("connect the PostgreSQL store");
    Some(Fixture::new(store).guard(guard))
}

/// Terminates the backends whose `application_name` is exactly `name`; returns how many.
pub async fn terminate_backends(name: &str) -> i64 {
    let client = raw().await;
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE application_name = $1 AND pid <> pg_backend_pid()",
            &[&name],
        )
        .await
        .expect("terminate backends");
    row.get(0)
}

pub fn new_run(run_id: &str) -> NewRun {
    NewRun::new(run_id, "wf", Some("{}".to_owned()), 1_000)
}

pub fn step(step_id: &str, at_ms: i64) -> StepRecord {
    let mut step = StepRecord::new(step_id, "task", StepStatus::Completed, at_ms);
    step.value = Some(format!("\"{step_id}\""));
    step.attempts = 1;
    step
}

/// Opens the run `run_id` in `store`.
pub async fn start(store: &impl Store, run_id: &str) {
    store.open_run(new_run(run_id)).await.expect("open_run");
}
