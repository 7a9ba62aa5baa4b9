//! The claim statements' plans with many parked runs, on the real server: a claim, the count
//! of a queue's executing runs and a worker's look for work read the few rows they need (the
//! runs leased, the due ones, the head of the queue), never every parked run of the queue.
//!
//! The runs are written in one statement into a fresh schema whose statistics were never
//! gathered, as a queue that grew since the last `ANALYZE` looks to the planner: the state in
//! which plain `queue = $1 AND status …` conditions made it walk `runs_runnable` instead.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use serde_json::Value;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::PostgresStore;
use crate::sql::Statements;

/// Parked runs (waiting on a signal, no timer), and enqueued ones behind them.
const PARKED: i64 = 20_000;
const ENQUEUED: i64 = 5_000;
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

/// How one statement is checked: with which parameter types and values (SQL literals), after
/// `lock_queue` (which begins every claim's transaction) or not, and the most rows any node of
/// its plan may read.
struct Check<'a> {
    name: &'a str,
    sql: &'a str,
    types: &'a str,
    args: String,
    in_claim: bool,
    most: f64,
}

/// Prepares the statement and runs it under `EXPLAIN ANALYZE` in a transaction it rolls back,
/// with the session's `plan_cache_mode` at `force_generic_plan`: a plan cached for any
/// parameters, as a long-lived pooled connection ends up using, unless the claim's own
/// transaction asks otherwise. Panics when a node read more than `check.most` rows.
async fn assert_reads_few_rows(client: &mut Client, st: &Statements, check: Check<'_>) {
    let Check { name, sql, types, args, in_claim, most } = check;
    client.batch_execute("SET plan_cache_mode = force_generic_plan").await.unwrap();
    let tx = client.transaction().await.unwrap();
    if in_claim {
        tx.query_one(&st.lock_queue, &[&"plans-test"]).await.unwrap();
    }
    tx.batch_execute(&format!("PREPARE checked({types}) AS {sql}")).await.unwrap();
    let mut text = String::new();
    for message in
        tx.simple_query(&format!("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE checked({args})")).await.unwrap()
    {
        if let SimpleQueryMessage::Row(row) = message {
            text.push_str(row.get(0).unwrap_or_default());
        }
    }
    tx.rollback().await.unwrap();
    client.batch_execute("DEALLOCATE checked; RESET plan_cache_mode").await.unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let mut nodes = Vec::new();
    node_rows(&doc[0]["Plan"], &mut nodes);
    for (read, what) in &nodes {
        assert!(*read <= most, "{name} read {read} rows in `{what}` with {PARKED} parked runs:\n{text}");
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

    let candidates = "text, bigint, bigint, bigint, text";
    let ids: Vec<String> = (1..=64).map(|i| format!("'enqueued-{i}'")).collect();
    let checks = [
        Check {
            name: "claim_candidates_in_order",
            sql: &st.claim_candidates_in_order,
            types: candidates,
            args: format!("'q', {NOW}, NULL, 64, NULL"),
            in_claim: true,
            most: MOST_ROWS,
        },
        // Under a per-key limit every unparked run is numbered within its key: those it reads.
        Check {
            name: "claim_candidates",
            sql: &st.claim_candidates,
            types: candidates,
            args: format!("'q', {NOW}, 1, 64, NULL"),
            in_claim: true,
            most: MOST_ROWS + ENQUEUED as f64,
        },
        Check {
            name: "count_executing",
            sql: &st.count_executing,
            types: "text, bigint",
            args: format!("'q', {NOW}"),
            in_claim: true,
            most: MOST_ROWS,
        },
        Check {
            name: "claim",
            sql: &st.claim,
            types: "text[], text, bigint, bigint, text, bool, text",
            args: format!("ARRAY[{}], 'w', {}, {NOW}, 'q', false, NULL", ids.join(", "), NOW + 60_000),
            in_claim: true,
            most: MOST_ROWS,
        },
        Check {
            name: "runnable_queues",
            sql: &st.runnable_queues,
            types: "text[]",
            args: "ARRAY['q']".to_owned(),
            in_claim: false,
            most: MOST_ROWS,
        },
    ];
    for check in checks {
        assert_reads_few_rows(&mut client, &st, check).await;
    }

    drop(store);
    client.batch_execute(&format!("DROP SCHEMA {s} CASCADE")).await.unwrap();
}
