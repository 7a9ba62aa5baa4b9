//! A server on a loopback port over a memory store, a workflow that waits for an approval, and
//! raw HTTP/1.1 requests whose every header, `Host` included, is exactly the test's.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use durably_core::{Error, MemoryStore, Queue, RunStatus, WorkerHandle, Workflow, signal, step};
use durably_server::{Auth, ServerConfig, Token};
use serde::Deserialize;
use serde_json::Value;

pub const TOKEN: &str = "test-token-0123456789-abcdef";

pub use durably_testkit::raw_http::Reply;

/// One request with exactly `headers` (see `durably_testkit::raw_http`).
pub async fn send(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    durably_testkit::raw_http::send(addr, method, path, headers, body).await.unwrap()
}

/// The body of `r` as JSON.
pub fn json(r: &Reply) -> Value {
    r.json().unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.body))
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

/// An engine with the queue `default` and the workflow `approval` registered: a `draft` step,
/// then a wait on `manager-approval`, then `published` or `held`.
pub fn engine() -> Workflow {
    let wf = Workflow::builder("server-tests").store(MemoryStore::new()).default_retries(0).build();
    wf.add_queue(Queue::new(durably_server::DEFAULT_QUEUE)).unwrap();
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
    /// The queue worker executing the runs the API enqueues.
    pub worker: Option<WorkerHandle>,
}

/// Serves `wf` on a loopback port with the test token, configured further by `more`.
pub async fn serve_with(wf: Workflow, more: impl FnOnce(ServerConfig) -> ServerConfig) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bound = listener.local_addr().unwrap();
    let config = more(ServerConfig::new(bound, Auth::Token(Token::new(TOKEN).unwrap())).unwrap());
    tokio::spawn(durably_server::serve(listener, durably_server::router(wf.clone(), config)));
    let has_queue = !wf.queues().is_empty();
    let worker = has_queue.then(|| wf.queue_worker([durably_server::DEFAULT_QUEUE]).start().unwrap());
    Server { addr: bound.to_string(), wf, worker }
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
