//! Durable conversations with the OpenAI agent on SQLite, against the mock model: the history
//! reaches the model, a completed turn replays with no request, one turn at a time per session
//! (fail or wait), the history limit and compaction bound the request, storage grows linearly
//! with the turns, bad ids are refused before anything is written, and the stateless `chat`.
#![cfg(feature = "openai")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use durably_agent::TaskConfig;
use durably_agent::openai::async_openai::types::chat::{
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestAssistantMessageContent,
    ChatCompletionRequestMessage, ChatCompletionRequestUserMessage,
};
use durably_agent::openai::{OpenAiAgent, StreamEvent};
use durably_agent::sessions::{self, ChatMessage, SESSION_WORKFLOW};
use durably_core::backoff::constant;
use durably_core::{Error, RunFilter, Workflow};
use durably_sqlite::SqliteStore;
use durably_testkit::mock_openai::{MockOpenAi, MockReply};
use futures::StreamExt;
use serde_json::Value;

async fn engine(db: &Path) -> Workflow {
    Workflow::builder("chat").store(SqliteStore::open(db).await.unwrap()).build()
}

fn agent(wf: &Workflow, mock: &MockOpenAi) -> OpenAiAgent {
    OpenAiAgent::builder(wf)
        .name("bot")
        .model("gpt-test")
        .system_prompt("You are terse.")
        .api_base(mock.base_url())
        .api_key("sk-test-sessions")
        .model_config(TaskConfig::new(0, constant(0.0)))
        .build()
}

/// The (role, text) pairs of a request body's messages.
fn sent(body: &Value) -> Vec<(String, String)> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["role"].as_str().unwrap().to_owned(), m["content"].as_str().unwrap_or("").to_owned()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(r, t)| ((*r).to_owned(), (*t).to_owned())).collect()
}

