//! Schedules (rule 24 of docs/design.md): cron schedules defined on an engine and ticked by
//! the queue workers that serve their queue. Each tick is enqueued as the run
//! `<schedule>@<tick time>` (RFC 3339, UTC, whole seconds), so however many workers see a tick,
//! the store's deduplication by run id makes it one run.
//!
//! No store keeps a schedule's state. A worker reads the schedule's last tick once, from the
//! newest of its runs in the store (ticks are enqueued in time order), applies the schedule's
//! [`Missed`] policy to the ticks that passed since while no worker ran, and from then on keeps
//! the next tick in memory and enqueues each tick when it falls due.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::queue::EnqueueOptions;
use crate::store::RunFilter;
use crate::sync::lock;
use crate::workflow::Workflow;

/// At most this many ticks are enqueued at once: [`Missed::RunAll`] after a long downtime, or a
/// worker that was kept from ticking (a suspended process). The older ones are skipped, with a
/// warning in the log.
pub const MAX_MISSED_TICKS: usize = 1_000;

/// How many of the newest runs of a schedule's workflow in its queue a worker reads, when it
/// starts, to find the schedule's last tick.
const LAST_TICK_LOOKBACK: usize = 1_000;

/// How long a worker waits before it tries again to read a schedule's last tick or to enqueue
/// a tick, after the store failed.
const RETRY_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(1);

/// What a worker does with the ticks of a schedule that passed while no worker of its queue ran:
/// those after the schedule's last tick in the store and before the worker started.
///
/// A worker finds the last tick among the newest 1,000 runs of the schedule's workflow in its
/// queue (give the schedule a queue of its own if that workflow is enqueued there often), so a
/// schedule whose runs were all purged, or a new one, has missed nothing (and purging its newest
/// tick runs while older ones stay makes the ticks after those look missed). Ticks that fall
/// due while a worker runs are enqueued whatever the policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Missed {
    /// Enqueue none of them; the schedule resumes with its next tick.
    Skip,
    /// Enqueue the latest of them, once (the default).
    #[default]
    RunOnce,
    /// Enqueue every one of them, oldest first, at most [`MAX_MISSED_TICKS`] (the latest ones).
    RunAll,
}

/// A cron schedule that enqueues a run of a registered workflow at each tick, defined on an
/// engine with [`Workflow::add_schedule`]. The queue workers serving its queue tick it: each
/// tick is the run `<name>@<tick time>`, the tick time in RFC 3339, UTC, whole seconds
/// (`nightly@2026-12-03T02:00:00Z`), so a tick runs once however many workers see it.
///
/// The cron expression has five fields (minute, hour, day of month, month, day of week), or six
/// with seconds first, and optionally a seventh, the year; names (`MON-FRI`, `JAN`), `L`, `W`
/// and `#` are understood. Ticks are computed in the schedule's time zone (UTC unless
/// [`time_zone`](Self::time_zone) names another), across daylight saving changes.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> durably_core::Result<()> {
/// use durably_core::{Missed, Queue, Schedule, Workflow};
///
/// let wf = Workflow::builder("app").build();
/// wf.add_queue(Queue::new("reports"))?;
/// wf.register_fn("report", |_ctx, team: String| async move {
///     Ok::<_, durably_core::Error>(format!("the report of {team}"))
/// });
/// wf.add_schedule(
///     Schedule::new("weekday-report", "0 8 * * MON-FRI", "report") // 08:00 on weekdays
///         .time_zone("Europe/Paris")
///         .input("platform")
///         .queue("reports")
///         .missed(Missed::RunOnce), // after a downtime, run the last missed tick once
/// )?;
/// // Workers of the queue tick its schedules: a run `weekday-report@2026-12-04T07:00:00Z`…
/// let worker = wf.queue_worker(["reports"]).start()?;
/// worker.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Schedule {
    name: String,
    cron: String,
    workflow: String,
    time_zone: String,
    /// The input as JSON, or why it could not be serialized.
    input: std::result::Result<String, String>,
    queue: Option<String>,
    missed: Missed,
}

impl Schedule {
    /// Schedule `name` of the registered workflow `workflow` at the ticks of `cron`, in UTC,
    /// with the input `null` (a workflow taking `()`), missed ticks [`Missed::RunOnce`]. Name
    /// its queue with [`queue`](Self::queue).
    pub fn new(name: impl Into<String>, cron: impl Into<String>, workflow: impl Into<String>) -> Self {
        Schedule {
            name: name.into(),
            cron: cron.into(),
            workflow: workflow.into(),
            time_zone: "UTC".to_owned(),
            input: Ok("null".to_owned()),
            queue: None,
            missed: Missed::default(),
        }
    }

