//! The behaviours that need several real OS processes sharing one store (rules 9, 10 and 12 of
//! docs/design.md): two processes starting one run at once execute each step body once in
//! total; a worker killed with SIGKILL inside a step is recovered by another process, which
//! re-executes only that step; a signal delivered from one process wakes the run waiting in
//! another.
//!
//! The children are the test binary itself, started again on the ignored test that
//! [`multiprocess_suite!`] generates beside the scenarios (`multiprocess_child`, matched
//! exactly), with a role and the store's namespace in environment variables. Every step body
//! appends a line to a log file shared by the processes (`start <step> <pid>`,
//! `done <step> <pid>`), so the parent counts how often each body ran across all of them;
//! children report what they got on stdout (`OUTPUT <value>`).
//!
//! The memory store does not run this suite: processes do not share memory.
//!
//! [`multiprocess_suite!`]: crate::multiprocess_suite

// A test suite reports failure by panicking: the workspace's library lints do not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use durably::{Store, Workflow};

mod child;
mod scenarios;

pub use child::child_main;
pub use scenarios::*;

/// The table of scenarios: hands every name, once, to the macro `[$then]` (a path), after the
/// tokens `$args`. [`NAMES`] and [`multiprocess_suite!`] are generated from it. Not public API.
///
/// [`multiprocess_suite!`]: crate::multiprocess_suite
#[doc(hidden)]
#[macro_export]
macro_rules! __multiprocess_table {
    ([$($then:tt)*] { $($args:tt)* }) => {
        $($then)*! { $($args)*
            two_processes_starting_one_run_execute_each_step_once
            a_worker_killed_mid_step_is_recovered_by_another_process_rerunning_only_that_step
            a_signal_from_another_process_wakes_the_waiting_run
            queue_workers_killed_at_random_run_every_run_once_within_the_queue_limits
        }
    };
}

macro_rules! names {
    ($($name:ident)*) => {
        /// The name of every scenario, in the table's order.
        pub const NAMES: &[&str] = &[$(stringify!($name)),*];
    };
}

crate::__multiprocess_table!([names] {});

/// The future [`OpenStore`] returns.
pub type StoreFuture = Pin<Box<dyn Future<Output = Arc<dyn Store>> + Send>>;

/// Opens the store under test on a namespace (a file path, a key prefix, a schema), in the
/// parent and in every child alike. [`multiprocess_suite!`](crate::multiprocess_suite) writes
/// it from its `open(name) = …` argument.
pub type OpenStore = fn(String) -> StoreFuture;

/// The part of a store that one test owns, shared by all its processes: a name the children
/// get (a SQLite file path, a Redis key prefix, a PostgreSQL schema), with values that must
/// outlive the test (a temporary directory, a guard deleting the keys or dropping the schema).
pub struct Namespace {
    name: String,
    // In a mutex only so that the namespace is `Sync`; nothing locks it.
    guards: Mutex<Vec<Box<dyn Any + Send>>>,
}

impl Namespace {
    /// A namespace called `name`, with nothing to clean up.
    pub fn new(name: impl Into<String>) -> Namespace {
        Namespace { name: name.into(), guards: Mutex::new(Vec::new()) }
    }

    /// Keeps `guard` alive until the test is over (every child has exited).
    pub fn guard(self, guard: impl Send + 'static) -> Namespace {
        self.guards.lock().unwrap().push(Box::new(guard));
        self
    }

