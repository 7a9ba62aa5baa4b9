//! `durably serve`: the HTTP API and the dashboard behind a bearer token read from a file or
//! the environment (browsers sign in at `/login` once); without a token only on loopback with `--insecure-loopback`. A request
//! without the token changes nothing in the store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::{engine, prepare, sqlite};
use durably_core::RunStatus;

const TOKEN: &str = "serve-test-token-0123456789";

/// Kills the `durably serve` child when the test ends, however it ends.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `durably serve` on a free loopback port with `args`; returns it and its address.
fn start(db: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (Served, String) {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("durably"));
    cmd.args(["--store", &format!("sqlite:{}", db.display()), "serve", "--addr", "127.0.0.1:0"])
        .args(args)
        .env_remove("DURABLY_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = Served(cmd.spawn().unwrap());
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("durably API on http://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_owned();
    (child, addr)
}

async fn request(addr: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let client = reqwest::Client::new();
    let mut req = client
        .request(method.parse().unwrap(), format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_needs_the_token_for_the_api_and_the_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("durably.db");
    prepare(&db).await;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let (_child, addr) = start(&db, &["--token-file", token_file.to_str().unwrap()], &[]);

    for path in [
        "/api/runs",
        "/api/runs/approval-1",
        "/api/runs/approval-1/events",
        "/",
        "/runs/approval-1",
        "/sessions",
        "/sessions/support/conv-42",
        "/queues",
        "/openapi.json",
    ] {
        let (code, body) = request(&addr, "GET", path, None, "").await;
        assert_eq!(code, 401, "GET {path}: {body}");
        assert!(!body.contains("approval-1") && !body.contains(TOKEN), "GET {path}: {body}");
        let (code, _) = request(&addr, "GET", path, Some("wrong-token-0123456789"), "").await;
        assert_eq!(code, 401, "GET {path} with a wrong token");
    }
    for path in ["/api/runs/approval-1/approve", "/api/runs/approval-1/cancel"] {
        let (code, body) = request(&addr, "POST", path, None, "{}").await;
        assert_eq!(code, 401, "POST {path}: {body}");
    }
    let wf = engine(sqlite(&db).await);
    assert_eq!(wf.get_run("approval-1").await.unwrap().unwrap().status, RunStatus::Waiting);
    assert!(wf.store().list_signals("approval-1").await.unwrap().is_empty(), "nothing delivered");

    let (code, body) = request(&addr, "GET", "/api/runs/approval-1", Some(TOKEN), "").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"waiting_on\":\"manager-approval\""), "{body}");
    let (code, page) = request(&addr, "GET", "/runs/approval-1", Some(TOKEN), "").await;
    assert_eq!(code, 200);
    assert!(page.contains("Waiting on signal <code>manager-approval</code>"), "{page}");
    // A browser signs in once; the dashboard's pages then load with the cookie alone.
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let res = client.get(format!("http://{addr}/")).header("accept", "text/html").send().await.unwrap();
    assert_eq!((res.status().as_u16(), res.headers()["location"].to_str().unwrap()), (303, "/login"));
    let res = client
        .post(format!("http://{addr}/login"))
        .header("content-type", "application/json")
        .body(format!(r#"{{"token":"{TOKEN}"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 204);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let res =
        client.get(format!("http://{addr}/runs/approval-1")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.text().await.unwrap().contains("Waiting on signal <code>manager-approval</code>"));

    // The run page's live updates: the event stream takes the login cookie as it takes the
    // token (a browser's EventSource cannot send a token), and nothing less.
    for path in ["/sessions", "/queues"] {
        let res = client.get(format!("http://{addr}{path}")).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 200, "{path}");
    }
    let events = format!("http://{addr}/api/runs/approval-1/events");
    let res = client
        .get(&events)
        .header("cookie", &cookie)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["content-type"].to_str().unwrap(), "text/event-stream");
    drop(res);
    for bad in ["durably_session=0123456789abcdef", "durably_session=", "other=1"] {
        let res = client
            .get(&events)
            .header("cookie", bad)
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 401, "cookie {bad}");
    }
    // A foreign Host is refused before authentication, with the cookie too.
    let port = addr.rsplit(':').next().unwrap();
    let r = durably_testkit::raw_http::send(
        &addr,
        "GET",
        "/api/runs/approval-1/events",
        &[("Host", &format!("evil.example:{port}")), ("Cookie", &cookie)],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403, "{}", r.body);

    let (code, body) = request(&addr, "POST", "/api/runs/approval-1/approve", Some(TOKEN), "{}").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        wf.store().get_signal("approval-1", "manager-approval").await.unwrap().as_deref(),
        Some(r#"{"approved":true}"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_comes_from_the_environment_too_and_none_needs_loopback_and_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("durably.db");
    prepare(&db).await;
    let (_child, addr) = start(&db, &[], &[("DURABLY_TOKEN", TOKEN)]);
    assert_eq!(request(&addr, "GET", "/api/runs", None, "").await.0, 401);
    assert_eq!(request(&addr, "GET", "/api/runs", Some(TOKEN), "").await.0, 200);

    let (_child, addr) = start(&db, &["--insecure-loopback"], &[]);
    assert_eq!(request(&addr, "GET", "/api/runs", None, "").await.0, 200);

    let refuse = |args: &[&str]| {
        let out = Command::new(assert_cmd::cargo::cargo_bin("durably"))
            .args(["--store", &format!("sqlite:{}", db.display()), "serve"])
            .args(args)
            .env_remove("DURABLY_TOKEN")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} must be refused");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = refuse(&["--addr", "127.0.0.1:0"]);
    assert!(err.contains("needs a token") && err.contains("--insecure-loopback"), "{err}");
    let err = refuse(&["--addr", "0.0.0.0:0", "--insecure-loopback"]);
    assert!(err.contains("without a token"), "{err}");
    let short = dir.path().join("short");
    std::fs::write(&short, "abc").unwrap();
    let err = refuse(&["--addr", "127.0.0.1:0", "--token-file", short.to_str().unwrap()]);
    let shown = err.replace(dir.path().to_str().unwrap(), "");
    assert!(err.contains("at least 16") && !shown.contains("abc"), "the token is not shown: {err}");
}