#[tokio::test]
async fn multi_turn_history_reaches_the_model_and_reads_back() {
    let mock = MockOpenAi::start().await;
    mock.push_all(["Hi Ann.", "You are Ann.", "Bye Ann."].map(MockReply::text));
    let dir = tempfile::tempdir().unwrap();
    let wf = engine(&dir.path().join("s.db")).await;
    let session = agent(&wf, &mock).session("conv-42");
    assert_eq!(session.send("I am Ann").await.unwrap().output, "Hi Ann.");
    assert_eq!(session.send("Who am I?").await.unwrap().output, "You are Ann.");
    let third = session.send("Bye").await.unwrap();
    assert_eq!(third.output, "Bye Ann.");
    assert_eq!(mock.requests(), 3);
    let received = mock.received();
    assert_eq!(sent(&received[0]), pairs(&[("system", "You are terse."), ("user", "I am Ann")]));
    assert_eq!(
        sent(&received[2]),
        pairs(&[
            ("system", "You are terse."),
            ("user", "I am Ann"),
            ("assistant", "Hi Ann."),
            ("user", "Who am I?"),
            ("assistant", "You are Ann."),
            ("user", "Bye"),
        ])
    );
    // The reply carries the conversation as sent, with the answer.
    assert_eq!(third.messages.len(), 6);

    // Read back, also from a new engine on the same file.
    let expected = vec![
        ChatMessage::user("I am Ann"),
        ChatMessage::assistant("Hi Ann."),
        ChatMessage::user("Who am I?"),
        ChatMessage::assistant("You are Ann."),
        ChatMessage::user("Bye"),
        ChatMessage::assistant("Bye Ann."),
    ];
    assert_eq!(session.messages().await.unwrap(), expected);
    let wf2 = engine(&dir.path().join("s.db")).await;
    assert_eq!(sessions::messages(&wf2, "bot", "conv-42").await.unwrap(), expected);
    let listed = sessions::list(&wf2).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].agent.as_str(), listed[0].session.as_str()), ("bot", "conv-42"));
    assert_eq!((listed[0].turns, listed[0].completed), (3, 3));
    assert_eq!(agent(&wf2, &mock).sessions().await.unwrap(), listed);
    // Each turn as an operator's tool sees it: its run, message, answer and usage.
    let turns = sessions::turns(&wf2, "bot", "conv-42").await.unwrap();
    let seen: Vec<(u32, &str, &str, Option<&str>)> =
        turns.iter().map(|t| (t.turn, t.run_id.as_str(), t.message.as_str(), t.output.as_deref())).collect();
    assert_eq!(
        seen,
        [
            (1, "bot:conv-42#1", "I am Ann", Some("Hi Ann.")),
            (2, "bot:conv-42#2", "Who am I?", Some("You are Ann.")),
            (3, "bot:conv-42#3", "Bye", Some("Bye Ann.")),
        ]
    );
    assert!(turns.iter().all(|t| t.status == durably_core::RunStatus::Completed && t.model_calls == Some(1)));
    assert!(turns[0].usage.as_ref().is_some_and(|u| u["prompt_tokens"].as_u64().is_some_and(|n| n > 0)));
    assert!(sessions::turns(&wf2, "bot", "").await.is_err(), "an empty session id is refused");

    // Deleting the session removes its turns.
    assert_eq!(session.delete().await.unwrap(), 3);
    assert!(session.messages().await.unwrap().is_empty());
    assert!(sessions::list(&wf2).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_completed_turn_replays_with_no_request() {
    let mock = MockOpenAi::start().await;
    mock.push_all(["first answer", "second answer"].map(MockReply::text));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let wf = engine(&db).await;
    let session = agent(&wf, &mock).session("replay");
    let a = session.send_with_id("req-1", "one").await.unwrap();
    let b = session.send_with_id("req-2", "two").await.unwrap();
    assert_eq!(mock.requests(), 2);
    // The same turn ids again, from a new engine (a restarted server): the recorded answers.
    let wf2 = engine(&db).await;
    let again = agent(&wf2, &mock).session("replay");
    assert_eq!(again.send_with_id("req-1", "one").await.unwrap().output, a.output);
    assert_eq!(again.send_with_id("req-2", "two").await.unwrap().output, b.output);
    assert_eq!(mock.requests(), 2, "a completed turn sent a request");
    assert_eq!(again.messages().await.unwrap().len(), 4, "no turn was added");
    // Streaming a completed turn yields its recorded answer, with no request.
    let events: Vec<StreamEvent> =
        again.stream_with_id("req-2", "two").map(|e| e.unwrap()).collect::<Vec<_>>().await;
    assert_eq!(events[0], StreamEvent::Text { text: "second answer".into(), replayed: true });
    assert!(matches!(events.last(), Some(StreamEvent::Done(run)) if run.output == "second answer"));
    assert_eq!(mock.requests(), 2);
    // The same turn id with another message is refused, naming the turn.
    let err = again.send_with_id("req-1", "not one").await.unwrap_err();
    assert!(matches!(err, Error::NonDeterminism { ref run_id, .. } if run_id == "bot:replay#1"), "{err}");
    assert_eq!(mock.requests(), 2);
}

#[tokio::test]
async fn history_and_replay_in_memory() {
    let mock = MockOpenAi::start().await;
    mock.push_all(["Hi Ann.", "You are Ann."].map(MockReply::text));
    let wf = Workflow::builder("chat").store(durably_core::MemoryStore::new()).build();
    let session = agent(&wf, &mock).session("mem");
    session.send_with_id("r1", "I am Ann").await.unwrap();
    assert_eq!(session.send_with_id("r2", "Who am I?").await.unwrap().output, "You are Ann.");
    assert_eq!(
        sent(&mock.received()[1])[1..],
        pairs(&[("user", "I am Ann"), ("assistant", "Hi Ann."), ("user", "Who am I?")])
    );
    assert_eq!(session.send_with_id("r1", "I am Ann").await.unwrap().output, "Hi Ann.");
    assert_eq!(mock.requests(), 2);
    assert_eq!(session.messages().await.unwrap().len(), 4);
}

#[tokio::test]
async fn a_live_turn_streams_its_text() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::text("streamed answer"));
    let dir = tempfile::tempdir().unwrap();
    let wf = engine(&dir.path().join("s.db")).await;
    let session = agent(&wf, &mock).session("stream");
    let events: Vec<StreamEvent> = session.stream("hello").map(|e| e.unwrap()).collect::<Vec<_>>().await;
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Text { text, replayed: false } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "streamed answer");
    assert!(matches!(events.last(), Some(StreamEvent::Done(run)) if run.output == "streamed answer"));
    assert_eq!(session.messages().await.unwrap().len(), 2);
}

