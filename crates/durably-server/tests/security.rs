//! The attacks of rule 21 of docs/design.md against the API: a missing or wrong token (401), a
//! foreign `Host` (403), cross-origin form and `text/plain` posts (403), an oversized body
//! (413). Each is refused before any handler runs: the store is the same afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{BEARER, Reply, Server, TOKEN, authed, send, serve_with, with_waiting_run};
use durably_core::{RunFilter, RunStatus, Workflow};
use durably_server::{Auth, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every request that changes something, with a body it would accept.
const WRITES: [(&str, &str); 6] = [
    ("/api/runs", r#"{"workflow":"approval","run_id":"attack-1","input":"x"}"#),
    ("/api/runs/waiting-1/approve", "{}"),
    ("/api/runs/waiting-1/reject", r#"{"reason":"no"}"#),
    ("/api/runs/waiting-1/cancel", "{}"),
    ("/api/runs/waiting-1/signals/manager-approval", r#"{"approved":true}"#),
    ("/api/runs/waiting-1/fork", r#"{"from_step":"draft","new_run_id":"attack-fork"}"#),
];

/// The store holds `waiting-1`, still waiting on `manager-approval`, and nothing else.
async fn unchanged(wf: &Workflow) {
    let run = wf.get_run("waiting-1").await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Waiting, "the run was changed: {run:?}");
    assert!(wf.store().list_signals("waiting-1").await.unwrap().is_empty(), "a signal was delivered");
    let ids: Vec<String> =
        wf.list_runs(&RunFilter::new()).await.unwrap().into_iter().map(|r| r.run_id).collect();
    assert_eq!(ids, ["waiting-1"], "a run was created");
}

fn no_secret(r: &Reply, what: &str) {
    assert!(!r.body.contains(TOKEN), "{what}: the token is echoed: {}", r.body);
    for (k, v) in &r.headers {
        assert!(!v.contains(TOKEN), "{what}: the token is in header {k}");
    }
}

fn unauthorized(r: &Reply, what: &str) {
    assert_eq!(r.status, 401, "{what}: {} {}", r.status, r.body);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{what}");
    assert!(!common::json(r)["error"].as_str().unwrap().is_empty(), "{what}: says why");
    no_secret(r, what);
}

fn forbidden(r: &Reply, what: &str) {
    assert_eq!(r.status, 403, "{what}: {} {}", r.status, r.body);
    assert!(r.body.starts_with("refused: "), "{what}: {}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_token_is_401_and_changes_nothing() {
    let s = with_waiting_run().await;
    let wrong = format!("Bearer {}x", TOKEN);
    let prefix = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
    let basic = format!("Basic {TOKEN}");
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("no token", vec![]),
        ("wrong token", vec![("Authorization", wrong.as_str())]),
        ("a prefix of the token", vec![("Authorization", prefix.as_str())]),
        ("an empty bearer", vec![("Authorization", "Bearer ")]),
        ("the token as Basic", vec![("Authorization", basic.as_str())]),
        ("the bare token", vec![("Authorization", TOKEN)]),
        ("two headers", vec![("Authorization", wrong.as_str()), ("Authorization", BEARER)]),
    ];
    for (what, auth) in &cases {
        let mut headers = auth.clone();
        headers.push(("Content-Type", "application/json"));
        for (path, body) in WRITES {
            let r = send(&s.addr, "POST", path, &headers, body.as_bytes()).await;
            unauthorized(&r, &format!("{what}: POST {path}"));
        }
        for path in
            ["/api/runs", "/api/runs/waiting-1", "/api/sessions", "/api/workflows", "/openapi.json", "/"]
        {
            let r = send(&s.addr, "GET", path, auth, b"").await;
            unauthorized(&r, &format!("{what}: GET {path}"));
            assert!(!r.body.contains("draft of"), "{what}: GET {path} shows run data: {}", r.body);
        }
    }
    unchanged(&s.wf).await;
    // The right token passes.
    let r = send(&s.addr, "GET", "/api/runs/waiting-1", &[("Authorization", BEARER)], b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    no_secret(&r, "an authenticated read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_is_403_even_with_the_token() {
    let s = with_waiting_run().await;
    let port = s.addr.rsplit(':').next().unwrap();
    let rebound = format!("evil.example:{port}");
    for host in [rebound.as_str(), "evil.example", "127.0.0.1", "localhost.evil.example"] {
        for path in ["/api/runs", "/api/runs/waiting-1", "/openapi.json"] {
            let r = send(&s.addr, "GET", path, &[("Host", host), ("Authorization", BEARER)], b"").await;
            forbidden(&r, &format!("GET {path} Host {host}"));
            assert!(!r.body.contains("waiting-1"), "no run data behind a foreign Host: {}", r.body);
        }
        let origin = format!("http://{host}");
        let mut headers = authed();
        headers.extend([("Host", host), ("Origin", origin.as_str()), ("Sec-Fetch-Site", "same-origin")]);
        for (path, body) in WRITES {
            let r = send(&s.addr, "POST", path, &headers, body.as_bytes()).await;
            forbidden(&r, &format!("POST {path} Host {host}"));
        }
    }
    unchanged(&s.wf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_origin_form_and_text_plain_posts_are_403() {
    let s = with_waiting_run().await;
    let own = format!("http://{}", s.addr);
    // With the token too: a leaked token does not make a cross-site page's post acceptable.
    for with_token in [false, true] {
        let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
            (
                "a cross-site form",
                vec![
                    ("Origin", "https://evil.example"),
                    ("Sec-Fetch-Site", "cross-site"),
                    ("Content-Type", "application/x-www-form-urlencoded"),
                ],
            ),
            (
                "a cross-site text/plain form",
                vec![
                    ("Origin", "https://evil.example"),
                    ("Sec-Fetch-Site", "cross-site"),
                    ("Content-Type", "text/plain"),
                ],
            ),
            ("a multipart form", vec![("Content-Type", "multipart/form-data; boundary=x")]),
            ("text/plain from a script", vec![("Content-Type", "text/plain")]),
            ("no content type", vec![]),
            (
                "a foreign origin with JSON",
                vec![("Origin", "https://evil.example"), ("Content-Type", "application/json")],
            ),
            ("same-site JSON", vec![("Sec-Fetch-Site", "same-site"), ("Content-Type", "application/json")]),
            (
                "the own origin marked cross-site",
                vec![
                    ("Origin", own.as_str()),
                    ("Sec-Fetch-Site", "cross-site"),
                    ("Content-Type", "application/json"),
                ],
            ),
        ];
        for (what, mut headers) in cases {
            if with_token {
                headers.push(("Authorization", BEARER));
            }
            for (path, body) in WRITES {
                let r = send(&s.addr, "POST", path, &headers, body.as_bytes()).await;
                forbidden(&r, &format!("{what} (token: {with_token}): POST {path}"));
            }
        }
        for method in ["PUT", "PATCH", "DELETE", "OPTIONS"] {
            let r = send(
                &s.addr,
                method,
                "/api/runs/waiting-1/cancel",
                &[("Origin", "https://evil.example")],
                b"",
            )
            .await;
            forbidden(&r, method);
            assert!(r.header("access-control-allow-origin").is_none(), "{method}: no CORS grant");
        }
    }
    unchanged(&s.wf).await;
}

/// Sends `body` as one chunk of a chunked request: no `Content-Length` to refuse it by.
async fn send_chunked(addr: &str, path: &str, body: &[u8]) -> u16 {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {BEARER}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req.extend_from_slice(b"\r\n0\r\n\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(&req).await;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw);
    text.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_413_and_changes_nothing() {
    let s = with_waiting_run().await;
    // Over the default 1 MiB, declared in Content-Length: refused before it is read.
    let padding = "x".repeat(durably_server::DEFAULT_BODY_LIMIT);
    let big = format!(r#"{{"workflow":"approval","run_id":"attack-1","input":"{padding}"}}"#);
    for (path, _) in WRITES {
        let r = send(&s.addr, "POST", path, &authed(), big.as_bytes()).await;
        assert_eq!(r.status, 413, "POST {path}: {}", r.body);
        assert!(common::json(&r)["error"].as_str().unwrap().contains("1048576 bytes"), "{}", r.body);
    }
    unchanged(&s.wf).await;

    // Without a length (chunked), the body is cut at the configured limit while it is read.
    let small = serve_with(common::engine(), |c| c.body_limit(1024)).await;
    let body = format!(r#"{{"workflow":"approval","run_id":"attack-2","input":"{}"}}"#, "y".repeat(2048));
    assert_eq!(send_chunked(&small.addr, "/api/runs", body.as_bytes()).await, 413);
    let body = format!(r#"{{"approved":true,"pad":"{}"}}"#, "y".repeat(2048));
    assert_eq!(send_chunked(&small.addr, "/api/runs/x/signals/s", body.as_bytes()).await, 413);
    assert!(small.wf.list_runs(&RunFilter::new()).await.unwrap().is_empty());
    // Under it, the same request works.
    let ok = br#"{"workflow":"approval","run_id":"fits","input":"y"}"#;
    assert_eq!(send_chunked(&small.addr, "/api/runs", ok).await, 202);
}

/// Declares a body of `declared` bytes, sends none of it and reads the answer: a server that
/// waited for the body before refusing it would never answer.
async fn send_declared(addr: &str, path: &str, declared: usize) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {BEARER}\r\nContent-Type: application/json\r\n\
         Content-Length: {declared}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .expect("no answer without the body: the server waits for it")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).unwrap_or_else(|| panic!("no answer: {text:?}")).parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_of_several_megabytes_is_413_before_it_is_read() {
    let s = with_waiting_run().await;
    // 8 MiB announced: refused on the header, the server never reads (or buffers) the rest.
    for (path, _) in WRITES {
        let (status, body) = send_declared(&s.addr, path, 8 * 1024 * 1024).await;
        assert_eq!(status, 413, "POST {path}: {body}");
        assert!(body.contains("1048576 bytes"), "{body}");
    }
    unchanged(&s.wf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx() {
    let s = with_waiting_run().await;
    let cases: [(&str, &str, u16, &str); 13] = [
        ("/api/runs", "{oops", 400, "not valid"),
        ("/api/runs", r#"{"workflow":"approval"}"#, 400, "missing field `run_id`"),
        ("/api/runs", r#"{"workflow":"approval","run_id":"a","extra":1}"#, 400, "unknown field `extra`"),
        ("/api/runs", r#"{"workflow":"nope","run_id":"a"}"#, 404, "no workflow is registered as `nope`"),
        ("/api/runs", r#"{"workflow":"approval","run_id":"a","input":42}"#, 400, "run `a`"),
        ("/api/runs", r#"{"workflow":"approval","run_id":"a","queue":"nope"}"#, 400, "no queue `nope`"),
        ("/api/runs", r#"{"workflow":"approval","run_id":"a\u0000b"}"#, 400, "contains a control character"),
        ("/api/runs", r#"{"workflow":"approval","run_id":""}"#, 400, "run_id is empty"),
        ("/api/runs/ghost/approve", "{}", 404, "no run with id `ghost`"),
        ("/api/runs/ghost/cancel", "", 404, "no run with id `ghost`"),
        ("/api/runs/ghost/signals/x", "1", 404, "no run with id `ghost`"),
        (
            "/api/runs/waiting-1/signals/other",
            "{oops",
            400,
            "the payload of signal `other` for run `waiting-1` is not JSON",
        ),
        ("/api/runs/waiting-1/fork", r#"{"from_step":"nope"}"#, 400, "run `waiting-1` has no step `nope`"),
    ];
    for (path, body, status, says) in cases {
        let r = send(&s.addr, "POST", path, &authed(), body.as_bytes()).await;
        assert_eq!(r.status, status, "POST {path} {body}: {}", r.body);
        let error = common::json(&r)["error"].as_str().unwrap().to_owned();
        assert!(error.contains(says), "POST {path} {body}: {error}");
    }
    for (path, status, says) in [
        ("/api/runs/ghost", 404, "no run with id `ghost`"),
        ("/api/runs?status=bogus", 400, "`bogus` is not one of"),
        ("/api/runs?limit=0", 400, "limit `0`"),
        ("/api/runs?limit=many", 400, "limit `many`"),
        ("/api/sessions/bot/ghost", 404, "no session `ghost` of agent `bot`"),
        ("/api/nothing", 404, "no route `/api/nothing`"),
    ] {
        let r = send(&s.addr, "GET", path, &[("Authorization", BEARER)], b"").await;
        assert_eq!(r.status, status, "GET {path}: {}", r.body);
        assert!(common::json(&r)["error"].as_str().unwrap().contains(says), "GET {path}: {}", r.body);
    }
    unchanged(&s.wf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers() {
    let s = serve_with(common::engine(), |c| c.body_limit(64)).await;
    let big = "x".repeat(100);
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a [u8]);
    let cases: Vec<Case<'_>> = vec![
        ("GET", "/api/runs", vec![("Authorization", BEARER)], b""),
        ("GET", "/openapi.json", vec![("Authorization", BEARER)], b""),
        ("GET", "/api/runs/ghost", vec![("Authorization", BEARER)], b""),
        ("GET", "/api/runs", vec![], b""),
        ("GET", "/api/runs", vec![("Host", "evil.example")], b""),
        ("POST", "/api/runs", vec![("Authorization", BEARER), ("Content-Type", "text/plain")], b""),
        ("POST", "/api/runs", authed(), big.as_bytes()),
        ("POST", "/api/runs", authed(), b"{oops"),
    ];
    for (method, path, headers, body) in cases {
        let r = send(&s.addr, method, path, &headers, body).await;
        let what = format!("{method} {path} {headers:?} ({})", r.status);
        let csp = r.header("content-security-policy").unwrap_or_else(|| panic!("{what}: no CSP"));
        for directive in ["default-src 'none'", "frame-ancestors 'none'", "form-action 'none'"] {
            assert!(csp.contains(directive), "{what}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{what}: {csp}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{what}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_only_on_loopback_and_the_host_is_still_checked() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bound = listener.local_addr().unwrap();
    let config = ServerConfig::new(bound, Auth::InsecureLoopback).unwrap();
    let wf = common::engine();
    tokio::spawn(durably_server::serve(listener, durably_server::router(wf.clone(), config)));
    let s = Server { addr: bound.to_string(), wf, worker: None };
    let r = send(&s.addr, "GET", "/api/workflows", &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(common::json(&r)["workflows"], serde_json::json!(["approval"]));
    let r = send(&s.addr, "GET", "/api/workflows", &[("Host", "evil.example")], b"").await;
    forbidden(&r, "a foreign Host without a token");
    let r = send(
        &s.addr,
        "POST",
        "/api/runs",
        &[("Content-Type", "text/plain")],
        br#"{"workflow":"approval","run_id":"a"}"#,
    )
    .await;
    forbidden(&r, "text/plain without a token");
    assert!(s.wf.list_runs(&RunFilter::new()).await.unwrap().is_empty());
    let err = ServerConfig::new("0.0.0.0:0".parse().unwrap(), Auth::InsecureLoopback).unwrap_err();
    assert!(err.to_string().contains("without a token"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failure_names_the_operation_but_not_the_drivers_error() {
    use durably_testkit::faults::{FaultStore, Op};
    let store = FaultStore::new(durably_core::MemoryStore::new());
    store.fail_from(Op::ListRuns, 1);
    let wf = Workflow::builder("server-tests")
        .store(store)
        .store_retry(durably_core::RetryPolicy::new(0, durably_core::Backoff::default()))
        .build();
    let s = common::serve(wf).await;
    let r = send(&s.addr, "GET", "/api/runs", &[("Authorization", BEARER)], b"").await;
    assert_eq!(r.status, 500, "{}", r.body);
    let error = common::json(&r)["error"].as_str().unwrap().to_owned();
    assert!(error.contains("the store failed during list_runs"), "{error}");
    assert!(!error.contains("injected fault"), "the driver's error stays in the log: {error}");
}
