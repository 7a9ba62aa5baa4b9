//! The scenarios on durare 0.5: `DurableEngine` with `ctx.step` closures, SQLite or PostgreSQL.

use std::collections::BTreeMap;
use std::future::IntoFuture as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use durare::{DurableContext, DurableEngine, ListFilter, PostgresProvider, STATUS_SUCCESS, WorkflowOptions};

use crate::common::{
    APP_VERSION, KJ, Peer, Seen, StepOut, StepsProbe, Target, in_runtime_then_crash, short, triangle,
};
use crate::record::Record;
use crate::runs_record;

const RUN_ID: &str = "steps-r1";
/// How long any one wait of the bench may take before it counts as a failure.
const LIMIT: Duration = Duration::from_secs(600);

async fn steps_body(ctx: DurableContext, n: u64, probe: Arc<StepsProbe>) -> durare::Result<u64> {
    let t0 = Instant::now();
    let mut lat = Vec::with_capacity(n as usize);
    let mut total = 0;
    for i in 0..n {
        let s0 = Instant::now();
        let p = probe.clone();
        let r: StepOut = ctx
            .step("step", move || async move {
                p.executed.fetch_add(1, Ordering::Relaxed);
                Ok::<_, durare::Error>(StepOut { i, ok: true })
            })
            .await?;
        lat.push(s0.elapsed());
        total += r.i;
    }
    probe.report_then_stop_if_asked(Seen { body: t0.elapsed(), lat, total }).await;
    Ok(total)
}

/// `tasks` steps `t`, as durably-bench's `flow`.
async fn flow_body(ctx: DurableContext, (k, tasks): (u64, u64)) -> durare::Result<u64> {
    let mut s = 0;
    for j in 0..tasks {
        let r: KJ = ctx.step("t", move || async move { Ok::<_, durare::Error>(KJ { k, j }) }).await?;
        s += r.j;
    }
    Ok(s)
}

/// An engine on the target, with `steps` (reporting to `probe`) and `flow` registered.
async fn open(t: &Target, probe: Arc<StepsProbe>) -> anyhow::Result<DurableEngine> {
    let mut b = match t.peer {
        Peer::DurareSqlite => {
            DurableEngine::connect(&t.sqlite_url()).await.context("durare: opening SQLite")?
        }
        Peer::DurarePostgres => DurableEngine::builder(Arc::new(
            PostgresProvider::connect_with_schema(&t.url, &t.schema)
                .await
                .context("durare: connecting to PostgreSQL")?,
        )),
        Peer::DbosPostgres => bail!("not a durare target"),
    };
    b.app_version(APP_VERSION);
    b.register("steps", move |ctx: DurableContext, n: u64| steps_body(ctx, n, probe.clone()));
    b.register("flow", flow_body);
    b.build().await.context("durare: building the engine")
}

/// `steps_fresh` (the first execution, whose runtime is then dropped as a crashed process's) and
/// `steps_replay_new_object` (a new engine on the same data recovers the run: every step
/// replayed, none executed).
pub async fn steps_round(t: &Target, n: u64) -> anyhow::Result<Vec<Record>> {
    let label = t.peer.label();
    let expected = triangle(n);
    let probe = Arc::new(StepsProbe::default());
    probe.stop.store(true, Ordering::SeqCst);

    let (t1, p1) = (t.clone(), probe.clone());
    let (elapsed, seen, ran) = in_runtime_then_crash(move || async move {
        let engine = open(&t1, p1.clone()).await?;
        let before = p1.executed.load(Ordering::SeqCst);
        let started = Instant::now();
        let handle = engine.start::<u64, u64>("steps", n, WorkflowOptions::with_id(RUN_ID)).await?;
        let (seen, _) = p1.wait_or_ended(LIMIT, handle.into_future()).await?;
        let elapsed = started.elapsed();
        Ok((elapsed, seen, p1.executed.load(Ordering::SeqCst) - before))
    })
    .await?;
    let errors = u64::from(seen.total != expected) + u64::from(ran != n);
    let mut out = vec![
        Record::throughput("steps_fresh", label, n, elapsed)
            .percentiles(&seen.lat)
            .errors(errors)
            .with("timed", "from start() to the last step's result"),
    ];

    probe.stop.store(false, Ordering::SeqCst);
    let engine = open(t, probe.clone()).await?;
    let before = probe.executed.load(Ordering::SeqCst);
    let started = Instant::now();
    let recovered = engine.recover().await.context("durare: recover()")?;
    if recovered != 1 {
        bail!("durare: recover() re-dispatched {recovered} runs, not the one abandoned");
    }
    let output = async {
        tokio::time::timeout(LIMIT, async { engine.retrieve_workflow::<u64>(RUN_ID).await?.await }).await
    };
    tokio::pin!(output);
    let (seen, early) = probe.wait_or_ended(LIMIT, &mut output).await?;
    let to_body_end = started.elapsed();
    let output = match early {
        Some(out) => out,
        None => output.await,
    }
    .context("durare: waiting for the recovered run's output")?;
    let to_output = started.elapsed();
    let ran = probe.executed.load(Ordering::SeqCst) - before;
    let mut errors = u64::from(seen.total != expected) + ran;
    let mut rec = Record::throughput("steps_replay_new_object", label, n, seen.body).percentiles(&seen.lat);
    match output {
        Ok(v) if v == expected => {}
        Ok(v) => {
            errors += 1;
            rec = rec.with("error", format!("recovered run returned {v}, not {expected}"));
        }
        Err(e) => {
            errors += 1;
            rec = rec.with("error", format!("recovered run: {e}"));
        }
    }
    out.push(
        rec.errors(errors)
            .with("timed", "the re-executed body, from its first line to its last step's result")
            .with("recover_to_body_end_ms", crate::record::round(to_body_end.as_secs_f64() * 1e3, 3))
            .with("recover_to_output_ms", crate::record::round(to_output.as_secs_f64() * 1e3, 3))
            .with("executed_on_replay", ran),
    );
    let _ = engine.shutdown(Duration::from_secs(5)).await;
    Ok(out)
}

