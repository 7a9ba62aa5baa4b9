//! Shared helpers: the Redis URL, skipping when asked, fresh prefixes cleaned up after a test,
//! and private `redis-server` processes for fault tests.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use durably_redis::RedisStore;
use durably_testkit::Fixture;

/// The shared server's URL: `DURABLY_REDIS_URL`, or the local default.
pub(crate) fn redis_url() -> String {
    std::env::var("DURABLY_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Whether the shared server answers. When it does not: `None` to skip if
/// `DURABLY_SKIP_SERVICES=1`, otherwise a failure naming the server.
pub(crate) fn server_or_skip() -> Option<String> {
    let url = redis_url();
    let answer = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(3)))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
    match answer {
        Ok(_) => Some(url),
        Err(e) if std::env::var("DURABLY_SKIP_SERVICES").as_deref() == Ok("1") => {
            eprintln!("skipped: Redis at {url} does not answer ({e}) and DURABLY_SKIP_SERVICES=1");
            None
        }
        Err(e) => panic!(
            "Redis at {url} does not answer ({e}); start it, point DURABLY_REDIS_URL at one, or set DURABLY_SKIP_SERVICES=1 to skip"
        ),
    }
}

/// A prefix no other test uses.
pub(crate) fn fresh_prefix() -> String {
    format!("durably-test-{}-{:016x}", std::process::id(), fastrand::u64(..))
}

/// Deletes every key under a prefix when dropped.
pub(crate) struct Cleanup {
    pub(crate) url: String,
    pub(crate) prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = delete_prefix(&self.url, &self.prefix);
    }
}

/// Every key under `prefix` (which must hold no glob characters).
pub(crate) fn keys_under(url: &str, prefix: &str) -> redis::RedisResult<Vec<String>> {
    let mut conn = redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(3))?;
    let iter = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("MATCH")
        .arg(format!("{prefix}:*"))
        .arg("COUNT")
        .arg(1000)
        .clone();
    let keys: Vec<String> = iter.iter(&mut conn)?.collect::<Result<_, _>>()?;
    Ok(keys)
}

fn delete_prefix(url: &str, prefix: &str) -> redis::RedisResult<()> {
    let keys = keys_under(url, prefix)?;
    let mut conn = redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(3))?;
    for chunk in keys.chunks(500) {
        redis::cmd("UNLINK").arg(chunk).query::<()>(&mut conn)?;
    }
    Ok(())
}

/// A store on the shared server under a fresh prefix, its keys deleted afterwards; `None` when
/// skipping.
pub(crate) async fn fixture() -> Option<Fixture<RedisStore>> {
    let url = server_or_skip()?;
    let prefix = fresh_prefix();
    let store =
        RedisStore::builder(url.as_str()).prefix(prefix.as_str()).connect().await.expect("connect to Redis");
    Some(Fixture::new(store).guard(Cleanup { url, prefix }))
}

/// A blocking connection for looking at keys directly.
pub(crate) fn raw(url: &str) -> redis::Connection {
    redis::Client::open(url).unwrap().get_connection_with_timeout(Duration::from_secs(3)).unwrap()
}

/// A port nothing listens on right now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `redis-server` of this test's own, without persistence, killed when dropped.
pub(crate) struct PrivateRedis {
    pub(crate) port: u16,
    child: Option<Child>,
    dir: PathBuf,
    extra: Vec<String>,
}

impl PrivateRedis {
    /// Starts one on a free port; `None` (with the reason printed) when `redis-server` is not
    /// installed and services may be skipped.
    pub(crate) fn start() -> Option<PrivateRedis> {
        Self::start_with(&[])
    }

    /// Like [`start`](Self::start), with more `redis-server` arguments.
    pub(crate) fn start_with(args: &[&str]) -> Option<PrivateRedis> {
        let dir = std::env::temp_dir().join(format!("durably-redis-{}", fresh_prefix()));
        std::fs::create_dir_all(&dir).unwrap();
        let extra = args.iter().map(|a| a.to_string()).collect();
        let mut server = PrivateRedis { port: free_port(), child: None, dir, extra };
        match server.spawn() {
            Ok(()) => Some(server),
            Err(e) if std::env::var("DURABLY_SKIP_SERVICES").as_deref() == Ok("1") => {
                eprintln!("skipped: cannot start redis-server ({e}) and DURABLY_SKIP_SERVICES=1");
                None
            }
            Err(e) => panic!("cannot start a private redis-server on port {}: {e}", server.port),
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let ping = redis::Client::open(self.url().as_str())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if ping.is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(std::io::Error::other("redis-server did not answer PING within 10 s"))
    }

    /// Kills the server (SIGKILL: no shutdown save) and waits for it to exit.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends the server a signal (`STOP` freezes it, `CONT` resumes it).
    pub(crate) fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("the server runs").id();
        let status = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Starts it again on the same port.
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.spawn().expect("restart the private redis-server");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