    /// The IANA time zone the cron expression is read in (`"Europe/Paris"`; default `"UTC"`).
    pub fn time_zone(mut self, time_zone: impl Into<String>) -> Self {
        self.time_zone = time_zone.into();
        self
    }

    /// The input of every tick's run: any `Serialize` value (a `serde_json::Value` too).
    pub fn input<I: Serialize + ?Sized>(mut self, input: &I) -> Self {
        self.input = serde_json::to_string(input).map_err(|e| {
            format!("an input of type `{}` cannot be serialized: {e}", std::any::type_name::<I>())
        });
        self
    }

    /// The queue the ticks' runs are enqueued in (required; defined with
    /// [`Workflow::add_queue`]). Workers serving it tick the schedule.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// What to do with ticks that passed while no worker of the queue ran (default
    /// [`Missed::RunOnce`]).
    pub fn missed(mut self, missed: Missed) -> Self {
        self.missed = missed;
        self
    }

    /// The schedule's name: its ticks' run ids start with `<name>@`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cron expression.
    pub fn cron(&self) -> &str {
        &self.cron
    }

    /// The workflow each tick runs.
    pub fn workflow(&self) -> &str {
        &self.workflow
    }

    /// The time zone of the cron expression.
    pub fn zone(&self) -> &str {
        &self.time_zone
    }

    /// The queue, if one was named.
    pub fn queue_name(&self) -> Option<&str> {
        self.queue.as_deref()
    }

    /// The input of every tick's run as JSON, unless it could not be serialized.
    pub fn input_json(&self) -> Option<&str> {
        self.input.as_deref().ok()
    }

    /// The missed-tick policy.
    pub fn missed_policy(&self) -> Missed {
        self.missed
    }

    /// The run id of the tick at `tick_ms` (milliseconds since the Unix epoch):
    /// `<name>@<the tick in RFC 3339, UTC, whole seconds>`, such as `nightly@2026-12-03T02:00:00Z`.
    pub fn run_id_at(&self, tick_ms: i64) -> String {
        tick_run_id(&self.name, at_ms(tick_ms))
    }

    /// The schedule name and the tick time (milliseconds since the Unix epoch) of a tick's run
    /// id; `None` for a run id of any other form.
    ///
    /// ```
    /// use durably_core::Schedule;
    ///
    /// assert_eq!(Schedule::parse_run_id("nightly@1970-01-01T00:00:01Z"), Some(("nightly", 1_000)));
    /// assert_eq!(Schedule::parse_run_id("order-7"), None);
    /// ```
    pub fn parse_run_id(run_id: &str) -> Option<(&str, i64)> {
        let (name, tick) = run_id.split_once('@')?;
        let time = DateTime::parse_from_rfc3339(tick).ok()?.with_timezone(&Utc);
        (!name.is_empty() && format_tick(time) == tick).then_some((name, time.timestamp_millis()))
    }
}

/// A tick time as its run ids spell it: RFC 3339, UTC, whole seconds.
fn format_tick(tick: DateTime<Utc>) -> String {
    tick.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn tick_run_id(name: &str, tick: DateTime<Utc>) -> String {
    format!("{name}@{}", format_tick(tick))
}

/// A schedule checked by [`Workflow::add_schedule`], with its cron expression and time zone
/// parsed.
#[derive(Debug)]
pub(crate) struct Compiled {
    schedule: Schedule,
    cron: Cron,
    tz: Tz,
    queue: String,
    input: String,
}

impl Compiled {
    /// The first tick after `t`.
    fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&t.with_timezone(&self.tz), false).ok().map(|t| t.with_timezone(&Utc))
    }

    /// The ticks after `after` up to `until` included, newest first, at most `max`.
    fn ticks_back(&self, after: DateTime<Utc>, until: DateTime<Utc>, max: usize) -> Vec<DateTime<Utc>> {
        let mut ticks = Vec::new();
        let mut at = until.with_timezone(&self.tz);
        let mut inclusive = true;
        while ticks.len() < max {
            let Ok(tick) = self.cron.find_previous_occurrence(&at, inclusive) else { break };
            let utc = tick.with_timezone(&Utc);
            if utc <= after {
                break;
            }
            ticks.push(utc);
            at = tick;
            inclusive = false;
        }
        ticks
    }
}

