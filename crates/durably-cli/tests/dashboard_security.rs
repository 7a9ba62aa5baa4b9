//! The dashboard refuses what a web page in the operator's browser could send it: cross-site
//! requests (a form posting `text/plain`, a request marked `Sec-Fetch-Site: cross-site`, a
//! foreign `Origin`) and DNS rebinding (a `Host` that is not the dashboard's). Each attack gets a
//! 403 and changes nothing in the store; the same request from the dashboard's own page, or
//! from a script sending JSON, still works. Requests are written by hand on a TCP socket so that
//! every header, `Host` included, is exactly the attacker's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::{dashboard, engine, prepare, sqlite};
use durably_core::{RunStatus, Workflow};
use durably_testkit::raw_http::{self, Reply};

/// One request with exactly `headers` (see `durably_testkit::raw_http`).
async fn send(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    raw_http::send(addr, method, path, headers, body.as_bytes()).await.unwrap()
}

/// `approval-1` is still waiting on `manager-approval`: no signal delivered, not cancelled.
async fn unchanged(wf: &Workflow) {
    let run = wf.get_run("approval-1").await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Waiting, "the run was changed: {run:?}");
    assert_eq!(wf.store().get_signal("approval-1", "manager-approval").await.unwrap(), None);
    assert!(wf.store().list_signals("approval-1").await.unwrap().is_empty(), "a signal was delivered");
}

fn refused(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 403, "{what}: {} {}", reply.status, reply.body);
    assert!(reply.header("content-type").unwrap_or("").starts_with("text/plain"), "{what}");
    assert!(!reply.body.trim().is_empty(), "{what}: a refusal says why");
}

const ENDPOINTS: [&str; 4] = [
    "/api/runs/approval-1/approve",
    "/api/runs/approval-1/reject",
    "/api/runs/approval-1/cancel",
    "/api/runs/approval-1/signals/manager-approval",
];

