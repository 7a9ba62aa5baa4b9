//! Several worker processes sharing runs through one Redis server: real OS processes (this test
//! binary started again with a role), leases and pub/sub across them.
//!
//! - Two processes start the same run at the same moment: each step body runs once in total,
//!   and both get the output.
//! - A worker is SIGKILLed inside a step: another process recovers the run and finishes it,
//!   running again only the step that was in flight.
//! - A signal delivered by one process wakes the run waiting in another (the latency is
//!   printed, not asserted).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Cleanup, fresh_prefix, server_or_skip};
use durably_core::{Error, RunStatus, Workflow, now_ms};
use durably_redis::RedisStore;

const ROLE: &str = "DURABLY_REDIS_CHILD_ROLE";
const STEPS: [&str; 4] = ["reserve", "charge", "ship", "notify"];
/// The lease TTL of the workers: a killed worker's run is recoverable this long after its last
/// renewal.
const LEASE_TTL: Duration = Duration::from_secs(2);
/// How long any child may take before the test gives up on it.
const CHILD_DEADLINE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The child side

/// The entry point of the child processes; does nothing unless started as one.
#[test]
#[ignore = "the entry point of the child processes the other tests start"]
fn child_process() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(child(&role));
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("child without {name}"))
}

/// Appends this process's id to the marker file of `step` (a line per execution of its body).
fn mark(dir: &Path, name: &str) {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(name)).unwrap();
    writeln!(file, "{}", std::process::id()).unwrap();
}

async fn engine() -> Workflow {
    let store =
        RedisStore::builder(env("DURABLY_REDIS_URL")).prefix(env("CHILD_PREFIX")).connect().await.unwrap();
    let wf = Workflow::builder("orders").store(store).lease_ttl(LEASE_TTL).wait_for_lease(true).build();
    let dir = PathBuf::from(env("CHILD_DIR"));
    let hang = std::env::var("CHILD_HANG_IN").ok();
    wf.register_fn("order", move |_ctx, n: u64| {
        let (dir, hang) = (dir.clone(), hang.clone());
        async move {
            let mut total = n;
            for name in STEPS {
                let (dir, hang) = (dir.clone(), hang.clone());
                total += durably_core::step(name, move || {
                    let (dir, hang) = (dir.clone(), hang.clone());
                    async move {
                        mark(&dir, &format!("{name}.started"));
                        if hang.as_deref() == Some(name) {
                            println!("HUNG {name}");
                            tokio::time::sleep(Duration::from_secs(3_600)).await;
                        }
                        // Some work, so that concurrent executions would overlap.
                        tokio::time::sleep(Duration::from_millis(150)).await;
                        mark(&dir, name);
                        Ok::<_, std::io::Error>(1u64)
                    }
                })
                .retries(0)
                .await?;
            }
            Ok::<_, Error>(total)
        }
    });
    wf
}

