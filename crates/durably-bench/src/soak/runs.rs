//! The soak's runs: the mix of kinds, one run's plan, and what each kind executes and must end
//! as (status, output, the steps it executed), checked by its result and its stored record.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use durably::{RunStatus, Workflow};

use crate::signals::Rng;

use super::{RUN_TIMEOUT, Shared};

/// The kinds of run in the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Steps,
    Signal,
    SignalOther,
    Sleep,
    Retry,
    FailResume,
    Cancel,
}

pub(super) const KINDS: [Kind; 7] =
    [Kind::Steps, Kind::Signal, Kind::SignalOther, Kind::Sleep, Kind::Retry, Kind::FailResume, Kind::Cancel];

/// Run `i` is of kind `MIX[i % 20]`.
pub(super) const MIX: [Kind; 20] = [
    Kind::Steps,
    Kind::Signal,
    Kind::Steps,
    Kind::Sleep,
    Kind::Steps,
    Kind::Retry,
    Kind::Steps,
    Kind::SignalOther,
    Kind::Steps,
    Kind::Cancel,
    Kind::Steps,
    Kind::Signal,
    Kind::Steps,
    Kind::Sleep,
    Kind::Steps,
    Kind::Retry,
    Kind::Steps,
    Kind::SignalOther,
    Kind::Steps,
    Kind::FailResume,
];

impl Kind {
    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Steps => "steps",
            Kind::Signal => "signal",
            Kind::SignalOther => "signal_other",
            Kind::Sleep => "sleep",
            Kind::Retry => "retry",
            Kind::FailResume => "fail_resume",
            Kind::Cancel => "cancel",
        }
    }

    pub(super) fn index(self) -> usize {
        KINDS.iter().position(|k| *k == self).unwrap_or(0)
    }

    /// What a run of this kind must end as: its status and output.
    pub(super) fn expected(self, i: u64) -> (RunStatus, Option<u64>) {
        match self {
            Kind::Steps => (RunStatus::Completed, Some(30 * i + 3)),
            Kind::Signal | Kind::SignalOther => (RunStatus::Completed, Some(2 * i + 7)),
            Kind::Sleep => (RunStatus::Completed, Some(i + 1)),
            Kind::Retry => (RunStatus::Completed, Some(i)),
            Kind::FailResume => (RunStatus::Completed, Some(i + 2)),
            Kind::Cancel => (RunStatus::Cancelled, None),
        }
    }
}

/// One run to start.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    pub(super) i: u64,
    pub(super) kind: Kind,
    /// The signal's delivery delay, the sleep, or the wait before cancelling.
    pub(super) delay: Duration,
}

impl Plan {
    pub(super) fn new(i: u64, rng: &mut Rng) -> Plan {
        let kind = MIX[(i % MIX.len() as u64) as usize];
        let ms = |lo: f64, hi: f64, rng: &mut Rng| {
            Duration::from_secs_f64((lo + (hi - lo) * rng.next_f64()) / 1e3)
        };
        let delay = match kind {
            Kind::Signal | Kind::SignalOther | Kind::Cancel => ms(0.0, 50.0, rng),
            Kind::Sleep => ms(20.0, 200.0, rng),
            _ => Duration::ZERO,
        };
        Plan { i, kind, delay }
    }

    pub(super) fn run_id(&self) -> String {
        format!("soak-{}", self.i)
    }
}

/// A step named `name` that returns `v`, counting its executions.
pub(super) fn work(steps: &Arc<AtomicU64>, name: &str, v: u64) -> durably::TaskCall<u64> {
    let steps = steps.clone();
    durably::step(name, move || {
        steps.fetch_add(1, Ordering::Relaxed);
        async move { Ok::<u64, std::io::Error>(v) }
    })
}

