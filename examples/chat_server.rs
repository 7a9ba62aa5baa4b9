//! A chat server with durable conversations: `POST /chat/{session}` sends one message of a
//! session and streams the answer as server-sent events; `GET /chat/{session}` returns the
//! conversation. Each message is a turn of the session (a run of its own), and a client that
//! retries a request passes the same `request_id`, which is the turn's id.
//!
//! The program shows that killing the server loses nothing: it runs the server as a child
//! process of itself, has a conversation with it, kills it with SIGKILL while a turn's tool call
//! runs, starts a new server on the same SQLite file, and retries the interrupted request: the
//! turn resumes (its recorded model call is not sent again), the earlier turn's history is
//! there, and a retried completed request is answered from the record with no model request.
//!
//! ```text
//! cargo run --example chat_server --features openai
//! ```
//!
//! Offline by default (the mock OpenAI-compatible server of durably-testkit plays the model);
//! with `OPENAI_API_KEY` set (and optionally `OPENAI_BASE_URL`) the server calls that endpoint.

#![allow(clippy::print_stdout)] // an example talks to its user

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::routing::get;
use axum::{Json, Router};
use durably::agent::TaskConfig;
use durably::agent::openai::{OpenAiAgent, StreamEvent, Tool};
use durably::backoff::exponential;
use durably::{SqliteStore, Workflow};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use futures::{Stream, StreamExt};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

const SESSION: &str = "conv-42";

#[derive(Deserialize, JsonSchema)]
struct OrderArgs {
    /// The order number.
    order: String,
}

/// The tool: slow on purpose, so that the demo can kill the server while it runs.
async fn order_status(args: OrderArgs) -> Result<String, std::io::Error> {
    println!("    [server {}] tool order_status({}) runs…", std::process::id(), args.order);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    Ok(format!("order {} left the warehouse yesterday", args.order))
}

#[derive(Deserialize)]
struct ChatRequest {
    message: String,
    /// The client's id for this request: a retry with the same id is the same turn.
    request_id: Option<String>,
}

/// `POST /chat/{session}`: the answer as server-sent events (`text` chunks, then `done`).
async fn chat(
    State(agent): State<OpenAiAgent>,
    UrlPath(session): UrlPath<String>,
    Json(request): Json<ChatRequest>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // `wait(true)`: a second message to a busy session waits for the turn in progress.
    let session = agent.session(session).history_limit(20).wait(true);
    let events = match request.request_id {
        Some(id) => session.stream_with_id(id, request.message).boxed(),
        None => session.stream(request.message).boxed(),
    };
    Sse::new(events.map(|item| {
        Ok(match item {
            Ok(StreamEvent::Text { text, .. }) => Event::default().event("text").data(text),
            Ok(StreamEvent::Done(run)) => Event::default().event("done").data(run.output),
            Ok(_) => Event::default().comment("other"),
            Err(e) => Event::default().event("error").data(e.to_string()),
        })
    }))
}

/// `GET /chat/{session}`: the conversation, read back from the store.
async fn history(
    State(agent): State<OpenAiAgent>,
    UrlPath(session): UrlPath<String>,
) -> (StatusCode, Json<Value>) {
    match agent.session(session).messages().await {
        Ok(messages) => (StatusCode::OK, Json(json!(messages))),
        Err(e) => (StatusCode::BAD_REQUEST, Json(json!({ "error": e.to_string() }))),
    }
}

/// The server side: the agent on the SQLite file `db`, serving on a free port it prints.
async fn serve(db: &Path, base_url: String, key: String) -> anyhow::Result<()> {
    let wf = Workflow::builder("chat-server").store(SqliteStore::open(db).await?).build();
    let agent = OpenAiAgent::builder(&wf)
        .name("support")
        .model("gpt-4o-mini")
        .api_base(base_url)
        .api_key(key)
        .system_prompt("You are a terse support agent. Use order_status for questions about orders.")
        .tool(Tool::new("order_status", "The status of an order", order_status))
        .model_config(TaskConfig::new(3, exponential(2.0, 30.0)))
        .build();
    let app = Router::new().route("/chat/{session}", get(history).post(chat)).with_state(agent);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// The mock model: it looks an order up when asked about one, answers with the tool's result,
/// and otherwise says how much of the conversation it was sent.
fn mock_reply(body: &Value) -> MockReply {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last = messages.last().cloned().unwrap_or_default();
    let text = last["content"].as_str().unwrap_or("").to_owned();
    if last["role"] == "tool" {
        return MockReply::text(format!("Good news: {text}."));
    }
    if let Some(order) = text.split_whitespace().find(|w| w.starts_with('#')) {
        return MockReply::tool_calls([(
            "order_status",
            json!({ "order": order.trim_matches(['#', '?', '.']) }),
        )]);
    }
    let earlier = messages.iter().filter(|m| m["role"] == "user").count().saturating_sub(1);
    MockReply::text(format!("You said \"{text}\"; I was sent {earlier} earlier message(s) of yours."))
}

/// A server process: this program with `--serve`.
struct Server {
    child: Child,
    url: String,
    /// What it prints, line by line.
    lines: std::sync::mpsc::Receiver<String>,
}

fn start_server(db: &Path, base_url: &str, key: &str) -> anyhow::Result<Server> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--serve")
        .env("CHAT_DB", db)
        .env("CHAT_MODEL_URL", base_url)
        .env("CHAT_MODEL_KEY", key)
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines.next().ok_or_else(|| anyhow::anyhow!("the server exited"))??;
        if let Some(url) = line.strip_prefix("listening on ") {
            break url.to_owned();
        }
    };
    // Keep relaying what the server prints.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            println!("{line}");
            let _ = tx.send(line);
        }
    });
    println!("  server {} is up at {url}", child.id());
    Ok(Server { child, url, lines: rx })
}

