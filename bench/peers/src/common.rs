//! What the peers' scenarios share: the targets (a SQLite file or a PostgreSQL schema of their
//! own), the probe the steps run reports through, and the first execution in a runtime of its
//! own that is then dropped, as a crashed process's is.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// The application version both engines of a steps round run under, so that the second one
/// recovers what the first left.
pub const APP_VERSION: &str = "durably-peers";

/// What a step of the steps run returns (durably-bench's `StepOut`, python-durable's
/// `{"i": i, "ok": true}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepOut {
    pub i: u64,
    pub ok: bool,
}

/// What a task of `flow` returns (durably-bench's `KJ`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KJ {
    pub k: u64,
    pub j: u64,
}

/// A peer and its store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Peer {
    /// durare 0.5 on a SQLite file (its own settings: WAL, synchronous=NORMAL).
    DurareSqlite,
    /// durare 0.5 on PostgreSQL, in a schema of its own.
    DurarePostgres,
    /// dbos 0.5 on PostgreSQL, in a schema of its own.
    DbosPostgres,
}

impl Peer {
    /// The store label of its records.
    pub fn label(self) -> &'static str {
        match self {
            Peer::DurareSqlite => "durare-sqlite",
            Peer::DurarePostgres => "durare-postgres",
            Peer::DbosPostgres => "dbos-postgres",
        }
    }

    /// The library, as its records name it.
    pub fn lib(self) -> &'static str {
        match self {
            Peer::DurareSqlite | Peer::DurarePostgres => "durare 0.5",
            Peer::DbosPostgres => "dbos 0.5",
        }
    }
}

/// Where one scenario (or one round of it) keeps its data: a fresh SQLite file or a fresh
/// PostgreSQL schema, removed by [`Target::cleanup`].
#[derive(Debug, Clone)]
pub struct Target {
    pub peer: Peer,
    /// The SQLite file (durare-sqlite).
    pub path: PathBuf,
    /// The PostgreSQL server (the *-postgres peers).
    pub url: String,
    /// The schema of this target on the server.
    pub schema: String,
}

impl Target {
    pub fn fresh(peer: Peer, dir: &Path, url: &str, scenario: &str) -> anyhow::Result<Target> {
        let tag = scenario.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
        let path = dir.join(format!("{}-{tag}.db", peer.label()));
        remove_db(&path)?;
        Ok(Target {
            peer,
            path,
            url: url.to_owned(),
            schema: format!("durably_peers_{}_{}_{tag}", std::process::id(), peer.label().replace('-', "_")),
        })
    }

    /// `sqlite://` URL of the file.
    pub fn sqlite_url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    /// Removes the file, or drops the schema and everything in it.
    pub async fn cleanup(&self) -> anyhow::Result<()> {
        match self.peer {
            Peer::DurareSqlite => remove_db(&self.path),
            Peer::DurarePostgres | Peer::DbosPostgres => {
                use sqlx::Connection as _;
                let mut conn = sqlx::PgConnection::connect(&self.url)
                    .await
                    .with_context(|| format!("connecting to {} to drop {}", self.url, self.schema))?;
                sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema))
                    .execute(&mut conn)
                    .await
                    .with_context(|| format!("dropping schema {}", self.schema))?;
                conn.close().await.ok();
                Ok(())
            }
        }
    }
}

/// Removes a SQLite file and its `-wal` / `-shm` companions.
pub fn remove_db(path: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", PathBuf::from(p).display())),
        }
    }
    Ok(())
}

/// What the body of a steps run saw in one execution.
#[derive(Debug, Clone)]
pub struct Seen {
    /// From the body's first line to its last step's result.
    pub body: Duration,
    /// Each step's latency.
    pub lat: Vec<Duration>,
    /// The sum of the steps' values.
    pub total: u64,
}

/// Shared by the bench and the steps workflow's body (which every execution of it captures).
#[derive(Debug, Default)]
pub struct StepsProbe {
    /// Set for the first execution: after its last step the body waits forever, so that the
    /// run is neither completed nor failed when its runtime is dropped (a crash).
    pub stop: AtomicBool,
    /// Step bodies executed, to check that a replay executes none.
    pub executed: AtomicU64,
    seen: Mutex<Option<Seen>>,
    notify: Notify,
}