/// Polls the run until it has `status`.
pub(super) async fn wait_status(wf: &Workflow, run_id: &str, status: RunStatus) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let run = wf.get_run(run_id).await.map_err(|e| format!("reading the run: {e}"))?;
        if run.as_ref().is_some_and(|r| r.status == status) {
            return Ok(());
        }
        if started.elapsed() > RUN_TIMEOUT / 2 {
            let now = run.map_or_else(|| "absent".to_owned(), |r| r.status.to_string());
            return Err(format!("not {status} after {} s (it is {now})", (RUN_TIMEOUT / 2).as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Checks what a run returned against what it should have.
pub(super) fn check_output(got: durably::Result<u64>, want: u64) -> Result<(), String> {
    match got {
        Ok(v) if v == want => Ok(()),
        Ok(v) => Err(format!("returned {v}, expected {want}")),
        Err(e) => Err(format!("failed: {e}")),
    }
}

/// Checks the run's stored record against what it should be.
pub(super) async fn check_stored(
    wf: &Workflow,
    run_id: &str,
    status: RunStatus,
    output: Option<u64>,
) -> Result<(), String> {
    let run = wf.get_run(run_id).await.map_err(|e| format!("reading its record: {e}"))?.ok_or_else(|| {
        "its record is gone before it was checked (purged too early? raise --purge-age-secs)".to_owned()
    })?;
    if run.status != status {
        return Err(format!("stored as {}, expected {status}", run.status));
    }
    if let Some(want) = output {
        let got: Option<u64> = run.output.as_deref().and_then(|o| serde_json::from_str(o).ok());
        if got != Some(want) {
            return Err(format!("stored output {:?}, expected {want}", run.output));
        }
    }
    Ok(())
}

/// Executes one run of the mix and checks how it ended.
pub(super) async fn one(s: &Shared, p: Plan) -> Result<(), String> {
    let rid = p.run_id();
    let i = p.i;
    let wf = &s.wf;
    let (status, output) = p.kind.expected(i);
    match p.kind {
        Kind::Steps => {
            let steps = s.steps.clone();
            let got = wf
                .run(rid.as_str(), |_| async move {
                    let mut total = 0;
                    for k in 0..3 {
                        total += work(&steps, "work", 10 * i + k).await?;
                    }
                    Ok::<u64, durably::Error>(total)
                })
                .await;
            check_output(got, 30 * i + 3)?;
        }
        Kind::Signal | Kind::SignalOther => {
            let deliverer = if p.kind == Kind::SignalOther { s.other.clone() } else { wf.clone() };
            let (to, delay) = (rid.clone(), p.delay);
            let delivery = tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                deliverer.complete(&to, "go", &(i + 7)).await
            });
            let steps = s.steps.clone();
            let got = wf
                .run(rid.as_str(), |_| async move {
                    let a = work(&steps, "prepare", i).await?;
                    let b: u64 = durably::signal("go").await?;
                    Ok::<u64, durably::Error>(a + b)
                })
                .await;
            let delivered = delivery
                .await
                .map_err(|e| format!("the delivering task failed: {e}"))?
                .map_err(|e| format!("delivering its signal: {e}"))?;
            if !delivered {
                return Err("its signal was reported as a duplicate".to_owned());
            }
            check_output(got, 2 * i + 7)?;
        }
        Kind::Sleep => {
            let (steps, nap) = (s.steps.clone(), p.delay);
            let got = wf
                .run(rid.as_str(), |_| async move {
                    let a = work(&steps, "before", i).await?;
                    durably::sleep(nap).await?;
                    let b = work(&steps, "after", 1).await?;
                    Ok::<u64, durably::Error>(a + b)
                })
                .await;
            check_output(got, i + 1)?;
        }
        Kind::Retry => {
            let steps = s.steps.clone();
            let tries = Arc::new(AtomicU32::new(0));
            let attempts = tries.clone();
            let got = wf
                .run(rid.as_str(), |_| async move {
                    durably::step("flaky", move || {
                        steps.fetch_add(1, Ordering::Relaxed);
                        let n = attempts.fetch_add(1, Ordering::Relaxed) + 1;
                        async move {
                            if n < 3 {
                                Err(std::io::Error::other(format!("soak: planned transient failure {n}")))
                            } else {
                                Ok(i)
                            }
                        }
                    })
                    .retries(3)
                    .backoff(durably::backoff::constant(0.01))
                    .await
                })
                .await;
            check_output(got, i)?;
            let bodies = tries.load(Ordering::Relaxed);
            if bodies != 3 {
                return Err(format!("its flaky step ran {bodies} times, expected 3"));
            }
            let recorded = wf.list_steps(&rid).await.map_err(|e| format!("listing its steps: {e}"))?;
            match recorded.iter().find(|st| st.step_id == "flaky") {
                Some(st) if st.attempts == 3 => {}
                Some(st) => {
                    return Err(format!("step flaky is recorded with {} attempts, expected 3", st.attempts));
                }
                None => return Err("step flaky is not recorded".to_owned()),
            }
        }
        Kind::FailResume => {
            let first_bodies = Arc::new(AtomicU32::new(0));
            let body = |fail: bool| {
                let (steps, first_bodies) = (s.steps.clone(), first_bodies.clone());
                move |_| async move {
                    let a: u64 = durably::step("first", move || {
                        steps.fetch_add(1, Ordering::Relaxed);
                        first_bodies.fetch_add(1, Ordering::Relaxed);
                        async move { Ok::<u64, std::io::Error>(i) }
                    })
                    .await?;
                    let b: u64 = durably::step("second", move || async move {
                        if fail {
                            Err(durably::Error::permanent(std::io::Error::other("soak: planned failure")))
                        } else {
                            Ok(2)
                        }
                    })
                    .await?;
                    Ok::<u64, durably::Error>(a + b)
                }
            };
            match wf.run(rid.as_str(), body(true)).await {
                Err(durably::Error::Task { .. }) => {}
                Ok(v) => return Err(format!("returned {v} where its second step was to fail")),
                Err(e) => return Err(format!("failed with an unexpected error: {e}")),
            }
            check_stored(wf, &rid, RunStatus::Failed, None).await?;
            // Executed again, the first step replays and the second runs again and succeeds.
            check_output(wf.run(rid.as_str(), body(false)).await, i + 2)?;
            let bodies = first_bodies.load(Ordering::Relaxed);
            if bodies != 1 {
                return Err(format!("its first step ran {bodies} times over two executions, expected 1"));
            }
        }
        Kind::Cancel => {
            let (canceller_wf, to, delay) = (wf.clone(), rid.clone(), p.delay);
            let canceller = tokio::spawn(async move {
                wait_status(&canceller_wf, &to, RunStatus::Waiting).await?;
                tokio::time::sleep(delay).await;
                canceller_wf.cancel(&to).await.map_err(|e| format!("cancelling: {e}"))
            });
            let steps = s.steps.clone();
            let got = wf
                .run(rid.as_str(), |_| async move {
                    let a = work(&steps, "before", i).await?;
                    let never: u64 = durably::signal("never").await?;
                    Ok::<u64, durably::Error>(a + never)
                })
                .await;
            match got {
                Err(durably::Error::Cancelled { .. }) => {}
                other => {
                    canceller.abort();
                    return Err(match other {
                        Ok(v) => format!("returned {v} where it was to be cancelled"),
                        Err(e) => format!("failed with {e} where it was to be cancelled"),
                    });
                }
            }
            let cancelled = canceller.await.map_err(|e| format!("the cancelling task failed: {e}"))??;
            if !cancelled {
                return Err("cancel() said the run had already ended".to_owned());
            }
        }
    }
    check_stored(wf, &rid, status, output).await
}
