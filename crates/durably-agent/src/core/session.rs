//! Durable conversations, once for both agents: a session is a sequence of turns, and **each
//! turn is a run of its own**, `<agent>:<session>#<n>` (n from 1), of the workflow
//! [`SESSION_WORKFLOW`]. The run's input is the turn (`{"turn": {agent, session, turn,
//! turn_id, message}}`); its steps are the agent's model and tool calls, as in any agent run;
//! its output is the turn's record (the answer, usage, model calls and, when the turn
//! compacted the history, the summary; when it called tools, those calls and their results).
//! Nothing is copied from one turn to the next: the history a turn sends is rebuilt from the
//! earlier turns' inputs and outputs, read in one `list_runs` call by the turns' run id prefix,
//! so storage grows with the messages, not with their square, and a send costs one store read
//! whatever the session's length.
//!
//! One turn at a time: a turn executes under its run's lease, and a send first finishes an
//! unfinished turn of the session (another process's, or one that crashed): with `wait(true)`
//! it waits for that turn's lease, otherwise it fails with `Error::RunInProgress` naming the
//! turn's run.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use durably_core::private::{RunId, WorkflowInput, run_workflow};
use durably_core::store::Leases as _;
use durably_core::{Error, Result, RunContext, RunFilter, RunRecord, RunStatus, Workflow};
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::ids::{Step, step_id};
use super::invocation::lock;
use super::response::AgentResponse;
use super::settings::Settings;
use super::stream::{RunEvent, Sink};

/// The workflow name of every session turn run: `durably sessions` lists the runs of it.
pub const SESSION_WORKFLOW: &str = "durably.session";

/// The longest session id or turn id accepted, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// Who wrote a message of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Role {
    /// The user: a message sent to the session.
    User,
    /// The agent: a turn's final answer.
    Assistant,
}

/// One message of a conversation, as a session's `messages()` reads it back: a turn's user
/// message or its final answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// Its text.
    pub content: String,
}

impl ChatMessage {
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage { role: Role::User, content: content.into() }
    }

    /// An answer of the agent.
    pub fn assistant(content: impl Into<String>) -> Self {
        ChatMessage { role: Role::Assistant, content: content.into() }
    }
}

/// A session as listed by `sessions()`: its agent, id, and its turns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The agent whose session it is.
    pub agent: String,
    /// The session id.
    pub session: String,
    /// How many turns were started (completed or not).
    pub turns: u32,
    /// How many of them completed.
    pub completed: u32,
    /// When the last turn last changed, in milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
}

/// What a turn's run stores as its input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TurnInput {
    pub(crate) agent: String,
    pub(crate) session: String,
    pub(crate) turn: u32,
    pub(crate) turn_id: String,
    pub(crate) message: String,
}

/// A summary of the conversation up to a turn, made by a compaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Summary {
    /// The last turn it covers.
    pub(crate) through: u32,
    pub(crate) text: String,
}

/// What a turn's run stores as its output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TurnRecord<U> {
    pub(crate) turn_id: String,
    pub(crate) output: String,
    pub(crate) usage: U,
    pub(crate) model_calls: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) summary: Option<Summary>,
    /// The turn's tool calls and their results: the messages between its user message and its
    /// answer, in the client library's JSON, sent again with the history of later turns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) exchange: Vec<serde_json::Value>,
}

/// One turn as read from the store.
#[derive(Debug, Clone)]
pub(crate) struct TurnState<U> {
    pub(crate) input: TurnInput,
    pub(crate) status: RunStatus,
    /// The signal a waiting turn waits for (an approval).
    pub(crate) waiting_on: Option<String>,
    pub(crate) record: Option<TurnRecord<U>>,
}

/// An agent a [`Session`] converses with: rig's `DurableAgent` and the `OpenAiAgent`. It names
/// the types a session's replies and streams have for that agent.
pub trait SessionAgent {
    /// The client library's message type (a turn's tool calls are kept in its JSON).
    type Message: Serialize + DeserializeOwned + Clone + Send + 'static;
    /// The client library's usage type.
    type Usage: Serialize + DeserializeOwned + Clone + Default + Send + Sync + 'static;
    /// The stream a session's `stream` returns.
    type Stream;
}

