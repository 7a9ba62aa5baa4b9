//! The markdown table of one store's soak, one row per interval.

use serde_json::Value;

use super::SoakResult;

/// The markdown table of one store's soak.
pub(crate) fn markdown(store: &str, result: &SoakResult) -> String {
    let rec = &result.record;
    let f = |k: &str| rec.extra_f64(k).unwrap_or(0.0);
    let lost = rec.extra.get("lost").and_then(Value::as_u64).unwrap_or(0);
    let grew = rec.extra.get("rss_grew").and_then(Value::as_bool).unwrap_or(false);
    let mut out = format!(
        "\n### soak on {store}: {:.0} s, {} runs ({} started), {} purged, {} lost, {} errors\n\n\
         | t (s) | runs | runs/s | steps/s | p50 | p99 | RSS MB | SQLite heap MB | open | stored | purged | purge | errors | load |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
        f("duration_s"),
        rec.n,
        f("started"),
        f("purged"),
        lost,
        rec.errors
    );
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1} ms"));
    for iv in &result.intervals {
        out.push_str(&format!(
            "| {:.0} | {} | {:.1} | {:.1} | {} | {} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} |\n",
            iv.elapsed_s,
            iv.runs,
            iv.runs_per_s,
            iv.steps_per_s,
            ms(iv.p50_ms),
            ms(iv.p99_ms),
            iv.rss_mb,
            iv.sqlite_heap_mb,
            iv.open,
            iv.stored.map_or_else(|| "-".to_owned(), |s| s.to_string()),
            iv.purged,
            ms(iv.purge_ms),
            iv.errors,
            iv.load
        ));
    }
    let slope = rec.extra_f64("rss_slope_mb_per_min").map_or_else(|| "-".to_owned(), |s| format!("{s:+.2}"));
    out.push_str(&format!(
        "\nFirst → last interval: {:.1} → {:.1} runs/s, {:.1} → {:.1} steps/s, RSS {:.1} → {:.1} MB \
         (slope after the first interval {slope} MB/min{}; SQLite's heap {:.1} → {:.1} MB).\n",
        f("runs_per_s_first"),
        f("runs_per_s_last"),
        f("steps_per_s_first"),
        f("steps_per_s_last"),
        f("rss_first_mb"),
        f("rss_last_mb"),
        if grew { ", **grew**" } else { "" },
        f("sqlite_heap_first_mb"),
        f("sqlite_heap_last_mb")
    ));
    out
}
