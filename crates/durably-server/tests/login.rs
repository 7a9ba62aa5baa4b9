//! A browser signs in once at `/login` and keeps a cookie derived from the token (never the
//! token itself); pages then load without an `Authorization` header. A wrong token, a forged
//! cookie or a cross-site login are refused and change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{BEARER, TOKEN, send, serve, with_waiting_run};

/// The `name=value` of a `Set-Cookie` header.
fn cookie_of(r: &common::Reply) -> String {
    let set = r.header("set-cookie").unwrap_or_else(|| panic!("no cookie: {}", r.status));
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{set}");
    }
    set.split(';').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_and_reads_with_the_cookie() {
    let s = with_waiting_run().await;
    let page = send(&s.addr, "GET", "/login", &[], b"").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("<script src=\"/login.js\">") && !page.body.contains("<script>"),
        "{}",
        page.body
    );
    assert!(page.header("content-security-policy").unwrap().contains("script-src 'self'"));
    let script = send(&s.addr, "GET", "/login.js", &[], b"").await;
    assert_eq!(script.status, 200);
    assert!(script.header("content-type").unwrap().starts_with("text/javascript"));

    // A page asked for without a login is sent to the login page; a script gets a 401.
    let r = send(&s.addr, "GET", "/api/runs/waiting-1", &[("Accept", "text/html")], b"").await;
    assert_eq!(r.status, 401, "the API answers scripts");
    let r = send(&s.addr, "GET", "/", &[("Accept", "text/html,application/xhtml+xml")], b"").await;
    assert_eq!((r.status, r.header("location")), (303, Some("/login")));

    let json = [("Content-Type", "application/json")];
    let r = send(&s.addr, "POST", "/login", &json, br#"{"token":"wrong-token-0123456789"}"#).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.header("set-cookie").is_none());
    let body = format!(r#"{{"token":"{TOKEN}"}}"#);
    let r = send(&s.addr, "POST", "/login", &json, body.as_bytes()).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let cookie = cookie_of(&r);
    assert!(!cookie.contains(TOKEN), "the browser keeps a derived value, not the token: {cookie}");

    let r = send(&s.addr, "GET", "/api/runs/waiting-1", &[("Cookie", cookie.as_str())], b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let other = format!("theme=dark; {cookie}; lang=en");
    let r = send(&s.addr, "GET", "/api/runs/waiting-1", &[("Cookie", other.as_str())], b"").await;
    assert_eq!(r.status, 200, "among other cookies");
    let forged = format!("{}0", cookie);
    for bad in [forged.as_str(), "durably_session=", "durably_session=00"] {
        let r = send(&s.addr, "GET", "/api/runs/waiting-1", &[("Cookie", bad)], b"").await;
        assert_eq!(r.status, 401, "{bad}: {}", r.body);
    }
    let stale = [("Cookie", forged.as_str()), ("Accept", "text/html")];
    let r = send(&s.addr, "GET", "/runs/waiting-1", &stale, b"").await;
    assert_eq!((r.status, r.header("location")), (303, Some("/login")), "a stale login signs in again");
    // The cookie does not make a cross-site write acceptable: the guard comes first.
    let r = send(
        &s.addr,
        "POST",
        "/api/runs/waiting-1/approve",
        &[("Cookie", cookie.as_str()), ("Origin", "https://evil.example"), ("Content-Type", "text/plain")],
        b"{}",
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    // Signing out clears it.
    let r = send(&s.addr, "POST", "/logout", &json, b"{}").await;
    assert_eq!(r.status, 204);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    let run = s.wf.get_run("waiting-1").await.unwrap().unwrap();
    assert_eq!(run.status, durably_core::RunStatus::Waiting);
    assert!(s.wf.store().list_signals("waiting-1").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_or_malformed_login_is_refused() {
    let s = serve(common::engine()).await;
    let body = format!("token={TOKEN}");
    let form = [
        ("Origin", "https://evil.example"),
        ("Sec-Fetch-Site", "cross-site"),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let r = send(&s.addr, "POST", "/login", &form, body.as_bytes()).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.header("set-cookie").is_none());
    let json = [("Content-Type", "application/json")];
    let r = send(&s.addr, "POST", "/login", &json, b"{oops").await;
    assert_eq!(r.status, 400, "{}", r.body);
    let big = format!(r#"{{"token":"{}"}}"#, "x".repeat(5000));
    let r = send(&s.addr, "POST", "/login", &json, big.as_bytes()).await;
    assert_eq!(r.status, 413, "{}", r.body);
    let r = send(&s.addr, "GET", "/login", &[("Host", "evil.example")], b"").await;
    assert_eq!(r.status, 403, "the login page is behind the Host check too");
    // The bearer token still works beside logins.
    let r = send(&s.addr, "GET", "/api/runs", &[("Authorization", BEARER)], b"").await;
    assert_eq!(r.status, 200);
}