/// Waits until the turn run `run_id` exists (its send is in its model call then).
async fn started(wf: &Workflow, run_id: &str) {
    for _ in 0..500 {
        if wf.get_run(run_id).await.unwrap().is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("turn {run_id} never started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_send_fails_while_a_turn_runs_or_waits_for_it() {
    let mock = MockOpenAi::start().await;
    mock.latency(Duration::from_millis(1000));
    mock.push_all(["slow one", "two", "three"].map(MockReply::text));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    // Two engines on one file: two servers sharing a database.
    let (wf_a, wf_b) = (engine(&db).await, engine(&db).await);
    let a = agent(&wf_a, &mock).session("busy");
    let b = agent(&wf_b, &mock).session("busy");
    let first = tokio::spawn(async move { a.send("one").await });
    started(&wf_b, "bot:busy#1").await;
    // The default: fail at once, naming the busy turn.
    let err = b.send("two").await.unwrap_err();
    assert!(matches!(err, Error::RunInProgress { ref run_id, .. } if run_id == "bot:busy#1"), "{err}");
    // In the same engine too.
    let same = agent(&wf_a, &mock).session("busy");
    let err = same.send("two").await.unwrap_err();
    assert!(matches!(err, Error::RunInProgress { .. }), "{err}");
    assert_eq!(first.await.unwrap().unwrap().output, "slow one");
    assert_eq!(mock.requests(), 1, "a refused send reached the model");

    // Waiting: both sends complete, one after the other, the second seeing the first.
    let a = agent(&wf_a, &mock).session("busy").wait(true);
    let b = agent(&wf_b, &mock).session("busy").wait(true);
    let second = tokio::spawn(async move { a.send("two").await });
    started(&wf_b, "bot:busy#2").await;
    let third = b.send("three").await.unwrap();
    assert_eq!(second.await.unwrap().unwrap().output, "two");
    assert_eq!(third.output, "three");
    assert_eq!(mock.requests(), 3);
    let last = sent(&mock.received()[2]);
    assert_eq!(last[last.len() - 2..], pairs(&[("assistant", "two"), ("user", "three")]));
    assert_eq!(b.messages().await.unwrap().len(), 6);
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct RefundArgs {
    /// The order.
    order: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_waiting_for_an_approval_keeps_the_session_busy() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("refund", serde_json::json!({ "order": "A1" }))]));
    mock.push_all(["Refunded.", "You are welcome."].map(MockReply::text));
    let dir = tempfile::tempdir().unwrap();
    let wf = engine(&dir.path().join("s.db")).await;
    let refund = durably_agent::openai::Tool::new("refund", "Refunds an order", |a: RefundArgs| async move {
        Ok::<_, std::io::Error>(format!("refunded {}", a.order))
    })
    .requires_approval();
    let bot = OpenAiAgent::builder(&wf)
        .name("bot")
        .api_base(mock.base_url())
        .api_key("sk-test-sessions")
        .tool(refund)
        .model_config(TaskConfig::new(0, constant(0.0)))
        .build();
    let session = bot.session("refunds");
    let first = tokio::spawn({
        let session = session.clone();
        async move { session.send("Refund order A1").await }
    });
    let signal = loop {
        if let Some(run) = wf.get_run("bot:refunds#1").await.unwrap()
            && let Some(signal) = run.waiting_on
        {
            break signal;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // A send from another engine (another server) finds the turn waiting: busy, at once.
    let other = agent(&engine(&dir.path().join("s.db")).await, &mock).session("refunds");
    let err = other.send("Thanks").await.unwrap_err();
    assert!(
        matches!(err, Error::RunInProgress { ref run_id, ref owner } if run_id == "bot:refunds#1" && owner.contains(&signal)),
        "{err}"
    );
    wf.complete("bot:refunds#1", &signal, &durably_agent::Approval::approve()).await.unwrap();
    assert_eq!(first.await.unwrap().unwrap().output, "Refunded.");
    assert_eq!(session.send("Thanks").await.unwrap().output, "You are welcome.");
    assert_eq!(mock.requests(), 3);
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct LookupArgs {
    /// The order.
    order: String,
}

/// The agent `bot` with a tool `lookup` that says an order shipped on May 2.
fn looking_up(wf: &Workflow, mock: &MockOpenAi) -> OpenAiAgent {
    let lookup =
        durably_agent::openai::Tool::new("lookup", "Looks an order up", |a: LookupArgs| async move {
            Ok::<_, std::io::Error>(format!("order {} shipped on May 2", a.order))
        });
    OpenAiAgent::builder(wf)
        .name("bot")
        .api_base(mock.base_url())
        .api_key("sk-test-sessions")
        .tool(lookup)
        .model_config(TaskConfig::new(0, constant(0.0)))
        .build()
}

/// The messages of a request body, whole.
fn messages(body: &Value) -> Vec<Value> {
    body["messages"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_later_turn_sends_the_tool_calls_and_results_of_earlier_turns() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("lookup", serde_json::json!({ "order": "A1" }))]));
    mock.push_all(["A1 has shipped.", "It was A1.", "Still A1."].map(MockReply::text));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let bot = |wf: &Workflow| looking_up(wf, &mock);
    let wf = engine(&db).await;
    let session = bot(&wf).session("orders");
    let first = session.send_with_id("t1", "Where is A1?").await.unwrap();
    assert_eq!(first.output, "A1 has shipped.");
    // The reply carries the turn's tool call and result between the message and the answer.
    let roles: Vec<Value> =
        first.messages.iter().map(|m| serde_json::to_value(m).unwrap()["role"].clone()).collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant"]);
    assert_eq!(session.send_with_id("t2", "Which order?").await.unwrap().output, "It was A1.");
    assert_eq!(mock.requests(), 3, "turn 1: a tool call and an answer; turn 2: an answer");
    let turn2 = messages(&mock.received()[2]);
    let roles: Vec<&str> = turn2.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant", "user"]);
    // Turn 1's call, exactly as the model asked for it, and its result answering that call.
    let call = &turn2[1]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "lookup");
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
        serde_json::json!({ "order": "A1" })
    );
    assert_eq!(turn2[2]["tool_call_id"], call["id"]);
    assert!(turn2[2]["content"].as_str().unwrap().contains("order A1 shipped on May 2"), "{}", turn2[2]);
    assert_eq!(turn2[3]["content"], "A1 has shipped.");

    // Rebuilt from the store by a new engine: the same history, and no tool call runs again.
    let again = bot(&engine(&db).await).session("orders");
    assert_eq!(again.send_with_id("t3", "And now?").await.unwrap().output, "Still A1.");
    assert_eq!(mock.requests(), 4);
    let turn3 = messages(&mock.received()[3]);
    assert_eq!(turn3[..4], turn2[..4], "turn 1 was sent differently by a new engine");
    assert_eq!(turn3.len(), 7);
    // The conversation read back is still messages and answers.
    assert_eq!(again.messages().await.unwrap().len(), 6);
}

