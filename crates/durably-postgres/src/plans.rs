//! The claim statements' plans with many parked runs, on the real server: a claim, the count
//! of a queue's executing runs and a worker's look for work read the few rows they need (the
//! runs leased, the due ones, the head of the queue), never every parked run of the queue.
//!
//! The runs are written in one statement into a fresh schema whose statistics were never
//! gathered, as a queue that grew since the last `ANALYZE` looks to the planner: the state in
//! which plain `queue = $1 AND status …` conditions made it walk `runs_runnable` instead.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls};

use crate::PostgresStore;
use crate::sql::Statements;

/// Parked runs (waiting on a signal, no timer), and enqueued ones ahead of them.
const PARKED: i64 = 20_000;
const ENQUEUED: i64 = 100;
/// The most rows any node of a plan may read (returned, or removed by a filter) here.
const MOST_ROWS: f64 = 1_000.0;
const NOW: i64 = 2_000_000;

fn url() -> String {
    std::env::var("DURABLY_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

async fn raw() -> Option<Client> {
    match tokio_postgres::connect(&url(), NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Some(client)
        }
        Err(e) if std::env::var("DURABLY_SKIP_SERVICES").as_deref() == Ok("1") => {
            println!("skipped: PostgreSQL does not answer ({e}) and DURABLY_SKIP_SERVICES=1");
            None
        }
        Err(e) => panic!(
            "PostgreSQL does not answer: {e} (set DURABLY_POSTGRES_URL, or DURABLY_SKIP_SERVICES=1 to skip)"
        ),
    }
}

/// The rows each node of `plan` (an `EXPLAIN (ANALYZE, FORMAT JSON)` node) read: returned over
/// all its loops, plus those its filters removed; with the node's description.
fn node_rows(plan: &Value, out: &mut Vec<(f64, String)>) {
    let num = |key: &str| plan.get(key).and_then(Value::as_f64).unwrap_or(0.0);
    let loops = num("Actual Loops").max(1.0);
    let read = num("Actual Rows") * loops
        + num("Rows Removed by Filter") * loops
        + num("Rows Removed by Join Filter") * loops
        + num("Rows Removed by Index Recheck") * loops;
    let what = format!(
        "{} {}",
        plan.get("Node Type").and_then(Value::as_str).unwrap_or("?"),
        plan.get("Index Name").and_then(Value::as_str).unwrap_or("")
    );
    out.push((read, what));
    for child in plan.get("Plans").and_then(Value::as_array).into_iter().flatten() {
        node_rows(child, out);
    }
}

/// Runs `sql` under `EXPLAIN ANALYZE` in a transaction it rolls back; panics naming `name`
/// when a node read more than [`MOST_ROWS`] rows.
async fn assert_reads_few_rows(client: &mut Client, name: &str, sql: &str, params: &[&(dyn ToSql + Sync)]) {
    let tx = client.transaction().await.unwrap();
    let rows = tx.query(&format!("EXPLAIN (ANALYZE, FORMAT JSON) {sql}"), params).await.unwrap();
    let doc: Value = rows[0].get(0);
    tx.rollback().await.unwrap();
    let text = doc.to_string();
    let mut nodes = Vec::new();
    node_rows(&doc[0]["Plan"], &mut nodes);
    for (read, what) in &nodes {
        assert!(*read <= MOST_ROWS, "{name} read {read} rows in `{what}` with {PARKED} parked runs:\n{text}");
    }
}

#[tokio::test]
async fn claims_never_walk_the_parked_runs() {
    let Some(mut client) = raw().await else { return };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let schema = format!("durably_plans_{}_{nanos:x}", std::process::id());
    let store = PostgresStore::builder(url()).schema(&schema).pool_size(2).connect().await.unwrap();
    let st = Statements::new(&schema);
    let s = crate::sql::quote_ident(&schema);
    client
        .batch_execute(&format!(
            "INSERT INTO {s}.runs (run_id, workflow, status, input_text, created_at_ms, updated_at_ms, queue, waiting_on, wake_at_ms)
             SELECT 'parked-' || i, 'wf', 'waiting', '1', i, i, 'q', 'go', 9223372036854775807
             FROM generate_series(1, {PARKED}) AS i;
             INSERT INTO {s}.runs (run_id, workflow, status, input_text, created_at_ms, updated_at_ms, queue)
             SELECT 'enqueued-' || i, 'wf', 'enqueued', '1', {PARKED} + i, {PARKED} + i, 'q'
             FROM generate_series(1, {ENQUEUED}) AS i;
             INSERT INTO {s}.runs (run_id, workflow, status, input_text, created_at_ms, updated_at_ms, queue, waiting_on, wake_at_ms)
             VALUES ('due-1', 'wf', 'waiting', '1', 0, 0, 'q', 'go', 5)"
        ))
        .await
        .unwrap();

    let none: Option<i64> = None;
    let no_version: Option<String> = None;
    let (queue, max) = ("q", 64i64);
    assert_reads_few_rows(
        &mut client,
        "claim_candidates_in_order",
        &st.claim_candidates_in_order,
        &[&queue, &NOW, &none, &max, &no_version],
    )
    .await;
    let per_key = Some(1i64);
    assert_reads_few_rows(
        &mut client,
        "claim_candidates",
        &st.claim_candidates,
        &[&queue, &NOW, &per_key, &max, &no_version],
    )
    .await;
    assert_reads_few_rows(&mut client, "count_executing", &st.count_executing, &[&queue, &NOW]).await;
    let chosen: Vec<String> = (1..=max).map(|i| format!("enqueued-{i}")).collect();
    let (owner, expires, rated) = ("w", NOW + 60_000, false);
    assert_reads_few_rows(
        &mut client,
        "claim",
        &st.claim,
        &[&chosen, &owner, &expires, &NOW, &queue, &rated, &no_version],
    )
    .await;
    let queues = vec!["q".to_owned()];
    assert_reads_few_rows(&mut client, "runnable_queues", &st.runnable_queues, &[&queues]).await;

    drop(store);
    client.batch_execute(&format!("DROP SCHEMA {s} CASCADE")).await.unwrap();
}
