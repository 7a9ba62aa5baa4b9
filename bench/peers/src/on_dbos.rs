//! The scenarios on dbos 0.5 (DBOS Transact for Rust): `DBOS` with registered workflows and
//! `dbos::step`, on PostgreSQL in a schema of its own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use dbos::sysdb::types::{WorkflowFilter, WorkflowStatus};
use dbos::{Config, DBOS, RunOptions, WorkflowRef};

use crate::common::{
    APP_VERSION, KJ, Seen, StepOut, StepsProbe, Target, in_runtime_then_crash, short, triangle,
};
use crate::record::Record;
use crate::runs_record;

const RUN_ID: &str = "steps-r1";
/// How long any one wait of the bench may take before it counts as a failure.
const LIMIT: Duration = Duration::from_secs(600);

async fn steps_body(n: u64, probe: Arc<StepsProbe>) -> dbos::Result<u64> {
    let t0 = Instant::now();
    let mut lat = Vec::with_capacity(n as usize);
    let mut total = 0;
    for i in 0..n {
        let s0 = Instant::now();
        let p = probe.clone();
        let r: StepOut = dbos::step("step", move || {
            let p = p.clone();
            async move {
                p.executed.fetch_add(1, Ordering::Relaxed);
                dbos::Result::Ok(StepOut { i, ok: true })
            }
        })
        .await?;
        lat.push(s0.elapsed());
        total += r.i;
    }
    probe.report_then_stop_if_asked(Seen { body: t0.elapsed(), lat, total }).await;
    Ok(total)
}

/// `tasks` steps `t`, as durably-bench's `flow`.
async fn flow_body((k, tasks): (u64, u64)) -> dbos::Result<u64> {
    let mut s = 0;
    for j in 0..tasks {
        let r: KJ = dbos::step("t", move || async move { dbos::Result::Ok(KJ { k, j }) }).await?;
        s += r.j;
    }
    Ok(s)
}

type Steps = WorkflowRef<u64, u64>;
type Flow = WorkflowRef<(u64, u64), u64>;

/// A launched instance on the target, with `steps` (reporting to `probe`) and `flow` registered.
async fn open(t: &Target, probe: Arc<StepsProbe>) -> anyhow::Result<(DBOS, Steps, Flow)> {
    let config = Config {
        app_version: Some(APP_VERSION.to_owned()),
        schema: t.schema.clone(),
        ..Config::new("durably-peers", t.url.clone())
    };
    let dbos = DBOS::new(config);
    let steps = dbos
        .register_workflow("steps", move |n: u64| steps_body(n, probe.clone()))
        .map_err(|e| anyhow!("dbos: registering steps: {e}"))?;
    let flow =
        dbos.register_workflow("flow", flow_body).map_err(|e| anyhow!("dbos: registering flow: {e}"))?;
    dbos.launch().await.map_err(|e| anyhow!("dbos: launch: {e}"))?;
    Ok((dbos, steps, flow))
}

/// `steps_fresh` (the first execution, whose runtime is then dropped as a crashed process's) and
/// `steps_replay_new_object` (a new instance on the same data recovers the run at launch: every
/// step replayed, none executed).
pub async fn steps_round(t: &Target, n: u64) -> anyhow::Result<Vec<Record>> {
    let label = t.peer.label();
    let expected = triangle(n);
    let probe = Arc::new(StepsProbe::default());
    probe.stop.store(true, Ordering::SeqCst);

    let (t1, p1) = (t.clone(), probe.clone());
    let (elapsed, seen, ran) = in_runtime_then_crash(move || async move {
        let (_dbos, steps, _flow) = open(&t1, p1.clone()).await?;
        let before = p1.executed.load(Ordering::SeqCst);
        let started = Instant::now();
        let options = dbos::StartOptions { workflow_id: Some(RUN_ID), ..Default::default() };
        let handle = steps.start_with(n, options).await.map_err(|e| anyhow!("dbos: start: {e}"))?;
        let (seen, _) = p1.wait_or_ended(LIMIT, handle.result()).await?;
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

    // The launch of a new instance is what recovers (it re-enqueues the run; its queue
    // runner then executes it), so it is inside the end-to-end times and outside the body's.
    probe.stop.store(false, Ordering::SeqCst);
    let before = probe.executed.load(Ordering::SeqCst);
    let started = Instant::now();
    let (dbos, _steps, _flow) = open(t, probe.clone()).await?;
    let output = async {
        tokio::time::timeout(LIMIT, async {
            dbos.retrieve_workflow::<u64, dbos::EngineOnly>(RUN_ID)?.result().await
        })
        .await
    };
    tokio::pin!(output);
    let (seen, early) = probe.wait_or_ended(LIMIT, &mut output).await?;
    let to_body_end = started.elapsed();
    let output = match early {
        Some(out) => out,
        None => output.await,
    }
    .context("dbos: waiting for the recovered run's output")?;
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
            .with("launch_to_body_end_ms", crate::record::round(to_body_end.as_secs_f64() * 1e3, 3))
            .with("launch_to_output_ms", crate::record::round(to_output.as_secs_f64() * 1e3, 3))
            .with("executed_on_replay", ran),
    );
    dbos.shutdown().await;
    Ok(out)
}

/// `workflows_fresh`: `runs` runs of `tasks` steps, one after another.
pub async fn workflows(t: &Target, runs: u64, tasks: u64) -> anyhow::Result<Record> {
    let (dbos, _steps, flow) = open(t, Arc::default()).await?;
    let mut lat = Vec::with_capacity(runs as usize);
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let started = Instant::now();
    for k in 0..runs {
        let t0 = Instant::now();
        let id = format!("wf-{k}");
        let r = flow.run_with((k, tasks), RunOptions { workflow_id: Some(&id), ..Default::default() }).await;
        match r {
            Ok(s) if s == triangle(tasks) => {}
            Ok(s) => *kinds.entry(format!("wrong sum {s}")).or_default() += 1,
            Err(e) => *kinds.entry(short(&e.to_string())).or_default() += 1,
        }
        lat.push(t0.elapsed());
    }
    let elapsed = started.elapsed();
    dbos.shutdown().await;
    Ok(runs_record("workflows_fresh", t.peer, runs, tasks, elapsed, &lat, kinds, None))
}

/// `concurrent_workflows`: `runs` runs of `tasks` steps, all started at once.
pub async fn concurrent(t: &Target, runs: u64, tasks: u64) -> anyhow::Result<Record> {
    let (dbos, _steps, flow) = open(t, Arc::default()).await?;
    let started = Instant::now();
    let mut handles = Vec::with_capacity(runs as usize);
    for k in 0..runs {
        let flow = flow.clone();
        handles.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let id = format!("cwf-{k}");
            let r =
                flow.run_with((k, tasks), RunOptions { workflow_id: Some(&id), ..Default::default() }).await;
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
    let filter =
        WorkflowFilter { status: vec![WorkflowStatus::Success], names: vec!["flow"], ..Default::default() };
    let completed =
        dbos.list_workflows(&filter).await.map_err(|e| anyhow!("dbos: listing completed runs: {e}"))?;
    dbos.shutdown().await;
    Ok(runs_record(
        "concurrent_workflows",
        t.peer,
        runs,
        tasks,
        elapsed,
        &lat,
        kinds,
        Some(completed.len() as u64),
    ))
}
