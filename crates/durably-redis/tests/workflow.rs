//! End to end: workflows on `RedisStore` checkpoint each task, and a second engine (its own
//! connection, as in another process) replays them without running them again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use common::{Cleanup, fresh_prefix, server_or_skip};
use durably_core::{Error, RunStatus, Workflow};
use durably_redis::RedisStore;

async fn engine(url: &str, prefix: &str) -> Workflow {
    let store = RedisStore::builder(url).prefix(prefix).connect().await.expect("connect to Redis");
    Workflow::builder("app").store(store).build()
}

/// Counts executions of each step body.
#[derive(Clone, Default)]
struct Counts(Arc<[AtomicU32; 3]>);

impl Counts {
    fn get(&self) -> [u32; 3] {
        [0, 1, 2].map(|i| self.0[i].load(Ordering::SeqCst))
    }
}

/// Three steps; the third fails while `fail` is set.
async fn body(counts: Counts, fail: bool) -> Result<String, Error> {
    let c = counts.clone();
    let a: u32 = durably_core::step("fetch", move || {
        c.0[0].fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, std::io::Error>(20) }
    })
    .await?;
    let c = counts.clone();
    let b: String = durably_core::step("describe", move || {
        c.0[1].fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, std::io::Error>(format!("{{\"quoted\": \"{a}\"}} ü 🦀")) }
    })
    .await?;
    let c = counts.clone();
    let total: u32 = durably_core::step("total", move || {
        c.0[2].fetch_add(1, Ordering::SeqCst);
        async move { if fail { Err(std::io::Error::other("ledger is down")) } else { Ok(a + 1) } }
    })
    .retries(0)
    .await?;
    Ok(format!("{b} / {total}"))
}

#[tokio::test]
async fn a_second_engine_replays_checkpoints_and_resumes_at_the_failed_step() {
    let Some(url) = server_or_skip() else { return };
    let prefix = fresh_prefix();
    let _cleanup = Cleanup { url: url.clone(), prefix: prefix.clone() };
    let run_id = "order:42 {eu}";

    let first = engine(&url, &prefix).await;
    let counts = Counts::default();
    let err = first.run(run_id, |_| body(counts.clone(), true)).await.expect_err("the third step fails");
    assert_eq!(err.run_id(), Some(run_id), "{err}");
    assert_eq!(counts.get(), [1, 1, 1]);
    assert_eq!(first.get_run(run_id).await.unwrap().unwrap().status, RunStatus::Failed);
    drop(first);

    // Another engine with its own connection: the first two steps replay, the third runs.
    let second = engine(&url, &prefix).await;
    let out = second.run(run_id, |_| body(counts.clone(), false)).await.unwrap();
    assert_eq!(out, "{\"quoted\": \"20\"} ü 🦀 / 21");
    assert_eq!(counts.get(), [1, 1, 2], "only the failed step ran again");

    // A third engine gets the stored output without running anything.
    let third = engine(&url, &prefix).await;
    let again = third.run(run_id, |_| body(counts.clone(), false)).await.unwrap();
    assert_eq!(again, out);
    assert_eq!(counts.get(), [1, 1, 2]);
    let steps = third.list_steps(run_id).await.unwrap();
    // Ordered by start time, then step id: steps of one millisecond come alphabetically.
    let mut names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["describe", "fetch", "total"]);
    let run = third.get_run(run_id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.output.as_deref(), Some(serde_json::to_string(&out).unwrap().as_str()));
}

#[tokio::test]
async fn a_signal_completed_by_another_engine_resumes_the_waiting_run() {
    let Some(url) = server_or_skip() else { return };
    let prefix = fresh_prefix();
    let _cleanup = Cleanup { url: url.clone(), prefix: prefix.clone() };
    let waiter = engine(&url, &prefix).await;
    let sender = engine(&url, &prefix).await;
    let run = tokio::spawn(async move {
        waiter
            .run("approval-run", |_| async {
                let ok: bool = durably_core::signal("approved").await?;
                Ok::<_, Error>(ok)
            })
            .await
    });
    // Wait until the run is recorded as waiting, then approve it from the other engine.
    loop {
        if let Some(r) = sender.get_run("approval-run").await.unwrap()
            && r.status == RunStatus::Waiting
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let sent = std::time::Instant::now();
    assert!(sender.complete("approval-run", "approved", &true).await.unwrap());
    // The engine polls the store at most once a minute: finishing well before proves the
    // pub/sub wake-up.
    let out =
        tokio::time::timeout(std::time::Duration::from_secs(20), run).await.expect("not woken").unwrap();
    assert!(out.unwrap());
    println!("run resumed {:?} after the signal", sent.elapsed());
}
