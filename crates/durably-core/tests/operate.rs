//! Operating runs (rule 13 of docs/design.md): cancel from another engine, fork, purge, export and import.
//! Two engines on one shared store stand for two processes: they share no in-memory state.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use durably_core::store::prelude::*;
use durably_core::{CANCEL_POLL, Error, MemoryStore, RunExport, RunFilter, RunStatus, Workflow, step};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

#[derive(Clone, Default)]
struct Counter(Arc<AtomicU32>);

impl Counter {
    fn hit(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn get(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A step body that counts its executions and returns `value()`.
fn counted<T, F>(
    counter: &Counter,
    value: F,
) -> impl FnMut() -> std::future::Ready<Result<T, std::io::Error>> + Send + 'static
where
    F: Fn() -> T + Send + 'static,
{
    let counter = counter.clone();
    move || {
        counter.hit();
        std::future::ready(Ok(value()))
    }
}

fn engine(store: &Arc<MemoryStore>) -> Workflow {
    Workflow::builder("ops").shared_store(store.clone()).default_retries(0).build()
}

async fn wait_for_status(wf: &Workflow, run_id: &str, status: RunStatus) {
    for _ in 0..1000 {
        if wf.get_run(run_id).await.unwrap().is_some_and(|r| r.status == status) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("run {run_id} never reached {status}");
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Approval {
    approved: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_from_another_engine_stops_a_waiting_run() {
    let store = Arc::new(MemoryStore::new());
    let (a, b) = (engine(&store), engine(&store));
    let after = Counter::default();
    let runner = {
        let (a, after) = (a.clone(), after.clone());
        tokio::spawn(async move {
            a.run("wait-1", move |_| async move {
                let approval: Approval = durably_core::signal("approval").await?;
                step("after", counted(&after, move || approval.approved)).await
            })
            .await
        })
    };
    wait_for_status(&b, "wait-1", RunStatus::Waiting).await;
    assert!(b.cancel("wait-1").await.unwrap());
    let result = tokio::time::timeout(Duration::from_secs(10), runner).await.unwrap().unwrap();
    assert!(matches!(result, Err(Error::Cancelled { ref run_id }) if run_id == "wait-1"), "{result:?}");
    assert_eq!(after.get(), 0);
    assert_eq!(b.get_run("wait-1").await.unwrap().unwrap().status, RunStatus::Cancelled);
    // A signal delivered now does not revive it, and executing it again returns the cancellation.
    b.complete("wait-1", "approval", &Approval { approved: true }).await.unwrap();
    let again = a.run("wait-1", |_| async { Ok::<_, Error>(true) }).await;
    assert!(matches!(again, Err(Error::Cancelled { .. })), "{again:?}");
    assert_eq!(after.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_from_another_engine_stops_a_sleeping_run() {
    let store = Arc::new(MemoryStore::new());
    let (a, b) = (engine(&store), engine(&store));
    let after = Counter::default();
    let runner = {
        let (a, after) = (a.clone(), after.clone());
        tokio::spawn(async move {
            a.run("sleep-1", move |_| async move {
                step("before", || async { Ok::<_, std::io::Error>(1u32) }).await?;
                durably_core::sleep(Duration::from_secs(3600)).await?;
                step("after", counted(&after, move || 2u32)).await
            })
            .await
        })
    };
    for _ in 0..1000 {
        if b.list_steps("sleep-1").await.unwrap().iter().any(|s| s.step_id == "sleep") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(b.cancel("sleep-1").await.unwrap());
    let result = tokio::time::timeout(Duration::from_secs(10), runner).await.unwrap().unwrap();
    assert!(matches!(result, Err(Error::Cancelled { .. })), "{result:?}");
    assert_eq!(after.get(), 0);
    assert_eq!(b.get_run("sleep-1").await.unwrap().unwrap().status, RunStatus::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_from_another_engine_stops_at_the_next_step() {
    let store = Arc::new(MemoryStore::new());
    let (a, b) = (engine(&store), engine(&store));
    let gate = Arc::new(Semaphore::new(0));
    let (slow, after) = (Counter::default(), Counter::default());
    let runner = {
        let (a, gate, slow, after) = (a.clone(), gate.clone(), slow.clone(), after.clone());
        tokio::spawn(async move {
            a.run("step-1", move |_| async move {
                step("slow", move || {
                    let (slow, gate) = (slow.clone(), gate.clone());
                    async move {
                        slow.hit();
                        let _permit = gate.acquire().await.unwrap();
                        Ok::<_, std::io::Error>(1u32)
                    }
                })
                .await?;
                step("after", counted(&after, move || 2u32)).await
            })
            .await
        })
    };
    while slow.get() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(b.cancel("step-1").await.unwrap());
    // Give the executing engine's watcher time to read the status before the step ends.
    tokio::time::sleep(CANCEL_POLL * 4).await;
    gate.add_permits(1);
    let result = tokio::time::timeout(Duration::from_secs(10), runner).await.unwrap().unwrap();
    assert!(matches!(result, Err(Error::Cancelled { .. })), "{result:?}");
    assert_eq!(after.get(), 0, "the step after the boundary must not run");
    // The step in flight finished and was recorded.
    let steps = b.list_steps("step-1").await.unwrap();
    assert_eq!(steps.iter().map(|s| s.step_id.as_str()).collect::<Vec<_>>(), ["slow"]);
    assert_eq!(b.get_run("step-1").await.unwrap().unwrap().status, RunStatus::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_is_never_overwritten_by_the_executing_engine() {
    // The body ends right after the cancellation, before any watcher could see it: the final
    // status write finds `cancelled` and keeps it.
    let store = Arc::new(MemoryStore::new());
    let (a, b) = (engine(&store), engine(&store));
    let gate = Arc::new(Semaphore::new(0));
    let started = Counter::default();
    let runner = {
        let (a, gate, started) = (a.clone(), gate.clone(), started.clone());
        tokio::spawn(async move {
            a.run("race-1", move |_| async move {
                started.hit();
                let _permit = gate.acquire().await.unwrap();
                Ok::<_, Error>(7u32)
            })
            .await
        })
    };
    while started.get() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(b.cancel("race-1").await.unwrap());
    gate.add_permits(1);
    let result = tokio::time::timeout(Duration::from_secs(10), runner).await.unwrap().unwrap();
    assert!(matches!(result, Err(Error::Cancelled { .. })), "{result:?}");
    let run = b.get_run("race-1").await.unwrap().unwrap();
    assert_eq!((run.status, run.output), (RunStatus::Cancelled, None));
}

async fn three_steps(wf: &Workflow, run_id: &str, counts: [Counter; 3], bad: bool) -> Result<String, Error> {
    let [ca, cb, cc] = counts;
    wf.run(run_id, move |_| async move {
        let a = step("a", counted(&ca, move || "a".to_owned())).await?;
        let b = step("b", counted(&cb, move || if bad { "bad-answer".to_owned() } else { "b".to_owned() }))
            .await?;
        let c = step("c", counted(&cc, move || "c".to_owned())).await?;
        Ok::<_, Error>(format!("{a}{b}{c}"))
    })
    .await
}

#[tokio::test]
async fn fork_re_runs_from_the_chosen_step() {
    let store = Arc::new(MemoryStore::new());
    let wf = engine(&store);
    let counts = [Counter::default(), Counter::default(), Counter::default()];
    assert_eq!(three_steps(&wf, "src", counts.clone(), true).await.unwrap(), "abad-answerc");
    let fork = wf.fork("src", "b", "src-fork").await.unwrap();
    assert_eq!((fork.run_id.as_str(), fork.workflow.as_str()), ("src-fork", "ops"));
    let copied = wf.list_steps("src-fork").await.unwrap();
    assert_eq!(copied.iter().map(|s| s.step_id.as_str()).collect::<Vec<_>>(), ["a"]);
    assert_eq!(three_steps(&wf, "src-fork", counts.clone(), false).await.unwrap(), "abc");
    let hits: Vec<u32> = counts.iter().map(Counter::get).collect();
    assert_eq!(hits, [1, 2, 2], "a replayed in the fork; b and c ran again");
    // The source is untouched.
    assert_eq!(wf.output::<String>("src").await.unwrap().as_deref(), Some("abad-answerc"));
}

#[tokio::test]
async fn fork_errors_name_what_is_wrong() {
    let store = Arc::new(MemoryStore::new());
    let wf = engine(&store);
    let counts = [Counter::default(), Counter::default(), Counter::default()];
    three_steps(&wf, "src", counts.clone(), false).await.unwrap();
    three_steps(&wf, "taken", counts, false).await.unwrap();
    let unknown_run = wf.fork("nope", "b", "x").await.unwrap_err();
    assert!(matches!(unknown_run, Error::RunNotFound { ref run_id } if run_id == "nope"), "{unknown_run}");
    let unknown_step = wf.fork("src", "zzz", "x").await.unwrap_err().to_string();
    assert!(unknown_step.contains("`zzz`") && unknown_step.contains("`src`"), "{unknown_step}");
    let taken = wf.fork("src", "b", "taken").await.unwrap_err().to_string();
    assert!(taken.contains("`taken` already exists"), "{taken}");
    assert!(wf.get_run("x").await.unwrap().is_none(), "a failed fork creates nothing");
}

#[tokio::test]
async fn purge_deletes_old_runs_of_the_given_statuses_only() {
    let store = Arc::new(MemoryStore::new());
    let wf = engine(&store);
    let counts = [Counter::default(), Counter::default(), Counter::default()];
    three_steps(&wf, "done-1", counts.clone(), false).await.unwrap();
    three_steps(&wf, "done-2", counts, false).await.unwrap();
    let _ = wf.run("failed-1", |_| async { Err::<u32, _>(std::io::Error::other("boom")) }).await;
    wf.complete("done-1", "stray", &1).await.unwrap();
    // Nothing is old enough yet.
    assert_eq!(wf.purge(Duration::from_secs(3600), &[]).await.unwrap(), 0);
    assert_eq!(wf.purge(Duration::ZERO, &[RunStatus::Completed]).await.unwrap(), 2);
    let left: Vec<String> =
        wf.list_runs(&RunFilter::new()).await.unwrap().into_iter().map(|r| r.run_id).collect();
    assert_eq!(left, ["failed-1"]);
    assert!(wf.list_steps("done-1").await.unwrap().is_empty());
    assert!(store.list_signals("done-1").await.unwrap().is_empty());
    assert_eq!(wf.purge(Duration::ZERO, &[]).await.unwrap(), 1);
    assert!(wf.list_runs(&RunFilter::new()).await.unwrap().is_empty());
}

async fn approved_pipeline(wf: &Workflow, run_id: &str, model_calls: Counter) -> Result<String, Error> {
    wf.run(run_id, move |_| async move {
        let m1 = model_calls.clone();
        let draft = step("model", counted(&m1, move || "draft".to_owned())).await?;
        let approval: Approval = durably_core::signal("approval").await?;
        let m2 = model_calls.clone();
        let final_text = step("model", counted(&m2, move || format!("{draft}+final"))).await?;
        Ok::<_, Error>(format!("{final_text}:{}", approval.approved))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_run_replays_from_a_fresh_store_with_no_task_executions() {
    let store = Arc::new(MemoryStore::new());
    let wf = engine(&store);
    let live = Counter::default();
    wf.complete("doc-1", "approval", &Approval { approved: true }).await.unwrap();
    assert_eq!(approved_pipeline(&wf, "doc-1", live.clone()).await.unwrap(), "draft+final:true");
    assert_eq!(live.get(), 2);

    let json = wf.export("doc-1").await.unwrap().to_json().unwrap();
    let doc = RunExport::from_json(&json).unwrap();
    assert_eq!(doc.steps.len(), 2);
    assert_eq!(doc.signals.len(), 1);
    assert_eq!(doc.run.status, RunStatus::Completed);

    // As recorded: a completed run returns its output.
    let fresh = engine(&Arc::new(MemoryStore::new()));
    let imported = fresh.import(&doc).await.unwrap();
    assert_eq!(imported, doc.run);
    let replays = Counter::default();
    assert_eq!(approved_pipeline(&fresh, "doc-1", replays.clone()).await.unwrap(), "draft+final:true");
    assert_eq!(replays.get(), 0);

    // As a replay fixture: the body runs again, every step and the signal come from the file.
    let fresh = engine(&Arc::new(MemoryStore::new()));
    fresh.import(&doc.clone().for_replay()).await.unwrap();
    assert_eq!(approved_pipeline(&fresh, "doc-1", replays.clone()).await.unwrap(), "draft+final:true");
    assert_eq!(replays.get(), 0, "no task body ran during the replay");
    assert_eq!(fresh.get_run("doc-1").await.unwrap().unwrap().status, RunStatus::Completed);

    // A changed workflow is caught against the fixture.
    let fresh = engine(&Arc::new(MemoryStore::new()));
    fresh.import(&doc.clone().for_replay()).await.unwrap();
    let changed = fresh
        .run("doc-1", |_| async {
            step("summarise", || async { Ok::<_, std::io::Error>(1u32) }).step_id("model").await
        })
        .await;
    assert!(matches!(changed, Err(Error::NonDeterminism { .. })), "{changed:?}");
}

#[tokio::test]
async fn import_refuses_an_existing_run_and_a_wrong_format() {
    let store = Arc::new(MemoryStore::new());
    let wf = engine(&store);
    let counts = [Counter::default(), Counter::default(), Counter::default()];
    three_steps(&wf, "src", counts, false).await.unwrap();
    let doc = wf.export("src").await.unwrap();
    let err = wf.import(&doc).await.unwrap_err().to_string();
    assert!(err.contains("`src` already exists"), "{err}");
    wf.import(&doc.clone().with_run_id("src-copy")).await.unwrap();
    assert_eq!(wf.output::<String>("src-copy").await.unwrap().as_deref(), Some("abc"));
    let bad = RunExport::from_json(&doc.to_json().unwrap().replace("durably-run/1", "other/9")).unwrap_err();
    assert!(bad.to_string().contains("other/9"), "{bad}");
    let missing = wf.export("nope").await.unwrap_err();
    assert!(matches!(missing, Error::RunNotFound { .. }), "{missing}");
}
