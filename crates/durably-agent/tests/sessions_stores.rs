//! The session behaviours on every store, written once: the history of earlier turns (tool
//! calls included) reaches the model and reads back from a new engine, a turn id is idempotent,
//! a turn whose execution died resumes without repeating its recorded calls, one turn at a time
//! per session across engines, and a send reads its session in one store call whatever its
//! length. `on_store!` runs the table on memory, SQLite, Redis and PostgreSQL; a new engine on
//! the same store stands for another (or a restarted) process, as in the engine suite.
//!
//! Redis and PostgreSQL are the servers at `DURABLY_REDIS_URL` and `DURABLY_POSTGRES_URL`
//! (defaults on 127.0.0.1); a test fails naming a server that does not answer, unless
//! `DURABLY_SKIP_SERVICES=1` asks to skip it.
#![cfg(feature = "openai")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod store_fixtures;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use durably_agent::TaskConfig;
use durably_agent::openai::{OpenAiAgent, Tool};
use durably_agent::sessions::{self, ChatMessage};
use durably_core::backoff::constant;
use durably_core::store::Store;
use durably_core::{Error, RunStatus, Workflow};
use durably_testkit::faults::{FaultStore, Op};
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use serde_json::{Value, json};
use store_fixtures::{memory, postgres, redis, sqlite};

/// An engine on `store`: one per simulated process.
fn engine(store: &Arc<dyn Store>) -> Workflow {
    Workflow::builder("sessions").shared_store(store.clone()).default_backoff(constant(0.0)).build()
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct LookupArgs {
    /// The order.
    order: String,
}

/// The agent `bot` on `wf`, with a tool `lookup` that waits for `gate` (when given) before it
/// answers, and counts its executions in `ran`.
fn bot(
    wf: &Workflow,
    mock: &MockOpenAi,
    ran: &Arc<AtomicU64>,
    gate: Option<Arc<tokio::sync::Notify>>,
) -> OpenAiAgent {
    let ran = ran.clone();
    let lookup = Tool::new("lookup", "Looks an order up", move |a: LookupArgs| {
        let (ran, gate) = (ran.clone(), gate.clone());
        async move {
            ran.fetch_add(1, Ordering::SeqCst);
            if let Some(gate) = gate {
                gate.notified().await;
            }
            Ok::<_, std::io::Error>(format!("order {} shipped on May 2", a.order))
        }
    });
    OpenAiAgent::builder(wf)
        .name("bot")
        .api_base(mock.base_url())
        .api_key("sk-test-session-stores")
        .tool(lookup)
        .model_config(TaskConfig::new(0, constant(0.0)))
        .tool_config(TaskConfig::new(0, constant(0.0)))
        .build()
}

fn roles(body: &Value) -> Vec<String> {
    body["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap().to_owned()).collect()
}

/// Waits until the turn run `run_id` exists with `status`.
async fn reached(wf: &Workflow, run_id: &str, status: RunStatus) {
    for _ in 0..1000 {
        if wf.get_run(run_id).await.unwrap().is_some_and(|r| r.status == status) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("turn {run_id} never reached {status:?}");
}

/// Drops the execution of `turn` once its tool runs, as a crash would.
async fn crash_in_its_tool<T: std::fmt::Debug>(turn: tokio::task::JoinHandle<T>, ran: &AtomicU64) {
    while ran.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    turn.abort();
    assert!(turn.await.unwrap_err().is_cancelled());
}

/// Three turns, the first with a tool call: each later request carries the earlier turns'
/// messages, tool call and result, and answers; a new engine reads the conversation back,
/// lists the session and deletes it.
async fn history_reaches_the_model_and_reads_back(store: Arc<dyn Store>) {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("lookup", json!({ "order": "A1" }))]));
    mock.push_all(["A1 has shipped.", "It was A1.", "Bye."].map(MockReply::text));
    let ran = Arc::new(AtomicU64::new(0));
    let session = bot(&engine(&store), &mock, &ran, None).session("conv-1");
    assert_eq!(session.send("Where is A1?").await.unwrap().output, "A1 has shipped.");
    assert_eq!(session.send("Which order?").await.unwrap().output, "It was A1.");
    // A new engine (another process) continues the conversation with the same history.
    let wf2 = engine(&store);
    let again = bot(&wf2, &mock, &ran, None).session("conv-1");
    assert_eq!(again.send("Thanks").await.unwrap().output, "Bye.");
    assert_eq!((mock.requests(), ran.load(Ordering::SeqCst)), (4, 1));
    let received = mock.received();
    assert_eq!(roles(&received[2]), ["user", "assistant", "tool", "assistant", "user"]);
    assert_eq!(roles(&received[3]), ["user", "assistant", "tool", "assistant", "user", "assistant", "user"]);
    assert!(received[3].to_string().contains("order A1 shipped on May 2"), "{}", received[3]);
    let expected = [
        ChatMessage::user("Where is A1?"),
        ChatMessage::assistant("A1 has shipped."),
        ChatMessage::user("Which order?"),
        ChatMessage::assistant("It was A1."),
        ChatMessage::user("Thanks"),
        ChatMessage::assistant("Bye."),
    ];
    assert_eq!(sessions::messages(&wf2, "bot", "conv-1").await.unwrap(), expected);
    let listed = sessions::list(&wf2).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].session.as_str(), listed[0].turns, listed[0].completed), ("conv-1", 3, 3));
    assert_eq!(again.delete().await.unwrap(), 3);
    assert!(session.messages().await.unwrap().is_empty());
    assert!(sessions::list(&wf2).await.unwrap().is_empty());
}

