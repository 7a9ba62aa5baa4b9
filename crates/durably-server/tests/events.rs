//! `GET /api/runs/{id}/events`: Server-Sent Events of a run's log, resumed with
//! `Last-Event-ID` on a new server process after the first one died mid-stream, with no event
//! lost or repeated; bad offsets are 400, offsets past the end an empty stream; events dropped
//! by the retention limit are announced by a `gap` event; a client that never reads holds a
//! bounded part of the log in the server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{BEARER, TOKEN, send, wait_for};
use durably_core::{Error, MemoryStore, RunStatus, Store, Workflow, signal, step};
use durably_server::{Auth, ServerConfig, Token};
use durably_testkit::raw_http::{SseClient, SseEvent};
use tokio::io::AsyncWriteExt;

/// A server with a runtime of its own on a thread: stopping it drops the runtime, and with it
/// every connection, as a process that dies would.
struct ServerProcess {
    addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerProcess {
    fn start(store: Arc<dyn Store>) -> ServerProcess {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt =
                tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
            rt.block_on(async move {
                let wf = Workflow::builder("server-tests").shared_store(store).build();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let bound = listener.local_addr().unwrap();
                addr_tx.send(bound.to_string()).unwrap();
                let config = ServerConfig::new(bound, Auth::Token(Token::new(TOKEN).unwrap())).unwrap();
                tokio::select! {
                    _ = durably_server::serve(listener, durably_server::router(wf, config)) => {}
                    _ = stopped => {}
                }
            });
            rt.shutdown_background();
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        ServerProcess { addr, stop: Some(stop), thread: Some(thread) }
    }

    fn kill(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap();
    }
}

/// Opens the run's stream at `path` with the API's token, resuming after `last` when given.
async fn connect(addr: &str, path: &str, last: Option<&str>) -> (u16, SseClient) {
    let mut headers = vec![("Authorization", BEARER)];
    if let Some(last) = last {
        headers.push(("Last-Event-ID", last));
    }
    SseClient::connect(addr, path, &headers, Duration::from_secs(20)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reconnecting_to_a_new_server_after_a_crash_gets_every_event_once() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let wf = Workflow::builder("server-tests").shared_store(store.clone()).default_retries(0).build();
    let runner = {
        let wf = wf.clone();
        tokio::spawn(async move {
            wf.run("stream-1", |_| async move {
                step("draft", || async { Ok::<_, Error>(1u32) }).await?;
                let first: String = signal("go").await?;
                step("review", || async { Ok::<_, Error>(2u32) }).await?;
                let second: String = signal("go-again").await?;
                step("publish", || async { Ok::<_, Error>(3u32) }).await?;
                Ok::<_, Error>(format!("{first} {second}"))
            })
            .await
        })
    };
    wait_for(&wf, "stream-1", RunStatus::Waiting).await;

    let first = ServerProcess::start(store.clone());
    let (status, mut client) = connect(&first.addr, "/api/runs/stream-1/events", None).await;
    assert_eq!(status, 200);
    let mut seen = Vec::new();
    client.until("waiting", &mut seen).await.unwrap();
    // The server dies mid-stream; the run goes on meanwhile.
    first.kill();
    assert_eq!(client.next().await.unwrap(), None, "the stream of a dead server ended");
    assert!(wf.complete("stream-1", "go", "yes").await.unwrap());
    for _ in 0..1000 {
        let run = wf.get_run("stream-1").await.unwrap().unwrap();
        if run.waiting_on.as_deref() == Some("go-again") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Another server on the same store: the client resumes after the last event it saw.
    let second = ServerProcess::start(store.clone());
    let last = seen.last().unwrap().id.unwrap().to_string();
    let (status, mut client) = connect(&second.addr, "/api/runs/stream-1/events", Some(&last)).await;
    assert_eq!(status, 200);
    client.until("waiting", &mut seen).await.unwrap();
    assert!(wf.complete("stream-1", "go-again", "again").await.unwrap());
    while let Some(event) = client.next().await.unwrap() {
        seen.push(event);
    }
    assert_eq!(runner.await.unwrap().unwrap(), "yes again");

    let stored = store.read_events("stream-1", 0, 1000).await.unwrap();
    let ids: Vec<Option<u64>> = seen.iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        (0..stored.len() as u64).map(Some).collect::<Vec<_>>(),
        "an event was lost or repeated: {seen:?}"
    );
    for (got, want) in seen.iter().zip(&stored) {
        assert_eq!((got.kind.as_str(), got.data.as_str()), (want.kind.as_str(), want.data.as_str()));
    }
    let kinds: Vec<&str> = seen.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["started", "step", "waiting", "signal", "step", "waiting", "signal", "step", "completed"]
    );

    // `?from=` starts anywhere; the stream of a completed run ends after its last event.
    let (_, mut client) = connect(&second.addr, "/api/runs/stream-1/events?from=7", None).await;
    let (mut tail, mut n) = (Vec::new(), 0);
    while let Some(event) = client.next().await.unwrap() {
        tail.push(event);
        n += 1;
    }
    assert_eq!((n, tail[0].id, tail[1].kind.as_str()), (2, Some(7), "completed"));
    second.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_event_id_or_from_that_is_not_a_number_is_400_and_an_unknown_run_404() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let wf = Workflow::builder("server-tests").shared_store(store.clone()).build();
    wf.run("done-1", |_| async { Ok::<_, Error>(1u32) }).await.unwrap();
    let server = ServerProcess::start(store);
    let auth = ("Authorization", BEARER);
    for (path, header) in [
        ("/api/runs/done-1/events", Some("abc")),
        ("/api/runs/done-1/events", Some("-1")),
        ("/api/runs/done-1/events?from=x", None),
    ] {
        let mut headers = vec![auth];
        if let Some(h) = header {
            headers.push(("Last-Event-ID", h));
        }
        let r = send(&server.addr, "GET", path, &headers, b"").await;
        assert_eq!(r.status, 400, "{path} {header:?}: {}", r.body);
        assert!(r.body.contains("done-1") && r.body.contains("not an event offset"), "{}", r.body);
    }
    let r = send(&server.addr, "GET", "/api/runs/nobody/events", &[auth], b"").await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = send(&server.addr, "GET", "/api/runs/done-1/events", &[], b"").await;
    assert_eq!(r.status, 401, "the events need the token like the rest of the API");
    // A completed run's stream, read whole: its two events (no step), then the end.
    let r = send(&server.addr, "GET", "/api/runs/done-1/events", &[auth], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert!(r.body.contains("id: 1\nevent: completed\n"), "{}", r.body);
    server.kill();
}

/// `(id, kind)` of each event, for comparisons.
fn ids_kinds(events: &[SseEvent]) -> Vec<(Option<u64>, &str)> {
    events.iter().map(|e| (e.id, e.kind.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_dropped_by_the_retention_limit_are_announced_by_a_gap_event_then_the_rest_follows() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let wf = Workflow::builder("server-tests").shared_store(store.clone()).max_events_per_run(3).build();
    wf.run("kept-1", |_| async move {
        for name in ["a", "b", "c", "d", "e"] {
            step(name, || async { Ok::<_, Error>(1u32) }).await?;
        }
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    // started, five steps, completed: offsets 0..=6, of which 4, 5 and 6 are kept.
    let server = ServerProcess::start(store);
    let path = "/api/runs/kept-1/events";
    for (last, from) in [(None, 0), (Some("1"), 2), (Some("2"), 3)] {
        let (status, mut client) = connect(&server.addr, path, last).await;
        assert_eq!(status, 200);
        let events = client.rest().await.unwrap();
        assert_eq!(
            ids_kinds(&events),
            [(None, "gap"), (Some(4), "step"), (Some(5), "step"), (Some(6), "completed")],
            "Last-Event-ID {last:?}: {events:?}"
        );
        let gap: serde_json::Value = serde_json::from_str(&events[0].data).unwrap();
        assert_eq!(gap, serde_json::json!({ "run_id": "kept-1", "from": from, "first_kept": 4 }));
    }
    // From a kept offset on there is no gap.
    let (_, mut client) = connect(&server.addr, path, Some("4")).await;
    assert_eq!(ids_kinds(&client.rest().await.unwrap()), [(Some(5), "step"), (Some(6), "completed")]);
    let (_, mut client) = connect(&server.addr, &format!("{path}?from=4"), None).await;
    assert_eq!(client.rest().await.unwrap().len(), 3);
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offset_past_the_end_is_an_empty_stream_that_waits_for_the_run_or_ends_with_it() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let wf = Workflow::builder("server-tests").shared_store(store.clone()).default_retries(0).build();
    wf.run("done-2", |_| async { Ok::<_, Error>(1u32) }).await.unwrap();
    let runner = {
        let wf = wf.clone();
        tokio::spawn(async move {
            wf.run("open-2", |_| async move {
                let go: String = signal("go").await?;
                Ok::<_, Error>(go)
            })
            .await
        })
    };
    wait_for(&wf, "open-2", RunStatus::Waiting).await;
    let server = ServerProcess::start(store);
    // A finished run: past its last event (what a client that saw it sends on reconnecting),
    // far past it, and at the largest offset there is, the stream is empty and ends.
    for last in ["1", "1000", "18446744073709551615"] {
        let (status, mut client) = connect(&server.addr, "/api/runs/done-2/events", Some(last)).await;
        assert_eq!(status, 200, "Last-Event-ID {last}");
        assert_eq!(client.rest().await.unwrap(), [], "Last-Event-ID {last}");
    }
    // A number too large for an offset is not one.
    let (status, _) = connect(&server.addr, "/api/runs/done-2/events", Some("18446744073709551616")).await;
    assert_eq!(status, 400);
    // An unfinished run: the stream waits (the run's own events stay below the offset) and
    // ends when the run does.
    let (status, mut client) = connect(&server.addr, "/api/runs/open-2/events", Some("99")).await;
    assert_eq!(status, 200);
    assert!(wf.complete("open-2", "go", "now").await.unwrap());
    assert_eq!(runner.await.unwrap().unwrap(), "now");
    assert_eq!(client.rest().await.unwrap(), [], "no event at or past offset 100 was ever written");
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_holds_a_bounded_part_of_the_log_and_others_are_served() {
    use durably_testkit::faults::{FaultStore, Op};
    let faults = Arc::new(FaultStore::new(MemoryStore::new()));
    let store: Arc<dyn Store> = faults.clone();
    let wf = Workflow::builder("server-tests").shared_store(store.clone()).build();
    let runner = {
        let wf = wf.clone();
        tokio::spawn(async move { wf.run("big-1", |_| async move { signal::<String>("go").await }).await })
    };
    wait_for(&wf, "big-1", RunStatus::Waiting).await;
    // 40 MB of events: far more than the socket buffers between the server and the client.
    const TOTAL: u64 = 10_000;
    let chunk = "x".repeat(4096);
    for batch in 0..TOTAL / 500 {
        let events: Vec<durably_core::NewEvent> = (0..500)
            .map(|i| {
                durably_core::NewEvent::new(
                    "text",
                    format!(r#"{{"n":{},"t":"{chunk}"}}"#, batch * 500 + i),
                    1,
                )
            })
            .collect();
        store.append_events("big-1", &events, u64::MAX).await.unwrap();
    }
    let server = ServerProcess::start(store.clone());

    // The slow client sends its request and never reads a byte.
    let mut slow = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    let req = format!(
        "GET /api/runs/big-1/events HTTP/1.1\r\nHost: {}\r\nAuthorization: {BEARER}\r\n\r\n",
        server.addr
    );
    slow.write_all(req.as_bytes()).await.unwrap();
    // Wait until the server stops reading the log for it (its writes are blocked).
    let (mut last, mut still) = (faults.calls(Op::ReadEvents), 0);
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = faults.calls(Op::ReadEvents);
        still = if now == last { still + 1 } else { 0 };
        last = now;
        if still >= 10 && now > 0 {
            break;
        }
    }
    assert!(last > 0, "the server never started reading the log");
    let read = u64::from(last) * durably_core::EVENT_PAGE as u64;
    assert!(read < TOTAL / 2, "the server read {read} of {TOTAL} events for a client that reads nothing");

    // Meanwhile the server serves other clients, streams included.
    let auth = ("Authorization", BEARER);
    let r = send(&server.addr, "GET", "/api/runs/big-1", &[auth], b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (status, mut other) = connect(&server.addr, "/api/runs/big-1/events?from=9998", None).await;
    assert_eq!(status, 200);
    assert_eq!(other.next().await.unwrap().map(|e| e.id), Some(Some(9998)));
    assert_eq!(other.next().await.unwrap().map(|e| e.id), Some(Some(9999)));
    assert!(wf.complete("big-1", "go", "done").await.unwrap());
    assert_eq!(runner.await.unwrap().unwrap(), "done");
    drop(slow);
    server.kill();
}
