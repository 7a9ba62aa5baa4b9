//! Runs prepared with the durably API for the CLI and dashboard tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use durably_agent::TaskConfig;
use durably_agent::openai::{AgentRun, OpenAiAgent, Tool};
use durably_core::backoff::constant;
use durably_core::store::prelude::*;
use durably_core::{Error, Queue, RunStatus, Workflow, step};
use durably_sqlite::SqliteStore;
use durably_testkit::mock_openai::{MockOpenAi, MockReply, fixtures_dir};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default)]
pub struct Counter(pub Arc<AtomicU32>);

impl Counter {
    pub fn hit(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub approved: bool,
    #[serde(default)]
    pub reason: Option<String>,
}

pub async fn sqlite(path: &Path) -> Arc<dyn Store> {
    let store = SqliteStore::builder(path).poll_interval(Duration::from_millis(20)).open().await.unwrap();
    Arc::new(store)
}

pub fn engine(store: Arc<dyn Store>) -> Workflow {
    Workflow::builder("shop").shared_store(store).default_retries(0).build()
}

/// Three steps: `fetch`, `price`, `ship`; `counter` counts executed bodies.
pub async fn pipeline(wf: &Workflow, run_id: &str, counter: Counter) -> Result<String, Error> {
    wf.run(run_id, move |_| async move {
        let c = counter.clone();
        let order = step("fetch", move || {
            c.hit();
            std::future::ready(Ok::<_, std::io::Error>(
                serde_json::json!({"id": 42, "items": ["book", "pen"]}),
            ))
        })
        .await?;
        let c = counter.clone();
        let price = step("price", move || {
            c.hit();
            std::future::ready(Ok::<_, std::io::Error>(19.5f64))
        })
        .await?;
        let c = counter.clone();
        let shipped = step("ship", move || {
            c.hit();
            std::future::ready(Ok::<_, std::io::Error>(format!("order {} shipped", order["id"])))
        })
        .await?;
        Ok::<_, Error>(format!("{shipped} for {price}"))
    })
    .await
}

/// `draft`, then waits on `manager-approval`, then `publish` (or `held` when rejected).
pub async fn approval_flow(wf: &Workflow, run_id: &str, counter: Counter) -> Result<String, Error> {
    wf.run(run_id, move |_| async move {
        let c = counter.clone();
        let draft = step("draft", move || {
            c.hit();
            std::future::ready(Ok::<_, std::io::Error>("Q3 report draft".to_owned()))
        })
        .await?;
        let approval: Approval = durably_core::signal("manager-approval").await?;
        if !approval.approved {
            return Ok(format!("held: {}", approval.reason.unwrap_or_default()));
        }
        let c = counter.clone();
        step("publish", move || {
            c.hit();
            let d = draft.clone();
            std::future::ready(Ok::<_, std::io::Error>(format!("published {d}")))
        })
        .await
    })
    .await
}

pub async fn wait_for_status(wf: &Workflow, run_id: &str, status: RunStatus) {
    for _ in 0..2000 {
        if wf.get_run(run_id).await.unwrap().is_some_and(|r| r.status == status) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("run {run_id} never reached {status}");
}

/// A store with `order-1` completed, `order-2` failed and `approval-1` left waiting (its
/// executor stopped, as if its process had exited).
pub async fn prepare(path: &Path) {
    let store = sqlite(path).await;
    let wf = engine(store);
    pipeline(&wf, "order-1", Counter::default()).await.unwrap();
    let failed = wf
        .run("order-2", |_| async {
            step("fetch", || std::future::ready(Err::<u32, _>(std::io::Error::other("upstream 503")))).await
        })
        .await;
    assert!(failed.is_err());
    let waiting = {
        let wf = wf.clone();
        tokio::spawn(async move { approval_flow(&wf, "approval-1", Counter::default()).await })
    };
    wait_for_status(&wf, "approval-1", RunStatus::Waiting).await;
    waiting.abort();
    let _ = waiting.await;
}

/// A store made by [`prepare`] and the dashboard serving it on a free loopback port.
pub struct Dashboard {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// An engine of its own on the same file, to execute runs and read the store.
    pub wf: Workflow,
    pub _dir: tempfile::TempDir,
}

pub async fn dashboard() -> Dashboard {
    serve_dashboard(false).await
}

/// [`dashboard`] with the agents' records of [`record_agents`] too.
pub async fn agent_dashboard() -> Dashboard {
    serve_dashboard(true).await
}

async fn serve_dashboard(agents: bool) -> Dashboard {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("durably.db");
    prepare(&db).await;
    if agents {
        record_agents(&db).await;
    }
    let wf = engine(sqlite(&db).await);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(durably_cli::ui::serve(
        listener,
        durably_cli::open_workflow(&format!("sqlite:{}", db.display()), false).await.unwrap(),
    ));
    Dashboard { base: format!("http://{addr}"), addr, wf, _dir: dir }
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct City {
    /// The city.
    pub city: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct Transfer {
    /// The IBAN to pay.
    pub to: String,
    /// The amount in euros.
    pub amount_eur: u32,
}

/// The OpenAI agent `guide` with the tool `get_weather`, answering from `mock`.
pub fn guide(wf: &Workflow, mock: &MockOpenAi) -> OpenAiAgent {
    let weather = Tool::new("get_weather", "Current weather of a city", |a: City| async move {
        Ok::<_, std::io::Error>(format!(
            "{} in {}",
            if a.city == "Paris" { "sunny" } else { "raining" },
            a.city
        ))
    });
    OpenAiAgent::builder(wf)
        .name("guide")
        .model("gpt-test")
        .api_base(mock.base_url())
        .api_key("sk-test-dashboard-0123456789")
        .system_prompt("You answer questions about the weather.")
        .tool(weather)
        .model_config(TaskConfig::new(0, constant(0.0)))
        .build()
}

/// Records, with the OpenAI agent against the mock model, on the store at `path`: the agent run
/// `trip-1` (fixtures/weather_agent.json: a model call asking for two tool calls, the tools,
/// the answer), the session `conv-42` of the agent `support` (two turns), and the run `mail-1`
/// enqueued in the queue `mail` (no worker takes it).
pub async fn record_agents(path: &Path) {
    let wf = engine(sqlite(path).await);
    let mock = MockOpenAi::from_fixture(fixtures_dir().join("weather_agent.json")).await.unwrap();
    let run = guide(&wf, &mock).run_with_id("Weather in Paris and Berlin?", "trip-1").await.unwrap();
    assert_eq!(run.output, "It is sunny in Paris and raining in Berlin.");
    mock.push_all(["Hello Ann.", "You are Ann."].map(MockReply::text));
    let bot = OpenAiAgent::builder(&wf)
        .name("support")
        .model("gpt-test")
        .api_base(mock.base_url())
        .api_key("sk-test-dashboard-0123456789")
        .model_config(TaskConfig::new(0, constant(0.0)))
        .build();
    let session = bot.session("conv-42");
    session.send("I am Ann").await.unwrap();
    session.send("Who am I?").await.unwrap();
    define_mail_queue(&wf);
    wf.enqueue("mail", "send_mail", "mail-1", &"ann@example.com").await.unwrap();
}

/// The queue `mail` (at most 2 at once) and its workflow `send_mail`, on `wf`.
pub fn define_mail_queue(wf: &Workflow) {
    wf.add_queue(Queue::new("mail").concurrency(2)).unwrap();
    wf.register_fn("send_mail", |_ctx, to: String| async move { Ok::<_, Error>(format!("sent to {to}")) });
}

/// An agent run executing in this process, waiting for the approval of its tool call.
pub struct Payout {
    pub task: tokio::task::JoinHandle<durably_core::Result<AgentRun>>,
    pub transfers: Counter,
    pub _mock: MockOpenAi,
}

/// Starts the run `run_id` of the agent `payouts` (fixtures/http_approval.json): its model asks
/// for `transfer_funds`, which needs an approval; returns once the run waits for it.
pub async fn start_payout(wf: &Workflow, run_id: &str) -> Payout {
    let mock = MockOpenAi::from_fixture(fixtures_dir().join("http_approval.json")).await.unwrap();
    let transfers = Counter::default();
    let counted = transfers.clone();
    let tool = Tool::new("transfer_funds", "Transfer money to an account", move |t: Transfer| {
        let counted = counted.clone();
        async move {
            counted.hit();
            Ok::<_, std::io::Error>(format!("transferred {} EUR to {}", t.amount_eur, t.to))
        }
    })
    .requires_approval();
    let agent = OpenAiAgent::builder(wf)
        .name("payouts")
        .model("gpt-test")
        .api_base(mock.base_url())
        .api_key("sk-test-dashboard-0123456789")
        .system_prompt("You pay suppliers with transfer_funds.")
        .tool(tool)
        .model_config(TaskConfig::new(0, constant(0.0)))
        .build();
    let id = run_id.to_owned();
    let task =
        tokio::spawn(
            async move { agent.run_with_id("Pay 250 EUR to DE89 3704 0044 0532 0130 00", id).await },
        );
    wait_for_status(wf, run_id, RunStatus::Waiting).await;
    Payout { task, transfers, _mock: mock }
}

/// The store at `env` (default `default`), or `None` with the reason when it does not answer
/// and `DURABLY_SKIP_SERVICES=1`.
pub async fn store_or_skip(kind: &str, env: &str, default: &str) -> Option<(String, Arc<dyn Store>)> {
    let url = std::env::var(env).unwrap_or_else(|_| default.to_owned());
    let opened: Result<Arc<dyn Store>, String> = match kind {
        "redis" => durably_redis::RedisStore::connect(url.clone())
            .await
            .map(|s| Arc::new(s) as Arc<dyn Store>)
            .map_err(|e| e.to_string()),
        _ => durably_postgres::PostgresStore::connect(url.clone())
            .await
            .map(|s| Arc::new(s) as Arc<dyn Store>)
            .map_err(|e| e.to_string()),
    };
    match opened {
        Ok(store) => Some((url, store)),
        Err(e) if std::env::var("DURABLY_SKIP_SERVICES").as_deref() == Ok("1") => {
            eprintln!("skipping: the {kind} server at {url} does not answer: {e}");
            None
        }
        Err(e) => {
            panic!("the {kind} server at {url} does not answer ({env}; DURABLY_SKIP_SERVICES=1 skips): {e}")
        }
    }
}
