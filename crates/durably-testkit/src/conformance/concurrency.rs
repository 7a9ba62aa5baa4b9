//! Concurrency: many writers at once, and the store used as `Arc<dyn Store>`.

// A test suite reports failure by panicking: the workspace's library lints do not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use durably_core::{RunFilter, RunStatus, RunUpdate, Store};

use super::support::*;

// ---------------------------------------------------------------------------------------------
// Concurrency

/// 200 tasks, each driving a run of its own through open, steps, a signal and completion, all
/// at once: every write lands.
pub async fn concurrent_writes_of_many_runs_all_land<S: Store>(store: Arc<S>) {
    const RUNS: usize = 200;
    const STEPS: usize = 5;
    let mut tasks = Vec::new();
    for r in 0..RUNS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let run_id = format!("run-{r}");
            open(&*store, new_run(&run_id, Some(&r.to_string()), 1_000)).await;
            for s in 0..STEPS {
                let mut rec = step(&format!("step-{s}"), 1_000 + s as i64);
                rec.value = Some(format!("{r}.{s}"));
                save(&*store, &run_id, &rec).await;
            }
            assert!(deliver(&*store, &run_id, "done", &r.to_string(), 2_000).await);
            update(&*store, &run_id, RunUpdate::new(RunStatus::Completed, 3_000).output(r.to_string())).await;
        }));
    }
    for task in tasks {
        task.await.expect("a writer task panicked");
    }
    let completed = list_runs(&*store, RunFilter::new().status(RunStatus::Completed)).await;
    assert_eq!(completed.len(), RUNS, "every run must be completed");
    for r in 0..RUNS {
        let run_id = format!("run-{r}");
        let run = expect_run(&*store, &run_id).await;
        assert_eq!((run.input, run.output), (Some(r.to_string()), Some(r.to_string())), "run {run_id}");
        let values: Vec<Option<String>> =
            list_steps(&*store, &run_id).await.into_iter().map(|s| s.value).collect();
        let want: Vec<Option<String>> = (0..STEPS).map(|s| Some(format!("{r}.{s}"))).collect();
        assert_eq!(values, want, "steps of {run_id}");
        assert_eq!(get_signal(&*store, &run_id, "done").await, Some(r.to_string()));
    }
}

/// 100 tasks saving different steps of one run at once: every step lands.
pub async fn concurrent_saves_to_one_run_all_land<S: Store>(store: Arc<S>) {
    open(&*store, new_run("shared", None, 1_000)).await;
    let mut tasks = Vec::new();
    for i in 0..100i64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(
            async move { save(&*store, "shared", &step(&format!("item-{i:03}"), i)).await },
        ));
    }
    for task in tasks {
        task.await.expect("a writer task panicked");
    }
    let got: Vec<String> = list_steps(&*store, "shared").await.into_iter().map(|s| s.step_id).collect();
    let want: Vec<String> = (0..100).map(|i| format!("item-{i:03}")).collect();
    assert_eq!(got, want);
}

/// `wait_for_signal` returns by `max_wait` (a store may return sooner, never much later).
pub async fn wait_for_signal_returns_within_max_wait<S: Store>(store: Arc<S>) {
    let max_wait = Duration::from_millis(200);
    let started = Instant::now();
    let waited =
        tokio::time::timeout(Duration::from_secs(10), store.wait_for_signal("r", "s", max_wait)).await;
    assert!(waited.is_ok(), "wait_for_signal(max_wait = 200 ms) did not return within 10 s");
    let elapsed = started.elapsed();
    assert!(
        elapsed < max_wait + Duration::from_secs(2),
        "wait_for_signal took {elapsed:?} for max_wait {max_wait:?}"
    );
}

/// Behind `Arc<dyn Store>` the store behaves the same.
pub async fn store_works_as_arc_dyn_store<S: Store>(store: Arc<S>) {
    let store: Arc<dyn Store> = store;
    open(&store, new_run("dyn", Some("1"), 1_000)).await;
    save(&store, "dyn", &full_step("s")).await;
    assert!(deliver(&store, "dyn", "sig", "2", 1_100).await);
    update(&store, "dyn", RunUpdate::new(RunStatus::Completed, 1_200).output("3")).await;
    let run = expect_run(&store, "dyn").await;
    assert_eq!((run.status, run.output.as_deref()), (RunStatus::Completed, Some("3")));
    assert_eq!(list_steps(&store, "dyn").await, vec![full_step("s")]);
    assert_eq!(get_signal(&store, "dyn", "sig").await.as_deref(), Some("2"));
    assert_eq!(ids(&list_runs(&store, RunFilter::new().workflow(WF)).await), ["dyn"]);
}
