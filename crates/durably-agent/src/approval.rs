//! The payload of a tool-approval signal.

use serde::{Deserialize, Serialize};

/// A human's decision on a tool call that needs approval, delivered as the payload of the
/// signal the agent waits on (`wf.complete(run_id, "approve:<step id>", &Approval::approve())`).
///
/// `{"approved": true}` runs the tool; `{"approved": false, "reason": "…"}` does not, and the
/// model receives the reason as the tool's error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Approval {
    /// Whether the tool may run.
    pub approved: bool,
    /// Why it may not (shown to the model); optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Approval {
    /// Approves the call.
    pub fn approve() -> Self {
        Approval { approved: true, reason: None }
    }

    /// Rejects the call; the model receives `reason` as the tool's error.
    pub fn reject(reason: impl Into<String>) -> Self {
        Approval { approved: false, reason: Some(reason.into()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form() {
        let ok: Approval =
            serde_json::from_str(r#"{"approved":true}"#).unwrap_or_else(|_| Approval::reject("x"));
        assert_eq!(ok, Approval::approve());
        let no: Approval = serde_json::from_str(r#"{"approved":false,"reason":"too costly"}"#)
            .unwrap_or_else(|_| Approval::approve());
        assert_eq!(no, Approval::reject("too costly"));
        assert_eq!(serde_json::to_string(&Approval::approve()).ok().as_deref(), Some(r#"{"approved":true}"#));
    }
}
