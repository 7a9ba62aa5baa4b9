//! One HTTP/1.1 request written by hand on a TCP socket, so that every header (`Host`,
//! `Origin`, `Content-Type`, a repeated header) is exactly the test's, as an attacker's would
//! be: for the tests of servers that must refuse requests (rule 21 of docs/design.md). And a
//! Server-Sent Events client of the same kind, for the tests of resumable event streams.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A whole reply.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The headers, in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, as text.
    pub body: String,
}

impl Reply {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::from_str(&self.body)
    }
}

/// Sends `method path` to `addr` (`host:port`) with exactly `headers`, plus `Host: addr` unless
/// they name a host, a `Content-Length` and `Connection: close`, then reads the whole reply. A
/// server may answer and close before it has read all of a large body: that is not an error.
pub async fn send(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Reply> {
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(req.as_bytes()).await?;
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    if let Err(e) = stream.read_to_end(&mut raw).await
        && raw.is_empty()
    {
        return Err(e);
    }
    parse(&raw)
}

fn parse(raw: &[u8]) -> io::Result<Reply> {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status =
        lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("not an HTTP reply: {head:?}"))
        })?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Reply { status, headers, body: body.to_owned() })
}

/// One Server-Sent Event as a client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// Its `id:` field (a `gap` has none).
    pub id: Option<u64>,
    /// Its `event:` field.
    pub kind: String,
    /// Its `data:` lines, joined.
    pub data: String,
}

/// A Server-Sent Events client written by hand: an HTTP/1.0 `GET`, so the body is the bytes
/// until the server closes, read event by event. For the tests of event streams that kill the
/// server mid-stream and reconnect with `Last-Event-ID`.
#[derive(Debug)]
pub struct SseClient {
    stream: tokio::net::TcpStream,
    buf: String,
    patience: std::time::Duration,
}

impl SseClient {
    /// Sends `GET path` to `addr` with `headers`, plus `Host: addr` and
    /// `Accept: text/event-stream`, and reads the reply's head: its status, and the client
    /// positioned at the body. A read waits at most `patience` for the server.
    pub async fn connect(
        addr: &str,
        path: &str,
        headers: &[(&str, &str)],
        patience: std::time::Duration,
    ) -> io::Result<(u16, SseClient)> {
        let mut req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(req.as_bytes()).await?;
        let mut client = SseClient { stream, buf: String::new(), patience };
        let head = loop {
            if let Some((head, rest)) = client.buf.split_once("\r\n\r\n") {
                let head = head.to_owned();
                client.buf = rest.to_owned();
                break head;
            }
            if !client.read().await? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed before its headers",
                ));
            }
        };
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("not an HTTP reply: {head:?}"))
        })?;
        Ok((status, client))
    }

    /// Reads more: `false` once the connection ended (closed, or reset by a dead server); an
    /// error when nothing came for the client's patience.
    async fn read(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(self.patience, self.stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => Ok(false),
            Ok(Ok(n)) => {
                self.buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
                Ok(true)
            }
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("nothing from the server for {:?}; unread: {:?}", self.patience, self.buf),
            )),
        }
    }

    /// The next event, with an id or not (keep-alive comments skipped); `None` once the
    /// stream ended.
    pub async fn next_any(&mut self) -> io::Result<Option<SseEvent>> {
        loop {
            while let Some((block, rest)) = self.buf.split_once("\n\n") {
                let event = parse_event(block)?;
                self.buf = rest.to_owned();
                if event.is_some() {
                    return Ok(event);
                }
            }
            if !self.read().await? {
                return Ok(None);
            }
        }
    }

    /// The next event with an id; `None` once the stream ended.
    pub async fn next(&mut self) -> io::Result<Option<SseEvent>> {
        loop {
            match self.next_any().await? {
                Some(event) if event.id.is_none() => {}
                other => return Ok(other),
            }
        }
    }

    /// Every event until the stream ends, with an id or not.
    pub async fn rest(&mut self) -> io::Result<Vec<SseEvent>> {
        let mut all = Vec::new();
        while let Some(event) = self.next_any().await? {
            all.push(event);
        }
        Ok(all)
    }

    /// Events with an id onto `seen`, until one of `kind` (included); an error when the stream
    /// ends first.
    pub async fn until(&mut self, kind: &str, seen: &mut Vec<SseEvent>) -> io::Result<()> {
        loop {
            let Some(event) = self.next().await? else {
                let kinds: Vec<&str> = seen.iter().map(|e| e.kind.as_str()).collect();
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the stream ended before `{kind}`; seen: {kinds:?}"),
                ));
            };
            let done = event.kind == kind;
            seen.push(event);
            if done {
                return Ok(());
            }
        }
    }
}

/// One event block (the lines before a blank line); `None` for a block of comments only.
fn parse_event(block: &str) -> io::Result<Option<SseEvent>> {
    let (mut id, mut kind, mut data) = (None, String::new(), String::new());
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => {
                id = Some(value.parse().map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("an event id that is not a number: {value:?}"),
                    )
                })?)
            }
            "event" => kind = value.to_owned(),
            "data" => data.push_str(value),
            _ => {} // a keep-alive comment
        }
    }
    Ok((id.is_some() || !kind.is_empty()).then_some(SseEvent { id, kind, data }))
}
