//! Cron schedules (rule 24 of docs/design.md): each tick is the run `<schedule>@<tick time>`,
//! enqueued by every worker of the schedule's queue and executed once.
//!
//! Nothing here is timed: downtime is simulated with a tick run put in the store as if a worker
//! had enqueued it long ago, and a worker that has claimed a run enqueued after it started has
//! ticked its schedules (a worker ticks before each claim), so the tests count run ids.
// A test suite reports failure by panicking, and each test's name is its documentation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};
use durably::{EnqueueOptions, Error, Missed, Queue, RunFilter, RunStatus, Schedule, Workflow};

use super::Harness;

/// How long a test waits for something that should take a few seconds at most.
const PATIENCE: Duration = Duration::from_secs(60);

/// Executions per run id.
type Executions = Arc<Mutex<HashMap<String, u32>>>;

/// An engine with queue `ticks` and the workflow `tick`, which counts its executions by run id.
fn engine(h: &Harness, executions: &Executions) -> Workflow {
    let wf = h.wf();
    wf.add_queue(Queue::new("ticks")).unwrap();
    let executions = executions.clone();
    wf.register_fn("tick", move |ctx, (): ()| {
        let executions = executions.clone();
        async move {
            *executions.lock().unwrap().entry(ctx.run_id().to_owned()).or_default() += 1;
            Ok::<_, Error>(())
        }
    });
    wf
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Utc)
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(durably::now_ms()).unwrap()
}

/// The ticks of schedule `name` in the store, oldest first, checking that every run id of the
/// schedule is `<name>@<RFC 3339, UTC, whole seconds>`.
async fn ticks(wf: &Workflow, name: &str) -> Vec<DateTime<Utc>> {
    let prefix = format!("{name}@");
    let mut ticks: Vec<DateTime<Utc>> = wf
        .list_runs(&RunFilter::new().workflow("tick"))
        .await
        .unwrap()
        .iter()
        .filter(|run| run.run_id.starts_with(&prefix))
        .map(|run| {
            let (schedule, tick_ms) = Schedule::parse_run_id(&run.run_id).expect("a tick's run id");
            assert_eq!(schedule, name);
            DateTime::from_timestamp_millis(tick_ms).unwrap()
        })
        .collect();
    ticks.sort();
    ticks
}

/// Puts the tick `tick` of schedule `name` in the store, as a worker that ran then would have.
async fn seed_tick(wf: &Workflow, name: &str, tick: &str) {
    wf.enqueue("ticks", "tick", &format!("{name}@{tick}"), &()).await.unwrap();
}

/// Starts a worker of `ticks` on `wf` and returns it once it has ticked its schedules: once it
/// has executed a run enqueued after it started (with a high priority, so that it is claimed
/// before the ticks it enqueued).
async fn started_worker(wf: &Workflow, probe: &str) -> durably::WorkerHandle {
    let worker = wf.queue_worker(["ticks"]).shutdown_grace(Duration::ZERO).start().unwrap();
    let handle =
        wf.enqueue_with("ticks", "tick", probe, &(), EnqueueOptions::new().priority(100)).await.unwrap();
    tokio::time::timeout(PATIENCE, handle.result::<()>()).await.expect("the probe run never ran").unwrap();
    worker
}

fn utc_new_years(years: std::ops::RangeInclusive<i32>) -> Vec<DateTime<Utc>> {
    years.map(|year| at(&format!("{year}-01-01T00:00:00Z"))).collect()
}

