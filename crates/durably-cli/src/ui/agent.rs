//! The agent view of a run page: the conversation an agent recorded (rule 19 of
//! docs/design.md: each model request and each tool call is its own step), read back from the
//! run's records alone. Model steps (`<prefix>.model#<n>`) hold the model's response: its text,
//! its tool calls with their arguments, its token usage; tool steps
//! (`<prefix>.tool.<tool>#<turn>.<call id>`) hold the tool's answer; approvals are the signals
//! `approve:<tool step id>`. The prompt is shown when a record holds it (the rig agent's
//! `<prefix>.input` step, a session turn's input, a completed run's messages): the model steps
//! keep only a hash of each request.
//!
//! Which execution recorded each step comes from the run's event log (`started`, `resumed`
//! and one `step` event per step an execution recorded; a replayed step writes nothing). A
//! store without an event log, or a run imported without one, shows attempts and times only,
//! and the page says so. Everything is escaped; nothing is secret (rule 20).

use std::collections::HashMap;
use std::fmt::Write as _;

use durably_core::{EventRecord, RunExport, RunStatus, StepRecord, StepStatus};
use serde_json::Value;

use super::pages::esc;
use crate::format;

/// The signal an approval-gated tool call waits on is `approve:<tool step id>`.
const APPROVAL_PREFIX: &str = "approve:";

/// One agent invocation: the steps under one prefix.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Invocation {
    /// The invocation's prefix (`support`, `planner.bot#1`).
    pub(super) prefix: String,
    /// The prompt, when a record holds it.
    pub(super) prompt: Option<String>,
    /// The model calls, in order.
    pub(super) calls: Vec<ModelCall>,
    /// Tool steps no model call's response names (shown after the calls).
    pub(super) orphan_tools: Vec<ToolUse>,
}

/// One model call and the tool calls its response asked for.
#[derive(Debug, Default, PartialEq)]
pub(super) struct ModelCall {
    pub(super) step_id: String,
    pub(super) n: u32,
    pub(super) status: Option<StepStatus>,
    pub(super) attempts: u32,
    pub(super) started_at_ms: i64,
    pub(super) finished_at_ms: Option<i64>,
    /// The model the provider says answered.
    pub(super) model: Option<String>,
    /// The response's text.
    pub(super) text: Option<String>,
    /// The error of a failed call (redacted by the agent before it was recorded).
    pub(super) error: Option<String>,
    pub(super) tokens_in: Option<u64>,
    pub(super) tokens_out: Option<u64>,
    /// The cost in USD, when the record carries one (rig's usage `cost.total`).
    pub(super) cost_usd: Option<f64>,
    pub(super) tools: Vec<ToolUse>,
}

/// A human's decision on a tool call that needs one.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Approval {
    /// The run waits for it now.
    Requested,
    Granted,
    Denied(Option<String>),
}

/// One tool call: what the model asked for and what the tool answered.
#[derive(Debug, Default, PartialEq)]
pub(super) struct ToolUse {
    pub(super) tool: String,
    pub(super) call_id: Option<String>,
    /// The arguments as the model sent them.
    pub(super) args: Option<String>,
    /// The tool step, when it is recorded.
    pub(super) step: Option<String>,
    /// The id its step will have, when it is not recorded yet (the live stream names it).
    pub(super) pending_step: Option<String>,
    pub(super) status: Option<StepStatus>,
    pub(super) attempts: u32,
    /// The recorded answer (JSON), or the error of a failed step.
    pub(super) result: Option<String>,
    pub(super) approval: Option<Approval>,
}

