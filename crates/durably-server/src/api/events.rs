//! `GET /api/runs/{run_id}/events`: a run's event log as Server-Sent Events, resumable with
//! `Last-Event-ID` from any server process sharing the store.

use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use durably_core::{Error, EventRecord};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiError, ApiState, ErrorBody};

/// Where `GET /api/runs/{run_id}/events` starts.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// The offset of the first event to send (default 0). A `Last-Event-ID` header wins over it.
    from: Option<String>,
}

/// The first offset to send: the one after `Last-Event-ID`, else `?from=`, else 0.
fn first_offset(run_id: &str, headers: &HeaderMap, from: Option<&str>) -> Result<u64, ApiError> {
    let offset = |what: &str, text: &str| {
        let text = text.trim();
        text.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "{what} `{}` for run `{run_id}` is not an event offset (a number from 0)",
                crate::text::preview(text, 40)
            ))
        })
    };
    if let Some(last) = headers.get("last-event-id") {
        return offset("Last-Event-ID", &String::from_utf8_lossy(last.as_bytes()))
            .map(|n| n.saturating_add(1));
    }
    from.filter(|f| !f.is_empty()).map_or(Ok(0), |text| offset("from", text))
}

/// One stored event as an SSE event: `id` its offset, `event` its kind, `data` its JSON.
fn sse_event(event: EventRecord) -> Event {
    // SSE fields end at a line break: a kind never carries one, and JSON text needs none.
    let kind: String = event.kind.chars().filter(|c| *c != '\n' && *c != '\r').collect();
    let data = event.data.replace(['\r', '\n'], " ");
    Event::default().id(event.offset.to_string()).event(kind).data(data)
}

#[utoipa::path(
    get, path = "/api/runs/{run_id}/events", tag = "runs",
    params(
        ("run_id" = String, Path, description = "The run id"),
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The offset of the last event the client received: the stream starts after it"),
    ),
    responses(
        (status = 200, description = "Server-Sent Events: `id` is the event's offset, `event` its kind \
            (started, resumed, step, waiting, signal, text, tool_call, tool_result, approval, completed, \
            failed, cancelled), `data` its JSON. The stored events from the offset come first, then new \
            ones as the run appends them; the stream ends after the run's final event. An offset past \
            the end is an empty stream: it waits for the log to reach it, or ends at once if the run \
            has ended (what a client that saw the last event gets on reconnecting). Each run's log \
            keeps only its newest events (the server's retention limit): events asked for that were \
            dropped are announced by one `gap` event without an id, whose data is \
            `{\"run_id\", \"from\", \"first_kept\"}`, and the stream goes on from `first_kept`. A \
            store failure mid-stream is an `error` event, then the end.", content_type = "text/event-stream", body = String),
        (status = 400, description = "Last-Event-ID or from is not a number", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
    )
)]
/// Streams a run's events from an offset, then live ones, as Server-Sent Events. A client that
/// reconnects with `Last-Event-ID`, to this or another server process, receives exactly the
/// events after the last one it saw (rule 27 of docs/design.md), or a `gap` event first when
/// the log's retention limit dropped some of them. The log is read from the store a page at a
/// time as the client reads (the body is polled only when the connection takes more), so a
/// slow client holds at most one page in this server's memory.
pub(crate) async fn run_events(
    State(api): State<ApiState>,
    Path(run_id): Path<String>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let from = first_offset(&run_id, &headers, q.from.as_deref())?;
    if api.wf.get_run(&run_id).await?.is_none() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no run with id `{run_id}`")));
    }
    let stream = api.wf.events(&run_id).from(from).map(move |item| {
        Ok(match item {
            Ok(event) => sse_event(event),
            // No id: a client reconnecting after it asks from where it was, and is told again.
            Err(Error::EventsTrimmed { run_id, from, first_kept }) => Event::default().event("gap").data(
                serde_json::json!({ "run_id": run_id, "from": from, "first_kept": first_kept }).to_string(),
            ),
            Err(e) => {
                tracing::error!(error = %e, "reading a run's events failed");
                Event::default().event("error").data(ApiError::from(e).message)
            }
        })
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