/// The schedules an engine defines, by name.
#[derive(Debug, Default)]
pub(crate) struct Schedules {
    schedules: Mutex<HashMap<String, Arc<Compiled>>>,
}

impl Schedules {
    /// The schedules whose queue is one of `queues`.
    fn of_queues(&self, queues: &[String]) -> Vec<Arc<Compiled>> {
        lock(&self.schedules).values().filter(|s| queues.contains(&s.queue)).cloned().collect()
    }
}

impl Workflow {
    /// Defines a schedule on this engine: the workers of its queue
    /// ([`queue_worker`](Self::queue_worker)) enqueue a run of its workflow at each tick. Define
    /// it on every engine whose workers serve that queue; defining a name again replaces it.
    ///
    /// Fails with [`Error::Invalid`] naming the schedule and the fault, defining nothing, for a
    /// name that is empty or holds `@` or NUL, a cron expression that does not parse or never
    /// ticks, an unknown time zone, no queue or a queue not defined on this engine, a workflow
    /// not registered on it, or an input the workflow cannot start with.
    pub fn add_schedule(&self, schedule: Schedule) -> Result<&Self> {
        let compiled = self.compile(schedule)?;
        lock(&self.engine.schedules.schedules).insert(compiled.schedule.name.clone(), Arc::new(compiled));
        Ok(self)
    }

    /// The schedules defined on this engine, by name.
    pub fn schedules(&self) -> Vec<Schedule> {
        let mut schedules: Vec<Schedule> =
            lock(&self.engine.schedules.schedules).values().map(|s| s.schedule.clone()).collect();
        schedules.sort_by(|a, b| a.name.cmp(&b.name));
        schedules
    }

    fn compile(&self, schedule: Schedule) -> Result<Compiled> {
        let name = schedule.name.clone();
        if name.is_empty() || name.contains(['@', '\0']) {
            return Err(Error::Invalid {
                what: "schedule",
                detail: format!("a schedule name must be non-empty text without `@` or NUL, not {name:?}"),
            });
        }
        let invalid = |detail: String| Error::Invalid {
            what: "schedule",
            detail: format!("schedule `{name}`: {detail}"),
        };
        let cron = Cron::from_str(&schedule.cron)
            .map_err(|e| invalid(format!("the cron expression {:?} does not parse: {e}", schedule.cron)))?;
        let tz = Tz::from_str(&schedule.time_zone).map_err(|_| {
            invalid(format!(
                "unknown time zone {:?}; name an IANA time zone such as \"Europe/Paris\" or \"UTC\"",
                schedule.time_zone
            ))
        })?;
        let queue = schedule
            .queue
            .clone()
            .ok_or_else(|| invalid("no queue is named; set one with `.queue(name)`".into()))?;
        if self.engine.queues.get(&queue).is_none() {
            return Err(invalid(format!(
                "no queue `{queue}` is defined on this engine; call add_queue first"
            )));
        }
        if self.engine.registry.get(&schedule.workflow).is_none() {
            return Err(invalid(format!(
                "no workflow is registered as `{}` on this engine; register it first",
                schedule.workflow
            )));
        }
        let input = schedule.input.clone().map_err(invalid)?;
        let compiled = Compiled { cron, tz, queue, input, schedule };
        let now = at_ms(self.store().now_ms());
        let Some(first) = compiled.next_after(now) else {
            return Err(invalid(format!(
                "the cron expression {:?} never ticks after {now}",
                compiled.schedule.cron
            )));
        };
        self.engine
            .registry
            .check_input(&compiled.schedule.workflow, &tick_run_id(name.as_str(), first), &compiled.input)
            .map_err(|e| {
                invalid(format!("its input cannot start workflow `{}`: {e}", compiled.schedule.workflow))
            })?;
        Ok(compiled)
    }
}

/// `ms` since the Unix epoch as a time (the epoch itself for a time out of range).
fn at_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// What one worker knows of one schedule.
struct TickState {
    schedule: Arc<Compiled>,
    /// When this worker first saw the schedule: ticks up to then that follow the last one in
    /// the store passed while no worker ran.
    seen: DateTime<Utc>,
    /// The last tick handled (enqueued, or skipped by policy); `None` until the store was read.
    handled: Option<DateTime<Utc>>,
    /// When to look at the schedule again: its next tick, or a retry after a store failure;
    /// `None` when it never ticks again.
    look_at: Option<DateTime<Utc>>,
}

/// The schedule ticking of one queue worker: [`tick`](Self::tick) at every turn of its loop,
/// and wait at most [`next_in`](Self::next_in).
pub(crate) struct Ticker {
    wf: Workflow,
    queues: Vec<String>,
    states: HashMap<String, TickState>,
}

