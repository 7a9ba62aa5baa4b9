//! How records are laid out in Redis values, and the size limit Redis puts on them.
//!
//! - A run is a hash with the fields `id`, `wf`, `status`, `input`, `output`, `error`,
//!   `waiting_on`, `created`, `updated`, and for a queued run `queue`, `priority`, `rank`, `key`,
//!   `parent`, `wake_at`, `claimed` (the last claim's time), `version`; an absent optional
//!   field is an absent hash field.
//! - A step is the JSON of its [`StepRecord`] (serde keeps every string exact).
//! - A signal is `<delivered_at_ms>:<payload>`, under its name in the run's signals hash.
//! - An event is `<at_ms>:<kind length>:<kind><data>`, at its offset in the run's events list.

use std::fmt;

use durably_core::{Error, EventRecord, NewEvent, Result, RunRecord, RunStatus, SignalRecord, StepRecord};

/// The largest value Redis accepts in one argument or one hash field (`proto-max-bulk-len`,
/// 512 MiB by default).
pub(crate) const MAX_VALUE_BYTES: usize = 512 * 1024 * 1024;

/// A value too large for Redis. Its message names what it was and its size.
#[derive(Debug)]
pub(crate) struct TooLarge {
    pub(crate) what: String,
    pub(crate) bytes: usize,
}

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is {} bytes, over Redis's limit of {} bytes (512 MiB) for one value; nothing was written",
            self.what, self.bytes, MAX_VALUE_BYTES
        )
    }
}

impl std::error::Error for TooLarge {}

/// Fails with a [`TooLarge`] store error when `bytes` exceeds Redis's limit.
pub(crate) fn check_size(
    op: &'static str,
    run_id: &str,
    what: impl FnOnce() -> String,
    bytes: usize,
) -> Result<()> {
    if bytes > MAX_VALUE_BYTES {
        return Err(Error::store(op, Some(run_id), TooLarge { what: what(), bytes }));
    }
    Ok(())
}

/// Encodes a step record, refusing one Redis cannot hold.
pub(crate) fn encode_step(run_id: &str, step: &StepRecord) -> Result<String> {
    let what = || format!("the record of step `{}`", step.step_id);
    // Refuse a huge value before spending time and memory on its JSON.
    let raw = [&step.value, &step.error, &step.request_hash]
        .into_iter()
        .filter_map(|f| f.as_ref())
        .map(String::len);
    check_size("save_step", run_id, what, raw.sum::<usize>() + step.step_id.len() + step.name.len())?;
    let text = serde_json::to_string(step).map_err(|e| Error::store("save_step", Some(run_id), e))?;
    check_size("save_step", run_id, what, text.len())?;
    Ok(text)
}

/// Decodes a step record.
pub(crate) fn decode_step(run_id: &str, text: &str) -> Result<StepRecord> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt {
        run_id: run_id.to_owned(),
        step_id: None,
        detail: format!("a step record is not valid: {e}"),
    })
}

/// Sorts steps as `list_steps` returns them: by start time, then step id.
pub(crate) fn sort_steps(steps: &mut [StepRecord]) {
    steps.sort_by(|a, b| a.started_at_ms.cmp(&b.started_at_ms).then_with(|| a.step_id.cmp(&b.step_id)));
}

/// Sorts signals oldest first, then by name.
pub(crate) fn sort_signals(signals: &mut [SignalRecord]) {
    signals.sort_by(|a, b| a.delivered_at_ms.cmp(&b.delivered_at_ms).then_with(|| a.name.cmp(&b.name)));
}

/// Encodes a signal's value in the signals hash.
pub(crate) fn encode_signal(signal: &SignalRecord) -> String {
    format!("{}:{}", signal.delivered_at_ms, signal.payload)
}

/// Decodes a signal from its name and its value in the signals hash.
pub(crate) fn decode_signal(run_id: &str, name: String, value: &str) -> Result<SignalRecord> {
    let corrupt = || Error::Corrupt {
        run_id: run_id.to_owned(),
        step_id: None,
        detail: format!("signal `{name}` is not `<delivered_at>:<payload>`"),
    };
    let (at, payload) = value.split_once(':').ok_or_else(corrupt)?;
    let at: i64 = at.parse().map_err(|_| corrupt())?;
    Ok(SignalRecord::new(name, payload, at))
}

/// Encodes an event in the run's events list.
pub(crate) fn encode_event(event: &NewEvent) -> String {
    format!("{}:{}:{}{}", event.at_ms, event.kind.len(), event.kind, event.data)
}

