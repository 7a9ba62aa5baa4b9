//! `/api/sessions`: the durable conversations of agents (each turn a run of the workflow
//! `durably.session`): list them, read one, and send a turn to an agent registered with
//! [`crate::ServerConfig::session_agent`].

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use durably_agent::sessions::{self, ChatMessage, Role, SESSION_WORKFLOW, SessionInfo};
use durably_core::{RunFilter, RunStatus};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, ApiState, ErrorBody, JsonBody, listed};

/// Filters of `GET /api/sessions`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SessionsQuery {
    /// Only the sessions of this agent.
    agent: Option<String>,
}

/// A session as listed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct SessionView {
    /// The agent whose session it is.
    agent: String,
    /// The session id.
    session: String,
    /// How many turns were started.
    turns: u32,
    /// How many of them completed.
    completed: u32,
    /// When its last turn last changed, in milliseconds since the Unix epoch.
    updated_at_ms: i64,
}

impl From<SessionInfo> for SessionView {
    fn from(s: SessionInfo) -> Self {
        SessionView {
            agent: s.agent,
            session: s.session,
            turns: s.turns,
            completed: s.completed,
            updated_at_ms: s.updated_at_ms,
        }
    }
}

/// The sessions of the store.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct SessionList {
    /// Most recently active first.
    sessions: Vec<SessionView>,
}

#[utoipa::path(
    get, path = "/api/sessions", tag = "sessions", params(SessionsQuery),
    responses((status = 200, description = "Sessions, most recently active first", body = SessionList))
)]
/// Lists the agents' sessions.
pub(crate) async fn list_sessions(
    State(api): State<ApiState>,
    Query(q): Query<SessionsQuery>,
) -> Result<axum::Json<SessionList>, ApiError> {
    let mut all = sessions::list(&api.wf).await?;
    if let Some(agent) = q.agent.as_deref().filter(|a| !a.is_empty()) {
        all.retain(|s| s.agent == agent);
    }
    Ok(axum::Json(SessionList { sessions: all.into_iter().map(SessionView::from).collect() }))
}

/// One message of a conversation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct MessageView {
    /// `user` or `assistant`.
    role: String,
    /// Its text.
    content: String,
}

impl From<ChatMessage> for MessageView {
    fn from(m: ChatMessage) -> Self {
        let role = match m.role {
            Role::User => "user",
            Role::Assistant => "assistant",
            _ => "other",
        };
        MessageView { role: role.to_owned(), content: m.content }
    }
}

/// A turn waiting for a signal (an approval of one of its tool calls).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct PendingTurn {
    /// The turn's run id, `<agent>:<session>#<n>`: approve it at `/api/runs/{run_id}/approve`.
    run_id: String,
    /// The signal it waits for.
    waiting_on: Option<String>,
}

/// A session with its conversation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct SessionDetail {
    /// The session as listed.
    #[serde(flatten)]
    info: SessionView,
    /// Each completed turn's message and answer, in order.
    messages: Vec<MessageView>,
    /// Its turns waiting for a signal.
    pending: Vec<PendingTurn>,
}

#[utoipa::path(
    get, path = "/api/sessions/{agent}/{session}", tag = "sessions",
    params(
        ("agent" = String, Path, description = "The agent's name"),
        ("session" = String, Path, description = "The session id"),
    ),
    responses(
        (status = 200, description = "The session and its messages", body = SessionDetail),
        (status = 404, description = "No such session", body = ErrorBody),
    )
)]
/// Reads a session: its messages, and the turns waiting for an approval.
pub(crate) async fn show_session(
    State(api): State<ApiState>,
    Path((agent, session)): Path<(String, String)>,
) -> Result<axum::Json<SessionDetail>, ApiError> {
    let wf = &api.wf;
    let info = sessions::list(wf).await?.into_iter().find(|s| s.agent == agent && s.session == session);
    let Some(info) = info else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no session `{session}` of agent `{agent}`"),
        ));
    };
    let messages = sessions::messages(wf, &agent, &session).await?;
    let prefix = format!("{agent}:{session}#");
    let waiting =
        wf.list_runs(&RunFilter::new().workflow(SESSION_WORKFLOW).status(RunStatus::Waiting)).await?;
    let pending = waiting
        .into_iter()
        .filter(|r| r.run_id.starts_with(&prefix))
        .map(|r| PendingTurn { run_id: r.run_id, waiting_on: r.waiting_on })
        .collect();
    Ok(axum::Json(SessionDetail {
        info: info.into(),
        messages: messages.into_iter().map(MessageView::from).collect(),
        pending,
    }))
}

/// The body of `POST /api/sessions/{agent}/{session}/turns`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SendTurn {
    /// The user's message.
    message: String,
    /// The turn's id: sending the same id again returns the recorded answer (or resumes the
    /// turn) instead of asking the model again. Default: a fresh id, returned in the answer.
    #[serde(default)]
    turn_id: Option<String>,
}

/// A turn's answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct TurnReply {
    /// The agent.
    agent: String,
    /// The session id.
    session: String,
    /// The turn's id: send it again to get the same answer.
    turn_id: String,
    /// The agent's answer.
    output: String,
}

fn fresh_turn_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("http-{nanos:x}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

#[utoipa::path(
    post, path = "/api/sessions/{agent}/{session}/turns", tag = "sessions",
    params(
        ("agent" = String, Path, description = "An agent registered with the server"),
        ("session" = String, Path, description = "The session id (created by its first turn)"),
    ),
    request_body = SendTurn,
    responses(
        (status = 200, description = "The turn completed", body = TurnReply),
        (status = 400, description = "A bad session id, turn id or body", body = ErrorBody),
        (status = 404, description = "No agent of that name takes turns on this server", body = ErrorBody),
        (status = 409, description = "Another turn of the session is executing or waiting for an approval, or the turn id was used with another message", body = ErrorBody),
    )
)]
/// Sends a turn to a session and answers when it completes. The turn executes in a task of its
/// own: a client that disconnects does not stop it, and sending the same `turn_id` again gets
/// its answer. A turn that needs a tool approval answers once it is approved: the session's
/// `pending` turns name the run to approve from another request.
pub(crate) async fn send_turn(
    State(api): State<ApiState>,
    Path((agent, session)): Path<(String, String)>,
    JsonBody(turn): JsonBody<SendTurn>,
) -> Result<axum::Json<TurnReply>, ApiError> {
    let Some(send) = api.agents.get(&agent).cloned() else {
        let known: Vec<&str> = api.agents.keys().map(String::as_str).collect();
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no agent `{agent}` takes session turns on this server (registered: {})", listed(&known)),
        ));
    };
    let turn_id = turn.turn_id.filter(|t| !t.is_empty()).unwrap_or_else(fresh_turn_id);
    let task = tokio::spawn(send(session.clone(), turn_id.clone(), turn.message));
    let output = task.await.map_err(|e| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the turn's task ended abnormally: {e}"))
    })??;
    Ok(axum::Json(TurnReply { agent, session, turn_id, output }))
}
