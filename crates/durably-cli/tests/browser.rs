//! End to end in headless Chromium (Debian's `chromium` and `chromium-driver`): open the run
//! page of a run waiting on an approval, type a note, click Approve, and see the run resume and
//! complete, in the run's executor and on the page, which follows the run's event stream
//! without reloading. Then an agent run's conversation, a session, the queues, and an agent run
//! whose tool call is approved from outside the page after it loaded: the tool's result
//! arrives on the open page. Driven through chromedriver's W3C WebDriver HTTP API with reqwest.
//!
//! Skips, saying why, when `/usr/bin/chromium` or `/usr/bin/chromedriver` is missing, unless
//! `DURABLY_REQUIRE_CHROMIUM=1`. `DURABLY_SCREENSHOT=path.png` saves the screenshot of the
//! waiting run's page there (it made `docs/dashboard.png`); `DURABLY_SCREENSHOT_DIR=docs` saves
//! the agent, session, queues and live pages' as `dashboard-*.png` there.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::{Approval, Counter, engine, prepare, record_agents, sqlite, start_payout, wait_for_status};
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

    /// Runs `js` (an expression) until it is `want`, then returns it; or what it was last.
    async fn wait_for(&self, js: &str, want: Value) -> Value {
        let mut got = Value::Null;
        for _ in 0..200 {
            got = self.script(&format!("return {js}")).await;
            if got == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        got
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
    driver.script("window.durablyMarker = 'set before the click'; return null").await;
    let approve = driver.find("#approve").await;
    driver.call("POST", &format!("/element/{approve}/click"), None).await;

    let result = tokio::time::timeout(Duration::from_secs(30), runner).await.unwrap().unwrap();
    assert_eq!(result.unwrap(), "published: Q3 sales grew 12% to $1.28M across 4 regions.");
    assert_eq!(published.get(), 1);
    assert_eq!(
        wf.store().get_signal("report-q3", "manager-approval").await.unwrap().as_deref(),
        Some(r#"{"approved":true}"#)
    );

    // The page follows the run's event stream: the status and the steps change in place, and
    // the finished run's page has no buttons, without a reload (the marker set before the
    // click is still there).
    assert_eq!(
        driver.wait_for("document.getElementById('status').textContent", json!("completed")).await,
        json!("completed")
    );
    assert_eq!(driver.wait_for("document.querySelectorAll('#approve').length", json!(0)).await, json!(0));
    assert_eq!(driver.script("return window.durablyMarker || null").await, json!("set before the click"));
    assert_eq!(
        driver.script("return document.querySelector('#steps tr[data-step=\"publish\"] td:nth-child(3)').textContent").await,
        json!("completed"),
        "the publish step's row arrived live"
    );
    let kinds = driver
        .script("return [...document.querySelectorAll('#events li .ek')].map(e => e.textContent)")
        .await;
    for kind in ["signal", "step", "completed"] {
        assert!(kinds.as_array().unwrap().contains(&json!(kind)), "{kind} in {kinds}");
    }
    driver.call("DELETE", "", None).await;
}

/// Saves `png` as `dashboard-<name>.png` in `DURABLY_SCREENSHOT_DIR`, if it is set.
fn keep(png: &[u8], name: &str) {
    assert_eq!(&png[1..4], b"PNG");
    if let Ok(dir) = std::env::var("DURABLY_SCREENSHOT_DIR") {
        std::fs::write(Path::new(&dir).join(format!("dashboard-{name}.png")), png).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_session_queue_views_and_a_live_approval_in_chromium() {
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("durably.db");
    prepare(&db).await;
    record_agents(&db).await;
    let wf = engine(sqlite(&db).await);
    let payout = start_payout(&wf, "payout-7").await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let ui_wf = durably_cli::open_workflow(&format!("sqlite:{}", db.display()), false).await.unwrap();
    tokio::spawn(durably_cli::ui::serve(listener, ui_wf));
    let driver = Driver::start(&dir.path().join("chromium-profile")).await;

    // The agent run: its conversation, tool calls with arguments and results, tokens.
    driver.goto(&format!("{base}/runs/trip-1")).await;
    assert_eq!(driver.script("return document.querySelectorAll('#agent li.tool').length").await, json!(2));
    let conversation = driver.script("return document.getElementById('agent').innerText").await;
    let text = conversation.as_str().unwrap();
    for part in [
        "Weather in Paris and Berlin?",
        "\"city\": \"Berlin\"",
        "sunny in Paris",
        "It is sunny in Paris and raining in Berlin.",
        "out tokens",
    ] {
        assert!(text.contains(part), "{part} in {text}");
    }
    keep(&driver.screenshot().await, "agent");

    // The sessions, one session's turns, and the queues.
    driver.goto(&format!("{base}/sessions")).await;
    let link = driver.find("#sessions a").await;
    driver.call("POST", &format!("/element/{link}/click"), None).await;
    assert_eq!(
        driver.wait_for("document.querySelectorAll('#turns li.turn').length", json!(2)).await,
        json!(2)
    );
    let turns = driver.script("return document.getElementById('turns').innerText").await;
    assert!(turns.as_str().unwrap().contains("You are Ann."), "{turns}");
    keep(&driver.screenshot().await, "session");
    driver.goto(&format!("{base}/queues")).await;
    assert_eq!(
        driver
            .script(
                "return document.querySelector('#queues tr[data-queue=\"mail\"] td:nth-child(2)').textContent"
            )
            .await,
        json!("1")
    );
    keep(&driver.screenshot().await, "queues");

    // A live update: the page is open on the waiting agent run; the approval is delivered from
    // outside it (another engine, as `durably signal` would); the tool's result and the run's
    // end arrive on the page from the event stream.
    driver.goto(&format!("{base}/runs/payout-7")).await;
    let requested = driver.script("return document.querySelector('#agent .ap-requested') !== null").await;
    assert_eq!(requested, json!(true));
    assert_eq!(driver.script("return document.getElementById('approval').hidden").await, json!(false));
    driver.script("window.durablyMarker = 'loaded once'; return null").await;
    let signal = wf.get_run("payout-7").await.unwrap().unwrap().waiting_on.unwrap();
    assert!(signal.starts_with("approve:payouts.tool.transfer_funds#1."), "{signal}");
    assert!(wf.complete("payout-7", &signal, &json!({"approved": true})).await.unwrap());
    let result = driver
        .wait_for(
            "[...document.querySelectorAll('#agent pre.result')].some(p => p.textContent.includes('transferred 250 EUR'))",
            json!(true),
        )
        .await;
    assert_eq!(result, json!(true), "the tool's result arrived on the open page");
    assert_eq!(
        driver.wait_for("document.getElementById('status').textContent", json!("completed")).await,
        json!("completed")
    );
    assert_eq!(driver.script("return window.durablyMarker || null").await, json!("loaded once"), "no reload");
    assert_eq!(
        driver.script("return document.querySelector('#agent .ap').textContent").await,
        json!("approval granted"),
        "the approval's signal arrived live"
    );
    let calls = driver
        .script("return [...document.querySelectorAll('#agent li.assistant')].map(li => li.dataset.step)")
        .await;
    assert_eq!(calls, json!(["payouts.model#1", "payouts.model#2"]), "the second model call arrived live");
    keep(&driver.screenshot().await, "live");
    let run = tokio::time::timeout(Duration::from_secs(30), payout.task).await.unwrap().unwrap().unwrap();
    assert!(run.output.starts_with("Done: 250 EUR"), "{}", run.output);
    assert_eq!(payout.transfers.get(), 1);
    driver.call("DELETE", "", None).await;
}