/// Decodes the event at `offset` of run `run_id`'s log.
pub(crate) fn decode_event(run_id: &str, offset: u64, value: &str) -> Result<EventRecord> {
    let corrupt = || Error::Corrupt {
        run_id: run_id.to_owned(),
        step_id: None,
        detail: format!("the event at offset {offset} is not `<at>:<kind length>:<kind><data>`"),
    };
    let (at, rest) = value.split_once(':').ok_or_else(corrupt)?;
    let (len, rest) = rest.split_once(':').ok_or_else(corrupt)?;
    let at: i64 = at.parse().map_err(|_| corrupt())?;
    let len: usize = len.parse().map_err(|_| corrupt())?;
    let kind = rest.get(..len).ok_or_else(corrupt)?;
    let data = rest.get(len..).ok_or_else(corrupt)?;
    Ok(EventRecord::new(offset, NewEvent::new(kind, data, at)))
}

/// Decodes the `[field, value, field, value, …]` of a run hash.
pub(crate) fn decode_run(run_id: &str, flat: Vec<String>) -> Result<RunRecord> {
    let mut fields = flat.into_iter();
    let (mut id, mut wf, mut status, mut created, mut updated) = (None, None, None, None, None);
    let (mut wake_at, mut claimed) = (None, None);
    let mut run = RunRecord::new(run_id, "", None, 0);
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        match name.as_str() {
            "id" => id = Some(value),
            "wf" => wf = Some(value),
            "status" => status = Some(value),
            "created" => created = Some(value),
            "updated" => updated = Some(value),
            "input" => run.input = Some(value),
            "output" => run.output = Some(value),
            "error" => run.error = Some(value),
            "waiting_on" => run.waiting_on = Some(value),
            "queue" => run.queue = Some(value),
            "parent" => run.parent_id = Some(value),
            "wake_at" => wake_at = Some(value),
            "claimed" => claimed = Some(value),
            "version" => run.version = Some(value),
            _ => {}
        }
    }
    let corrupt = |detail: String| Error::Corrupt { run_id: run_id.to_owned(), step_id: None, detail };
    let missing = |field: &str| corrupt(format!("the run hash has no `{field}` field"));
    let time = |field: &str, value: Option<String>| -> Result<i64> {
        let value = value.ok_or_else(|| missing(field))?;
        value.parse().map_err(|_| corrupt(format!("`{field}` is `{value}`, not a time in milliseconds")))
    };
    run.run_id = id.ok_or_else(|| missing("id"))?;
    run.workflow = wf.ok_or_else(|| missing("wf"))?;
    run.status =
        status.ok_or_else(|| missing("status"))?.parse::<RunStatus>().map_err(|e| corrupt(e.to_string()))?;
    run.created_at_ms = time("created", created)?;
    run.updated_at_ms = time("updated", updated)?;
    if wake_at.is_some() {
        run.wake_at_ms = Some(time("wake_at", wake_at)?);
    }
    if claimed.is_some() {
        run.claimed_at_ms = Some(time("claimed", claimed)?);
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use durably_core::StepStatus;

    #[test]
    fn signals_keep_colons_in_their_payload() {
        let signal = SignalRecord::new("s", r#"{"a":"b:c"}"#, -5);
        let text = encode_signal(&signal);
        assert_eq!(decode_signal("r", "s".into(), &text).unwrap(), signal);
    }

    #[test]
    fn events_keep_colons_and_digits_in_their_kind_and_data() {
        let event = NewEvent::new("a:1", "2:{\"x\":\"3:y\"}", -7);
        let text = encode_event(&event);
        assert_eq!(decode_event("r", 4, &text).unwrap(), EventRecord::new(4, event));
        let err = decode_event("r", 9, "5:99:short").unwrap_err();
        assert!(err.to_string().contains("offset 9"), "{err}");
    }

    #[test]
    fn a_step_over_the_limit_is_refused_before_encoding() {
        let mut step = StepRecord::new("big", "task", StepStatus::Completed, 0);
        step.value = Some(String::new());
        step.error = Some("e".repeat(MAX_VALUE_BYTES));
        let err = encode_step("r", &step).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("save_step") && text.contains("`r`") && text.contains("step `big`"), "{text}");
    }

    #[test]
    fn a_run_hash_without_its_workflow_is_corrupt() {
        let flat =
            ["id", "r", "status", "running", "created", "1", "updated", "1"].map(String::from).to_vec();
        let err = decode_run("r", flat).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("`wf`"));
    }
}
