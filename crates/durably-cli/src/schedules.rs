//! `durably schedules`: the cron schedules known from the runs of a store. A schedule lives in
//! the code of the processes that define it; the store only holds its ticks, the runs
//! `<schedule>@<tick time>` (rule 24 of docs/design.md), so that is what is listed.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Result;
use durably_core::{RunFilter, RunStatus, Schedule, Workflow};
use serde::Serialize;

use crate::format;

/// One schedule as its runs show it.
#[derive(Debug, Serialize)]
struct ScheduleInfo {
    schedule: String,
    workflow: String,
    queue: Option<String>,
    /// Tick runs found among the runs read.
    ticks: usize,
    last_run_id: String,
    last_tick_ms: i64,
    last_status: RunStatus,
}

/// Writes the schedules seen among the newest `limit` runs of the store, as a table or JSON.
pub async fn list(wf: &Workflow, limit: usize, json: bool, out: &mut dyn Write) -> Result<()> {
    let runs = wf.list_runs(&RunFilter::new().limit(limit)).await?;
    let mut found: BTreeMap<String, ScheduleInfo> = BTreeMap::new();
    for run in &runs {
        let Some((name, tick_ms)) = Schedule::parse_run_id(&run.run_id) else { continue };
        let info = found.entry(name.to_owned()).or_insert_with(|| ScheduleInfo {
            schedule: name.to_owned(),
            workflow: run.workflow.clone(),
            queue: run.queue.clone(),
            ticks: 0,
            last_run_id: run.run_id.clone(),
            last_tick_ms: tick_ms,
            last_status: run.status,
        });
        info.ticks += 1;
        if tick_ms > info.last_tick_ms {
            (info.workflow, info.queue, info.last_run_id) =
                (run.workflow.clone(), run.queue.clone(), run.run_id.clone());
            (info.last_tick_ms, info.last_status) = (tick_ms, run.status);
        }
    }
    let all: Vec<ScheduleInfo> = found.into_values().collect();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
    } else if all.is_empty() {
        writeln!(out, "no schedule runs among the newest {limit} runs")?;
    } else {
        let rows: Vec<Vec<String>> = all
            .iter()
            .map(|s| {
                vec![
                    s.schedule.clone(),
                    s.workflow.clone(),
                    s.queue.clone().unwrap_or_else(|| "-".into()),
                    s.ticks.to_string(),
                    format::time(s.last_tick_ms),
                    s.last_status.to_string(),
                ]
            })
            .collect();
        write!(
            out,
            "{}",
            format::table(&["SCHEDULE", "WORKFLOW", "QUEUE", "TICKS", "LAST TICK (UTC)", "STATUS"], &rows)
        )?;
    }
    Ok(())
}