/// A turn sent again with its turn id is the recorded answer, with no request and no new turn,
/// from any engine; the same turn id with another message is `NonDeterminism` naming the turn.
async fn a_turn_id_is_idempotent(store: Arc<dyn Store>) {
    let mock = MockOpenAi::start().await;
    mock.push_all(["one", "two"].map(MockReply::text));
    let ran = Arc::new(AtomicU64::new(0));
    let session = bot(&engine(&store), &mock, &ran, None).session("idem");
    assert_eq!(session.send_with_id("req-1", "first").await.unwrap().output, "one");
    assert_eq!(session.send_with_id("req-2", "second").await.unwrap().output, "two");
    let again = bot(&engine(&store), &mock, &ran, None).session("idem");
    assert_eq!(again.send_with_id("req-1", "first").await.unwrap().output, "one");
    assert_eq!(again.send_with_id("req-2", "second").await.unwrap().output, "two");
    assert_eq!(mock.requests(), 2, "a completed turn sent a request");
    let err = again.send_with_id("req-1", "not first").await.unwrap_err();
    assert!(matches!(err, Error::NonDeterminism { ref run_id, .. } if run_id == "bot:idem#1"), "{err}");
    assert_eq!(again.messages().await.unwrap().len(), 4, "a turn was added");
}

/// Turn 2 dies in its tool call (its execution dropped, as by a crash); the same turn id from
/// a new engine resumes it: its recorded model call is not sent again, only the tool call in
/// flight runs again, and turn 1's history still reaches the model.
async fn a_crashed_turn_resumes_without_repeating_recorded_calls(store: Arc<dyn Store>) {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::text("Hello."));
    mock.push(MockReply::tool_calls([("lookup", json!({ "order": "C3" }))]));
    mock.push(MockReply::text("C3 has shipped."));
    let ran = Arc::new(AtomicU64::new(0));
    let wf = engine(&store);
    bot(&wf, &mock, &ran, None).session("crash").send_with_id("req-1", "Hi").await.unwrap();
    let never = Arc::new(tokio::sync::Notify::new());
    let doomed = bot(&wf, &mock, &ran, Some(never)).session("crash");
    let turn = tokio::spawn(async move { doomed.send_with_id("req-2", "Where is C3?").await });
    crash_in_its_tool(turn, &ran).await;
    assert_eq!(mock.requests(), 2);
    assert_eq!(wf.get_run("bot:crash#2").await.unwrap().unwrap().status, RunStatus::Running);

    let resumed = bot(&engine(&store), &mock, &ran, None).session("crash");
    assert_eq!(resumed.send_with_id("req-2", "Where is C3?").await.unwrap().output, "C3 has shipped.");
    assert_eq!(mock.requests(), 3, "a recorded model call was sent again");
    assert_eq!(ran.load(Ordering::SeqCst), 2, "only the tool call in flight runs again");
    let last = mock.received()[2].to_string();
    assert!(last.contains("Hello.") && last.contains("shipped on May 2"), "{last}");
    assert_eq!(resumed.messages().await.unwrap().len(), 4);
}

/// A turn whose process died is resumed by `sessions::resume` of its agent on another engine
/// (a service's start or worker), with no send: its recorded model call is not sent again,
/// turn 1's history reaches the model, and nothing is left to resume afterwards.
async fn resume_finishes_an_interrupted_turn_without_a_send(store: Arc<dyn Store>) {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::text("Hello."));
    mock.push(MockReply::tool_calls([("lookup", json!({ "order": "E5" }))]));
    mock.push(MockReply::text("E5 has shipped."));
    let ran = Arc::new(AtomicU64::new(0));
    let wf = engine(&store);
    bot(&wf, &mock, &ran, None).session("resume").send("Hi").await.unwrap();
    let doomed = bot(&wf, &mock, &ran, Some(Arc::new(tokio::sync::Notify::new()))).session("resume");
    let turn = tokio::spawn(async move { doomed.send("Where is E5?").await });
    crash_in_its_tool(turn, &ran).await;

    let wf2 = engine(&store);
    let agent = bot(&wf2, &mock, &ran, None);
    // Another agent's resume leaves the turn alone.
    let other = OpenAiAgent::builder(&wf2).name("other").api_base(mock.base_url()).api_key("sk-x").build();
    assert!(sessions::resume(&other).await.unwrap().is_empty());
    let resumed = sessions::resume(&agent).await.unwrap();
    assert_eq!(resumed.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["bot:resume#2"]);
    for (_, task) in resumed {
        assert_eq!(task.await.unwrap().unwrap().output, "E5 has shipped.");
    }
    assert_eq!((mock.requests(), ran.load(Ordering::SeqCst)), (3, 2), "a recorded call was made again");
    assert!(mock.received()[2].to_string().contains("Hello."));
    assert_eq!(wf2.get_run("bot:resume#2").await.unwrap().unwrap().status, RunStatus::Completed);
    assert!(sessions::resume(&agent).await.unwrap().is_empty(), "a finished turn was resumed");
    assert_eq!(agent.session("resume").messages().await.unwrap().len(), 4);
}