impl Ticker {
    /// The ticker of a worker serving `queues`.
    pub(crate) fn new(wf: &Workflow, queues: &[String]) -> Self {
        Ticker { wf: wf.clone(), queues: queues.to_vec(), states: HashMap::new() }
    }

    /// Enqueues the ticks that fell due. Makes no store call unless a tick is due (or a
    /// schedule is new to this worker).
    pub(crate) async fn tick(&mut self) {
        let current = self.wf.engine.schedules.of_queues(&self.queues);
        // A schedule replaced or removed since: forget what was known of it.
        self.states.retain(|_, state| current.iter().any(|s| Arc::ptr_eq(s, &state.schedule)));
        let now = at_ms(self.wf.store().now_ms());
        for schedule in current {
            let state = self.states.entry(schedule.schedule.name.clone()).or_insert_with(|| TickState {
                schedule,
                seen: now,
                handled: None,
                look_at: Some(now),
            });
            if state.look_at.is_some_and(|at| at <= now) {
                state.look_at = advance(&self.wf, state, now).await;
            }
        }
    }

    /// How long until a schedule needs a look (its next tick), if any does.
    pub(crate) fn next_in(&self) -> Option<Duration> {
        let now = self.wf.store().now_ms();
        self.states
            .values()
            .filter_map(|state| state.look_at)
            .map(|at| Duration::from_millis(u64::try_from(at.timestamp_millis() - now).unwrap_or(0)))
            .min()
    }
}

/// Reads the schedule's last tick if not done yet, enqueues what is due, and returns when to
/// look again.
async fn advance(wf: &Workflow, state: &mut TickState, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let schedule = state.schedule.clone();
    let name = schedule.schedule.name.as_str();
    let handled = match state.handled {
        Some(handled) => handled,
        None => match catch_up(wf, &schedule, state.seen).await {
            Ok(handled) => *state.handled.insert(handled),
            Err(e) => {
                tracing::warn!(target: "durably", schedule = name, error = %e, "reading the schedule's last tick failed; trying again");
                return Some(now + RETRY_AFTER);
            }
        },
    };
    let mut due = schedule.ticks_back(handled, now, MAX_MISSED_TICKS + 1);
    if due.len() > MAX_MISSED_TICKS {
        due.truncate(MAX_MISSED_TICKS);
        tracing::warn!(
            target: "durably", schedule = name, since = %handled,
            "more than {MAX_MISSED_TICKS} ticks fell due while this worker could not tick; enqueuing the latest {MAX_MISSED_TICKS} only"
        );
    }
    for tick in due.into_iter().rev() {
        if let Err(e) = enqueue(wf, &schedule, tick).await {
            tracing::warn!(target: "durably", schedule = name, error = %e, "enqueuing a tick failed; trying again");
            return Some(now + RETRY_AFTER);
        }
        state.handled = Some(tick);
    }
    schedule.next_after(now)
}

/// Reads the schedule's last tick in the store and applies its [`Missed`] policy to the ticks
/// after it up to `seen`; returns the last tick handled.
async fn catch_up(wf: &Workflow, schedule: &Compiled, seen: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let name = schedule.schedule.name.as_str();
    let Some(last) = last_tick(wf, schedule).await? else {
        // A new schedule (or one whose runs were all purged): nothing was missed.
        return Ok(seen);
    };
    if last >= seen {
        return Ok(last);
    }
    let policy = schedule.schedule.missed;
    let keep = match policy {
        Missed::Skip => 0,
        Missed::RunOnce => 1,
        Missed::RunAll => MAX_MISSED_TICKS,
    };
    let mut missed = schedule.ticks_back(last, seen, MAX_MISSED_TICKS + 1);
    if missed.is_empty() {
        return Ok(seen);
    }
    let over_bound = missed.len() > MAX_MISSED_TICKS;
    let count = if over_bound { format!("more than {MAX_MISSED_TICKS}") } else { missed.len().to_string() };
    missed.truncate(keep);
    tracing::info!(
        target: "durably", schedule = name, last_tick = %last, ?policy, missed = %count, enqueued = missed.len(),
        "ticks passed while no worker ran"
    );
    if policy == Missed::RunAll && over_bound {
        tracing::warn!(
            target: "durably", schedule = name, last_tick = %last,
            "{count} ticks were missed; Missed::RunAll enqueues the latest {MAX_MISSED_TICKS} only (MAX_MISSED_TICKS), the older ones are skipped"
        );
    }
    for tick in missed.into_iter().rev() {
        enqueue(wf, schedule, tick).await?;
    }
    Ok(seen)
}