/// The agent invocations of a run, in the order of their first step; empty when no step is an
/// agent's.
pub(super) fn invocations(doc: &RunExport) -> Vec<Invocation> {
    let mut order: Vec<String> = Vec::new();
    let mut models: HashMap<String, Vec<&StepRecord>> = HashMap::new();
    let mut tools: HashMap<String, Vec<(&StepRecord, String)>> = HashMap::new();
    let mut inputs: HashMap<String, &StepRecord> = HashMap::new();
    for s in &doc.steps {
        let prefix = if let Some((prefix, _)) = model_step(s) {
            models.entry(prefix.to_owned()).or_default().push(s);
            prefix
        } else if let Some((prefix, tool)) = tool_step(s) {
            tools.entry(prefix.to_owned()).or_default().push((s, tool.to_owned()));
            prefix
        } else if let Some(prefix) = s.step_id.strip_suffix(".input").filter(|_| s.name.ends_with(".input")) {
            inputs.insert(prefix.to_owned(), s);
            prefix
        } else {
            continue;
        };
        if !order.iter().any(|p| p == prefix) {
            order.push(prefix.to_owned());
        }
    }
    // An input step alone is not an agent (a task may be named `x.input`).
    order.retain(|p| models.contains_key(p) || tools.contains_key(p));
    let pending = doc.run.waiting_on.as_deref().filter(|_| doc.run.status == RunStatus::Waiting);
    let approvals = |step_id: &str| approval_of(doc, pending, step_id);
    let mut out = Vec::new();
    for prefix in order {
        let mut inv = Invocation { prefix: prefix.clone(), ..Invocation::default() };
        inv.prompt = inputs
            .get(&prefix)
            .and_then(|s| s.value.as_deref())
            .and_then(|v| serde_json::from_str::<String>(v).ok())
            .or_else(|| prompt_of_run(doc));
        let mut steps = models.remove(&prefix).unwrap_or_default();
        steps.sort_by_key(|s| model_step(s).map_or(0, |(_, n)| n));
        let mut unused: Vec<(&StepRecord, String)> = tools.remove(&prefix).unwrap_or_default();
        for s in steps {
            let mut call = model_call(s);
            let n = call.n;
            for use_ in &mut call.tools {
                let found = unused.iter().position(|(t, tool)| {
                    *tool == use_.tool
                        && use_.call_id.as_deref().is_some_and(|id| t.step_id.ends_with(&format!(".{id}")))
                });
                match found {
                    Some(i) => {
                        let (t, _) = unused.remove(i);
                        fill_tool(use_, t);
                        use_.approval = approvals(&t.step_id);
                    }
                    None => {
                        // Not recorded yet: maybe waiting for its approval.
                        let id = format!(
                            "{prefix}.tool.{}#{n}.{}",
                            use_.tool,
                            use_.call_id.as_deref().unwrap_or("")
                        );
                        use_.approval = approvals(&id);
                        use_.pending_step = Some(id);
                    }
                }
            }
            inv.calls.push(call);
        }
        for (t, tool) in unused {
            let mut use_ = ToolUse { tool, ..ToolUse::default() };
            fill_tool(&mut use_, t);
            use_.approval = approvals(&t.step_id);
            inv.orphan_tools.push(use_);
        }
        out.push(inv);
    }
    out
}

/// `(prefix, n)` of a model step `<prefix>.model#<n>` whose task is `<…>.model`.
fn model_step(s: &StepRecord) -> Option<(&str, u32)> {
    if !s.name.ends_with(".model") {
        return None;
    }
    let (prefix, n) = s.step_id.rsplit_once(".model#")?;
    let n: u32 = n.parse().ok().filter(|n| *n >= 1)?;
    Some((prefix, n))
}

/// `(prefix, tool)` of a tool step `<prefix>.tool.<tool>#<turn>.<call>` whose task is
/// `<…>.tool.<tool>`.
fn tool_step(s: &StepRecord) -> Option<(&str, &str)> {
    let (_, tool) = s.name.rsplit_once(".tool.")?;
    let marker = format!(".tool.{tool}#");
    let at = s.step_id.rfind(&marker)?;
    let prefix = s.step_id.get(..at)?;
    let rest = s.step_id.get(at + marker.len()..)?;
    let (turn, _call) = rest.split_once('.')?;
    turn.parse::<u32>().ok()?;
    Some((prefix, tool))
}