/// Sends one message; prints the streamed answer; returns it.
async fn send(
    http: &reqwest::Client,
    server: &str,
    message: &str,
    request_id: &str,
) -> anyhow::Result<String> {
    println!("> {message}   (request {request_id})");
    let mut response = http
        .post(format!("{server}/chat/{SESSION}"))
        .json(&json!({ "message": message, "request_id": request_id }))
        .send()
        .await?;
    let (mut buffer, mut answer, mut streamed) = (String::new(), None, false);
    while let Some(chunk) = response.chunk().await? {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let kind = event.lines().find_map(|l| l.strip_prefix("event: ")).unwrap_or("");
            let data: Vec<&str> = event.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
            match kind {
                "text" => {
                    // The chunks as they arrive.
                    print!("{} {}", if streamed { "" } else { "  <" }, data.join("\n").trim());
                    streamed = true;
                    std::io::Write::flush(&mut std::io::stdout())?;
                }
                "done" => answer = Some(data.join("\n")),
                "error" => anyhow::bail!("the server failed: {}", data.join("\n")),
                _ => {}
            }
        }
    }
    if streamed {
        println!();
    }
    answer.ok_or_else(|| anyhow::anyhow!("the stream ended without an answer"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("--serve") {
        let var = |name: &str| std::env::var(name).map_err(|_| anyhow::anyhow!("{name} is not set"));
        return serve(&PathBuf::from(var("CHAT_DB")?), var("CHAT_MODEL_URL")?, var("CHAT_MODEL_KEY")?).await;
    }

    let (mock, base_url, key) = match std::env::var("OPENAI_API_KEY") {
        Ok(key) if !key.is_empty() => {
            let base =
                std::env::var("OPENAI_BASE_URL").unwrap_or_else(|_| "https://api.openai.com/v1".into());
            println!("model: {base} (OPENAI_API_KEY is set)");
            (None, base, key)
        }
        _ => {
            let mock = MockOpenAi::responder(mock_reply).await;
            println!("model: mock server at {}", mock.base_url());
            let base = mock.base_url();
            (Some(mock), base, "sk-offline-example".to_owned())
        }
    };
    let requests = || mock.as_ref().map(MockOpenAi::requests);
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("chat.db");
    let http = reqwest::Client::new();

    println!("\n== server 1");
    let mut server = start_server(&db, &base_url, &key)?;
    send(&http, &server.url, "Hi, I am Ann.", "req-1").await?;

    // The next request makes the agent call a slow tool: kill the server while it runs.
    let request = {
        let (http, url) = (http.clone(), server.url.clone());
        tokio::spawn(async move { send(&http, &url, "Where is my order #1234?", "req-2").await })
    };
    // Until the tool runs (a real model may answer without it: then the turn just completes).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !request.is_finished() && std::time::Instant::now() < deadline {
        match server.lines.recv_timeout(Duration::from_millis(50)) {
            Ok(line) if line.contains("tool order_status") => break,
            _ => {}
        }
    }
    println!("  !! killing server {} (SIGKILL) while the turn's tool call runs", server.child.id());
    server.child.kill()?;
    server.child.wait()?;
    match request.await? {
        Ok(answer) if mock.is_none() => println!("  (the model answered before the kill: {answer})"),
        Ok(answer) => anyhow::bail!("the killed server answered: {answer}"),
        Err(e) => println!("  the client saw the connection drop: {e}"),
    }
    let before = requests();

    println!("\n== server 2, on the same database");
    let server = start_server(&db, &base_url, &key)?;
    // The client retries its request: the turn resumes from its recorded steps.
    let answer = send(&http, &server.url, "Where is my order #1234?", "req-2").await?;
    println!("  answer: {answer}");
    if let (Some(before), Some(after)) = (before, requests()) {
        // Only the model call after the tool: the tool-call request was recorded before the kill.
        assert_eq!(after - before, 1, "a recorded model call was sent again");
        println!("  model requests for the resumed turn: 1 (its tool-call request came from the record)");
    }
    // A retried request whose turn completed: its recorded answer, with no model request.
    let again = requests();
    let replayed = send(&http, &server.url, "Hi, I am Ann.", "req-1").await?;
    assert_eq!(requests(), again, "a completed turn sent a model request");
    println!("  replayed from the record: {replayed}");
    // The conversation goes on, with its whole history.
    send(&http, &server.url, "Thanks! What did I tell you my name was?", "req-3").await?;

    let conversation: Value = http.get(format!("{}/chat/{SESSION}", server.url)).send().await?.json().await?;
    println!("\nthe conversation, read back from the store:");
    for m in conversation.as_array().cloned().unwrap_or_default() {
        println!("  {:>9}: {}", m["role"].as_str().unwrap_or("?"), m["content"].as_str().unwrap_or(""));
    }
    let mut server = server;
    server.child.kill()?;
    server.child.wait()?;
    if mock.is_some() {
        assert_eq!(
            conversation.as_array().map(Vec::len),
            Some(6),
            "three turns, each a message and an answer"
        );
        println!("\nmodel requests in all: {}", requests().unwrap_or(0));
    }
    Ok(())
}