/// `workflows_fresh`: `runs` runs of `tasks` steps, one after another.
pub async fn workflows(t: &Target, runs: u64, tasks: u64) -> anyhow::Result<Record> {
    let engine = open(t, Arc::default()).await?;
    let mut lat = Vec::with_capacity(runs as usize);
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let started = Instant::now();
    for k in 0..runs {
        let t0 = Instant::now();
        let r = async {
            engine
                .start::<(u64, u64), u64>("flow", (k, tasks), WorkflowOptions::with_id(format!("wf-{k}")))
                .await?
                .await
        }
        .await;
        match r {
            Ok(s) if s == triangle(tasks) => {}
            Ok(s) => *kinds.entry(format!("wrong sum {s}")).or_default() += 1,
            Err(e) => *kinds.entry(short(&e.to_string())).or_default() += 1,
        }
        lat.push(t0.elapsed());
    }
    let elapsed = started.elapsed();
    let _ = engine.shutdown(Duration::from_secs(5)).await;
    Ok(runs_record("workflows_fresh", t.peer, runs, tasks, elapsed, &lat, kinds, None))
}

/// `concurrent_workflows`: `runs` runs of `tasks` steps, all started at once.
pub async fn concurrent(t: &Target, runs: u64, tasks: u64) -> anyhow::Result<Record> {
    let engine = Arc::new(open(t, Arc::default()).await?);
    let started = Instant::now();
    let mut handles = Vec::with_capacity(runs as usize);
    for k in 0..runs {
        let engine = engine.clone();
        handles.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let r = async {
                engine
                    .start::<(u64, u64), u64>(
                        "flow",
                        (k, tasks),
                        WorkflowOptions::with_id(format!("cwf-{k}")),
                    )
                    .await?
                    .await
            }
            .await;
            (r, t0.elapsed())
        }));
    }
    let mut lat = Vec::with_capacity(handles.len());
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for h in handles {
        match h.await {
            Ok((Ok(s), d)) if s == triangle(tasks) => lat.push(d),
            Ok((Ok(s), _)) => *kinds.entry(format!("wrong sum {s}")).or_default() += 1,
            Ok((Err(e), _)) => *kinds.entry(short(&e.to_string())).or_default() += 1,
            Err(e) => *kinds.entry(format!("task panicked: {e}")).or_default() += 1,
        }
    }
    let elapsed = started.elapsed();
    let filter = ListFilter {
        status: vec![STATUS_SUCCESS.to_owned()],
        name: vec!["flow".to_owned()],
        ..Default::default()
    };
    let completed =
        engine.list_workflows(&filter).await.context("durare: listing completed runs")?.len() as u64;
    let _ = engine.shutdown(Duration::from_secs(5)).await;
    Ok(runs_record("concurrent_workflows", t.peer, runs, tasks, elapsed, &lat, kinds, Some(completed)))
}
