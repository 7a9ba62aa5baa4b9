//! The soak's parts (histogram, trends, defaults, the mix) and a short soak that loses nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::measure::*;
use super::runs::*;
use super::*;
use crate::stores::StoreKind;

#[test]
fn histogram_percentiles_are_within_two_percent() {
    let mut h = Histogram::new();
    for ms in 1..=100u64 {
        h.record(Duration::from_millis(ms));
    }
    let p50 = h.percentile_us(50.0).unwrap();
    let p99 = h.percentile_us(99.0).unwrap();
    assert!((50_000.0..=51_000.0).contains(&p50), "p50 {p50}");
    assert!((99_000.0..=101_000.0).contains(&p99), "p99 {p99}");
    h.reset();
    assert_eq!(h.percentile_us(50.0), None);
    h.record(Duration::from_secs(100_000));
    assert!(h.percentile_us(50.0).is_some(), "beyond the last bucket lands in it");
}

#[test]
fn slope_fits_a_line_and_needs_two_points() {
    assert_eq!(slope(&[(0.0, 1.0)]), None);
    assert_eq!(slope(&[(1.0, 1.0), (1.0, 2.0)]), None);
    let s = slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]).unwrap();
    assert!((s - 2.0).abs() < 1e-9);
}

fn iv(elapsed_s: f64, rss_mb: f64) -> Interval {
    Interval {
        elapsed_s,
        secs: 10.0,
        runs: 1,
        runs_per_s: 0.1,
        steps_per_s: 0.1,
        p50_ms: None,
        p99_ms: None,
        rss_mb,
        sqlite_heap_mb: 0.0,
        open: 0,
        stored: None,
        purged: 0,
        purge_ms: None,
        errors: 0,
        load: String::new(),
    }
}

#[test]
fn rss_trend_skips_the_warm_up_and_flags_steady_growth() {
    // A big first interval (warm-up), then flat: no growth.
    let flat = [iv(10.0, 80.0), iv(20.0, 20.0), iv(30.0, 20.0), iv(40.0, 20.0)];
    let (s, grew) = rss_trend(&flat);
    assert!(s.unwrap().abs() < 1e-9);
    assert!(!grew);
    // 6 MB a minute for 3 minutes after the warm-up.
    let growing: Vec<Interval> = (1..=19).map(|k| iv(10.0 * k as f64, 20.0 + k as f64)).collect();
    let (s, grew) = rss_trend(&growing);
    assert!((s.unwrap() - 6.0).abs() < 1e-9);
    assert!(grew);
}

#[test]
fn defaults_scale_down_for_a_short_soak() {
    let c = SoakConfig::new(Duration::from_secs(300), None, 64, None, None, 1, None);
    assert_eq!(c.interval, Duration::from_secs(10));
    assert_eq!(c.purge_every, Duration::from_secs(5));
    assert_eq!(c.purge_age, Duration::from_secs(5));
    let c = SoakConfig::new(Duration::from_secs(3), None, 64, None, None, 1, None);
    assert_eq!(c.interval, Duration::from_secs(1));
    assert_eq!(c.purge_every, Duration::from_secs(1));
    assert_eq!(c.purge_age, Duration::from_secs(2));
    let c = SoakConfig::new(Duration::from_secs(3), Some(Duration::from_secs(2)), 0, None, None, 1, None);
    assert_eq!((c.interval, c.concurrency), (Duration::from_secs(2), 1), "explicit values win");
}

#[test]
fn sqlite_heap_counts_an_open_connection() {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (zeroblob(100000));").unwrap();
    assert!(sqlite_heap_mb() > 0.0);
}

#[test]
fn the_mix_has_every_kind_in_its_stated_share() {
    let count = |k: Kind| MIX.iter().filter(|m| **m == k).count();
    assert_eq!(count(Kind::Steps), 10);
    for k in [Kind::Signal, Kind::SignalOther, Kind::Sleep, Kind::Retry] {
        assert_eq!(count(k), 2, "{k:?}");
    }
    assert_eq!((count(Kind::FailResume), count(Kind::Cancel)), (1, 1));
}

/// A short soak on the memory store: every run ends as expected, nothing is lost, and the
/// last purge empties the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::fresh(StoreKind::Memory, dir.path(), "soak", Duration::from_millis(100)).unwrap();
    let cfg = SoakConfig::new(Duration::from_millis(1500), None, 16, None, None, 3, None);
    let r = soak(&target, &cfg).await.unwrap();
    let rec = &r.record;
    assert_eq!(rec.errors, 0, "{:?}", rec.extra.get("first_errors"));
    assert_eq!(rec.extra["lost"], 0);
    assert!(rec.n >= 20, "at least one full round of the mix ended: {}", rec.n);
    assert_eq!(rec.extra["started"].as_u64(), Some(rec.n));
    assert!(!r.intervals.is_empty());
    let mix = rec.extra["mix"].as_object().unwrap();
    assert!(mix.values().all(|v| v.as_u64().unwrap() > 0), "every kind ran: {mix:?}");
}
