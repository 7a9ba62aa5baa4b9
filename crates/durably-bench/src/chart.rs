//! `--chart FILE`: an SVG of the time per step of each workflow scenario, one horizontal bar per
//! store (durably's, the Rust peers', python-durable's) and the raw floor where one applies, on
//! a log-scale axis. Built as a string: no plotting dependency.

use std::fmt::Write as _;

use crate::peers::is_peer;
use crate::report::{FLOOR, PYTHON, Record, Reporter, fmt_us};

/// The scenarios charted, in order, each with the floors drawn beside it.
const SCENARIOS: [(&str, &[&str]); 5] = [
    ("steps_fresh", &["floor_wal_full_1", "floor_wal_normal_1", "floor_postgres_insert", "floor_redis_set"]),
    ("steps_replay", &["floor_select"]),
    ("steps_replay_new_object", &["floor_select"]),
    (
        "workflows_fresh",
        &["floor_wal_full_1", "floor_wal_normal_1", "floor_postgres_insert", "floor_redis_set"],
    ),
    ("concurrent_workflows", &[]),
];

const WIDTH: f64 = 960.0;
const LABEL_W: f64 = 300.0;
const VALUE_W: f64 = 170.0;
const BAR_H: f64 = 16.0;
const ROW_H: f64 = 20.0;
const HEAD_H: f64 = 28.0;
const TOP: f64 = 64.0;

/// Who a bar belongs to, which sets its colour and its place in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    Durably,
    Peer,
    Python,
    Floor,
}

impl Family {
    fn of(store: &str) -> Family {
        if store == PYTHON {
            Family::Python
        } else if store == FLOOR {
            Family::Floor
        } else if is_peer(store) {
            Family::Peer
        } else {
            Family::Durably
        }
    }

    fn colour(self, store: &str) -> &'static str {
        match self {
            Family::Durably => "#1f6feb",
            Family::Peer if store.starts_with("dbos") => "#2da44e",
            Family::Peer => "#e36209",
            Family::Python => "#cf222e",
            Family::Floor => "#8c959f",
        }
    }
}

/// One bar: its label, the record behind it and its family.
struct Bar<'a> {
    label: String,
    store: &'a str,
    rec: &'a Record,
    family: Family,
}

impl Bar<'_> {
    /// The time per step, if the record measured one without errors.
    fn value(&self) -> Option<f64> {
        (self.rec.n > 0 && self.rec.per_op_us > 0.0).then_some(self.rec.per_op_us)
    }
}