/// A model step's response, read from its record: the OpenAI agent records the provider's
/// chat-completion response, the rig agent rig's completion outcome.
fn model_call(s: &StepRecord) -> ModelCall {
    let mut call = ModelCall {
        step_id: s.step_id.clone(),
        n: model_step(s).map_or(0, |(_, n)| n),
        status: Some(s.status),
        attempts: s.attempts,
        started_at_ms: s.started_at_ms,
        finished_at_ms: s.finished_at_ms,
        error: s.error.clone().filter(|_| s.status != StepStatus::Completed),
        ..ModelCall::default()
    };
    let Some(v) = s.value.as_deref().and_then(|v| serde_json::from_str::<Value>(v).ok()) else {
        return call;
    };
    if let Some(message) = v.pointer("/choices/0/message") {
        // OpenAI chat completion.
        call.text = message.get("content").and_then(Value::as_str).map(str::to_owned);
        for tc in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            call.tools.push(ToolUse {
                tool: text_at(tc, "/function/name").unwrap_or_default(),
                call_id: text_at(tc, "/id"),
                args: text_at(tc, "/function/arguments"),
                ..ToolUse::default()
            });
        }
        call.model = text_at(&v, "/model");
        call.tokens_in = v.pointer("/usage/prompt_tokens").and_then(Value::as_u64);
        call.tokens_out = v.pointer("/usage/completion_tokens").and_then(Value::as_u64);
    } else if let Some(blocks) = v.get("choice").and_then(Value::as_array) {
        // rig completion outcome.
        let texts: Vec<&str> = blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect();
        if !texts.is_empty() {
            call.text = Some(texts.join("\n"));
        }
        for b in blocks.iter().filter(|b| b.get("type").and_then(Value::as_str) == Some("toolcall")) {
            let args = b.pointer("/function/arguments").map(Value::to_string);
            call.tools.push(ToolUse {
                tool: text_at(b, "/function/name").unwrap_or_default(),
                call_id: b.get("id").map(|id| id.as_str().map_or_else(|| id.to_string(), str::to_owned)),
                args,
                ..ToolUse::default()
            });
        }
        call.model = text_at(&v, "/origin/response_model").or_else(|| text_at(&v, "/origin/model"));
        call.tokens_in = v.pointer("/usage/input_tokens").and_then(Value::as_u64);
        call.tokens_out = v.pointer("/usage/output_tokens").and_then(Value::as_u64);
        call.cost_usd = v.pointer("/usage/cost/total").and_then(Value::as_f64);
    }
    call
}

fn text_at(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer).and_then(Value::as_str).map(str::to_owned)
}

fn fill_tool(use_: &mut ToolUse, s: &StepRecord) {
    use_.step = Some(s.step_id.clone());
    use_.status = Some(s.status);
    use_.attempts = s.attempts;
    if use_.call_id.is_none() {
        use_.call_id = s.step_id.rsplit_once('.').map(|(_, id)| id.to_owned());
    }
    use_.result = match s.status {
        StepStatus::Completed => s.value.clone(),
        _ => s.error.clone().map(|e| format!("error: {e}")),
    };
}

/// The approval of the tool call whose step is `step_id`: delivered (granted or denied), or
/// awaited by the waiting run now.
fn approval_of(doc: &RunExport, pending: Option<&str>, step_id: &str) -> Option<Approval> {
    let signal = format!("{APPROVAL_PREFIX}{step_id}");
    if let Some(s) = doc.signals.iter().find(|s| s.name == signal) {
        let payload: Value = serde_json::from_str(&s.payload).unwrap_or(Value::Null);
        return Some(if payload.get("approved").and_then(Value::as_bool) == Some(true) {
            Approval::Granted
        } else {
            Approval::Denied(payload.get("reason").and_then(Value::as_str).map(str::to_owned))
        });
    }
    (pending == Some(signal.as_str())).then_some(Approval::Requested)
}