    /// The name the processes open the store on.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The application name of every engine of the suite.
pub(crate) const APP: &str = "multiprocess";
/// The steps of the pipeline the children run, in order; each returns its name's length.
pub(crate) const STEPS: [&str; 4] = ["extract", "transform", "load", "report"];
/// The pipeline's input; its output is this plus the lengths of the step names.
pub(crate) const INPUT: u64 = 100;
/// How long each step body works, so that concurrent executions would overlap.
pub(crate) const STEP_PAUSE: Duration = Duration::from_millis(150);
/// The lease TTL of the worker that is killed, and of the one that recovers its run.
pub(crate) const KILLED_LEASE: Duration = Duration::from_millis(1_500);
/// The queue of the kill scenario, and its limits.
pub(crate) const QUEUE: &str = "proof";
pub(crate) const QUEUE_CONCURRENCY: u32 = 3;
pub(crate) const QUEUE_PER_KEY: u32 = 1;
/// At most [`RATE_STARTS`] claims per [`RATE_PERIOD`]; the period is shorter than the lease
/// TTL, so a run claimed again after its worker died never has two claims in one window.
pub(crate) const RATE_STARTS: u32 = 8;
pub(crate) const RATE_PERIOD: Duration = Duration::from_millis(1_000);
/// The lease TTL of the queue workers (renewed every third of it).
pub(crate) const QUEUE_LEASE: Duration = Duration::from_millis(1_500);
/// How often a queue worker claims without being woken (it finds lapsed leases this way).
pub(crate) const QUEUE_POLL: Duration = Duration::from_millis(50);
/// How long the side-effect step of a queued run works.
pub(crate) const JOB_PAUSE: Duration = Duration::from_millis(120);

/// `queue` with the kill scenario's limits.
pub(crate) fn queue_limits(queue: durably::Queue) -> durably::Queue {
    queue.concurrency(QUEUE_CONCURRENCY).per_key(QUEUE_PER_KEY).rate(RATE_STARTS, RATE_PERIOD)
}
/// How long any child, or any wait on one, may take before the test gives up.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

/// What the parent tells a child, in environment variables.
pub(crate) mod var {
    pub(crate) const ROLE: &str = "DURABLY_MP_ROLE";
    pub(crate) const NAMESPACE: &str = "DURABLY_MP_NAMESPACE";
    pub(crate) const LOG: &str = "DURABLY_MP_LOG";
    pub(crate) const RUN_ID: &str = "DURABLY_MP_RUN_ID";
    /// The step whose body hangs after logging its start.
    pub(crate) const HANG_AT: &str = "DURABLY_MP_HANG_AT";
    /// A file whose appearance starts the run, so that several children start at once.
    pub(crate) const GO: &str = "DURABLY_MP_GO";
    pub(crate) const PAYLOAD: &str = "DURABLY_MP_PAYLOAD";
}

/// The parent side of one scenario: the store's namespace, a scratch directory for the shared
/// log and the children's output, and how to start children.
pub struct Processes {
    /// The test's name, for messages.
    pub name: String,
    open: OpenStore,
    child_test: String,
    // Dropped before the namespace: nothing of the test is left in the directory that the
    // namespace's guard (for SQLite, the database's directory) removes.
    dir: tempfile::TempDir,
    namespace: Namespace,
}

impl Processes {
    /// The parent of test `name` on `namespace`; `module_path` is `module_path!()` where the
    /// suite was generated, which names the child entry test.
    pub fn new(namespace: Namespace, open: OpenStore, module_path: &str, name: &str) -> Processes {
        // libtest names a test by its module path without the crate's name.
        let child_test = match module_path.split_once("::") {
            Some((_crate, path)) => format!("{path}::multiprocess_child"),
            None => "multiprocess_child".to_owned(),
        };
        let dir = tempfile::tempdir().expect("a scratch directory");
        Processes { name: name.to_owned(), open, child_test, dir, namespace }
    }

    /// The store, opened in this process on the test's namespace.
    pub async fn store(&self) -> Arc<dyn Store> {
        (self.open)(self.namespace.name.clone()).await
    }

    /// An engine on [`store`](Self::store), as an operator's tool would have.
    pub async fn engine(&self) -> Workflow {
        Workflow::builder(APP).shared_store(self.store().await).build()
    }

    /// The log every step body of every child appends to.
    pub(crate) fn log(&self) -> Log {
        Log(self.dir.path().join("steps.log"))
    }

    pub(crate) fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Starts a child in `role` on run `run_id`; its stdout and stderr go to files named after
    /// `label`.
    pub(crate) fn spawn(&self, role: &str, label: &str, run_id: &str, extra: &[(&str, String)]) -> Child {
        let stdout = self.path(&format!("{label}.stdout"));
        let stderr = self.path(&format!("{label}.stderr"));
        let mut cmd = Command::new(std::env::current_exe().expect("the current test binary"));
        cmd.args(["--exact", &self.child_test, "--ignored", "--nocapture", "--test-threads", "1"])
            .env(var::ROLE, role)
            .env(var::NAMESPACE, &self.namespace.name)
            .env(var::LOG, self.log().0)
            .env(var::RUN_ID, run_id)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("a file for the child's stdout"))
            .stderr(std::fs::File::create(&stderr).expect("a file for the child's stderr"));
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let process = cmd.spawn().expect("start a child process");
        Child { label: label.to_owned(), process, stdout, stderr }
    }