/// POSTs `body` with `headers` to every endpoint that changes a run; each must refuse it.
async fn refused_everywhere(addr: &str, headers: &[(&str, &str)], body: &str, what: &str) {
    for path in ENDPOINTS {
        let r = send(addr, "POST", path, headers, body).await;
        refused(&r, &format!("{what}: POST {path}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_origin_text_plain_post_with_an_empty_body_is_refused() {
    let s = dashboard().await;
    // What `<form method=post enctype=text/plain action=http://127.0.0.1:8080/...>` on another
    // site sends: no preflight, the browser's own Origin and Sec-Fetch-Site.
    let cross_site = [
        ("Origin", "https://evil.example"),
        ("Sec-Fetch-Site", "cross-site"),
        ("Content-Type", "text/plain"),
    ];
    refused_everywhere(&s.addr, &cross_site, "", "a cross-site form").await;
    // An older browser that sends only Origin.
    let origin_only = [("Origin", "https://evil.example"), ("Content-Type", "text/plain")];
    refused_everywhere(&s.addr, &origin_only, "", "Origin only").await;
    unchanged(&s.wf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_marked_cross_site_or_same_site_is_refused_even_as_json() {
    let s = dashboard().await;
    let own = format!("http://{}", s.addr);
    for site in ["cross-site", "same-site", "none"] {
        for origin in [None, Some(own.as_str())] {
            let mut headers = vec![("Sec-Fetch-Site", site), ("Content-Type", "application/json")];
            headers.extend(origin.map(|o| ("Origin", o)));
            refused_everywhere(&s.addr, &headers, "{}", &format!("{site} {origin:?}")).await;
        }
    }
    unchanged(&s.wf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_or_foreign_origin_is_refused() {
    let s = dashboard().await;
    let port = s.addr.rsplit(':').next().unwrap();
    let other_port = format!("http://127.0.0.1:{}", port.parse::<u16>().unwrap().wrapping_add(1));
    let https = format!("https://{}", s.addr);
    for origin in ["null", "https://evil.example", other_port.as_str(), https.as_str(), "http://localhost"] {
        let headers = [("Origin", origin), ("Content-Type", "application/json")];
        refused_everywhere(&s.addr, &headers, "{}", origin).await;
    }
    unchanged(&s.wf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_is_refused_on_get_and_post() {
    let s = dashboard().await;
    let port = s.addr.rsplit(':').next().unwrap();
    let rebound = format!("evil.example:{port}");
    for host in [rebound.as_str(), "evil.example", "127.0.0.1", "localhost.evil.example"] {
        for path in [
            "/",
            "/runs/approval-1",
            "/api/runs",
            "/api/runs/approval-1",
            "/api/runs/approval-1/events",
            "/sessions",
            "/sessions/support/conv-42",
            "/queues",
        ] {
            let r = send(&s.addr, "GET", path, &[("Host", host)], "").await;
            refused(&r, &format!("GET {path} Host {host}"));
            assert!(!r.body.contains("approval-1"), "no run data behind a foreign Host: {}", r.body);
        }
        // After DNS rebinding the attacker's page is same-origin with its own name.
        let origin = format!("http://{host}");
        let headers = [
            ("Host", host),
            ("Origin", origin.as_str()),
            ("Sec-Fetch-Site", "same-origin"),
            ("Content-Type", "application/json"),
        ];
        refused_everywhere(&s.addr, &headers, "{}", &format!("Host {host}")).await;
    }
    unchanged(&s.wf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_origin_must_send_json() {
    let s = dashboard().await;
    // curl and scripts send neither Origin nor Sec-Fetch-Site: they must say JSON.
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonx"),
    ] {
        let headers: Vec<_> = content_type.map(|c| ("Content-Type", c)).into_iter().collect();
        refused_everywhere(&s.addr, &headers, "", &format!("{content_type:?}")).await;
    }
    // Other methods are refused in the same way, before routing.
    for method in ["PUT", "PATCH", "DELETE", "OPTIONS"] {
        let r =
            send(&s.addr, method, "/api/runs/approval-1/cancel", &[("Origin", "https://evil.example")], "")
                .await;
        refused(&r, method);
    }
    unchanged(&s.wf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboards_own_requests_and_json_scripts_still_work() {
    let s = dashboard().await;
    let own = format!("http://{}", s.addr);
    // What the run page's script sends from the dashboard's own origin.
    let page =
        [("Origin", own.as_str()), ("Sec-Fetch-Site", "same-origin"), ("Content-Type", "application/json")];
    let r = send(&s.addr, "POST", "/api/runs/approval-1/approve", &page, r#"{"note":""}"#).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        s.wf.store().get_signal("approval-1", "manager-approval").await.unwrap().as_deref(),
        Some(r#"{"approved":true}"#)
    );
    // A script (curl) with JSON and neither Origin nor Sec-Fetch-Site; `localhost` names the
    // loopback address the dashboard is bound to.
    let port = s.addr.rsplit(':').next().unwrap();
    let localhost = format!("localhost:{port}");
    let r = send(
        &s.addr,
        "POST",
        "/api/runs/approval-1/cancel",
        &[("Host", localhost.as_str()), ("Content-Type", "application/json; charset=utf-8")],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(s.wf.get_run("approval-1").await.unwrap().unwrap().status, RunStatus::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers() {
    let s = dashboard().await;
    let cases = [
        ("GET", "/", vec![]),
        ("GET", "/runs/order-1", vec![]),
        ("GET", "/runs/nope", vec![]),
        ("GET", "/api/runs", vec![]),
        ("GET", "/api/runs/nope", vec![]),
        ("GET", "/no/such/page", vec![]),
        ("GET", "/", vec![("Host", "evil.example")]),
        ("POST", "/api/runs/approval-1/cancel", vec![("Content-Type", "text/plain")]),
    ];
    for (method, path, headers) in cases {
        let r = send(&s.addr, method, path, &headers, "").await;
        let what = format!("{method} {path} {headers:?} ({})", r.status);
        let csp = r.header("content-security-policy").unwrap_or_else(|| panic!("{what}: no CSP"));
        for directive in
            ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'none'"]
        {
            assert!(csp.contains(directive), "{what}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{what}: {csp}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{what}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{what}");
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{what}");
    }
    // The pages run under that policy: no inline script, style or event handler.
    let page = send(&s.addr, "GET", "/runs/approval-1", &[], "").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("<script>") && !page.body.contains("<style"), "{}", page.body);
    assert!(!page.body.contains(" style=\"") && !page.body.contains(" onclick="), "{}", page.body);
    assert!(page.body.contains("<script src=\"/assets/run.js\""), "{}", page.body);
    let js = send(&s.addr, "GET", "/assets/run.js", &[], "").await;
    assert_eq!(js.status, 200);
    assert!(js.header("content-type").unwrap().starts_with("text/javascript"));
    let css = send(&s.addr, "GET", "/assets/dashboard.css", &[], "").await;
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
}

/// Kills the `durably ui` child when the test ends, however it ends.
struct Ui(Child);

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_host_admits_a_configured_name() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("durably.db");
    prepare(&db).await;
    let mut child = Ui(Command::new(assert_cmd::cargo::cargo_bin("durably"))
        .args(["--store", &format!("sqlite:{}", db.display()), "ui", "--addr", "127.0.0.1:0"])
        .args(["--allowed-host", "dash.example", "--allowed-host", "ops.example:9000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap());
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr =
        line.trim().trim_start_matches("durably dashboard on http://").trim_end_matches('/').to_owned();
    let port = addr.rsplit(':').next().unwrap().to_owned();

    let dash_port = format!("dash.example:{port}");
    for host in ["dash.example", "DASH.example", dash_port.as_str(), "ops.example:9000", addr.as_str()] {
        let r = send(&addr, "GET", "/", &[("Host", host)], "").await;
        assert_eq!(r.status, 200, "Host {host}: {}", r.body);
    }
    for host in ["ops.example", "ops.example:9001", "evil.example", "dash.example:1"] {
        let r = send(&addr, "GET", "/", &[("Host", host)], "").await;
        refused(&r, host);
    }
    // Behind a TLS proxy that keeps the Host, the page's origin is https://dash.example.
    let r = send(
        &addr,
        "POST",
        "/api/runs/approval-1/approve",
        &[
            ("Host", "dash.example"),
            ("Origin", "https://evil.example"),
            ("Sec-Fetch-Site", "cross-site"),
            ("Content-Type", "text/plain"),
        ],
        "",
    )
    .await;
    refused(&r, "cross-site through the allowed name");
    let wf = engine(sqlite(&db).await);
    unchanged(&wf).await;
    let r = send(
        &addr,
        "POST",
        "/api/runs/approval-1/approve",
        &[
            ("Host", "dash.example"),
            ("Origin", "https://dash.example"),
            ("Sec-Fetch-Site", "same-origin"),
            ("Content-Type", "application/json"),
        ],
        "{}",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        wf.store().get_signal("approval-1", "manager-approval").await.unwrap().as_deref(),
        Some(r#"{"approved":true}"#)
    );
}