/// The prompt, when the run's input or output holds it: a session turn's message, or the first
/// user message of a completed agent run's output.
fn prompt_of_run(doc: &RunExport) -> Option<String> {
    let parse = |t: &Option<String>| t.as_deref().and_then(|t| serde_json::from_str::<Value>(t).ok());
    if let Some(message) = parse(&doc.run.input).as_ref().and_then(|v| text_at(v, "/turn/message")) {
        return Some(message);
    }
    let output = parse(&doc.run.output)?;
    let messages = output.get("messages")?.as_array()?;
    let user = messages.iter().find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?;
    match user.get("content")? {
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Which execution of the run recorded each step, from its event log.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Provenance {
    /// How many executions the log shows (`started` and each `resumed`); 0 without a log.
    pub(super) executions: u32,
    /// Step id → the execution (from 1) that recorded it.
    pub(super) recorded_by: HashMap<String, u32>,
    /// For each resumed execution (2, 3…): how many recorded steps it found (and replayed
    /// as it reached them).
    pub(super) replayed: Vec<(u32, u64)>,
}

impl Provenance {
    /// Reads `events` (the run's log from offset 0, or a prefix of it).
    #[cfg(test)]
    pub(super) fn of(events: &[EventRecord]) -> Provenance {
        let mut p = Provenance::default();
        for e in events {
            p.add(e);
        }
        p
    }

    /// Takes in the next event of the log.
    pub(super) fn add(&mut self, e: &EventRecord) {
        match e.kind.as_str() {
            "started" => self.executions += 1,
            "resumed" => {
                self.executions += 1;
                let data: Value = serde_json::from_str(&e.data).unwrap_or(Value::Null);
                let found = data.get("recorded_steps").and_then(Value::as_u64).unwrap_or(0);
                self.replayed.push((self.executions, found));
            }
            "step" => {
                let data: Value = serde_json::from_str(&e.data).unwrap_or(Value::Null);
                if let Some(id) = data.get("step_id").and_then(Value::as_str) {
                    self.recorded_by.insert(id.to_owned(), self.executions.max(1));
                }
            }
            _ => {}
        }
    }

    /// What the page says of step `step_id`.
    fn of_step(&self, step_id: &str) -> String {
        if self.executions == 0 {
            return String::new();
        }
        match self.recorded_by.get(step_id) {
            Some(&k) if k < self.executions => {
                format!("executed fresh in execution {k}, replayed from the record by later executions")
            }
            Some(&k) => format!("executed fresh in execution {k}"),
            None => "recorded before the event log began".to_owned(),
        }
    }
}

/// The HTML of the agent view: one card per invocation, with the run's provenance line.
pub(super) fn render(invocations: &[Invocation], prov: &Provenance, now: i64) -> String {
    let mut html = String::from("<section id=\"agent\"><h2>Agent conversation</h2>");
    if prov.executions == 0 {
        html.push_str(
            "<p class=\"legend\" id=\"provenance\">This run's store holds no event log for it, so whether a step \
             was replayed is not recorded: each call shows its attempts and when its recorded execution ran. \
             (A replay writes nothing: a record is the execution that made it.)</p>",
        );
    } else {
        let _ = write!(
            html,
            "<p class=\"legend\" id=\"provenance\">Executed {} time(s), as its event log shows.",
            prov.executions
        );
        for (k, found) in &prov.replayed {
            let _ =
                write!(html, " Execution {k} replayed {found} recorded step(s) without calling them again.");
        }
        html.push_str("</p>");
    }
    for inv in invocations {
        let (tin, tout, calls) = inv.calls.iter().fold((0u64, 0u64, 0u32), |(a, b, c), m| {
            (a + m.tokens_in.unwrap_or(0), b + m.tokens_out.unwrap_or(0), c + u32::from(m.status.is_some()))
        });
        let costs: Vec<f64> = inv.calls.iter().filter_map(|m| m.cost_usd).collect();
        let cost = if costs.is_empty() {
            "cost: no price recorded (durably keeps no price table; tokens only)".to_owned()
        } else if costs.len() == inv.calls.len() {
            format!("cost: ${:.6} (as recorded with the responses)", costs.iter().sum::<f64>())
        } else {
            format!(
                "cost: ${:.6} for the {} call(s) that recorded one",
                costs.iter().sum::<f64>(),
                costs.len()
            )
        };
        let _ = write!(
            html,
            "<div class=\"card agent\" data-prefix=\"{p}\"><p><b>agent <code>{p}</code></b> · {calls} model call(s) · \
             <span class=\"tokens\">tokens: {tin} in / {tout} out</span> · <span class=\"cost\">{cost}</span></p><ol class=\"conv\">",
            p = esc(&inv.prefix),
        );
        match &inv.prompt {
            Some(p) => {
                let _ = write!(html, "<li class=\"msg user\"><b>user</b><pre>{}</pre></li>", esc(&format::preview_keep_lines(p, 4000)));
            }
            None => html.push_str(
                "<li class=\"msg user none\"><b>user</b> <i>the prompt is not in the records (the model steps keep \
                 only a hash of each request)</i></li>",
            ),
        }
        for call in &inv.calls {
            render_call(&mut html, call, prov, now);
        }
        for t in &inv.orphan_tools {
            render_tool(&mut html, t, prov);
        }
        html.push_str("</ol></div>");
    }
    html.push_str("</section>");
    html
}

fn render_call(html: &mut String, call: &ModelCall, prov: &Provenance, now: i64) {
    let tokens = match (call.tokens_in, call.tokens_out) {
        (None, None) => "tokens not reported".to_owned(),
        (i, o) => format!(
            "{} in / {} out tokens",
            i.map_or_else(|| "?".to_owned(), |n| n.to_string()),
            o.map_or_else(|| "?".to_owned(), |n| n.to_string())
        ),
    };
    let cost = call.cost_usd.map(|c| format!(" · ${c:.6}")).unwrap_or_default();
    let when = match call.finished_at_ms {
        Some(f) => format!(
            "{} UTC, {}",
            format::time(call.started_at_ms),
            format::duration_ms(f - call.started_at_ms)
        ),
        None => format!("started {} ago", format::duration_ms(now - call.started_at_ms)),
    };
    let status = call.status.map_or("", |s| s.as_str());
    let _ = write!(
        html,
        "<li class=\"msg assistant\" data-step=\"{id}\"><b>model call #{n}</b> <code>{id}</code> <span class=\"st\">{status}</span> \
         · <span class=\"tok\">{tokens}{cost}</span>{model}<br><span class=\"prov\">{attempts} attempt(s), {when}{prov}</span>",
        id = esc(&call.step_id),
        n = call.n,
        model =
            call.model.as_deref().map(|m| format!(" · model <code>{}</code>", esc(m))).unwrap_or_default(),
        attempts = call.attempts,
        prov = match prov.of_step(&call.step_id) {
            p if p.is_empty() => p,
            p => format!("; {}", esc(&p)),
        },
    );
    if let Some(text) = call.text.as_deref().filter(|t| !t.is_empty()) {
        let _ = write!(html, "<pre class=\"text\">{}</pre>", esc(&format::preview_keep_lines(text, 4000)));
    }
    if let Some(e) = &call.error {
        let _ = write!(html, "<pre class=\"err\">error: {}</pre>", esc(&format::preview(e, 600)));
    }
    html.push_str("</li>");
    for t in &call.tools {
        render_tool(html, t, prov);
    }
}

fn render_tool(html: &mut String, t: &ToolUse, prov: &Provenance) {
    let approval = match &t.approval {
        None => String::new(),
        Some(Approval::Requested) => {
            " <span class=\"ap ap-requested\">approval requested: waiting</span>".to_owned()
        }
        Some(Approval::Granted) => " <span class=\"ap ap-granted\">approval granted</span>".to_owned(),
        Some(Approval::Denied(reason)) => format!(
            " <span class=\"ap ap-denied\">approval denied{}</span>",
            reason.as_deref().map(|r| format!(": {}", esc(r))).unwrap_or_default()
        ),
    };
    let step = t.step.as_deref().unwrap_or("");
    let _ = write!(
        html,
        "<li class=\"tool\" data-step=\"{sid}\" data-call=\"{call}\"><b>tool <code>{tool}</code></b>{approval}",
        sid = esc(t.step.as_deref().or(t.pending_step.as_deref()).unwrap_or("")),
        call = esc(t.call_id.as_deref().unwrap_or("")),
        tool = esc(&t.tool),
    );
    if let Some(status) = t.status {
        let p = prov.of_step(step);
        let _ = write!(
            html,
            " <span class=\"st\">{status}</span><br><span class=\"prov\">step <code>{}</code>, {} attempt(s){}</span>",
            esc(step),
            t.attempts,
            if p.is_empty() { p } else { format!("; {}", esc(&p)) }
        );
    }
    let args = t.args.as_deref().map(pretty).unwrap_or_else(|| "(not in the records)".to_owned());
    let _ = write!(
        html,
        "<div class=\"kv\"><span>arguments</span><pre class=\"args\">{}</pre></div>",
        esc(&format::preview_keep_lines(&args, 2000))
    );
    let result = match &t.result {
        Some(r) => pretty(r),
        None if t.approval == Some(Approval::Requested) => "(not run: waiting for the approval)".to_owned(),
        None => "(no result recorded yet)".to_owned(),
    };
    let _ = write!(
        html,
        "<div class=\"kv\"><span>result</span><pre class=\"result\">{}</pre></div></li>",
        esc(&format::preview_keep_lines(&result, 2000))
    );
}

/// JSON text indented for reading; other text as it is.
fn pretty(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_owned())
}

/// One line of the run's event list: the kind and a preview of the data. The page's script
/// writes the same for live events.
pub(super) fn event_line(e: &EventRecord) -> String {
    format!(
        "<li data-offset=\"{}\"><span class=\"ek\">{}</span> <span class=\"et\">{}</span> <code>{}</code></li>",
        e.offset,
        esc(&e.kind),
        format::time(e.at_ms),
        esc(&format::preview(&e.data, 160))
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use durably_core::{NewEvent, RunRecord, SignalRecord};
    use serde_json::json;

    use super::*;

    fn step(id: &str, name: &str, value: Value) -> StepRecord {
        let mut s = StepRecord::new(id, name, StepStatus::Completed, 2_000);
        s.value = Some(value.to_string());
        s.attempts = 1;
        s.started_at_ms = 1_000;
        s
    }

    /// An OpenAI agent's response asking for `calls` (name, id, arguments) or answering `text`.
    fn response(text: Option<&str>, calls: &[(&str, &str, &str)], tokens: (u64, u64)) -> Value {
        let calls: Vec<Value> = calls
            .iter()
            .map(|(name, id, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}))
            .collect();
        let mut message = json!({"role": "assistant", "content": text});
        if !calls.is_empty() {
            message["tool_calls"] = Value::Array(calls);
        }
        json!({"id": "chatcmpl-1", "model": "gpt-test", "choices": [{"index": 0, "message": message}],
               "usage": {"prompt_tokens": tokens.0, "completion_tokens": tokens.1, "total_tokens": tokens.0 + tokens.1}})
    }

    /// A run of the OpenAI agent `bank` that called `transfer` (approved), `lookup` (rejected),
    /// then answered; and is now waiting on a third call's approval.
    fn payout(waiting: bool) -> RunExport {
        let mut run = RunRecord::new("pay-1", "payout", None, 1_000);
        run.output = Some(
            json!({"output": "done", "messages": [{"role": "system", "content": "be careful"},
                   {"role": "user", "content": "Pay <b>Bob</b> 250 EUR"}], "usage": {}, "turns": 2})
            .to_string(),
        );
        run.status = RunStatus::Completed;
        let mut steps = vec![
            step(
                "bank.model#1",
                "bank.model",
                response(
                    None,
                    &[
                        ("transfer", "call_1", r#"{"to":"<script>alert(1)</script>","eur":250}"#),
                        ("lookup", "call_2", "{}"),
                    ],
                    (52, 10),
                ),
            ),
            step("bank.tool.transfer#1.call_1", "bank.tool.transfer", json!({"ok": {"sent": true}})),
            step(
                "bank.tool.lookup#1.call_2",
                "bank.tool.lookup",
                json!({"error": "the call was rejected by a human reviewer: not now"}),
            ),
            step("bank.model#2", "bank.model", response(Some("Sent 250 EUR to Bob & co."), &[], (80, 12))),
        ];
        let mut signals = vec![
            SignalRecord::new("approve:bank.tool.transfer#1.call_1", r#"{"approved":true}"#, 1_500),
            SignalRecord::new(
                "approve:bank.tool.lookup#1.call_2",
                r#"{"approved":false,"reason":"not <now>"}"#,
                1_600,
            ),
        ];
        if waiting {
            run.status = RunStatus::Waiting;
            run.output = None;
            run.waiting_on = Some("approve:bank.tool.transfer#2.call_3".into());
            steps[3] = step(
                "bank.model#2",
                "bank.model",
                response(Some("One more."), &[("transfer", "call_3", r#"{"eur":1}"#)], (80, 12)),
            );
            signals.truncate(2);
        }
        RunExport::new(run, steps, signals)
    }

    #[test]
    fn an_openai_run_reads_as_its_conversation() {
        let invs = invocations(&payout(false));
        assert_eq!(invs.len(), 1);
        let inv = &invs[0];
        assert_eq!(inv.prefix, "bank");
        assert_eq!(
            inv.prompt.as_deref(),
            Some("Pay <b>Bob</b> 250 EUR"),
            "the first user message of the output"
        );
        assert_eq!(inv.calls.len(), 2);
        let first = &inv.calls[0];
        assert_eq!((first.n, first.tokens_in, first.tokens_out), (1, Some(52), Some(10)));
        assert_eq!(first.model.as_deref(), Some("gpt-test"));
        assert_eq!(first.tools.len(), 2);
        let transfer = &first.tools[0];
        assert_eq!(transfer.tool, "transfer");
        assert_eq!(transfer.step.as_deref(), Some("bank.tool.transfer#1.call_1"));
        assert_eq!(transfer.args.as_deref(), Some(r#"{"to":"<script>alert(1)</script>","eur":250}"#));
        assert_eq!(transfer.result.as_deref(), Some(r#"{"ok":{"sent":true}}"#));
        assert_eq!(transfer.approval, Some(Approval::Granted));
        assert_eq!(first.tools[1].approval, Some(Approval::Denied(Some("not <now>".into()))));
        assert_eq!(inv.calls[1].text.as_deref(), Some("Sent 250 EUR to Bob & co."));
        assert!(inv.orphan_tools.is_empty());
    }

    #[test]
    fn a_call_waiting_for_its_approval_is_requested() {
        let invs = invocations(&payout(true));
        let third = &invs[0].calls[1].tools[0];
        assert_eq!((third.tool.as_str(), third.step.as_deref()), ("transfer", None));
        assert_eq!(third.pending_step.as_deref(), Some("bank.tool.transfer#2.call_3"));
        assert_eq!(third.approval, Some(Approval::Requested));
        let html = render(&invs, &Provenance::default(), 3_000);
        assert!(html.contains("approval requested: waiting"), "{html}");
        assert!(html.contains("(not run: waiting for the approval)"), "{html}");
    }

    #[test]
    fn the_view_escapes_everything_and_shows_tokens_without_inventing_a_price() {
        let html = render(&invocations(&payout(false)), &Provenance::default(), 3_000);
        assert!(!html.contains("<script>") && !html.contains("<b>Bob"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        assert!(html.contains("Pay &lt;b&gt;Bob&lt;/b&gt; 250 EUR"), "{html}");
        assert!(html.contains("Sent 250 EUR to Bob &amp; co."), "{html}");
        assert!(html.contains("approval denied: not &lt;now&gt;"), "{html}");
        assert!(html.contains("approval granted"), "{html}");
        assert!(html.contains("tokens: 132 in / 22 out"), "the sum of both calls: {html}");
        assert!(html.contains("52 in / 10 out tokens") && html.contains("80 in / 12 out tokens"), "{html}");
        assert!(html.contains("no price recorded") && !html.contains('$'), "no invented price: {html}");
        assert!(html.contains("no event log"), "says what is shown without the log: {html}");
        assert!(html.contains("1 attempt(s)"), "{html}");
    }

    #[test]
    fn the_event_log_tells_fresh_steps_from_replayed_ones() {
        let ev = |offset, kind: &str, data: Value| {
            EventRecord::new(offset, NewEvent::new(kind, data.to_string(), 1_000))
        };
        let events = [
            ev(0, "started", json!({"run_id": "pay-1"})),
            ev(1, "step", json!({"step_id": "bank.model#1", "status": "completed"})),
            ev(2, "resumed", json!({"run_id": "pay-1", "recorded_steps": 1})),
            ev(3, "step", json!({"step_id": "bank.tool.transfer#1.call_1", "status": "completed"})),
        ];
        let prov = Provenance::of(&events);
        assert_eq!(prov.executions, 2);
        assert_eq!(prov.replayed, vec![(2, 1)]);
        let html = render(&invocations(&payout(false)), &prov, 3_000);
        assert!(
            html.contains("Executed 2 time(s)") && html.contains("Execution 2 replayed 1 recorded step(s)"),
            "{html}"
        );
        assert!(
            html.contains("executed fresh in execution 1, replayed from the record by later executions"),
            "{html}"
        );
        assert!(html.contains("executed fresh in execution 2"), "{html}");
        assert!(
            html.contains("recorded before the event log began"),
            "bank.model#2 has no event here: {html}"
        );
    }

    #[test]
    fn a_rig_run_and_its_recorded_cost() {
        let run = RunRecord::new("rig-1", "research", None, 1_000);
        let outcome = json!({"outcome": "completion",
            "choice": [{"type": "text", "text": "Let me look."},
                       {"type": "toolcall", "id": "tc_1", "function": {"name": "search", "arguments": {"q": "rust"}}}],
            "usage": {"input_tokens": 30, "output_tokens": 5, "cost": {"total": 0.0012}},
            "origin": {"provider": "openai", "model": "gpt-x"}});
        let steps = vec![
            step("researcher.input", "researcher.input", json!("What is Rust?")),
            step("researcher.model#1", "researcher.model", outcome),
            step(
                "researcher.tool.search#1.tc_1",
                "researcher.tool.search",
                json!({"outcome": "tool_result", "result": "a language"}),
            ),
            step("other", "other", json!(1)),
        ];
        let invs = invocations(&RunExport::new(run, steps, vec![]));
        assert_eq!(invs.len(), 1);
        let inv = &invs[0];
        assert_eq!(inv.prompt.as_deref(), Some("What is Rust?"));
        let call = &inv.calls[0];
        assert_eq!(
            (call.text.as_deref(), call.tokens_in, call.cost_usd),
            (Some("Let me look."), Some(30), Some(0.0012))
        );
        assert_eq!(call.tools[0].args.as_deref(), Some(r#"{"q":"rust"}"#));
        assert!(call.tools[0].result.as_deref().is_some_and(|r| r.contains("a language")));
        let html = render(&invs, &Provenance::default(), 3_000);
        assert!(html.contains("cost: $0.001200 (as recorded with the responses)"), "{html}");
    }

    #[test]
    fn a_run_without_agent_steps_has_no_agent_view() {
        let run = RunRecord::new("plain", "wf", None, 1_000);
        let steps = vec![step("fetch", "fetch", json!(1)), step("x.input", "x.input", json!("not an agent"))];
        assert!(invocations(&RunExport::new(run, steps, vec![])).is_empty());
    }

    #[test]
    fn event_lines_are_escaped() {
        let e = EventRecord::new(
            7,
            NewEvent::new("text", json!({"text": "<img src=x onerror=alert(1)>"}).to_string(), 0),
        );
        let line = event_line(&e);
        assert!(line.starts_with("<li data-offset=\"7\">") && !line.contains("<img"), "{line}");
        assert!(line.contains("&lt;img src=x onerror=alert(1)&gt;"), "{line}");
    }
}
