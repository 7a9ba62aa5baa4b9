//! A server on a loopback port over a memory store, a workflow that waits for an approval, and
//! raw HTTP/1.1 requests whose every header, `Host` included, is exactly the test's.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use durably_core::{Error, MemoryStore, RunStatus, Workflow, signal, step};
use durably_server::{Auth, ServerConfig, Token};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const TOKEN: &str = "test-token-0123456789-abcdef";

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends one request to `addr` with exactly `headers` (plus `Host: addr` unless they name a
/// host, and a `Content-Length`) and reads the whole reply.
pub async fn send(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(req.as_bytes()).await.unwrap();
    // A server that refuses a large body may close before reading all of it.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Reply { status, headers, body: body.to_owned() }
}

/// The headers of an authenticated JSON request from a script.
pub fn authed() -> Vec<(&'static str, &'static str)> {
    vec![("Authorization", BEARER), ("Content-Type", "application/json")]
}

pub const BEARER: &str = "Bearer test-token-0123456789-abcdef";

#[derive(Debug, Deserialize)]
struct Decision {
    approved: bool,
}

/// An engine with the workflow `approval` registered: a `draft` step, then a wait on
/// `manager-approval`, then `published` or `held`.
pub fn engine() -> Workflow {
    let wf = Workflow::builder("server-tests").store(MemoryStore::new()).default_retries(0).build();
    wf.register_fn("approval", |_ctx, title: String| async move {
        let draft = step("draft", move || {
            let title = title.clone();
            async move { Ok::<_, std::io::Error>(format!("draft of {title}")) }
        })
        .await?;
        let d: Decision = signal("manager-approval").await?;
        Ok::<_, Error>(if d.approved { format!("published {draft}") } else { format!("held {draft}") })
    });
    wf
}

pub struct Server {
    pub addr: String,
    pub wf: Workflow,
}

/// Serves `wf` on a loopback port with the test token, configured further by `more`.
pub async fn serve_with(wf: Workflow, more: impl FnOnce(ServerConfig) -> ServerConfig) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bound = listener.local_addr().unwrap();
    let config = more(ServerConfig::new(bound, Auth::Token(Token::new(TOKEN).unwrap())).unwrap());
    tokio::spawn(durably_server::serve(listener, durably_server::router(wf.clone(), config)));
    Server { addr: bound.to_string(), wf }
}

pub async fn serve(wf: Workflow) -> Server {
    serve_with(wf, |c| c).await
}

/// Waits (bounded) until run `run_id` has `status`.
pub async fn wait_for(wf: &Workflow, run_id: &str, status: RunStatus) {
    for _ in 0..1000 {
        if wf.get_run(run_id).await.unwrap().is_some_and(|r| r.status == status) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("run {run_id} never became {status}: {:?}", wf.get_run(run_id).await.unwrap());
}

/// A server whose run `waiting-1` of `approval` waits for `manager-approval`.
pub async fn with_waiting_run() -> Server {
    let s = serve(engine()).await;
    let r = send(
        &s.addr,
        "POST",
        "/api/runs",
        &authed(),
        br#"{"workflow":"approval","run_id":"waiting-1","input":"Q3"}"#,
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    wait_for(&s.wf, "waiting-1", RunStatus::Waiting).await;
    s
}
