//! End to end in headless Chromium (Debian's `chromium` and `chromium-driver`): open the run
//! page of a run waiting on an approval, type a note, click Approve, and see the run resume and
//! complete, in the run's executor and on the page. Driven through chromedriver's W3C WebDriver
//! HTTP API with reqwest.
//!
//! Skips, saying why, when `/usr/bin/chromium` or `/usr/bin/chromedriver` is missing, unless
//! `DURABLY_REQUIRE_CHROMIUM=1`. `DURABLY_SCREENSHOT=path.png` saves the screenshot of the
//! waiting run's page there (it made `docs/dashboard.png`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::{Approval, Counter, engine, prepare, sqlite, wait_for_status};
use durably_core::{Error, RunStatus, Workflow, backoff, step};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

fn browser_available() -> bool {
    let missing: Vec<&str> =
        [CHROMIUM, CHROMEDRIVER].into_iter().filter(|p| !Path::new(p).exists()).collect();
    if missing.is_empty() {
        return true;
    }
    let reason = format!(
        "{} missing: install Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)",
        missing.join(" and ")
    );
    if std::env::var("DURABLY_REQUIRE_CHROMIUM").as_deref() == Ok("1") {
        panic!("DURABLY_REQUIRE_CHROMIUM=1 but {reason}");
    }
    eprintln!("skipping the Chromium test: {reason}");
    false
}

/// Kills chromedriver (and so its browser) when the test ends, however it ends.
struct Driver {
    child: Child,
    base: String,
    session: Option<String>,
    http: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start(profile: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            session: None,
            http: reqwest::Client::new(),
        };
        for _ in 0..200 {
            if let Ok(res) = driver.http.get(format!("{}/status", driver.base)).send().await
                && let Ok(v) = res.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--window-size=1280,900", format!("--user-data-dir={}", profile.display()),
                ]
            }
        }}});
        let v = driver.call("POST", "/session", Some(caps)).await;
        driver.session =
            Some(v["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {v}")).to_owned());
        driver
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = match &self.session {
            Some(id) if path != "/session" => format!("{}/session/{id}{path}", self.base),
            _ => format!("{}{path}", self.base),
        };
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body.unwrap_or_else(|| json!({}))),
        };
        let res = req.send().await.unwrap();
        let status = res.status();
        let v: Value = res.json().await.unwrap();
        assert!(status.is_success(), "WebDriver {method} {path}: {status} {v}");
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url}))).await;
    }

    async fn find(&self, css: &str) -> String {
        let v = self.call("POST", "/element", Some(json!({"using": "css selector", "value": css}))).await;
        v.as_object().and_then(|o| o.values().next()).and_then(Value::as_str).unwrap().to_owned()
    }

    async fn script(&self, js: &str) -> Value {
        self.call("POST", "/execute/sync", Some(json!({"script": js, "args": []}))).await
    }

    async fn screenshot(&self) -> Vec<u8> {
        let v = self.call("GET", "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap()
    }
}

/// A report pipeline: data, a model call that fails once and is retried, a summary, then the
/// manager's approval, then publishing.
async fn report(wf: &Workflow, run_id: &str, published: Counter) -> Result<String, Error> {
    let attempts = Counter::default();
    wf.run(run_id, move |_| async move {
        let sales = step("fetch_sales", || async {
            tokio::time::sleep(Duration::from_millis(120)).await;
            Ok::<_, std::io::Error>(json!({"quarter": "Q3", "total": 1_284_000, "regions": 4}))
        })
        .await?;
        let a = attempts.clone();
        let draft = step("model", move || {
            let a = a.clone();
            async move {
                a.hit();
                tokio::time::sleep(Duration::from_millis(150)).await;
                if a.get() == 1 {
                    return Err(std::io::Error::other("model: 429 rate limited"));
                }
                Ok("Q3 sales grew 12% to $1.28M across 4 regions.".to_owned())
            }
        })
        .retries(2)
        .backoff(backoff::constant(0.05))
        .await?;
        let d = draft.clone();
        step("summarise", move || {
            let (d, sales) = (d.clone(), sales.clone());
            async move {
                tokio::time::sleep(Duration::from_millis(60)).await;
                Ok::<_, std::io::Error>(format!("{d} (summary of {})", sales["quarter"]))
            }
        })
        .await?;
        let approval: Approval = durably_core::signal("manager-approval").await?;
        if !approval.approved {
            return Ok(format!("held: {}", approval.reason.unwrap_or_default()));
        }
        step("publish", move || {
            published.hit();
            let d = draft.clone();
            std::future::ready(Ok::<_, std::io::Error>(format!("published: {d}")))
        })
        .await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_in_chromium_resumes_the_run_to_completion() {
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("durably.db");
    prepare(&db).await;
    let wf = engine(sqlite(&db).await);
    let published = Counter::default();
    let runner = {
        let (wf, p) = (wf.clone(), published.clone());
        tokio::spawn(async move { report(&wf, "report-q3", p).await })
    };
    wait_for_status(&wf, "report-q3", RunStatus::Waiting).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let ui_wf = durably_cli::open_workflow(&format!("sqlite:{}", db.display()), false).await.unwrap();
    tokio::spawn(durably_cli::ui::serve(listener, ui_wf));

    let driver = Driver::start(&dir.path().join("chromium-profile")).await;
    driver.goto(&format!("{base}/runs/report-q3")).await;
    let bars = driver.script("return document.querySelectorAll('#timeline g.bar').length").await;
    assert_eq!(bars, json!(4), "three steps and the wait");
    assert_eq!(driver.script("return document.getElementById('status').textContent").await, json!("waiting"));
    // The stylesheet is a served file, allowed by the Content-Security-Policy (the script is
    // too: the click below works only if it ran).
    assert_eq!(
        driver.script("return getComputedStyle(document.querySelector('header')).backgroundColor").await,
        json!("rgb(29, 35, 48)")
    );
    let png = driver.screenshot().await;
    assert_eq!(&png[1..4], b"PNG");
    let shot = std::env::var("DURABLY_SCREENSHOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| dir.path().join("dashboard.png"));
    std::fs::write(&shot, &png).unwrap();

    let note = driver.find("#note").await;
    driver.call("POST", &format!("/element/{note}/value"), Some(json!({"text": "ship it"}))).await;
    let approve = driver.find("#approve").await;
    driver.call("POST", &format!("/element/{approve}/click"), None).await;

    let result = tokio::time::timeout(Duration::from_secs(30), runner).await.unwrap().unwrap();
    assert_eq!(result.unwrap(), "published: Q3 sales grew 12% to $1.28M across 4 regions.");
    assert_eq!(published.get(), 1);
    assert_eq!(
        wf.store().get_signal("report-q3", "manager-approval").await.unwrap().as_deref(),
        Some(r#"{"approved":true}"#)
    );

    // The page follows the run and reloads once it is finished.
    let mut shown = Value::Null;
    for _ in 0..100 {
        shown = driver
            .script("const s = document.getElementById('status'); return s ? s.textContent : null")
            .await;
        if shown == json!("completed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(shown, json!("completed"));
    let mut buttons = json!(1);
    for _ in 0..100 {
        buttons = driver.script("return document.querySelectorAll('#approve').length").await;
        if buttons == json!(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(buttons, json!(0), "the reloaded page of the completed run has no Approve button");
    driver.call("DELETE", "", None).await;
}