pub async fn each_tick_of_a_schedule_runs_once_across_two_workers(h: Harness) {
    let executions = Executions::default();
    let every_second = || Schedule::new("every-second", "* * * * * *", "tick").queue("ticks");
    let (a, b) = (engine(&h, &executions), engine(&h, &executions));
    a.add_schedule(every_second()).unwrap();
    b.add_schedule(every_second()).unwrap();
    let workers = [a.queue_worker(["ticks"]).start().unwrap(), b.queue_worker(["ticks"]).start().unwrap()];
    tokio::time::timeout(PATIENCE, async {
        loop {
            let done = a.list_runs(&RunFilter::new().status(RunStatus::Completed)).await.unwrap();
            if done.len() >= 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("four ticks never ran");
    for worker in workers {
        worker.shutdown().await;
    }
    let ticks = ticks(&a, "every-second").await;
    assert!(ticks.len() >= 4, "{ticks:?}");
    for pair in ticks.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            chrono::TimeDelta::seconds(1),
            "one run per second, none missing: {ticks:?}"
        );
    }
    let executions = executions.lock().unwrap().clone();
    for (run_id, count) in &executions {
        assert!(run_id.starts_with("every-second@"), "{run_id}");
        assert_eq!(*count, 1, "{run_id} executed {count} times");
    }
    for run in a.list_runs(&RunFilter::new().status(RunStatus::Completed)).await.unwrap() {
        assert_eq!(executions.get(&run.run_id), Some(&1), "{} completed without one execution", run.run_id);
    }
}

pub async fn missed_ticks_are_all_enqueued_with_run_all(h: Harness) {
    let wf = engine(&h, &Executions::default());
    seed_tick(&wf, "yearly", "2020-01-01T00:00:00Z").await;
    wf.add_schedule(Schedule::new("yearly", "0 0 1 1 *", "tick").queue("ticks").missed(Missed::RunAll))
        .unwrap();
    let worker = started_worker(&wf, "probe").await;
    assert_eq!(ticks(&wf, "yearly").await, utc_new_years(2020..=now().year()));
    worker.shutdown().await;
}

pub async fn only_the_latest_missed_tick_is_enqueued_with_run_once(h: Harness) {
    let wf = engine(&h, &Executions::default());
    seed_tick(&wf, "yearly", "2020-01-01T00:00:00Z").await;
    // RunOnce is the default; ticks are read in the schedule's time zone.
    wf.add_schedule(Schedule::new("yearly", "0 0 1 1 *", "tick").queue("ticks").time_zone("Europe/Paris"))
        .unwrap();
    let worker = started_worker(&wf, "probe").await;
    // New Year in Paris is 23:00 UTC the day before.
    let this_year = now().year();
    let next_new_year = at(&format!("{this_year}-12-31T23:00:00Z"));
    let latest = if next_new_year <= now() {
        next_new_year
    } else {
        at(&format!("{}-12-31T23:00:00Z", this_year - 1))
    };
    assert_eq!(ticks(&wf, "yearly").await, vec![at("2020-01-01T00:00:00Z"), latest]);
    worker.shutdown().await;
}

pub async fn missed_ticks_are_skipped_with_skip(h: Harness) {
    let wf = engine(&h, &Executions::default());
    seed_tick(&wf, "yearly", "2020-01-01T00:00:00Z").await;
    wf.add_schedule(Schedule::new("yearly", "0 0 1 1 *", "tick").queue("ticks").missed(Missed::Skip))
        .unwrap();
    let worker = started_worker(&wf, "probe").await;
    assert_eq!(ticks(&wf, "yearly").await, vec![at("2020-01-01T00:00:00Z")]);
    worker.shutdown().await;
}

pub async fn a_schedule_without_runs_in_the_store_has_missed_nothing(h: Harness) {
    let wf = engine(&h, &Executions::default());
    wf.add_schedule(Schedule::new("yearly", "0 0 1 1 *", "tick").queue("ticks").missed(Missed::RunAll))
        .unwrap();
    let worker = started_worker(&wf, "probe").await;
    assert!(ticks(&wf, "yearly").await.is_empty());
    worker.shutdown().await;
}

pub async fn run_all_enqueues_at_most_the_latest_thousand_missed_ticks(h: Harness) {
    let wf = engine(&h, &Executions::default());
    let before = now();
    let two_hours_ago =
        (before - chrono::TimeDelta::hours(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    seed_tick(&wf, "every-second", &two_hours_ago).await;
    wf.add_schedule(
        Schedule::new("every-second", "* * * * * *", "tick").queue("ticks").missed(Missed::RunAll),
    )
    .unwrap();
    let worker = started_worker(&wf, "probe").await;
    worker.shutdown().await;
    let ticks = ticks(&wf, "every-second").await;
    assert_eq!(ticks[0], at(&two_hours_ago));
    let enqueued = &ticks[1..];
    assert!(enqueued.len() >= durably::MAX_MISSED_TICKS, "{} ticks enqueued", enqueued.len());
    let bound = before - chrono::TimeDelta::seconds(durably::MAX_MISSED_TICKS as i64 + 2);
    assert!(
        enqueued[0] > bound,
        "the oldest tick enqueued, {}, is more than the bound before {before}",
        enqueued[0]
    );
    for pair in enqueued.windows(2) {
        assert_eq!(pair[1] - pair[0], chrono::TimeDelta::seconds(1), "the latest ticks, none missing");
    }
}

pub async fn add_schedule_refuses_bad_schedules_naming_them(h: Harness) {
    let wf = engine(&h, &Executions::default());
    wf.register_fn("double", |_ctx, n: u32| async move { Ok::<_, Error>(n * 2) });
    let ok = || Schedule::new("nightly", "0 2 * * *", "tick").queue("ticks");
    for (schedule, what) in [
        (Schedule::new("nightly", "61 * * * *", "tick").queue("ticks"), "61 * * * *"),
        (Schedule::new("nightly", "every day", "tick").queue("ticks"), "does not parse"),
        (Schedule::new("nightly", "0 0 30 2 *", "tick").queue("ticks"), "never ticks"),
        (ok().time_zone("Mars/Olympus_Mons"), "Mars/Olympus_Mons"),
        (ok().queue("no-such-queue"), "no-such-queue"),
        (Schedule::new("nightly", "0 2 * * *", "tick"), "no queue"),
        (Schedule::new("nightly", "0 2 * * *", "no-such-workflow").queue("ticks"), "no-such-workflow"),
        (Schedule::new("nightly", "0 2 * * *", "double").queue("ticks").input("two"), "u32"),
    ] {
        let err = wf.add_schedule(schedule).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Invalid { .. }), "{text}");
        assert!(
            text.contains("`nightly`") && text.contains(what),
            "{text} should name the schedule and {what}"
        );
    }
    for name in ["", "a@b"] {
        let err = wf.add_schedule(Schedule::new(name, "0 2 * * *", "tick").queue("ticks")).unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }) && err.to_string().contains("schedule name"), "{err}");
    }
    assert!(wf.schedules().is_empty(), "a refused schedule is not defined");
    wf.add_schedule(ok().time_zone("Europe/Paris").missed(Missed::Skip)).unwrap();
    wf.add_schedule(Schedule::new("hourly", "0 * * * *", "double").queue("ticks").input(&21u32)).unwrap();
    let schedules = wf.schedules();
    let names: Vec<&str> = schedules.iter().map(Schedule::name).collect();
    assert_eq!(names, ["hourly", "nightly"]);
    assert_eq!(schedules[0].input_json(), Some("21"));
    assert_eq!((schedules[1].zone(), schedules[1].missed_policy()), ("Europe/Paris", Missed::Skip));
}
