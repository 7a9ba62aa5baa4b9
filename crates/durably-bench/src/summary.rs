//! The markdown printed after the JSON lines: the machine, the side-by-side table, the floors,
//! and each target with its measured ratio.

use std::fmt::Write as _;

use crate::peers::{PEERS, durably_twin, floor_of, is_peer};
use crate::report::{FLOOR, PYTHON, Record, Reporter, cell, fmt_rate, fmt_us};

/// What the machine is and how busy it was.
pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    format!("{cores} cores ({cpu}), Linux {kernel}, load average {}", load())
}

/// The 1, 5 and 15 minute load averages.
pub(crate) fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// One target: what is compared, the bound, the measurement and whether it holds.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    pub(crate) what: String,
    pub(crate) target: String,
    pub(crate) measured: String,
    /// `Some(true)` met, `Some(false)` missed, `None` not measured.
    pub(crate) met: Option<bool>,
    pub(crate) note: String,
}

fn ratio(a: Option<&Record>, b: Option<&Record>) -> Option<f64> {
    let (a, b) = (a?, b?);
    (a.errors == 0 && b.errors == 0 && b.per_op_us > 0.0 && a.per_op_us > 0.0)
        .then(|| a.per_op_us / b.per_op_us)
}

/// The ratio of two records' medians, as a note: robust to the stalls of a shared disk.
fn p50_note(a: Option<&Record>, b: Option<&Record>) -> String {
    match (a.and_then(|a| a.p50_us), b.and_then(|b| b.p50_us)) {
        (Some(x), Some(y)) if y > 0.0 => format!("medians: {x:.1} µs ÷ {y:.1} µs = {:.2}×", x / y),
        _ => String::new(),
    }
}

fn check_at_most(what: &str, bound: f64, value: Option<f64>, unit: &str, note: &str) -> Check {
    Check {
        what: what.to_owned(),
        target: format!("≤ {bound}{unit}"),
        measured: value.map(|v| format!("{v:.2}{unit}")).unwrap_or_else(|| "not measured".into()),
        met: value.map(|v| v <= bound),
        note: note.to_owned(),
    }
}

fn check_at_least(what: &str, bound: f64, value: Option<f64>, unit: &str, note: &str) -> Check {
    Check {
        what: what.to_owned(),
        target: format!("≥ {bound}{unit}"),
        measured: value.map(|v| format!("{v:.1}{unit}")).unwrap_or_else(|| "not measured".into()),
        met: value.map(|v| v >= bound),
        note: note.to_owned(),
    }
}

