//! Load and size limits: many concurrent runs mixing steps and signals all complete
//! with nothing lost, and 10 MB values round-trip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::{Counter, Harness};
use durably::{Error, RunStatus, StepStatus};

/// Concurrent runs: `DURABLY_LOAD_RUNS` (default 2,000; the full count is 10,000).
fn runs_wanted() -> usize {
    std::env::var("DURABLY_LOAD_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000)
}

fn rss_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn many_concurrent_runs_with_steps_and_signals_all_complete(h: Harness) {
    let n = runs_wanted();
    let wf = Arc::new(h.wf());
    let c = Counter::new();
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let wf = wf.clone();
        let c = c.clone();
        handles.push(tokio::spawn(async move {
            wf.run(&format!("load-{i}"), |_| async move {
                let mut total = 0u64;
                for k in 0..3u64 {
                    let c = c.clone();
                    total += durably::step("work", move || {
                        let c = c.clone();
                        async move {
                            c.hit();
                            Ok::<_, std::io::Error>(k + 1)
                        }
                    })
                    .await?;
                }
                // Every third run waits for a human as well.
                if i % 3 == 0 {
                    let extra: u64 = durably::signal("go").await?;
                    total += extra;
                }
                Ok::<_, Error>(total)
            })
            .await
        }));
    }
    // Deliver the signals while the runs are in flight.
    for i in (0..n).step_by(3) {
        assert!(wf.complete(&format!("load-{i}"), "go", &100u64).await.unwrap());
    }
    for (i, handle) in handles.into_iter().enumerate() {
        let total = handle.await.unwrap().unwrap();
        assert_eq!(total, if i % 3 == 0 { 106 } else { 6 }, "run load-{i}");
    }
    assert_eq!(c.get() as usize, 3 * n, "every step body ran exactly once");
    // Nothing lost: every run completed with its steps recorded.
    let done = wf.list_runs(&durably::RunFilter::new().status(RunStatus::Completed)).await.unwrap();
    assert_eq!(done.len(), n);
    for i in (0..n).step_by(997) {
        let steps = wf.list_steps(&format!("load-{i}")).await.unwrap();
        assert_eq!(steps.iter().filter(|s| s.name == "work" && s.status == StepStatus::Completed).count(), 3);
    }
    eprintln!(
        "{n} concurrent runs on {}: VmRSS {:?} KiB, VmHWM {:?} KiB",
        h.kind,
        rss_kib("VmRSS:"),
        rss_kib("VmHWM:")
    );
}

async fn ten_megabyte_values_round_trip(h: Harness) {
    let big: String = (0..10 * 1024 * 1024).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let c = Counter::new();
    let run = |wf: durably::Workflow, big: String, c: Counter| async move {
        wf.run("big", |_| async move {
            let v: String = durably::step("big", move || {
                let big = big.clone();
                let c = c.clone();
                async move {
                    c.hit();
                    Ok::<_, std::io::Error>(big)
                }
            })
            .await?;
            Ok::<_, Error>(v.len())
        })
        .await
    };
    assert_eq!(run(h.wf(), big.clone(), c.clone()).await.unwrap(), big.len());
    let steps = h.wf().list_steps("big").await.unwrap();
    assert_eq!(steps[0].value.as_ref().unwrap().len(), big.len() + 2, "stored verbatim as a JSON string");
    // A signal payload of 10 MB too.
    assert!(h.wf().complete("big-signal", "doc", &big).await.unwrap());
    let got = h.wf().run("big-signal", |_| async { durably::signal::<String>("doc").await }).await.unwrap();
    assert_eq!(got, big);
    assert_eq!(c.get(), 1);
}

on_every_store!(many_concurrent_runs_with_steps_and_signals_all_complete, ten_megabyte_values_round_trip);