/// What an agent gives the session core: its engine and settings, its message type, and one
/// invocation with a history inside the current run.
pub(crate) trait Conversational: SessionAgent + Clone + Send + Sync + 'static {
    /// The agent's stream event.
    type Event: RunEvent<Response = AgentResponse<Self::Message, Self::Usage>> + Send + 'static;

    /// The stream of the turn that `start` sends, given the sink its events go to.
    fn stream_of(start: TurnStart<Self>) -> Self::Stream;

    fn engine(&self) -> &Workflow;
    fn settings(&self) -> &Settings;
    /// `message` in the client library's type.
    fn message(message: &ChatMessage) -> Self::Message;
    /// One invocation of the agent inside the current run, its steps under `prefix`: `history`
    /// then `prompt` sent to the model.
    fn invoke_with(
        &self,
        prefix: String,
        history: Vec<Self::Message>,
        prompt: String,
        sink: Option<Sink<Self::Event>>,
    ) -> BoxFuture<'static, Result<AgentResponse<Self::Message, Self::Usage>>>;
}

/// A turn of a streaming send, started with the sink its events go to.
pub(crate) type TurnStart<A> = Box<
    dyn FnOnce(
            Sink<<A as Conversational>::Event>,
        ) -> BoxFuture<
            'static,
            Result<AgentResponse<<A as SessionAgent>::Message, <A as SessionAgent>::Usage>>,
        > + Send,
>;

/// How a session sends: the history it keeps, and what a send does when another one is busy.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SessionOptions {
    pub(crate) history_limit: Option<usize>,
    pub(crate) compact_after: Option<usize>,
    pub(crate) wait: bool,
}

/// The session engine both agents' `Session` handles wrap.
#[derive(Clone)]
pub(crate) struct SessionCore<A> {
    pub(crate) agent: A,
    pub(crate) id: String,
    pub(crate) options: SessionOptions,
}

impl<A> std::fmt::Debug for SessionCore<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Checks a session id or turn id (`what`): not empty, at most [`MAX_ID_BYTES`], no control
/// characters, whitespace or separators (`/ \ # : ?`), which run ids and step ids use.
pub(crate) fn check_id(what: &'static str, id: &str) -> Result<()> {
    let shown = || {
        let mut s: String = id.chars().take(40).collect();
        if s.len() < id.len() {
            s.push('…');
        }
        format!("{s:?}")
    };
    let problem = if id.is_empty() {
        Some("is empty".to_owned())
    } else if id.len() > MAX_ID_BYTES {
        Some(format!("is {} bytes long (at most {MAX_ID_BYTES})", id.len()))
    } else {
        id.chars()
            .find(|c| c.is_control() || c.is_whitespace() || matches!(c, '/' | '\\' | '#' | ':' | '?'))
            .map(|c| format!("contains {c:?} (no control characters, whitespace or / \\ # : ?)"))
    };
    match problem {
        Some(problem) => Err(Error::Invalid { what, detail: format!("{what} {} {problem}", shown()) }),
        None => Ok(()),
    }
}

/// The run id of turn `n` of `session` of `agent`.
pub(crate) fn turn_run_id(agent: &str, session: &str, n: u32) -> String {
    format!("{agent}:{session}#{n}")
}

/// A turn id for a send that gave none: unique to this process and time.
fn fresh_turn_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("t{nanos:x}-{:x}-{n}", std::process::id())
}

fn turn_input(run: &RunRecord) -> Result<TurnInput> {
    #[derive(Deserialize)]
    struct Stored {
        turn: TurnInput,
    }
    let text = run.input.as_deref().unwrap_or("null");
    serde_json::from_str::<Stored>(text).map(|s| s.turn).map_err(|e| Error::Corrupt {
        run_id: run.run_id.clone(),
        step_id: None,
        detail: format!("the input of a session turn is not a turn: {e}"),
    })
}

/// The run id prefix of every turn of `session` of `agent`: `<agent>:<session>#`. A session id
/// holds no `#` (see [`check_id`]), so no other session's turns share it.
pub(crate) fn turn_prefix(agent: &str, session: &str) -> String {
    format!("{agent}:{session}#")
}

