//! The explicit run context: steps through `ctx`, step ids that cannot collide, scopes,
//! `durably::spawn`, and application state registered on the engine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use durably_core::store::prelude::*;
use durably_core::{Error, MemoryStore, RunContext, RunStatus, Workflow, spawn};

type IoResult<T> = Result<T, std::io::Error>;

fn engine(store: &Arc<MemoryStore>) -> Workflow {
    Workflow::builder("app").shared_store(store.clone()).build()
}

#[derive(Clone, Default)]
struct Counter(Arc<AtomicU32>);

impl Counter {
    fn get(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A step body returning `value` and counting its executions.
fn returning(
    counter: &Counter,
    value: &str,
) -> impl FnMut() -> std::future::Ready<IoResult<String>> + Send + 'static {
    let (counter, value) = (counter.clone(), value.to_owned());
    move || {
        counter.0.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(value.clone()))
    }
}

#[tokio::test]
async fn a_generated_id_skips_an_explicit_one_instead_of_taking_its_value() {
    let store = Arc::new(MemoryStore::new());
    let wf = engine(&store);
    let (first, second) = (Counter::default(), Counter::default());
    let body = |ctx: RunContext, first: Counter, second: Counter| async move {
        let a: String = ctx.step("t", returning(&first, "first")).step_id("t#1").await?;
        let b: String = ctx.step("t", returning(&second, "second")).await?;
        Ok::<_, Error>((a, b))
    };
    let (f, s) = (first.clone(), second.clone());
    let out = wf.run("collide", move |ctx| body(ctx, f, s)).await.unwrap();
    assert_eq!(out, ("first".to_owned(), "second".to_owned()), "the plain call ran its own body");
    assert_eq!((first.get(), second.get()), (1, 1));
    let ids: Vec<String> = wf.list_steps("collide").await.unwrap().into_iter().map(|s| s.step_id).collect();
    assert_eq!(ids.len(), 2, "two checkpoints: {ids:?}");
    assert!(ids.contains(&"t#1".to_owned()) && ids.contains(&"t#2".to_owned()), "{ids:?}");

    // A replay in a fresh engine finds each value under its own id, running nothing.
    let store2 = store.clone();
    let wf2 = engine(&store2);
    store.update_run("collide", &durably_core::RunUpdate::new(RunStatus::Failed, 0)).await.unwrap();
    let (f, s) = (first.clone(), second.clone());
    let again = wf2.run("collide", move |ctx| body(ctx, f, s)).await.unwrap();
    assert_eq!(again, ("first".to_owned(), "second".to_owned()));
    assert_eq!((first.get(), second.get()), (1, 1), "replayed, not run again");
}

#[tokio::test]
async fn an_explicit_id_held_by_an_earlier_generated_call_fails_naming_both_calls() {
    let store = Arc::new(MemoryStore::new());
    let wf = engine(&store);
    let late = Counter::default();
    let l = late.clone();
    let err = wf
        .run("clash", move |ctx| async move {
            let _: String = ctx.step("fetch", || async { IoResult::Ok("a".to_owned()) }).await?;
            let b: String = ctx.step("save", returning(&l, "b")).step_id("fetch").await?;
            Ok::<_, Error>(b)
        })
        .await
        .unwrap_err();
    match &err {
        Error::DuplicateStepId { run_id, step_id, first, second } => {
            assert_eq!((run_id.as_str(), step_id.as_str()), ("clash", "fetch"));
            assert!(first.contains("`fetch`") && second.contains("`save`"), "{err}");
        }
        other => panic!("expected DuplicateStepId, got {other:?}"),
    }
    assert_eq!(late.get(), 0, "the second call did not run");
    let steps = wf.list_steps("clash").await.unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].value.as_deref(), Some("\"a\""), "the first call's record is untouched");
}

#[tokio::test]
async fn two_calls_naming_one_explicit_id_share_it_as_before() {
    let store = Arc::new(MemoryStore::new());
    let wf = engine(&store);
    let hits = Counter::default();
    let h = hits.clone();
    let out = wf
        .run("shared", move |ctx| async move {
            let a: String = ctx.step("config", returning(&h, "v")).step_id("cfg").await?;
            let b: String = ctx.step("config", returning(&h, "v")).step_id("cfg").await?;
            Ok::<_, Error>(a + &b)
        })
        .await
        .unwrap();
    assert_eq!(out, "vv");
    assert_eq!(hits.get(), 1, "the second call replays the first's checkpoint");
}

