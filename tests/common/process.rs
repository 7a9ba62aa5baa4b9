//! Helpers for tests with real OS processes sharing one store.
//!
//! A test re-executes its own test binary as a child running one `#[ignore]`d test function
//! (`ChildProcess::spawn("child_fn", envs)`), tells it which store to open through the
//! `DURABLY_TEST_STORE` variable (a [`StoreSpec`]), and watches what its step bodies did
//! through an append-only [`ExecLog`]. Include it with
//! `#[path = "common/process.rs"] mod process;`.
//!
//! Store specs (`StoreSpec::to_env` / `open_store`):
//! - `sqlite:<path>` — a SQLite file;
//! - `redis:<url>#<prefix>` — with the `redis` feature;
//! - `postgres:<url>#<schema>` — with the `postgres` feature.
#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use durably::store::prelude::*;

/// The variable that carries the store spec to a child.
pub const STORE_ENV: &str = "DURABLY_TEST_STORE";

/// Which store the processes of a test share.
#[derive(Clone, Debug)]
pub enum StoreSpec {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A Redis server and a key prefix of this test's own.
    Redis { url: String, prefix: String },
    /// A PostgreSQL database and a schema of this test's own.
    Postgres { url: String, schema: String },
}

impl StoreSpec {
    /// The spec as an environment value (see the module docs).
    pub fn to_env(&self) -> String {
        match self {
            StoreSpec::Sqlite(path) => format!("sqlite:{}", path.display()),
            StoreSpec::Redis { url, prefix } => format!("redis:{url}#{prefix}"),
            StoreSpec::Postgres { url, schema } => format!("postgres:{url}#{schema}"),
        }
    }

    /// Parses [`to_env`](Self::to_env)'s form.
    pub fn parse(text: &str) -> StoreSpec {
        let (kind, rest) = text.split_once(':').unwrap_or_else(|| panic!("bad store spec `{text}`"));
        let with_namespace = || {
            let (url, ns) =
                rest.rsplit_once('#').unwrap_or_else(|| panic!("store spec `{text}` lacks `#<namespace>`"));
            (url.to_owned(), ns.to_owned())
        };
        match kind {
            "sqlite" => StoreSpec::Sqlite(PathBuf::from(rest)),
            "redis" => {
                let (url, prefix) = with_namespace();
                StoreSpec::Redis { url, prefix }
            }
            "postgres" => {
                let (url, schema) = with_namespace();
                StoreSpec::Postgres { url, schema }
            }
            other => panic!("unknown store kind `{other}` in `{text}`"),
        }
    }

    /// The spec a child was given.
    pub fn from_env() -> StoreSpec {
        StoreSpec::parse(&std::env::var(STORE_ENV).unwrap_or_else(|_| panic!("{STORE_ENV} is not set")))
    }

    /// Opens the store.
    pub async fn open(&self) -> Arc<dyn Store> {
        match self {
            StoreSpec::Sqlite(path) => {
                Arc::new(durably::SqliteStore::open(path).await.expect("open the SQLite store"))
            }
            #[cfg(feature = "redis")]
            StoreSpec::Redis { url, prefix } => Arc::new(
                durably::redis::RedisStore::builder(url.clone())
                    .prefix(prefix.clone())
                    .connect()
                    .await
                    .expect("connect to Redis"),
            ),
            #[cfg(feature = "postgres")]
            StoreSpec::Postgres { url, schema } => Arc::new(
                durably::postgres::PostgresStore::builder(url.clone())
                    .schema(schema.clone())
                    .connect()
                    .await
                    .expect("connect to PostgreSQL"),
            ),
            #[allow(unreachable_patterns)]
            other => panic!("this test binary was built without the feature for {other:?}"),
        }
    }
}

/// A child process running one ignored test function of the current test binary. Its stdout
/// and stderr go to files, shown when the test fails.
pub struct ChildProcess {
    name: String,
    child: std::process::Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl ChildProcess {
    /// Starts `test_fn` (an `#[ignore]`d test of this binary, matched exactly) with `envs`; its
    /// output goes to files in `dir`, named after `label`.
    pub fn spawn(test_fn: &str, label: &str, dir: &Path, envs: &[(&str, String)]) -> ChildProcess {
        let stdout = dir.join(format!("{label}.stdout"));
        let stderr = dir.join(format!("{label}.stderr"));
        let mut cmd = Command::new(std::env::current_exe().expect("current test binary"));
        cmd.args(["--exact", test_fn, "--ignored", "--nocapture", "--test-threads", "1"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("child stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("child stderr file"));
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn the child process");
        ChildProcess { name: label.to_owned(), child, stdout, stderr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the child has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("poll the child").is_none()
    }

    /// Kills the child with SIGKILL (no destructor, no flush: a crash) and reaps it.
    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What the child printed.
    pub fn output(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!(
            "--- {} stdout ---\n{}\n--- {} stderr ---\n{}",
            self.name,
            read(&self.stdout),
            self.name,
            read(&self.stderr)
        )
    }

    /// Waits up to `timeout` for the child to exit successfully; panics with its output if it
    /// fails or hangs (then it is killed).
    pub fn wait_success(mut self, timeout: Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the child") {
                assert!(status.success(), "child `{}` failed with {status}\n{}", self.name, self.output());
                return;
            }
            if start.elapsed() > timeout {
                self.sigkill();
                panic!("child `{}` did not finish within {timeout:?}\n{}", self.name, self.output());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ChildProcess {
    /// A test that panics does not leave children behind.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An append-only log of what step bodies executed, shared by processes: one line per entry,
/// each written with one `write` on an `O_APPEND` file and synced, so entries of concurrent
/// processes never interleave and survive a SIGKILL right after.
#[derive(Clone, Debug)]
pub struct ExecLog(pub PathBuf);

impl ExecLog {
    pub fn new(path: impl Into<PathBuf>) -> ExecLog {
        ExecLog(path.into())
    }

    pub fn append(&self, entry: &str) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.0)?;
        f.write_all(format!("{entry}\n").as_bytes())?;
        f.sync_all()
    }

    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.0).unwrap_or_default().lines().map(str::to_owned).collect()
    }

    /// How many lines equal `entry`.
    pub fn count(&self, entry: &str) -> usize {
        self.lines().iter().filter(|l| *l == entry).count()
    }
}

/// Polls `cond` every 5 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The URL of a service for a test, from `var` or `default`, or `None` (skip, printing why)
/// when nothing answers at `addr` and `DURABLY_SKIP_SERVICES=1` allows skipping; otherwise a
/// missing server fails the test.
pub fn service(var: &str, default: &str, addr: &str) -> Option<String> {
    let url = std::env::var(var).unwrap_or_else(|_| default.to_owned());
    let addr: std::net::SocketAddr = addr.parse().expect("a socket address");
    let up = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok();
    if !up && std::env::var("DURABLY_SKIP_SERVICES").as_deref() == Ok("1") {
        eprintln!("skipped: nothing answers at {addr} ({var}) and DURABLY_SKIP_SERVICES=1");
        return None;
    }
    assert!(up, "no server answers at {addr}: start it (see .ci/run) or set DURABLY_SKIP_SERVICES=1");
    Some(url)
}