/// The turns of `session`, in order, read in one store call (`list_runs` with the session's
/// run id prefix) whatever the number of turns. The turns
/// are dense from `#1`: the runs after a missing number are not the session's (a turn is
/// created only after every earlier one exists), and a run like `#01` is no turn at all.
pub(crate) async fn read_turns<U: DeserializeOwned>(
    wf: &Workflow,
    agent: &str,
    session: &str,
) -> Result<Vec<TurnState<U>>> {
    let prefix = turn_prefix(agent, session);
    let filter = RunFilter::new().run_id_prefix(prefix.clone());
    let mut numbered: Vec<(u32, RunRecord)> = wf
        .list_runs(&filter)
        .await?
        .into_iter()
        .filter_map(|run| {
            // Only `<prefix><n>`: not another agent's turns whose name extends this prefix
            // (an agent named `a:b#1` has turns `a:b#1:<session>#<n>`), nor a run of a store
            // that ignored the prefix.
            let n = run.run_id.strip_prefix(&prefix)?;
            let turn = n.parse::<u32>().ok().filter(|t| *t >= 1 && n == t.to_string())?;
            Some((turn, run))
        })
        .collect();
    numbered.sort_by_key(|(turn, _)| *turn);
    let runs: Vec<(String, RunRecord)> = numbered
        .into_iter()
        .enumerate()
        .take_while(|(i, (turn, _))| usize::try_from(*turn).is_ok_and(|t| t == i + 1))
        .map(|(_, (_, run))| (run.run_id.clone(), run))
        .collect();
    let mut turns = Vec::with_capacity(runs.len());
    for (run_id, run) in runs {
        if run.workflow != SESSION_WORKFLOW {
            return Err(Error::RunConflict {
                run_id,
                recorded: run.workflow,
                called: SESSION_WORKFLOW.to_owned(),
            });
        }
        let input = turn_input(&run)?;
        let record = match (run.status, run.output.as_deref()) {
            (RunStatus::Completed, Some(output)) => {
                Some(serde_json::from_str(output).map_err(|e| Error::Corrupt {
                    run_id: run_id.clone(),
                    step_id: None,
                    detail: format!("the output of a session turn is not a turn record: {e}"),
                })?)
            }
            _ => None,
        };
        turns.push(TurnState { input, status: run.status, waiting_on: run.waiting_on, record });
    }
    Ok(turns)
}

/// The conversation of completed turns: each turn's message and answer.
pub(crate) fn transcript<U>(turns: &[TurnState<U>]) -> Vec<ChatMessage> {
    turns
        .iter()
        .filter_map(|t| t.record.as_ref().map(|r| (t, r)))
        .flat_map(|(t, r)| [ChatMessage::user(&t.input.message), ChatMessage::assistant(&r.output)])
        .collect()
}

/// The sessions of the engine's store, of every agent; newest first.
pub(crate) async fn list_sessions(wf: &Workflow) -> Result<Vec<SessionInfo>> {
    let runs = wf.list_runs(&RunFilter::new().workflow(SESSION_WORKFLOW)).await?;
    let mut sessions: Vec<SessionInfo> = Vec::new();
    for run in runs {
        let Ok(input) = turn_input(&run) else { continue };
        let done = u32::from(run.status == RunStatus::Completed);
        match sessions.iter_mut().find(|s| s.agent == input.agent && s.session == input.session) {
            Some(s) => {
                s.turns = s.turns.max(input.turn);
                s.completed += done;
                s.updated_at_ms = s.updated_at_ms.max(run.updated_at_ms);
            }
            None => sessions.push(SessionInfo {
                agent: input.agent,
                session: input.session,
                turns: input.turn,
                completed: done,
                updated_at_ms: run.updated_at_ms,
            }),
        }
    }
    sessions.sort_by(|a, b| b.updated_at_ms.cmp(&a.updated_at_ms).then_with(|| a.session.cmp(&b.session)));
    Ok(sessions)
}

