//! The journal API, for integrations: how a library that is not a `#[task]` (an agent adapter,
//! an MCP client, a queue consumer) records its own steps in a run.
//!
//! An integration does three things, all on the [`RunContext`] of the run it is called in
//! ([`RunContext::current`], or the `ctx` a `wf.run` closure receives):
//!
//! 1. **Take a step id when the call is made**, not when it finishes, so that concurrent calls
//!    keep their ids on every replay: [`RunContext::next_step_id`] (`name`, `name#1`, …), inside
//!    a [`RunContext::scope`] of its own so that its numbering does not depend on what else the
//!    run calls.
//! 2. **Look for the recorded step**: [`RunContext::replay_step`] returns the record of that id,
//!    or [`Error::NonDeterminism`](crate::Error::NonDeterminism) when the record belongs to
//!    another name. A [`StepStatus::Completed`] record is the answer: return its value without
//!    calling anything.
//! 3. **Otherwise do the work and save it**: [`RunContext::save_step`] with a [`StepRecord`]
//!    (its value as JSON text, and a request hash when the step sends a request that replay
//!    should check). It fails with `LeaseLost`, saving nothing, once another executor owns the
//!    run.
//!
//! When retries, backoff, at-most-once and tracing are wanted too, [`RunContext::step`] does all
//! of it around a closure; the three calls above are for steps whose outcome an integration
//! records itself (a streamed model answer assembled from chunks, a tool call awaiting an
//! approval).
//!
//! ```
//! use durably_core::journal::{RunContext, StepRecord, StepStatus, now_ms};
//!
//! /// A lookup recorded once per run, whatever the process that replays it.
//! async fn lookup(ctx: &RunContext, key: &str) -> durably_core::Result<String> {
//!     let mcp = ctx.scope("mcp");
//!     let step_id = mcp.next_step_id("lookup");
//!     if let Some(rec) = mcp.replay_step(&step_id, &mcp.scoped("lookup"))?
//!         && rec.status == StepStatus::Completed
//!     {
//!         let value = rec.value.as_deref().unwrap_or("null");
//!         return serde_json::from_str(value).map_err(durably_core::Error::permanent);
//!     }
//!     let answer = format!("value of {key}"); // the real call goes here
//!     let mut rec = StepRecord::new(&step_id, mcp.scoped("lookup"), StepStatus::Completed, now_ms());
//!     rec.value = Some(serde_json::to_string(&answer).map_err(durably_core::Error::permanent)?);
//!     mcp.save_step(rec).await?;
//!     Ok(answer)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> durably_core::Result<()> {
//! let wf = durably_core::Workflow::builder("app").build();
//! let answer = wf.run("run-1", |ctx| async move { lookup(&ctx, "k").await }).await?;
//! assert_eq!(answer, "value of k");
//! assert_eq!(wf.list_steps("run-1").await?[0].step_id, "mcp.lookup");
//! # Ok(()) }
//! ```

pub use crate::context::{RunContext, StepInfo, current_step, idempotency_key, spawn};
pub use crate::store::{StepRecord, StepStatus, now_ms};
pub use crate::task::{TaskCall, TaskSpec};