/// While a turn executes on one engine, a send of the same session on another fails at once
/// with `RunInProgress` naming that turn; with `wait(true)` it waits, then sends after it, with
/// that turn in its history.
async fn one_turn_at_a_time_across_engines(store: Arc<dyn Store>) {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("lookup", json!({ "order": "D4" }))]));
    mock.push_all(["D4 has shipped.", "You asked about D4."].map(MockReply::text));
    let ran = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(tokio::sync::Notify::new());
    let (wf_a, wf_b) = (engine(&store), engine(&store));
    let a = bot(&wf_a, &mock, &ran, Some(gate.clone())).session("busy");
    let first = tokio::spawn(async move { a.send("Where is D4?").await });
    reached(&wf_b, "bot:busy#1", RunStatus::Running).await;
    while ran.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let b = bot(&wf_b, &mock, &ran, None).session("busy");
    let err = b.send("What did I ask?").await.unwrap_err();
    assert!(matches!(err, Error::RunInProgress { ref run_id, .. } if run_id == "bot:busy#1"), "{err}");
    assert_eq!(mock.requests(), 1, "a refused send reached the model");

    let waiting = b.clone().wait(true);
    let second = tokio::spawn(async move { waiting.send("What did I ask?").await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!second.is_finished(), "a waiting send did not wait");
    gate.notify_one();
    assert_eq!(first.await.unwrap().unwrap().output, "D4 has shipped.");
    assert_eq!(second.await.unwrap().unwrap().output, "You asked about D4.");
    assert_eq!(mock.requests(), 3);
    assert_eq!(roles(&mock.received()[2]), ["user", "assistant", "tool", "assistant", "user"]);
    assert_eq!(b.messages().await.unwrap().len(), 4);
}

/// A send reads its session in one `list_runs` call and reads no turn by id, at turn 2 as at
/// turn 25 (one store round trip, not one per earlier turn).
async fn a_send_reads_its_session_in_one_store_call(store: Arc<dyn Store>) {
    let mock = MockOpenAi::responder(|_| MockReply::text("ok")).await;
    let counted = Arc::new(FaultStore::new(store));
    let wf = Workflow::builder("sessions").shared_store(counted.clone()).build();
    let ran = Arc::new(AtomicU64::new(0));
    let session = bot(&wf, &mock, &ran, None).session("long");
    let calls = |op| counted.calls(op);
    let mut per_send = Vec::new();
    for n in 1..=25 {
        let (lists, gets) = (calls(Op::ListRuns), calls(Op::GetRun));
        session.send_with_id(format!("t{n}"), format!("message {n}")).await.unwrap();
        if n == 2 || n == 25 {
            per_send.push((calls(Op::ListRuns) - lists, calls(Op::GetRun) - gets));
        }
    }
    assert_eq!((per_send[0].0, per_send[1].0), (1, 1), "a send listed its session more than once");
    // The engine's cancellation watcher may ask once more (its `cancelled_runs` counts as a
    // `get_run`), but reading 24 earlier turns one by one would be 24 more.
    assert!(per_send[1].1 <= per_send[0].1 + 2, "get_run calls grew with the turns: {per_send:?}");
    // A retried turn: the same single read, no write.
    let (lists, opens) = (calls(Op::ListRuns), calls(Op::OpenRun));
    session.send_with_id("t10", "message 10").await.unwrap();
    assert_eq!((calls(Op::ListRuns) - lists, calls(Op::OpenRun) - opens), (1, 0));
    assert_eq!(mock.requests(), 25);
}

/// The behaviours, each a test on the store `$open` gives.
macro_rules! on_store {
    ($store:ident => $open:path) => {
        mod $store {
            use super::*;

            on_store!(@each $open;
                history_reaches_the_model_and_reads_back
                a_turn_id_is_idempotent
                a_crashed_turn_resumes_without_repeating_recorded_calls
                resume_finishes_an_interrupted_turn_without_a_send
                one_turn_at_a_time_across_engines
                a_send_reads_its_session_in_one_store_call
            );
        }
    };
    (@each $open:path; $($name:ident)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(fixture) = $open().await else { return };
                super::$name(fixture.store.clone()).await;
            }
        )*
    };
}

on_store!(in_memory => memory);
on_store!(on_sqlite => sqlite);
on_store!(on_redis => redis);
on_store!(on_postgres => postgres);