/// The targets, evaluated on this invocation's records.
pub(crate) fn checks(rep: &Reporter) -> Vec<Check> {
    let r = |s: &str, store: &str| rep.find(s, store);
    let mut out = Vec::new();

    let full = r("steps_fresh", "sqlite-full");
    let normal = r("steps_fresh", "sqlite-normal");
    out.push(check_at_most(
        "steps_fresh sqlite-full ÷ WAL+FULL one-row commit (floor_wal_full_1), per step",
        1.3,
        ratio(full, r("floor_wal_full_1", FLOOR)),
        "×",
        &p50_note(full, r("floor_wal_full_1", FLOOR)),
    ));
    out.push(check_at_least(
        "python-durable ÷ durably sqlite-full, time per fresh step",
        10.0,
        ratio(r("steps_fresh", PYTHON), full),
        "×",
        "",
    ));
    out.push(check_at_most(
        "steps_fresh sqlite-normal ÷ WAL+NORMAL one-row commit (floor_wal_normal_1), per step",
        2.0,
        ratio(normal, r("floor_wal_normal_1", FLOOR)),
        "×",
        &p50_note(normal, r("floor_wal_normal_1", FLOOR)),
    ));
    out.push(check_at_least(
        "python-durable ÷ durably sqlite-normal, time per fresh step",
        50.0,
        ratio(r("steps_fresh", PYTHON), normal),
        "×",
        "",
    ));
    for store in ["sqlite-full", "sqlite-normal", "memory"] {
        for scenario in ["steps_replay", "steps_replay_new_object"] {
            if let Some(rec) = r(scenario, store) {
                out.push(check_at_least(
                    &format!("{scenario} {store}, replayed steps per second"),
                    200_000.0,
                    (rec.errors == 0).then_some(rec.ops_per_s),
                    "/s",
                    "",
                ));
            }
        }
    }
    let conc = r("concurrent_workflows", "sqlite-full");
    let sizes = conc.map(|c| {
        (c.extra.get("runs").and_then(|v| v.as_u64()), c.extra.get("tasks_per_run").and_then(|v| v.as_u64()))
    });
    let size_note = match sizes {
        Some((Some(1000), Some(10))) | None => String::new(),
        Some((runs, tasks)) => {
            format!("measured at {} × {}, not the target's 1,000 × 10", runs.unwrap_or(0), tasks.unwrap_or(0))
        }
    };
    out.push(check_at_least(
        "concurrent_workflows 1,000 runs × 10 tasks, sqlite-full, steps per second",
        20_000.0,
        conc.map(|c| c.ops_per_s),
        "/s",
        &size_note,
    ));
    out.push(Check {
        what: "concurrent_workflows sqlite-full, errors".into(),
        target: "0".into(),
        measured: conc.map(|c| c.errors.to_string()).unwrap_or_else(|| "not measured".into()),
        met: conc.map(|c| c.errors == 0),
        note: r("concurrent_workflows", PYTHON)
            .map(|p| format!("python-durable: {} errors", p.errors))
            .unwrap_or_default(),
    });
    let inproc = r("signal_latency_inproc", "sqlite-full");
    out.push(check_at_most(
        "signal_latency_inproc sqlite-full, median (durable writes included)",
        0.5,
        inproc.filter(|x| x.errors == 0).and_then(|x| x.p50_us).map(|us| us / 1e3),
        " ms",
        "",
    ));
    let proc_ = r("signal_latency_poll_process", "sqlite-full");
    let poll_ms = proc_.and_then(|p| p.extra_f64("poll_ms")).unwrap_or(100.0);
    out.push(check_at_most(
        "signal_latency_poll_process sqlite-full, p99 (≤ poll interval + 5 ms)",
        poll_ms + 5.0,
        proc_.filter(|x| x.errors == 0).and_then(|x| x.p99_us).map(|us| us / 1e3),
        " ms",
        &format!("poll interval {poll_ms} ms"),
    ));
    let waiting = r("waiting_runs", "sqlite-full");
    let runs_note = match waiting.map(|w| w.n) {
        Some(10_000) | None => String::new(),
        Some(n) => format!("measured with {n} runs, not the target's 10,000"),
    };
    out.push(check_at_most(
        "waiting_runs 10,000 runs waiting on signals, sqlite-full, resident memory",
        200.0,
        waiting.filter(|x| x.errors == 0).and_then(|w| w.extra_f64("rss_mb")),
        " MB",
        &runs_note,
    ));
    for (label, bound) in [("full", 1.3), ("normal", 2.0)] {
        out.push(check_at_most(
            &format!("store_save_step sqlite-{label} ÷ the same upsert committed on a bare connection"),
            bound,
            ratio(
                r("store_save_step", &format!("sqlite-{label}")),
                r(&format!("floor_store_schema_{label}_1"), FLOOR),
            ),
            "×",
            &p50_note(
                r("store_save_step", &format!("sqlite-{label}")),
                r(&format!("floor_store_schema_{label}_1"), FLOOR),
            ),
        ));
    }
    if let Some(bare) = r("agent_bare", "rig (no store)") {
        for store in ["sqlite-full", "sqlite-normal", "memory", "redis", "postgres"] {
            if let Some(rec) = r("agent_durable", store) {
                // The bare agent measured round for round with this store's, if recorded.
                let measured = rec.extra_f64("overhead_pct").map(|p| 1.0 + p / 100.0);
                out.push(check_at_most(
                    &format!("agent_durable {store} ÷ agent_bare, time per run ({} turns), medians", rec.n),
                    1.03,
                    measured.or_else(|| ratio(Some(rec), Some(bare))),
                    "×",
                    "",
                ));
            }
        }
    }
    for store in ["sqlite-full", "sqlite-normal", "memory", "redis", "postgres"] {
        if let Some(rec) = r("agent_replay", store) {
            let requests = rec.extra.get("http_requests").and_then(|v| v.as_u64());
            out.push(check_at_most(
                &format!("agent_replay {store}, {}-turn replay with zero HTTP requests", rec.n),
                20.0,
                (rec.errors == 0).then_some(rec.total_ms),
                " ms",
                &format!("{} HTTP requests", requests.unwrap_or(0)),
            ));
        }
    }
    for store in ["sqlite-full", "sqlite-normal", "postgres"] {
        if let Some(rec) = r("parked_runs", store) {
            let (value, note) = if rec.n >= 1_000_000 {
                (rec.extra_f64("rss_mb"), String::new())
            } else {
                (
                    rec.extra_f64("rss_1m_extrapolated_mb"),
                    format!(
                        "extrapolated from {} parked runs (RSS + the second half's growth per run × the runs to 1,000,000)",
                        rec.n
                    ),
                )
            };
            out.push(check_at_most(
                &format!("parked_runs {store}, worker resident memory with 1,000,000 waiting runs"),
                300.0,
                value.filter(|_| rec.errors == 0),
                " MB",
                &note,
            ));
        }
    }
    for store in ["redis", "postgres"] {
        if let Some(rec) = r("parked_runs", store) {
            out.push(check_at_most(
                &format!("parked_runs {store}, resume p50 after the signal"),
                10.0,
                rec.p50_us.filter(|_| rec.errors == 0).map(|us| us / 1e3),
                " ms",
                "",
            ));
        }
    }
    for (store, floor) in [("redis", "floor_redis_set"), ("postgres", "floor_postgres_insert")] {
        if let Some(rec) = r("steps_fresh", store) {
            out.push(check_at_most(
                &format!("steps_fresh {store} ÷ raw round trip ({floor}), per step"),
                2.0,
                ratio(Some(rec), r(floor, FLOOR)),
                "×",
                &p50_note(Some(rec), r(floor, FLOOR)),
            ));
        }
        if let Some(rec) = r("signal_latency_poll_process", store) {
            out.push(check_at_most(
                &format!("signal_latency_poll_process {store}, p99"),
                10.0,
                rec.p99_us.map(|us| us / 1e3),
                " ms",
                "",
            ));
        }
    }
    out
}