async fn child(role: &str) {
    let run_id = env("CHILD_RUN_ID");
    let wf = engine().await;
    match role {
        "start" => {
            let start_at: i64 = env("CHILD_START_AT").parse().unwrap();
            tokio::time::sleep(Duration::from_millis(u64::try_from(start_at - now_ms()).unwrap_or(0))).await;
            let out: Result<u64, Error> = wf.start("order", run_id.as_str(), &10u64).await;
            println!("RESULT {}", out.map(|n| n.to_string()).unwrap_or_else(|e| format!("error {e}")));
        }
        "recover" => {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let report = wf.recover().await.unwrap();
                if report.resumed.contains(&run_id) {
                    for (id, result) in report.join().await {
                        if id == run_id {
                            println!("RESULT {}", result.unwrap_or_else(|e| format!("error {e}")));
                        }
                    }
                    return;
                }
                assert!(Instant::now() < deadline, "run `{run_id}` never became recoverable");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        "wait_signal" => {
            let out = wf
                .run(run_id.as_str(), |_| async {
                    let _: bool = durably_core::signal("approved").await?;
                    Ok::<_, Error>(now_ms())
                })
                .await
                .unwrap();
            println!("WOKE {out}");
        }
        "deliver" => {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if wf.get_run(&run_id).await.unwrap().is_some_and(|r| r.status == RunStatus::Waiting) {
                    break;
                }
                assert!(Instant::now() < deadline, "run `{run_id}` never waited");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Let the waiter settle into its wait (subscribed), so that what is measured is
            // the wake-up, not a first look.
            tokio::time::sleep(Duration::from_millis(300)).await;
            println!("SENT {}", now_ms());
            assert!(wf.complete(&run_id, "approved", &true).await.unwrap());
        }
        other => panic!("unknown child role {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The parent side

struct Scenario {
    url: String,
    prefix: String,
    dir: tempfile::TempDir,
    _cleanup: Cleanup,
}

impl Scenario {
    fn new() -> Option<Scenario> {
        let url = server_or_skip()?;
        let prefix = fresh_prefix();
        let dir = tempfile::tempdir().unwrap();
        Some(Scenario { _cleanup: Cleanup { url: url.clone(), prefix: prefix.clone() }, url, prefix, dir })
    }

    fn spawn(&self, role: &str, run_id: &str, extra: &[(&str, String)]) -> Child {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["child_process", "--exact", "--ignored", "--nocapture", "--test-threads", "1"])
            .env(ROLE, role)
            .env("DURABLY_REDIS_URL", &self.url)
            .env("CHILD_PREFIX", &self.prefix)
            .env("CHILD_DIR", self.dir.path())
            .env("CHILD_RUN_ID", run_id)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.spawn().unwrap()
    }

    /// How many times each marker was written.
    fn counts(&self) -> HashMap<String, usize> {
        std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| {
                let lines = std::fs::read_to_string(e.path()).unwrap().lines().count();
                (e.file_name().into_string().unwrap(), lines)
            })
            .collect()
    }

    fn count(&self, marker: &str) -> usize {
        self.counts().get(marker).copied().unwrap_or(0)
    }
}

/// Waits for a child to exit successfully, and returns its stdout.
fn finish(mut child: Child, what: &str) -> String {
    let deadline = Instant::now() + CHILD_DEADLINE;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} did not finish in {CHILD_DEADLINE:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The rest of the child's output line after `tag ` (libtest may print its own text first).
fn line<'a>(stdout: &'a str, tag: &str) -> &'a str {
    let tag = format!("{tag} ");
    stdout
        .lines()
        .find_map(|l| l.split_once(tag.as_str()).map(|(_, rest)| rest.trim()))
        .unwrap_or_else(|| panic!("no `{tag}` line in:\n{stdout}"))
}

#[test]
fn two_processes_starting_one_run_at_once_run_each_step_once() {
    let Some(scenario) = Scenario::new() else { return };
    let run_id = "order:1001";
    let start_at = (now_ms() + 1_500).to_string();
    let a = scenario.spawn("start", run_id, &[("CHILD_START_AT", start_at.clone())]);
    let b = scenario.spawn("start", run_id, &[("CHILD_START_AT", start_at)]);
    let (a, b) = (finish(a, "process A"), finish(b, "process B"));
    // Both get the output: one executed the run, the other waited for its lease and replayed.
    assert_eq!((line(&a, "RESULT"), line(&b, "RESULT")), ("14", "14"), "A:\n{a}\nB:\n{b}");
    for step in STEPS {
        assert_eq!(
            scenario.count(step),
            1,
            "step `{step}` ran {} times across both processes",
            scenario.count(step)
        );
        assert_eq!(scenario.count(&format!("{step}.started")), 1, "step `{step}` started more than once");
    }
    println!("markers: {:?}", scenario.counts());
}

#[test]
fn a_worker_killed_mid_step_is_recovered_by_another_process() {
    let Some(scenario) = Scenario::new() else { return };
    let run_id = "order:2002";
    let mut victim = scenario.spawn(
        "start",
        run_id,
        &[("CHILD_START_AT", now_ms().to_string()), ("CHILD_HANG_IN", "ship".into())],
    );
    // Wait until the victim is inside the third step, then kill it without warning.
    let deadline = Instant::now() + CHILD_DEADLINE;
    while scenario.count("ship.started") == 0 {
        assert!(Instant::now() < deadline, "the worker never reached step `ship`");
        assert!(victim.try_wait().unwrap().is_none(), "the worker exited before it was killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed_at = Instant::now();
    // SIGKILL: no destructor runs, the lease is not released.
    victim.kill().unwrap();
    victim.wait().unwrap();
    assert_eq!((scenario.count("reserve"), scenario.count("charge"), scenario.count("ship")), (1, 1, 0));

    let rescuer = scenario.spawn("recover", run_id, &[]);
    let out = finish(rescuer, "the recovering process");
    assert_eq!(line(&out, "RESULT"), "14", "the recovered run's output");
    println!("recovered {:?} after the kill (lease TTL {LEASE_TTL:?})", killed_at.elapsed());
    // Finished steps replayed; only the step in flight ran again.
    assert_eq!(scenario.count("reserve.started"), 1);
    assert_eq!(scenario.count("charge.started"), 1);
    assert_eq!(scenario.count("ship.started"), 2, "the in-flight step runs again, once");
    assert_eq!(scenario.count("ship"), 1);
    assert_eq!(scenario.count("notify.started"), 1);
}

#[test]
fn a_signal_from_another_process_wakes_the_waiting_run() {
    let Some(scenario) = Scenario::new() else { return };
    let run_id = "approval:3003";
    let waiter = scenario.spawn("wait_signal", run_id, &[]);
    let sender = scenario.spawn("deliver", run_id, &[]);
    let sent: i64 = line(&finish(sender, "the delivering process"), "SENT").parse().unwrap();
    let woke: i64 = line(&finish(waiter, "the waiting process"), "WOKE").parse().unwrap();
    println!("signal latency across processes: {} ms (delivery to the run resuming)", woke - sent);
}