#[tokio::test]
async fn scopes_number_their_steps_on_their_own_and_replay() {
    let store = Arc::new(MemoryStore::new());
    let wf = engine(&store);
    let hits = Counter::default();
    let run = |wf: Workflow, hits: Counter| async move {
        wf.run("scoped", move |ctx| async move {
            let planner = ctx.scope("planner");
            let a: String = planner.step("model", returning(&hits, "a")).await?;
            let b: String = planner.step("model", returning(&hits, "b")).await?;
            let critic = ctx.scope("planner");
            let c: String = critic.step("model", returning(&hits, "c")).await?;
            let d: String = ctx.step("model", returning(&hits, "d")).await?;
            Ok::<_, Error>(format!("{a}{b}{c}{d}"))
        })
        .await
    };
    assert_eq!(run(wf.clone(), hits.clone()).await.unwrap(), "abcd");
    let mut ids: Vec<String> =
        wf.list_steps("scoped").await.unwrap().into_iter().map(|s| s.step_id).collect();
    ids.sort();
    assert_eq!(ids, ["model", "planner#1.model", "planner.model", "planner.model#1"]);
    store.update_run("scoped", &durably_core::RunUpdate::new(RunStatus::Failed, 0)).await.unwrap();
    assert_eq!(run(engine(&store), hits.clone()).await.unwrap(), "abcd");
    assert_eq!(hits.get(), 4, "every scoped step replayed");
}

#[tokio::test]
async fn signals_and_sleeps_through_the_context() {
    let store = Arc::new(MemoryStore::new());
    let wf = engine(&store);
    assert!(wf.complete("waits", "approval", &true).await.unwrap());
    let out = wf
        .run("waits", |ctx| async move {
            ctx.sleep(Duration::from_millis(5)).await?;
            let approved: bool = ctx.signal("approval").await?;
            let late: Option<u32> = ctx.signal_timeout("never", Duration::from_millis(5)).await?;
            Ok::<_, Error>((approved, late))
        })
        .await
        .unwrap();
    assert_eq!(out, (true, None));
    let names: Vec<String> = wf.list_steps("waits").await.unwrap().into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"sleep".to_owned()) && names.contains(&"signal:never".to_owned()), "{names:?}");
}

#[tokio::test]
async fn durably_spawn_carries_the_run_and_tokio_spawn_does_not() {
    let store = Arc::new(MemoryStore::new());
    let wf = engine(&store);
    wf.run("spawned", |_ctx| async move {
        let carried = spawn(async { durably_core::step("inside", || async { IoResult::Ok(1u32) }).await });
        carried.await.map_err(Error::permanent)??;
        let lost = tokio::spawn(async { durably_core::step("lost", || async { IoResult::Ok(2u32) }).await });
        lost.await.map_err(Error::permanent)??;
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    let names: Vec<String> = wf.list_steps("spawned").await.unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["inside"], "only the task spawned with durably::spawn was checkpointed");
}

struct Db {
    rows: u32,
}

#[tokio::test]
async fn state_registered_on_the_engine_reaches_runs_recovered_runs_and_the_free_function() {
    let store = Arc::new(MemoryStore::new());
    let wf = Workflow::builder("app").shared_store(store.clone()).state(Db { rows: 7 }).build();
    let direct: u32 = wf
        .run("direct", |ctx| async move {
            let via_ctx = ctx.state::<Db>()?.rows;
            let via_fn = durably_core::state::<Db>()?.rows;
            Ok::<_, Error>(via_ctx + via_fn)
        })
        .await
        .unwrap();
    assert_eq!(direct, 14);

    // A registered workflow resumed by `recover` in another engine sees that engine's state.
    let crashed = engine(&store);
    crashed.register_fn("count", |ctx: RunContext, n: u32| async move {
        Ok::<_, Error>(ctx.state::<Db>()?.rows * n)
    });
    store.open_run(durably_core::NewRun::new("rec", "count", Some("3".into()), 0)).await.unwrap();
    let recovering = Workflow::builder("app").shared_store(store.clone()).state(Db { rows: 5 }).build();
    recovering.register_fn("count", |ctx: RunContext, n: u32| async move {
        Ok::<_, Error>(ctx.state::<Db>()?.rows * n)
    });
    let report = recovering.recover().await.unwrap();
    assert_eq!(report.resumed, ["rec"]);
    let results = report.join().await;
    assert_eq!(results[0].1.as_deref().unwrap(), "15");
}

#[tokio::test]
async fn missing_state_is_an_error_naming_the_type() {
    let wf = engine(&Arc::new(MemoryStore::new()));
    let err = wf.run("no-state", |ctx| async move { ctx.state::<Db>().map(|db| db.rows) }).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("Db") && text.contains(".state("), "{text}");
    assert!(matches!(durably_core::state::<Db>(), Err(Error::Invalid { .. })), "outside a run");
}