/// The whole markdown summary.
pub(crate) fn markdown(rep: &Reporter, command: &str, machine_at_start: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "\n## durably-bench results\n");
    let _ = writeln!(md, "- command: `{command}`");
    let _ = writeln!(md, "- machine at start: {machine_at_start}");
    let _ = writeln!(md, "- load average at end: {}\n", load());

    // Side by side: one row per scenario, one column per store.
    let mut stores: Vec<&str> = Vec::new();
    let mut scenarios: Vec<&str> = Vec::new();
    for rec in &rep.records {
        if rec.store == FLOOR {
            continue;
        }
        if !stores.contains(&rec.store.as_str()) {
            stores.push(&rec.store);
        }
        if !scenarios.contains(&rec.scenario.as_str()) {
            scenarios.push(&rec.scenario);
        }
    }
    // durably's stores, then the Rust peers, then python-durable and its ratio.
    stores.sort_by_key(|s| if *s == PYTHON { 2 } else { u8::from(is_peer(s)) });
    let has_python = stores.contains(&PYTHON);
    let title = if stores.iter().any(|s| is_peer(s)) {
        "durably, the Rust peers and python-durable"
    } else {
        "durably and python-durable"
    };
    let _ = writeln!(md, "### {title}, side by side\n");
    let _ = writeln!(
        md,
        "Time per operation (per step, per signal, per run) and throughput; latency rows show the median and p99 (python-durable: max).\n"
    );
    let mut header = String::from("| scenario | n |");
    let mut rule = String::from("|---|---:|");
    for s in &stores {
        let _ = write!(header, " {s} |");
        rule.push_str("---|");
    }
    if has_python {
        header.push_str(" python ÷ sqlite-full | python ÷ sqlite-normal |");
        rule.push_str("---:|---:|");
    }
    let _ = writeln!(md, "{header}\n{rule}");
    for sc in &scenarios {
        let n = rep
            .records
            .iter()
            .find(|r| r.scenario == *sc && r.store != PYTHON)
            .or_else(|| rep.records.iter().find(|r| r.scenario == *sc))
            .map(|r| r.n)
            .unwrap_or(0);
        let mut row = format!("| {sc} | {n} |");
        for s in &stores {
            let c = rep.find(sc, s).map(cell).unwrap_or_else(|| "—".into());
            let _ = write!(row, " {c} |");
        }
        if has_python {
            for s in ["sqlite-full", "sqlite-normal"] {
                let x = ratio(rep.find(sc, PYTHON), rep.find(sc, s))
                    .map(|x| format!("{x:.0}×"))
                    .unwrap_or_else(|| "—".into());
                let _ = write!(row, " {x} |");
            }
        }
        let _ = writeln!(md, "{row}");
    }

    peers_table(&mut md, rep);

    let floors: Vec<&Record> = rep.records.iter().filter(|r| r.store == FLOOR).collect();
    if !floors.is_empty() {
        let _ = writeln!(md, "\n### The floor on this machine (rusqlite / raw clients, no durably code)\n");
        let _ = writeln!(md, "| floor | n | per op | ops/s | p50 | p99 |\n|---|---:|---:|---:|---:|---:|");
        for f in floors {
            let pct = |v: Option<f64>| v.map(fmt_us).unwrap_or_else(|| "—".into());
            let err = if f.errors > 0 { format!(" **{} errors**", f.errors) } else { String::new() };
            let _ = writeln!(
                md,
                "| {} | {} | {}{err} | {} | {} | {} |",
                f.scenario,
                f.n,
                fmt_us(f.per_op_us),
                fmt_rate(f.ops_per_s),
                pct(f.p50_us),
                pct(f.p99_us)
            );
        }
    }

    let _ = writeln!(md, "\n### Targets\n");
    let _ = writeln!(md, "| target | bound | measured | | note |\n|---|---:|---:|---|---|");
    for c in checks(rep) {
        let status = match c.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "not measured",
        };
        let _ = writeln!(md, "| {} | {} | {} | {status} | {} |", c.what, c.target, c.measured, c.note);
    }
    md
}