impl StepsProbe {
    /// What the body does after its last step: reports what it saw, then, on the first
    /// execution, waits forever. The flag is read *before* the report: once the bench has the
    /// report it may drop the first runtime and clear the flag for the replay, and a body that
    /// read the flag after that would complete the run it was meant to abandon.
    pub async fn report_then_stop_if_asked(&self, seen: Seen) {
        let stop = self.stop.load(Ordering::SeqCst);
        self.report(seen);
        if stop {
            std::future::pending::<()>().await;
        }
    }

    /// Hands `seen` to [`StepsProbe::wait`].
    pub fn report(&self, seen: Seen) {
        if let Ok(mut slot) = self.seen.lock() {
            *slot = Some(seen);
        }
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// Waits for the body's report, at most `limit`.
    pub async fn wait(&self, limit: Duration) -> anyhow::Result<Seen> {
        let waiting = async {
            loop {
                let notified = self.notify.notified();
                if let Some(seen) = self.seen.lock().map_err(|_| anyhow!("probe poisoned"))?.take() {
                    return anyhow::Ok(seen);
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, waiting)
            .await
            .map_err(|_| anyhow!("the steps run's body did not finish within {limit:?}"))?
    }

    /// Waits for the body's report, or fails soon after `ended` (the run's end, as its handle
    /// sees it) if the run ended without one; returns `ended`'s value if it came first.
    pub async fn wait_or_ended<T: std::fmt::Debug>(
        &self,
        limit: Duration,
        ended: impl Future<Output = T>,
    ) -> anyhow::Result<(Seen, Option<T>)> {
        tokio::pin!(ended);
        tokio::select! {
            biased;
            seen = self.wait(limit) => Ok((seen?, None)),
            out = &mut ended => match self.wait(Duration::from_millis(500)).await {
                // The body reported just before its run ended.
                Ok(seen) => Ok((seen, Some(out))),
                Err(_) => Err(anyhow!("the run ended without its body reaching its last step: {out:?}")),
            },
        }
    }
}

/// Runs `f` on a Tokio runtime of its own, on a thread of its own, then drops that runtime with
/// whatever tasks it still has: what a process that crashes leaves behind, without the process.
pub async fn in_runtime_then_crash<T, F, Fut>(f: F) -> anyhow::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<T>>,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("first-execution".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| {
                    let r = rt.block_on(f());
                    // Waits for the workers to stop, which drops every task still there.
                    rt.shutdown_timeout(Duration::from_secs(10));
                    r
                });
            let _ = tx.send(result);
        })
        .context("starting the first execution's thread")?;
    rx.await.map_err(|_| anyhow!("the first execution's thread ended without a result"))?
}

/// The steps run's expected sum: 0 + 1 + … + (n - 1).
pub fn triangle(n: u64) -> u64 {
    n * n.saturating_sub(1) / 2
}

/// Errors as a short string for `error_kinds`.
pub fn short(s: &str) -> String {
    s.chars().take(160).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// Sets its flag when dropped.
    struct DropFlag(Arc<AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn the_first_execution_s_tasks_are_dropped_with_its_runtime() {
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = dropped.clone();
        let got = in_runtime_then_crash(move || async move {
            // A workflow body waiting forever after its last step, as the steps run's does.
            tokio::spawn(async move {
                let _guard = DropFlag(flag);
                std::future::pending::<()>().await;
            });
            tokio::task::yield_now().await;
            Ok(7)
        })
        .await
        .unwrap();
        assert_eq!(got, 7);
        assert!(dropped.load(Ordering::SeqCst), "the pending task did not outlive its runtime");
    }

    #[tokio::test]
    async fn the_probe_hands_over_what_the_body_saw_once() {
        let probe = Arc::new(StepsProbe::default());
        let p = probe.clone();
        tokio::spawn(async move { p.report(Seen { body: Duration::ZERO, lat: vec![], total: triangle(4) }) });
        let seen = probe.wait(Duration::from_secs(10)).await.unwrap();
        assert_eq!(seen.total, 6);
        assert!(probe.wait(Duration::from_millis(50)).await.is_err(), "a report is taken once");
    }
}