    /// Waits until the shared log satisfies `cond`, failing early if one of `children` exits.
    pub(crate) async fn wait_for_log(
        &self,
        what: &str,
        children: &mut [&mut Child],
        cond: impl Fn(&Log) -> bool,
    ) {
        let log = self.log();
        let deadline = Instant::now() + DEADLINE;
        while !cond(&log) {
            for child in children.iter_mut() {
                assert!(
                    child.is_running(),
                    "waiting for {what}: `{}` exited\n{}",
                    child.label,
                    child.output()
                );
            }
            assert!(Instant::now() < deadline, "never saw {what} in the log: {:?}", log.lines());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A child process; killed when dropped, so that a failing test leaves none behind.
pub(crate) struct Child {
    label: String,
    process: std::process::Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Child {
    pub(crate) fn id(&self) -> u32 {
        self.process.id()
    }

    pub(crate) fn is_running(&mut self) -> bool {
        self.process.try_wait().expect("poll a child").is_none()
    }

    /// Kills the child with SIGKILL (no destructor runs, no lease is released: a crash) and
    /// reaps it.
    pub(crate) fn sigkill(&mut self) -> ExitStatus {
        let _ = self.process.kill();
        self.process.wait().expect("reap the killed child")
    }

    /// What the child printed, for failure messages.
    pub(crate) fn output(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!(
            "--- {0} stdout ---\n{1}\n--- {0} stderr ---\n{2}",
            self.label,
            read(&self.stdout),
            read(&self.stderr)
        )
    }

    /// Waits for the child to exit successfully (failing with its output if it fails or
    /// outlives [`DEADLINE`]) and returns its stdout.
    pub(crate) async fn finish(mut self) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.process.try_wait().expect("poll a child") {
                assert!(status.success(), "`{}` failed with {status}\n{}", self.label, self.output());
                return std::fs::read_to_string(&self.stdout).unwrap_or_default();
            }
            if Instant::now() > deadline {
                self.sigkill();
                panic!("`{}` did not finish within {DEADLINE:?}\n{}", self.label, self.output());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if matches!(self.process.try_wait(), Ok(None)) {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}

/// The rest of the line of `stdout` after `tag ` (libtest may print its own text first on the
/// same line).
pub(crate) fn tagged<'a>(stdout: &'a str, tag: &str) -> &'a str {
    let tag = format!("{tag} ");
    stdout
        .lines()
        .find_map(|l| l.split_once(tag.as_str()).map(|(_, rest)| rest.trim()))
        .unwrap_or_else(|| panic!("no `{tag}` line in:\n{stdout}"))
}

/// The log shared by the processes of a test: one line per entry, each written with one
/// `write` on an `O_APPEND` file and synced, so lines of concurrent processes never interleave
/// and survive a SIGKILL right after.
pub(crate) struct Log(pub(crate) PathBuf);

impl Log {
    pub(crate) fn append(&self, line: &str) {
        let mut file =
            std::fs::OpenOptions::new().create(true).append(true).open(&self.0).expect("open the shared log");
        file.write_all(format!("{line}\n").as_bytes()).expect("append to the shared log");
        file.sync_all().expect("sync the shared log");
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.0).unwrap_or_default().lines().map(str::to_owned).collect()
    }

    /// How many lines start with `kind`, per step (the line's second word).
    pub(crate) fn counts(&self, kind: &str) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for line in self.lines() {
            let mut words = line.split(' ');
            if words.next() == Some(kind) {
                *counts.entry(words.next().unwrap_or_default().to_owned()).or_default() += 1;
            }
        }
        counts
    }

    /// How many lines start with the word `kind`.
    pub(crate) fn count(&self, kind: &str) -> usize {
        self.lines().iter().filter(|l| l.split(' ').next() == Some(kind)).count()
    }
}