/// The latest tick among the newest runs of the schedule's workflow in its queue.
async fn last_tick(wf: &Workflow, schedule: &Compiled) -> Result<Option<DateTime<Utc>>> {
    let filter = RunFilter::new()
        .workflow(&schedule.schedule.workflow)
        .queue(&schedule.queue)
        .limit(LAST_TICK_LOOKBACK);
    let runs = wf.store().list_runs(&filter).await?;
    Ok(runs
        .iter()
        .filter_map(|run| Schedule::parse_run_id(&run.run_id))
        .filter(|(name, _)| *name == schedule.schedule.name)
        .map(|(_, tick_ms)| at_ms(tick_ms))
        .max())
}

/// Enqueues the tick's run. A store failure is returned, to try again; any other refusal (a
/// run of another workflow holding the tick's id) is logged and the tick skipped.
async fn enqueue(wf: &Workflow, schedule: &Compiled, tick: DateTime<Utc>) -> Result<()> {
    let run_id = tick_run_id(&schedule.schedule.name, tick);
    let queue = &schedule.queue;
    match wf
        .enqueue_json(
            queue,
            &schedule.schedule.workflow,
            &run_id,
            schedule.input.clone(),
            EnqueueOptions::new(),
        )
        .await
    {
        Ok(_) => {
            tracing::debug!(target: "durably", schedule = %schedule.schedule.name, run_id, "tick enqueued");
            Ok(())
        }
        Err(e @ Error::Store { .. }) => Err(e),
        Err(e) => {
            tracing::warn!(target: "durably", schedule = %schedule.schedule.name, run_id, error = %e, "tick not enqueued; skipping it");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn compiled(cron: &str, tz: &str) -> Compiled {
        Compiled {
            schedule: Schedule::new("s", cron, "w"),
            cron: Cron::from_str(cron).unwrap(),
            tz: Tz::from_str(tz).unwrap(),
            queue: "q".into(),
            input: "null".into(),
        }
    }

    fn t(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn ticks_back_lists_the_ticks_after_a_time_newest_first_and_bounded() {
        let every_second = compiled("* * * * * *", "UTC");
        let ticks = every_second.ticks_back(t("2026-01-01T00:00:00Z"), t("2026-01-01T00:00:03.500Z"), 10);
        assert_eq!(
            ticks,
            vec![t("2026-01-01T00:00:03Z"), t("2026-01-01T00:00:02Z"), t("2026-01-01T00:00:01Z")]
        );
        let bounded = every_second.ticks_back(t("2026-01-01T00:00:00Z"), t("2026-01-01T01:00:00Z"), 2);
        assert_eq!(bounded, vec![t("2026-01-01T01:00:00Z"), t("2026-01-01T00:59:59Z")]);
    }

    #[test]
    fn ticks_are_computed_in_the_schedules_time_zone() {
        let new_year_in_paris = compiled("0 0 1 1 *", "Europe/Paris");
        assert_eq!(new_year_in_paris.next_after(t("2026-06-01T00:00:00Z")), Some(t("2026-12-31T23:00:00Z")));
        // 03:00 in Paris is 02:00 UTC in winter, 01:00 UTC from the night clocks go forward.
        let daily = compiled("0 3 * * *", "Europe/Paris");
        assert_eq!(daily.next_after(t("2026-03-27T12:00:00Z")), Some(t("2026-03-28T02:00:00Z")));
        assert_eq!(daily.next_after(t("2026-03-28T12:00:00Z")), Some(t("2026-03-29T01:00:00Z")));
    }

    #[test]
    fn a_tick_run_id_is_the_name_and_the_utc_second() {
        let schedule = Schedule::new("nightly", "0 2 * * *", "w");
        let run_id = schedule.run_id_at(t("2026-12-03T02:00:00.250+00:00").timestamp_millis());
        assert_eq!(run_id, "nightly@2026-12-03T02:00:00Z");
        assert_eq!(
            Schedule::parse_run_id(&run_id),
            Some(("nightly", t("2026-12-03T02:00:00Z").timestamp_millis()))
        );
        for other in [
            "nightly",
            "@2026-12-03T02:00:00Z",
            "nightly@2026-12-03T03:00:00+01:00",
            "nightly@2026-12-03T02:00:00.250Z",
        ] {
            assert_eq!(Schedule::parse_run_id(other), None, "{other}");
        }
    }
}