fn bars<'a>(rep: &'a Reporter, scenario: &str, floors: &[&'a str]) -> Vec<Bar<'a>> {
    let mut out: Vec<Bar<'a>> = rep
        .records
        .iter()
        .filter(|r| r.scenario == scenario && r.store != FLOOR)
        .map(|r| {
            let family = Family::of(&r.store);
            let label =
                if family == Family::Durably { format!("durably {}", r.store) } else { r.store.clone() };
            Bar { label, store: &r.store, rec: r, family }
        })
        .collect();
    out.sort_by_key(|b| b.family);
    if out.is_empty() {
        return out;
    }
    for &floor in floors {
        if let Some(rec) = rep.find(floor, FLOOR) {
            out.push(Bar { label: format!("floor: {floor}"), store: floor, rec, family: Family::Floor });
        }
    }
    out
}

/// Escapes text for an SVG text node or attribute.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The chart of the records' workflow scenarios.
pub(crate) fn svg(rep: &Reporter) -> String {
    let groups: Vec<(&str, Vec<Bar<'_>>)> = SCENARIOS
        .iter()
        .map(|(s, floors)| (*s, bars(rep, s, floors)))
        .filter(|(_, b)| !b.is_empty())
        .collect();
    let values: Vec<f64> = groups.iter().flat_map(|(_, b)| b.iter().filter_map(Bar::value)).collect();
    // Whole decades around every value: log10 of the axis' ends.
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(0.0, f64::max);
    let (d0, d1) = if values.is_empty() {
        (0.0, 1.0)
    } else {
        // A value on a decade sits one decade in, not at zero length.
        let d0 = (lo.log10() - 1e-9).floor();
        (d0, hi.log10().ceil().max(d0 + 1.0))
    };
    let plot_w = WIDTH - LABEL_W - VALUE_W;
    let x_of = |us: f64| LABEL_W + plot_w * ((us.log10() - d0) / (d1 - d0)).clamp(0.0, 1.0);
    let rows: usize = groups.iter().map(|(_, b)| b.len()).sum();
    let height = TOP + groups.len() as f64 * HEAD_H + rows as f64 * ROW_H + 40.0;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r##"<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>"##);
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-size="16" font-weight="bold">durably-bench: time per step, log scale (shorter is faster)</text>"#
    );
    let _ = writeln!(
        s,
        r##"<text x="10" y="42" fill="#57606a">durably (blue), Rust peers (durare orange, dbos green), python-durable (red), raw floor (grey)</text>"##
    );
    // The decades: a grid line and a label each.
    let bottom = height - 30.0;
    let mut d = d0;
    while d <= d1 + 1e-9 {
        let x = x_of(10f64.powf(d));
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{bottom:.1}" stroke="#d0d7de" stroke-width="1"/>"##
        );
        let _ = writeln!(
            s,
            r##"<text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#57606a">{}</text>"##,
            bottom + 16.0,
            esc(&fmt_us(10f64.powf(d)))
        );
        d += 1.0;
    }
    let mut y = TOP;
    for (scenario, bars) in &groups {
        y += HEAD_H;
        let _ = writeln!(s, r#"<text x="10" y="{:.1}" font-weight="bold">{}</text>"#, y - 8.0, esc(scenario));
        for bar in bars {
            let label = esc(&bar.label);
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"#,
                LABEL_W - 8.0,
                y + BAR_H - 4.0
            );
            match bar.value() {
                Some(us) => {
                    let w = (x_of(us) - LABEL_W).max(1.0);
                    let errs = if bar.rec.errors > 0 {
                        format!(", {} errors", bar.rec.errors)
                    } else {
                        String::new()
                    };
                    let text = esc(&format!("{}{errs}", fmt_us(us)));
                    let _ = writeln!(
                        s,
                        r#"<rect class="bar" data-scenario="{}" data-store="{}" x="{LABEL_W}" y="{y:.1}" width="{w:.1}" height="{BAR_H}" fill="{}"><title>{} {label}: {text} per step</title></rect>"#,
                        esc(scenario),
                        esc(bar.store),
                        bar.family.colour(bar.store),
                        esc(scenario),
                    );
                    let _ = writeln!(
                        s,
                        r#"<text x="{:.1}" y="{:.1}">{text}</text>"#,
                        LABEL_W + w + 6.0,
                        y + BAR_H - 4.0
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        r##"<text x="{:.1}" y="{:.1}" fill="#cf222e">failed ({} errors)</text>"##,
                        LABEL_W + 6.0,
                        y + BAR_H - 4.0,
                        bar.rec.errors
                    );
                }
            }
            y += ROW_H;
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::time::Duration;

    use super::*;

    fn rec(scenario: &str, store: &str, n: u64, us_per_op: u64) -> Record {
        Record::throughput(scenario, store, n, Duration::from_micros(n * us_per_op))
    }

    /// Checks that every tag is closed in order (no XML library needed for our own output).
    fn well_formed(svg: &str) -> Result<usize, String> {
        let mut stack: Vec<String> = Vec::new();
        let mut elements = 0;
        let mut rest = svg;
        while let Some(open) = rest.find('<') {
            let close = rest[open..].find('>').ok_or("unterminated tag")? + open;
            let tag = &rest[open + 1..close];
            if tag.contains('<') {
                return Err(format!("'<' inside a tag: {tag}"));
            }
            if let Some(name) = tag.strip_prefix('/') {
                match stack.pop() {
                    Some(top) if top == name => {}
                    top => return Err(format!("</{name}> closes {top:?}")),
                }
            } else {
                elements += 1;
                let name = tag.split_whitespace().next().ok_or("empty tag")?.to_owned();
                if !tag.ends_with('/') {
                    stack.push(name);
                }
            }
            rest = &rest[close + 1..];
        }
        if !stack.is_empty() {
            return Err(format!("unclosed: {stack:?}"));
        }
        // Text holds no bare '&' (every one starts an entity).
        if svg
            .match_indices('&')
            .any(|(i, _)| !["&amp;", "&lt;", "&gt;", "&quot;"].iter().any(|e| svg[i..].starts_with(e)))
        {
            return Err("a bare '&'".into());
        }
        Ok(elements)
    }

    #[test]
    fn the_chart_is_well_formed_and_has_a_bar_per_store() {
        let mut rep = Reporter::default();
        for (store, us) in [
            ("sqlite-full", 200),
            ("sqlite-normal", 40),
            ("postgres", 300),
            ("durare-sqlite", 400),
            ("durare-postgres", 900),
            ("dbos-postgres", 1200),
            (PYTHON, 2000),
        ] {
            rep.records.push(rec("steps_fresh", store, 100, us));
            rep.records.push(rec("concurrent_workflows", store, 100, us / 10));
        }
        rep.records.push(rec("floor_wal_full_1", FLOOR, 100, 180));
        rep.records.push(rec("floor_wal_normal_1", FLOOR, 100, 30));
        rep.records.push(rec("steps_replay", "sqlite-full", 100, 2));
        rep.records.push(rec("floor_select", FLOOR, 100, 1));
        rep.records.push(Record::failed("workflows_fresh", "dbos-postgres", &anyhow::anyhow!("a < b & c")));
        let svg = svg(&rep);
        let elements = well_formed(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
        assert!(elements > 20, "{elements} elements");
        for store in [
            "sqlite-full",
            "sqlite-normal",
            "postgres",
            "durare-sqlite",
            "durare-postgres",
            "dbos-postgres",
            PYTHON,
        ] {
            for scenario in ["steps_fresh", "concurrent_workflows"] {
                let bar = format!(r#"data-scenario="{scenario}" data-store="{store}""#);
                assert_eq!(svg.matches(&bar).count(), 1, "one bar for {store} in {scenario}");
            }
        }
        // The floors only where they apply.
        assert_eq!(svg.matches(r#"data-scenario="steps_fresh" data-store="floor_wal_full_1""#).count(), 1);
        assert_eq!(svg.matches(r#"data-scenario="steps_replay" data-store="floor_select""#).count(), 1);
        assert!(
            !svg.contains(r#"data-scenario="concurrent_workflows" data-store="floor_"#),
            "no floor for concurrent runs"
        );
        assert!(!svg.contains("steps_replay_new_object"), "no group without a store measured");
        assert!(svg.contains("failed (1 errors)"), "a failed scenario is shown, not drawn");
        // Log scale: the axis runs over whole decades, 1 µs to 10 ms here.
        assert!(svg.contains(">1.00 µs<") && svg.contains(">10.00 ms<"), "{svg}");
    }

    #[test]
    fn bar_lengths_follow_the_log_of_the_time() {
        let mut rep = Reporter::default();
        rep.records.push(rec("steps_fresh", "sqlite-full", 10, 10));
        rep.records.push(rec("steps_fresh", "durare-sqlite", 10, 100));
        rep.records.push(rec("steps_fresh", PYTHON, 10, 1000));
        let svg = svg(&rep);
        well_formed(&svg).unwrap();
        let width = |store: &str| -> f64 {
            let at = svg.find(&format!(r#"data-store="{store}""#)).unwrap();
            let w = &svg[at..][svg[at..].find("width=\"").unwrap() + 7..];
            w[..w.find('"').unwrap()].parse().unwrap()
        };
        let (a, b, c) = (width("sqlite-full"), width("durare-sqlite"), width(PYTHON));
        assert!(a < b && b < c, "{a} {b} {c}");
        assert!(((b - a) - (c - b)).abs() < 0.2, "each decade is the same length: {a} {b} {c}");
    }

    #[test]
    fn an_empty_report_is_still_an_svg() {
        let svg = svg(&Reporter::default());
        well_formed(&svg).unwrap();
        assert!(svg.starts_with("<svg"));
    }
}
