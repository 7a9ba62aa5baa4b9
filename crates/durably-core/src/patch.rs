//! Changing workflow code while runs are in flight (rule 26 of docs/design.md):
//! `durably::patched("change")` tells a run started before the change from one started after
//! it, and records the answer, so every replay of a run takes the branch it took first.

use crate::context::RunContext;
use crate::error::{Error, Result};
use crate::json::{decode, encode};
use crate::store::{StepRecord, StepStatus, now_ms};

/// True when this run executes the code after change `name`, false when it started before it
/// and is replaying the old code's steps:
///
/// ```no_run
/// # async fn body() -> durably_core::Result<()> {
/// if durably_core::patched("send-receipt-by-email").await? {
///     // the new code
/// } else {
///     // the code runs started before the deploy recorded
/// }
/// # Ok(()) }
/// ```
///
/// A run answers `true` when it reaches the call with nothing recorded past it (a new run, or
/// one that had not yet come this far), `false` when it recorded steps beyond this point before
/// the change existed. The answer is a step (`patch:<name>`), so later replays get the same.
/// Remove the call (keeping the new branch) once no run started before the change is left.
pub async fn patched(name: &str) -> Result<bool> {
    let ctx = RunContext::current().ok_or_else(|| Error::Invalid {
        what: "call",
        detail: "`durably::patched` can only be awaited inside a workflow run".into(),
    })?;
    ctx.patched(name).await
}

impl RunContext {
    /// See [`patched`](crate::patched).
    pub async fn patched(&self, name: &str) -> Result<bool> {
        self.check_cancelled()?;
        let step_name = self.scoped(&format!("patch:{name}"));
        let step_id = self.generate_step_id(&step_name);
        if let Some(recorded) = self.replay_step(&step_id, &step_name)? {
            return decode(self.run_id(), &step_id, "patch marker", recorded.value.as_deref());
        }
        let new_code = self.at_frontier();
        let mut record = StepRecord::new(&step_id, &step_name, StepStatus::Completed, now_ms());
        record.value = Some(encode(self.run_id(), &step_id, "patch marker", &new_code)?);
        record.attempts = 1;
        self.save_step(record).await?;
        Ok(new_code)
    }
}