/// Deletes every turn of `session` of `agent`; returns how many runs were deleted.
pub(crate) async fn delete_session(wf: &Workflow, agent: &str, session: &str) -> Result<usize> {
    check_id("session id", session)?;
    let mut deleted = 0;
    // The last turn first: a delete cut short leaves turns `#1..#k`, still a session.
    for turn in read_turns::<serde_json::Value>(wf, agent, session).await?.iter().rev() {
        if wf.store().delete_run(&turn_run_id(agent, session, turn.input.turn)).await? {
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// The sessions of this process with a send in progress, for sends that fail when busy
/// (within one process, a second execution of a run waits for the first instead of failing).
fn busy_here() -> &'static Mutex<HashSet<String>> {
    static BUSY: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    BUSY.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A session marked busy in this process until dropped.
struct BusyMark(String);

impl Drop for BusyMark {
    fn drop(&mut self) {
        lock(busy_here()).remove(&self.0);
    }
}

/// The prompt of a compaction: the earlier summary and turns, to be summarized.
fn compaction_prompt(summary: Option<&Summary>, turns: &[ChatMessage]) -> String {
    let mut text = String::from(
        "Summarize the conversation below in a few sentences, keeping every fact, name, number and \
         decision the assistant may need later. Answer with the summary only.\n\n",
    );
    if let Some(s) = summary {
        text.push_str("Summary of the earlier conversation: ");
        text.push_str(&s.text);
        text.push_str("\n\n");
    }
    for m in turns {
        text.push_str(match m.role {
            Role::User => "User: ",
            Role::Assistant => "Assistant: ",
        });
        text.push_str(&m.content);
        text.push('\n');
    }
    text
}

/// How a summary is sent: as a user message before the turns it does not cover.
fn summary_message(text: &str) -> ChatMessage {
    ChatMessage::user(format!("Summary of the earlier conversation: {text}"))
}

/// The history a turn sends, and the compaction it makes first if any.
struct Plan<M> {
    history: Vec<M>,
    /// The last turn to summarize, and the prompt that asks for the summary.
    compaction: Option<(u32, String)>,
}

/// The messages of a turn's record between its user message and its answer (its tool calls
/// and results), in the client library's type.
fn exchange<M: DeserializeOwned>(
    run_id: impl Fn() -> String,
    record: &TurnRecord<impl Sized>,
) -> Result<Vec<M>> {
    record
        .exchange
        .iter()
        .map(|m| {
            serde_json::from_value(m.clone()).map_err(|source| Error::Deserialize {
                run_id: run_id(),
                step_id: "output".into(),
                what: "tool call message of a session turn",
                type_name: std::any::type_name::<M>(),
                source,
            })
        })
        .collect::<Result<Vec<M>>>()
}

/// The tool calls and results of a turn that sent `prompt` and got `messages` back: what
/// follows the prompt's message, the answer (the last message) aside. Empty when the prompt is
/// not found (a reply that does not carry its conversation).
fn turn_exchange<M: Serialize>(prompt: &M, messages: &[M]) -> Vec<serde_json::Value> {
    let (Ok(prompt), Ok(values)) = (
        serde_json::to_value(prompt),
        messages.iter().map(serde_json::to_value).collect::<serde_json::Result<Vec<_>>>(),
    ) else {
        return Vec::new();
    };
    match values.iter().rposition(|m| *m == prompt) {
        Some(at) if at + 2 < values.len() => values[at + 1..values.len() - 1].to_vec(),
        _ => Vec::new(),
    }
}

impl<A: Conversational> SessionCore<A> {
    pub(crate) fn new(agent: A, id: String) -> Self {
        SessionCore { agent, id, options: SessionOptions::default() }
    }

    fn name(&self) -> &str {
        &self.agent.settings().name
    }

    /// The conversation: each completed turn's message and answer, in order.
    pub(crate) async fn messages(&self) -> Result<Vec<ChatMessage>> {
        check_id("session id", &self.id)?;
        let turns = read_turns::<serde_json::Value>(self.agent.engine(), self.name(), &self.id).await?;
        Ok(transcript(&turns))
    }

    /// Deletes the session's turns; returns how many were deleted.
    pub(crate) async fn delete(&self) -> Result<usize> {
        delete_session(self.agent.engine(), self.name(), &self.id).await
    }

    /// Sends `message` as the turn `turn_id` (a fresh one when `None`) and returns its answer.
    pub(crate) async fn send(
        &self,
        turn_id: Option<String>,
        message: String,
        sink: Option<Sink<A::Event>>,
    ) -> Result<AgentResponse<A::Message, A::Usage>> {
        check_id("session id", &self.id)?;
        if let Some(id) = &turn_id {
            check_id("turn id", id)?;
        }
        let wf = self.agent.engine().waiting_for_lease(self.options.wait);
        let _mark = if self.options.wait {
            None
        } else {
            let session = format!("{}:{}", self.name(), self.id);
            let key = format!("{:p}/{session}", Arc::as_ptr(wf.store()).cast::<()>());
            if !lock(busy_here()).insert(key.clone()) {
                return Err(Error::RunInProgress {
                    run_id: session,
                    owner: format!("another send of session `{}` in this process", self.id),
                });
            }
            Some(BusyMark(key))
        };
        loop {
            let turns: Vec<TurnState<A::Usage>> = read_turns(&wf, self.name(), &self.id).await?;
            if let Some(id) = &turn_id
                && let Some(k) = turns.iter().position(|t| &t.input.turn_id == id)
            {
                let recorded = &turns[k].input;
                if recorded.message != message {
                    return Err(Error::NonDeterminism {
                        run_id: turn_run_id(self.name(), &self.id, recorded.turn),
                        step_id: "input".into(),
                        recorded: format!("turn `{id}` with message {:?}", short(&recorded.message)),
                        called: format!("turn `{id}` with message {:?}", short(&message)),
                    });
                }
                if let Some(record) = &turns[k].record {
                    // Completed: its recorded answer, read with the session (no store write).
                    return self.reply(self.plan(&turns[..k])?.history, recorded, record);
                }
                let input = recorded.clone();
                return self.execute(&wf, &turns[..k], input, sink).await.map(|(_, reply)| reply);
            }
            if let Some(last) = turns.last()
                && last.status == RunStatus::Waiting
                && !self.options.wait
            {
                // A turn waiting for a signal (an approval) keeps the session busy until it
                // comes; executing it here would wait for it.
                return Err(Error::RunInProgress {
                    run_id: turn_run_id(self.name(), &self.id, last.input.turn),
                    owner: format!(
                        "turn {} of session `{}`, waiting on `{}`",
                        last.input.turn,
                        self.id,
                        last.waiting_on.as_deref().unwrap_or("a signal")
                    ),
                });
            }
            if let Some(last) = turns.last()
                && matches!(last.status, RunStatus::Running | RunStatus::Waiting)
            {
                // An unfinished turn (executing elsewhere, or crashed): it comes first.
                let k = turns.len() - 1;
                let input = last.input.clone();
                self.execute(&wf, &turns[..k], input, None).await?;
                continue;
            }
            let turn = u32::try_from(turns.len() + 1).unwrap_or(u32::MAX);
            let id = turn_id.clone().unwrap_or_else(fresh_turn_id);
            let input = TurnInput {
                agent: self.name().to_owned(),
                session: self.id.clone(),
                turn,
                turn_id: id.clone(),
                message: message.clone(),
            };
            let (record, reply) = self.execute(&wf, &turns, input, sink.clone()).await?;
            if record.turn_id == id {
                return Ok(reply);
            }
            // Another send took this turn number first: read the session again.
        }
    }

    /// The history turn `turns.len() + 1` sends, after a compaction if one is due: the summary
    /// if there is one, then each later turn's message, tool calls and results, and answer. The
    /// history limit counts messages and answers; a turn's tool calls go with its message.
    fn plan(&self, turns: &[TurnState<A::Usage>]) -> Result<Plan<A::Message>> {
        let done: Vec<_> = turns.iter().filter_map(|t| t.record.as_ref().map(|r| (t, r))).collect();
        let summary = done.iter().rev().find_map(|(_, r)| r.summary.clone());
        let through = summary.as_ref().map_or(0, |s| s.through);
        let uncovered: Vec<_> = done.into_iter().filter(|(t, _)| t.input.turn > through).collect();
        if let (Some(after), Some((last, _))) = (self.options.compact_after, uncovered.last())
            && after > 0
            && uncovered.len() >= after
        {
            let owned: Vec<TurnState<A::Usage>> = uncovered.iter().map(|(t, _)| (*t).clone()).collect();
            let prompt = compaction_prompt(summary.as_ref(), &transcript(&owned));
            return Ok(Plan { history: Vec::new(), compaction: Some((last.input.turn, prompt)) });
        }
        let mut history = Vec::new();
        if let Some(s) = &summary {
            history.push(A::message(&summary_message(&s.text)));
        }
        // Messages and answers are numbered 0, 1, 2…; the first `skip` of them are left out.
        let skip = (2 * uncovered.len()).saturating_sub(self.options.history_limit.unwrap_or(usize::MAX));
        for (i, (turn, record)) in uncovered.into_iter().enumerate() {
            if 2 * i >= skip {
                history.push(A::message(&ChatMessage::user(&turn.input.message)));
                let run_id = || turn_run_id(self.name(), &self.id, turn.input.turn);
                history.extend(exchange::<A::Message>(run_id, record)?);
            }
            if 2 * i + 1 >= skip {
                history.push(A::message(&ChatMessage::assistant(&record.output)));
            }
        }
        Ok(Plan { history, compaction: None })
    }

    /// Executes the turn `input` (created, resumed, or returned from its record) after
    /// `earlier`; returns its record and the reply.
    async fn execute(
        &self,
        wf: &Workflow,
        earlier: &[TurnState<A::Usage>],
        input: TurnInput,
        sink: Option<Sink<A::Event>>,
    ) -> Result<(TurnRecord<A::Usage>, AgentResponse<A::Message, A::Usage>)> {
        let plan = self.plan(earlier)?;
        let run_id = turn_run_id(self.name(), &self.id, input.turn);
        let agent = self.agent.clone();
        let name = self.name().to_owned();
        let (turn_id, message) = (input.turn_id.clone(), input.message.clone());
        let Plan { history, compaction } = plan;
        let sent = history.clone();
        let body = move || async move {
            let (history, summary) = match compaction {
                Some((through, prompt)) => {
                    let prefix = format!("{name}.compact");
                    let made = agent.invoke_with(prefix, Vec::new(), prompt, None).await?;
                    let summary = Summary { through, text: made.output };
                    let history = vec![A::message(&summary_message(&summary.text))];
                    (history, Some(summary))
                }
                None => (history, None),
            };
            let ctx = RunContext::current().ok_or_else(|| Error::Invalid {
                what: "session turn",
                detail: "a session turn ran outside its run".into(),
            })?;
            let prefix = step_id(&name, "", Step::Invocation(&ctx)).id;
            let prompt = A::message(&ChatMessage::user(&message));
            let response = agent.invoke_with(prefix, history, message, sink).await?;
            Ok::<_, Error>(TurnRecord {
                turn_id,
                exchange: turn_exchange(&prompt, &response.messages),
                output: response.output,
                usage: response.usage,
                model_calls: response.turns,
                summary,
            })
        };
        let turn_input = WorkflowInput::new().arg("turn", &input);
        let record: TurnRecord<A::Usage> =
            run_workflow(wf, SESSION_WORKFLOW, RunId::Explicit(run_id), turn_input, body).await?;
        let reply = self.reply(sent, &input, &record)?;
        Ok((record, reply))
    }

    /// The reply of the turn `input` whose record is `record`: the history it sent (`planned`,
    /// or the summary it made, which replaced what it covered), its message, its tool calls and
    /// results, and its answer.
    fn reply(
        &self,
        planned: Vec<A::Message>,
        input: &TurnInput,
        record: &TurnRecord<A::Usage>,
    ) -> Result<AgentResponse<A::Message, A::Usage>> {
        let mut messages = match &record.summary {
            Some(made) => vec![A::message(&summary_message(&made.text))],
            None => planned,
        };
        messages.push(A::message(&ChatMessage::user(&input.message)));
        messages.extend(exchange(|| turn_run_id(self.name(), &self.id, input.turn), record)?);
        messages.push(A::message(&ChatMessage::assistant(&record.output)));
        Ok(AgentResponse::new(record.output.clone(), messages, record.usage.clone(), record.model_calls))
    }
}

/// A durable conversation with an agent; from the agent's `session(id)`: `rig::Session` and
/// `openai::Session` are this type for each agent. Cheap to clone.
///
/// Each [`send`](Self::send) is one turn, a run of its own (`<agent>:<session>#<n>`) whose
/// model and tool calls are steps; the history sent with it is rebuilt from the earlier turns'
/// messages, tool calls and results, and answers. See [the sessions module](crate::sessions)
/// for how turns are stored, and the README's "Conversations" section.
#[derive(Clone)]
pub struct Session<A> {
    core: SessionCore<A>,
}

impl<A> std::fmt::Debug for Session<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.core.fmt(f)
    }
}

// The bound is the agents' own trait: `Session` is only ever made by an agent's `session(id)`.
#[allow(private_bounds)]
impl<A: Conversational> Session<A> {
    pub(crate) fn new(agent: A, id: String) -> Self {
        Session { core: SessionCore::new(agent, id) }
    }

    /// The session id.
    pub fn id(&self) -> &str {
        &self.core.id
    }

    /// Sends at most the last `n` messages of the earlier turns (user messages and answers; a
    /// turn's tool calls and results go with its message) with each turn (after the summary,
    /// when there is one). Default: all of them.
    pub fn history_limit(mut self, n: usize) -> Self {
        self.core.options.history_limit = Some(n);
        self
    }

    /// Once `turns` turns are not covered by a summary, the next turn first asks the model to
    /// summarize them (a model call recorded as a step of that turn, not repeated on replay),
    /// and sends the summary in their place from then on. Default: never.
    pub fn compact_after(mut self, turns: usize) -> Self {
        self.core.options.compact_after = Some(turns);
        self
    }

    /// Whether a send waits while another turn of the session executes (in this process or
    /// another): `true` waits for it; `false` (the default) fails at once with
    /// `Error::RunInProgress` naming the session's busy turn.
    pub fn wait(mut self, wait: bool) -> Self {
        self.core.options.wait = wait;
        self
    }

    /// Sends `message` as a new turn and returns the answer. Its `messages` are the history
    /// sent, the message, the turn's tool calls and results, and the answer.
    pub async fn send(&self, message: impl Into<String>) -> Result<AgentResponse<A::Message, A::Usage>> {
        self.core.send(None, message.into(), None).await
    }

    /// Sends `message` as the turn `turn_id` (a request id, say): the same turn id again
    /// returns the recorded answer with no model request, or resumes the turn where it stopped
    /// if it did not finish. The same turn id with another message fails with
    /// `Error::NonDeterminism`.
    pub async fn send_with_id(
        &self,
        turn_id: impl Into<String>,
        message: impl Into<String>,
    ) -> Result<AgentResponse<A::Message, A::Usage>> {
        self.core.send(Some(turn_id.into()), message.into(), None).await
    }

    /// Like [`send`](Self::send), streaming the answer as the agent's `stream` does: live
    /// text as it comes, a completed turn's recorded answer at once, then the response.
    pub fn stream(&self, message: impl Into<String>) -> A::Stream {
        let (core, message) = (self.core.clone(), message.into());
        A::stream_of(Box::new(move |sink| {
            Box::pin(async move { core.send(None, message, Some(sink)).await })
        }))
    }

    /// Like [`send_with_id`](Self::send_with_id), streaming the answer.
    pub fn stream_with_id(&self, turn_id: impl Into<String>, message: impl Into<String>) -> A::Stream {
        let (core, turn_id, message) = (self.core.clone(), turn_id.into(), message.into());
        A::stream_of(Box::new(move |sink| {
            Box::pin(async move { core.send(Some(turn_id), message, Some(sink)).await })
        }))
    }

    /// The conversation so far: each completed turn's message and answer, in order, read
    /// from the store.
    pub async fn messages(&self) -> Result<Vec<ChatMessage>> {
        self.core.messages().await
    }

    /// Deletes the session (every turn's run); returns how many turns were deleted.
    pub async fn delete(&self) -> Result<usize> {
        self.core.delete().await
    }
}

/// How many unfinished runs [`resume`] asks the store for at once.
const RESUME_BATCH: usize = 1000;

/// A turn that [`resume`] resumed: its run id, and the task executing it.
pub type ResumedTurn<A> = (
    String,
    tokio::task::JoinHandle<Result<AgentResponse<<A as SessionAgent>::Message, <A as SessionAgent>::Usage>>>,
);

/// Resumes every unfinished turn of `agent`'s sessions that no live lease covers (its process
/// died, or stopped renewing), as `Workflow::recover` does for registered workflows: each in a
/// task of its own, from its recorded steps, with the history it was sent with (the session's
/// default history options). A turn waiting for an approval waits again in its task. A turn
/// another process takes first ends with `Error::RunInProgress` and is not executed twice.
///
/// `recover` and `run_worker` leave session turns alone (they list them as unregistered: a
/// turn needs its agent); a service calls this beside them, at start and on its worker's
/// interval. The next send of a session also finishes its unfinished turn first.
///
/// Needs a Tokio runtime (it spawns the turns).
#[allow(private_bounds)]
pub async fn resume<A: Conversational>(agent: &A) -> Result<Vec<ResumedTurn<A>>> {
    let store = agent.engine().store();
    let prefix = format!("{}:", agent.settings().name);
    let mut resumed = Vec::new();
    for run in store.recoverable_runs(store.now_ms(), RESUME_BATCH).await? {
        if run.workflow != SESSION_WORKFLOW || !run.run_id.starts_with(&prefix) {
            continue;
        }
        let input = turn_input(&run)?;
        if turn_run_id(&input.agent, &input.session, input.turn) != run.run_id {
            continue;
        }
        let core = SessionCore::new(agent.clone(), input.session);
        tracing::info!(target: "durably", run_id = %run.run_id, "sessions: resuming an unfinished turn");
        let task = tokio::spawn(async move { core.send(Some(input.turn_id), input.message, None).await });
        resumed.push((run.run_id, task));
    }
    Ok(resumed)
}

/// The sessions of `agent` in its engine's store, most recently active first.
pub(crate) async fn sessions_of<A: Conversational>(agent: &A) -> Result<Vec<SessionInfo>> {
    let mut all = list_sessions(agent.engine()).await?;
    all.retain(|s| s.agent == agent.settings().name);
    Ok(all)
}

fn short(text: &str) -> String {
    let mut s: String = text.chars().take(60).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn turns_of_an_agent_whose_name_extends_the_prefix_are_not_read() {
        let wf = Workflow::builder("t").store(durably_core::MemoryStore::new()).build();
        for run_id in ["a:b#1", "a:b#1:c#1", "a:b#01", "a:b#x"] {
            let input = WorkflowInput::new().arg(
                "turn",
                &TurnInput {
                    agent: "a".into(),
                    session: "b".into(),
                    turn: 1,
                    turn_id: run_id.into(),
                    message: "m".into(),
                },
            );
            let record = TurnRecord {
                turn_id: run_id.to_owned(),
                output: "o".into(),
                usage: serde_json::Value::Null,
                model_calls: 1,
                summary: None,
                exchange: Vec::new(),
            };
            let body = move || async move { Ok::<_, Error>(record) };
            let made = run_workflow(&wf, SESSION_WORKFLOW, RunId::Explicit(run_id.into()), input, body).await;
            assert!(made.is_ok(), "{run_id}: {made:?}");
        }
        let turns = read_turns::<serde_json::Value>(&wf, "a", "b").await;
        assert!(turns.is_ok(), "{:?}", turns.as_ref().err());
        let turns = turns.unwrap_or_default();
        assert_eq!(turns.iter().map(|t| t.input.turn_id.as_str()).collect::<Vec<_>>(), ["a:b#1"]);
    }

    #[test]
    fn bad_ids_are_refused_by_name() {
        for bad in ["", "a/b", "a#1", "a:b", "line\nbreak", "tab\t", "sp ace", "nul\0"] {
            let err = check_id("session id", bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains("session id"), "{bad:?}: {err}");
        }
        let huge = "x".repeat(MAX_ID_BYTES + 1);
        let err = check_id("turn id", &huge).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("turn id") && err.contains("257 bytes"), "{err}");
        assert!(check_id("session id", "conv-42").is_ok());
        assert!(check_id("session id", "user.42_é").is_ok());
        assert!(check_id("session id", &"x".repeat(MAX_ID_BYTES)).is_ok());
    }
}