#[tokio::test]
async fn the_history_limit_keeps_a_tool_result_with_its_call() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::tool_calls([("lookup", serde_json::json!({ "order": "B2" }))]));
    mock.push_all(["B2 has shipped.", "ok", "bye"].map(MockReply::text));
    let dir = tempfile::tempdir().unwrap();
    let wf = engine(&dir.path().join("s.db")).await;
    let bot = looking_up(&wf, &mock);
    // At most three messages and answers: the tool call and result are not counted…
    let session = bot.session("limited-tools").history_limit(3);
    session.send("Where is B2?").await.unwrap();
    session.send("Thanks").await.unwrap();
    let roles = |n: usize| -> Vec<String> {
        messages(&mock.received()[n]).iter().map(|m| m["role"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(roles(2), ["user", "assistant", "tool", "assistant", "user"]);
    // …and go with their turn's message: once it is left out, so are they (a tool result
    // without its call is refused by the API).
    session.send("Bye").await.unwrap();
    assert_eq!(roles(3), ["assistant", "user", "assistant", "user"]);
    assert_eq!(mock.requests(), 4);
}

#[tokio::test]
async fn the_history_limit_bounds_the_request() {
    let mock = MockOpenAi::start().await;
    mock.push_all((1..=6).map(|n| MockReply::text(format!("a{n}"))));
    let dir = tempfile::tempdir().unwrap();
    let wf = engine(&dir.path().join("s.db")).await;
    let session = agent(&wf, &mock).session("limited").history_limit(2);
    for n in 1..=6 {
        session.send(format!("q{n}")).await.unwrap();
    }
    let received = mock.received();
    for body in &received {
        assert!(body["messages"].as_array().unwrap().len() <= 4, "system + 2 + the message");
    }
    assert_eq!(
        sent(&received[5]),
        pairs(&[("system", "You are terse."), ("user", "q5"), ("assistant", "a5"), ("user", "q6")])
    );
    // The whole conversation is still there.
    assert_eq!(session.messages().await.unwrap().len(), 12);
}

#[tokio::test]
async fn compaction_is_a_recorded_step_not_repeated_on_replay() {
    let mock = MockOpenAi::start().await;
    mock.push_all(["a1", "a2", "SUMMARY-1-2", "a3", "a4"].map(MockReply::text));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let wf = engine(&db).await;
    let session = agent(&wf, &mock).session("compact").compact_after(2);
    session.send_with_id("t1", "q1").await.unwrap();
    session.send_with_id("t2", "q2").await.unwrap();
    assert_eq!(mock.requests(), 2);
    // Turn 3: two turns are not covered by a summary: one summary call, then the turn.
    assert_eq!(session.send_with_id("t3", "q3").await.unwrap().output, "a3");
    assert_eq!(mock.requests(), 4);
    let received = mock.received();
    let summarize = sent(&received[2]);
    assert!(summarize.last().unwrap().1.contains("User: q1\nAssistant: a1\nUser: q2\nAssistant: a2"));
    assert_eq!(
        sent(&received[3]),
        pairs(&[
            ("system", "You are terse."),
            ("user", "Summary of the earlier conversation: SUMMARY-1-2"),
            ("user", "q3"),
        ])
    );
    let steps: Vec<String> =
        wf.list_steps("bot:compact#3").await.unwrap().into_iter().map(|s| s.step_id).collect();
    assert_eq!(steps, ["bot.compact.model#1", "bot.model#1"]);
    // Replayed from a new engine: neither the summary nor the answer is asked again.
    let again = agent(&engine(&db).await, &mock).session("compact").compact_after(2);
    assert_eq!(again.send_with_id("t3", "q3").await.unwrap().output, "a3");
    assert_eq!(mock.requests(), 4);
    // Turn 4: the summary and turn 3.
    again.send_with_id("t4", "q4").await.unwrap();
    assert_eq!(
        sent(&mock.received()[4]),
        pairs(&[
            ("system", "You are terse."),
            ("user", "Summary of the earlier conversation: SUMMARY-1-2"),
            ("user", "q3"),
            ("assistant", "a3"),
            ("user", "q4"),
        ])
    );
    // The conversation read back is every turn, not the summary.
    assert_eq!(again.messages().await.unwrap().len(), 8);
}

/// Every byte a session's turns keep: inputs, outputs, and step values and errors.
async fn stored_bytes(wf: &Workflow) -> usize {
    let mut total = 0;
    for run in wf.list_runs(&RunFilter::new().workflow(SESSION_WORKFLOW)).await.unwrap() {
        total += run.input.map_or(0, |s| s.len()) + run.output.map_or(0, |s| s.len());
        for step in wf.list_steps(&run.run_id).await.unwrap() {
            total += step.value.map_or(0, |s| s.len()) + step.error.map_or(0, |s| s.len());
            total += step.request_hash.map_or(0, |s| s.len());
        }
    }
    total
}

#[tokio::test]
async fn storage_grows_linearly_with_the_turns() {
    let mock =
        MockOpenAi::responder(|_| MockReply::text("an answer of a fixed length, long enough to count")).await;
    let dir = tempfile::tempdir().unwrap();
    let wf = engine(&dir.path().join("s.db")).await;
    let session = agent(&wf, &mock).session("long");
    let mut sizes = Vec::new();
    for n in 1..=20 {
        session.send(format!("message number {n:03} of a long conversation")).await.unwrap();
        if n == 10 || n == 20 {
            sizes.push(stored_bytes(&wf).await);
        }
    }
    // The requests grow with the history (the last one carries all 19 earlier turns)…
    let received = mock.received();
    assert_eq!(received[19]["messages"].as_array().unwrap().len(), 1 + 2 * 19 + 1);
    // …what is stored does not: twice the turns, about twice the bytes (quadratic would be 4x).
    let ratio = sizes[1] as f64 / sizes[0] as f64;
    assert!((1.8..2.3).contains(&ratio), "10 turns: {} bytes, 20 turns: {} bytes", sizes[0], sizes[1]);
}

#[tokio::test]
async fn bad_session_and_turn_ids_are_refused_before_anything_is_written() {
    let mock = MockOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let wf = engine(&dir.path().join("s.db")).await;
    let bot = agent(&wf, &mock);
    let huge = "x".repeat(300);
    for bad in ["", "a/b", "conv#1", "a:b", "line\nbreak", "with space", "nul\0", huge.as_str()] {
        let err = bot.session(bad).send("hello").await.unwrap_err();
        assert!(
            matches!(err, Error::Invalid { what: "session id", .. })
                && err.to_string().contains("session id"),
            "{bad:?}: {err}"
        );
        let err = bot.session("ok").send_with_id(bad, "hello").await.unwrap_err();
        assert!(matches!(err, Error::Invalid { what: "turn id", .. }), "{bad:?}: {err}");
    }
    assert!(bot.session("").messages().await.is_err());
    assert_eq!(mock.requests(), 0);
    assert!(wf.list_runs(&RunFilter::new()).await.unwrap().is_empty(), "a bad id wrote something");
}

#[tokio::test]
async fn chat_sends_the_callers_history() {
    let mock = MockOpenAi::start().await;
    mock.push(MockReply::text("Your name is Ann."));
    let dir = tempfile::tempdir().unwrap();
    let wf = engine(&dir.path().join("s.db")).await;
    let bot = agent(&wf, &mock);
    let history = vec![
        ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage::from("I am Ann")),
        ChatCompletionRequestMessage::Assistant(ChatCompletionRequestAssistantMessage {
            content: Some(ChatCompletionRequestAssistantMessageContent::Text("Hi Ann.".into())),
            ..Default::default()
        }),
    ];
    let run = bot.chat("Who am I?", history.clone()).await.unwrap();
    assert_eq!(run.output, "Your name is Ann.");
    assert_eq!(
        sent(&mock.received()[0]),
        pairs(&[
            ("system", "You are terse."),
            ("user", "I am Ann"),
            ("assistant", "Hi Ann."),
            ("user", "Who am I?"),
        ])
    );
    // The same call again is the same run: its recorded answer, no request.
    assert_eq!(bot.chat("Who am I?", history).await.unwrap().output, "Your name is Ann.");
    assert_eq!(mock.requests(), 1);
}
