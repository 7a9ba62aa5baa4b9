//! Bad input read back from a store: whatever bytes sit in a step value, a status, a
//! signal payload or a run's output, reading them gives a value or an error naming the run, the
//! step and the type: never a panic, never another run's data.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use durably::{Error, SqliteStore, Workflow};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u32,
    items: Vec<String>,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn engine(db: &Path) -> Workflow {
    Workflow::builder("bad").store(SqliteStore::open(db).await.unwrap()).build()
}

/// A run whose first step recorded an `Order`, then failed, so the next execution replays it.
async fn record_one_step(db: &Path, run_id: &str) {
    let wf = engine(db).await;
    let _ = wf
        .run(run_id, |_| async {
            durably::step("order", || async {
                Ok::<_, std::io::Error>(Order { id: 1, items: vec!["a".into()] })
            })
            .await?;
            Err::<(), _>(Error::permanent(std::io::Error::other("stop")))
        })
        .await;
}

async fn replay_step(db: &Path, run_id: &str) -> durably::Result<Order> {
    engine(db)
        .await
        .run(run_id, |_| async {
            durably::step("order", || async { Ok::<_, std::io::Error>(Order { id: 2, items: vec![] }) }).await
        })
        .await
}

/// Overwrites a column with raw bytes cast to TEXT (invalid UTF-8 included), as a disk fault or
/// a hand edit would.
fn poke(db: &Path, sql: &str, bytes: &[u8], run_id: &str) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    conn.execute(sql, rusqlite::params![bytes, run_id]).unwrap();
}

fn names_run(err: &Error, run_id: &str) -> bool {
    err.run_id() == Some(run_id) || err.to_string().contains(run_id)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_in_a_step_value_give_a_value_or_a_named_error(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("bad.db");
        runtime().block_on(async {
            record_one_step(&db, "run-v").await;
            poke(&db, "UPDATE steps SET value = CAST(?1 AS TEXT) WHERE run_id = ?2", &bytes, "run-v");
            match replay_step(&db, "run-v").await {
                Ok(order) => {
                    // Only bytes that really are an Order's JSON may come back as one.
                    let parsed: Order = serde_json::from_slice(&bytes).expect("came back as an Order");
                    assert_eq!(order, parsed);
                }
                Err(err) => {
                    assert!(names_run(&err, "run-v"), "{err}");
                    if let Error::Deserialize { step_id, type_name, .. } = &err {
                        assert_eq!(step_id, "order");
                        assert!(type_name.contains("Order"), "{type_name}");
                    }
                }
            }
        });
    }

    #[test]
    fn any_bytes_in_a_status_give_a_named_error(bytes in proptest::collection::vec(any::<u8>(), 0..24)) {
        let known = ["running", "waiting", "completed", "failed", "cancelled", "started"];
        prop_assume!(!known.iter().any(|k| k.as_bytes() == bytes.as_slice()));
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("bad.db");
        runtime().block_on(async {
            record_one_step(&db, "run-s").await;
            poke(&db, "UPDATE steps SET status = CAST(?1 AS TEXT) WHERE run_id = ?2", &bytes, "run-s");
            let err = replay_step(&db, "run-s").await.unwrap_err();
            assert!(names_run(&err, "run-s"), "{err}");
            poke(&db, "UPDATE runs SET status = CAST(?1 AS TEXT) WHERE run_id = ?2", &bytes, "run-s");
            let wf = engine(&db).await;
            let err = wf.get_run("run-s").await.unwrap_err();
            assert!(names_run(&err, "run-s"), "{err}");
            // Another run of the same file is unaffected.
            record_one_step(&db, "healthy").await;
            assert_eq!(replay_step(&db, "healthy").await.unwrap(), Order { id: 1, items: vec!["a".into()] });
        });
    }

    #[test]
    fn any_bytes_in_a_signal_payload_give_a_value_or_a_named_error(bytes in proptest::collection::vec(any::<u8>(), 0..48)) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("bad.db");
        runtime().block_on(async {
            let wf = engine(&db).await;
            assert!(wf.complete("run-p", "approval", &Order { id: 3, items: vec![] }).await.unwrap());
            poke(&db, "UPDATE signals SET payload = CAST(?1 AS TEXT) WHERE run_id = ?2", &bytes, "run-p");
            let wf = engine(&db).await;
            let got = wf.run("run-p", |_| async { durably::signal::<Order>("approval").await }).await;
            match got {
                Ok(order) => assert_eq!(Some(order), serde_json::from_slice::<Order>(&bytes).ok()),
                Err(err) => assert!(names_run(&err, "run-p"), "{err}"),
            }
        });
    }

    #[test]
    fn any_bytes_in_a_stored_output_give_a_value_or_a_named_error(bytes in proptest::collection::vec(any::<u8>(), 0..48)) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("bad.db");
        runtime().block_on(async {
            let wf = engine(&db).await;
            let first: u32 = wf.run("run-o", |_| async { Ok::<_, Error>(7u32) }).await.unwrap();
            assert_eq!(first, 7);
            poke(&db, "UPDATE runs SET output = CAST(?1 AS TEXT) WHERE run_id = ?2", &bytes, "run-o");
            let wf = engine(&db).await;
            match wf.run("run-o", |_| async { Ok::<_, Error>(8u32) }).await {
                Ok(v) => assert_eq!(Some(v), serde_json::from_slice::<u32>(&bytes).ok()),
                Err(err) => assert!(names_run(&err, "run-o"), "{err}"),
            }
        });
    }
}

/// Found by the `canonical_json` fuzz target: serde_json's default float parser may be one unit
/// in the last place off, so a float read back from its own shortest JSON form could differ from
/// the one written. A replayed step must return exactly the value its first execution returned
/// (and a request hash over it must not change), so floats are parsed correctly rounded.
#[test]
fn a_replayed_float_is_the_recorded_float() {
    let recorded: f64 = "444444444441200007867".parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("float.db");
    runtime().block_on(async {
        let first = engine(&db)
            .await
            .run("run-f", |_| async move {
                let x = durably::step("x", move || async move { Ok::<_, std::io::Error>(recorded) }).await?;
                Err::<f64, _>(Error::permanent(std::io::Error::other(format!("stop after {x}"))))
            })
            .await;
        assert!(first.is_err());
        let replayed: f64 = engine(&db)
            .await
            .run("run-f", |_| async {
                durably::step("x", || async { Ok::<_, std::io::Error>(0.0f64) }).await
            })
            .await
            .unwrap();
        assert_eq!(replayed.to_bits(), recorded.to_bits(), "{replayed:e} != {recorded:e}");
    });
}