/// Scenarios where a step is one durable write in sequence, so the raw one-row commit is its
/// floor.
const FLOORED: [&str; 2] = ["steps_fresh", "workflows_fresh"];

/// The Rust peers: each record with its ratio to the same floor and to durably on the same
/// medium at the same durability.
fn peers_table(md: &mut String, rep: &Reporter) {
    let recs: Vec<&Record> = rep.records.iter().filter(|r| is_peer(&r.store)).collect();
    if recs.is_empty() {
        return;
    }
    let _ = writeln!(md, "\n### The Rust peers ({})\n", PEERS.join(", "));
    let _ = writeln!(
        md,
        "Time per step and throughput. Each peer is compared with durably on the same medium at the same durability \
         (durare opens SQLite in WAL with `synchronous=NORMAL`: durably `sqlite-normal`; PostgreSQL: durably `postgres`), \
         and, where a step is one durable write in sequence, with the raw one-row commit of that medium \
         (`floor_wal_normal_1`, `floor_postgres_insert`). A ratio above 1 is slower than durably or the floor.\n"
    );
    let _ = writeln!(
        md,
        "| scenario | peer | n | peer | durably | peer ÷ durably | floor | peer ÷ floor |\n|---|---|---:|---|---|---:|---|---:|"
    );
    let dash = || "—".to_owned();
    for r in recs {
        let twin = durably_twin(&r.store).and_then(|t| rep.find(&r.scenario, t).map(|d| (t, d)));
        let floor = floor_of(&r.store)
            .filter(|_| FLOORED.contains(&r.scenario.as_str()))
            .and_then(|f| rep.find(f, FLOOR).map(|x| (f, x)));
        let times = |x: Option<f64>| x.map(|x| format!("{x:.2}×")).unwrap_or_else(dash);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.store,
            r.n,
            cell(r),
            twin.map(|(t, d)| format!("{t}: {}", cell(d))).unwrap_or_else(dash),
            times(ratio(Some(r), twin.map(|(_, d)| d))),
            floor.map(|(f, x)| format!("{f}: {}", fmt_us(x.per_op_us))).unwrap_or_else(dash),
            times(ratio(Some(r), floor.map(|(_, x)| x))),
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::time::Duration;

    use super::*;

    fn rec(scenario: &str, store: &str, n: u64, ms: u64) -> Record {
        Record::throughput(scenario, store, n, Duration::from_millis(ms))
    }

    #[test]
    fn targets_compare_per_step_times() {
        let mut rep = Reporter::default();
        rep.records.push(rec("floor_wal_full_1", FLOOR, 1000, 1000)); // 1000 µs
        rep.records.push(rec("steps_fresh", "sqlite-full", 1000, 1200)); // 1200 µs
        rep.records.push(rec("steps_fresh", PYTHON, 1000, 30_000)); // 30 ms
        let checks = checks(&rep);
        let floor = &checks[0];
        assert_eq!(floor.met, Some(true), "1.2× is within 1.3×: {floor:?}");
        assert_eq!(floor.measured, "1.20×");
        let py = &checks[1];
        assert_eq!(py.met, Some(true), "25× faster than python-durable: {py:?}");
        assert_eq!(checks[2].met, None, "sqlite-normal was not measured");
    }

    #[test]
    fn a_scenario_with_errors_does_not_meet_a_ratio_target() {
        let mut rep = Reporter::default();
        rep.records.push(rec("floor_wal_full_1", FLOOR, 1000, 1000));
        rep.records.push(rec("steps_fresh", "sqlite-full", 1000, 1000).errors(1));
        assert_eq!(checks(&rep)[0].met, None);
    }

    #[test]
    fn peers_get_their_ratio_to_durably_and_to_the_floor() {
        let mut rep = Reporter::default();
        rep.records.push(rec("floor_wal_normal_1", FLOOR, 100, 10)); // 100 µs
        rep.records.push(rec("steps_fresh", "sqlite-normal", 100, 20)); // 200 µs
        rep.records.push(rec("steps_fresh", "durare-sqlite", 100, 60)); // 600 µs
        rep.records.push(rec("concurrent_workflows", "postgres", 100, 10));
        rep.records.push(rec("concurrent_workflows", "dbos-postgres", 100, 40));
        rep.records.push(rec("steps_fresh", PYTHON, 100, 300));
        let md = markdown(&rep, "durably-bench", "test machine");
        let row = md.lines().find(|l| l.starts_with("| steps_fresh | durare-sqlite")).unwrap();
        assert!(
            row.contains("3.00×") && row.contains("6.00×") && row.contains("floor_wal_normal_1"),
            "{row}"
        );
        let row = md.lines().find(|l| l.starts_with("| concurrent_workflows | dbos-postgres")).unwrap();
        assert!(row.contains("4.00×"), "dbos ÷ durably postgres: {row}");
        assert!(row.ends_with("| — | — |"), "no floor for concurrent runs: {row}");
        let header = md.lines().find(|l| l.starts_with("| scenario | n |")).unwrap();
        let at = |s: &str| header.find(s).unwrap();
        assert!(
            at("sqlite-normal") < at("durare-sqlite") && at("durare-sqlite") < at("python-durable"),
            "{header}"
        );
        assert_eq!(rep.own_errors(), 0);
        rep.records.push(rec("workflows_fresh", "dbos-postgres", 1, 1).errors(3));
        assert_eq!(rep.own_errors(), 0, "a peer's errors are its result, not durably's");
    }

    #[test]
    fn markdown_puts_python_beside_durably() {
        let mut rep = Reporter::default();
        rep.records.push(rec("steps_fresh", PYTHON, 100, 300));
        rep.records.push(rec("steps_fresh", "sqlite-full", 100, 30));
        let md = markdown(&rep, "durably-bench", "test machine");
        let row = md.lines().find(|l| l.starts_with("| steps_fresh")).unwrap();
        assert!(row.contains("300 µs") && row.contains("3.00 ms") && row.contains("10×"), "{row}");
        let header = md.lines().find(|l| l.starts_with("| scenario")).unwrap();
        assert!(header.find("sqlite-full").unwrap() < header.find("python-durable").unwrap());
    }
}
