//! Redis and PostgreSQL: the raw round trip that is each one's floor (a `SET`; a single-row
//! `INSERT` committed on its own, as the store's writes are), and removing what a scenario left
//! on the server (its key prefix; its schema).

#![cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]

#[cfg(any(feature = "redis", feature = "postgres"))]
use std::time::Instant;

#[cfg(any(feature = "redis", feature = "postgres"))]
use crate::report::{FLOOR, Record};

/// The value each floor writes: the size of a small step record.
#[cfg(any(feature = "redis", feature = "postgres"))]
const PAYLOAD: &str = r#"{"v": {"i": 0, "ok": true}}"#;

/// `n` sequential `SET`s on one connection. Scenario `floor_redis_set`.
#[cfg(feature = "redis")]
pub(crate) async fn redis_set_floor(url: &str, namespace: &str, n: u64) -> anyhow::Result<Record> {
    use anyhow::Context as _;
    let client = redis::Client::open(url).with_context(|| format!("Redis URL {url}"))?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("connecting to Redis at {url}"))?;
    let mut lat = Vec::with_capacity(n as usize);
    let started = Instant::now();
    for i in 0..n {
        let t0 = Instant::now();
        redis::cmd("SET")
            .arg(format!("{namespace}:floor:{i}"))
            .arg(PAYLOAD)
            .query_async::<()>(&mut conn)
            .await
            .with_context(|| format!("SET number {i}"))?;
        lat.push(t0.elapsed());
    }
    let elapsed = started.elapsed();
    redis_cleanup(url, namespace).await?;
    Ok(Record::throughput("floor_redis_set", FLOOR, n, elapsed).percentiles(&lat))
}

/// Deletes every key under `namespace:`.
#[cfg(feature = "redis")]
pub(crate) async fn redis_cleanup(url: &str, namespace: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let pattern = format!("{namespace}:*");
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            redis::cmd("DEL").arg(&keys).query_async::<()>(&mut conn).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

#[cfg(feature = "postgres")]
async fn pg_client(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    use anyhow::Context as _;
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| "connecting to PostgreSQL (DURABLY_POSTGRES_URL)".to_owned())?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("durably-bench: PostgreSQL connection: {e}");
        }
    });
    Ok(client)
}

/// `n` single-row `INSERT`s, each its own transaction, on one connection with a prepared
/// statement. Scenario `floor_postgres_insert`.
#[cfg(feature = "postgres")]
pub(crate) async fn postgres_insert_floor(url: &str, namespace: &str, n: u64) -> anyhow::Result<Record> {
    let client = pg_client(url).await?;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"{namespace}\";
             CREATE TABLE \"{namespace}\".floor (run_id text NOT NULL, step_id text NOT NULL, value text NOT NULL,
                 PRIMARY KEY (run_id, step_id))"
        ))
        .await?;
    let insert = client
        .prepare(&format!("INSERT INTO \"{namespace}\".floor (run_id, step_id, value) VALUES ($1, $2, $3)"))
        .await?;
    let mut lat = Vec::with_capacity(n as usize);
    let started = Instant::now();
    for i in 0..n {
        let t0 = Instant::now();
        client.execute(&insert, &[&"run-1", &format!("i-{i}"), &PAYLOAD]).await?;
        lat.push(t0.elapsed());
    }
    let elapsed = started.elapsed();
    let sync: String = client.query_one("SHOW synchronous_commit", &[]).await?.get(0);
    drop(client);
    postgres_cleanup(url, namespace).await?;
    Ok(Record::throughput("floor_postgres_insert", FLOOR, n, elapsed)
        .percentiles(&lat)
        .with("synchronous_commit", sync))
}

/// Drops the schema `namespace` and everything in it.
#[cfg(feature = "postgres")]
pub(crate) async fn postgres_cleanup(url: &str, namespace: &str) -> anyhow::Result<()> {
    let client = pg_client(url).await?;
    client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{namespace}\" CASCADE")).await?;
    Ok(())
}
