//! # durably
//!
//! Durable async workflows and LLM agents for Rust. Each task of a workflow (an API call, a
//! model request, a tool call) is checkpointed to a store; executing the same run id again
//! after a crash returns finished tasks from the store without running them, and runs only the
//! rest.
//!
//! See the README for the guide; the items below carry their own examples.
//!
//! | feature  | default | what it adds |
//! |----------|---------|--------------|
//! | `sqlite` | yes     | [`SqliteStore`] and `Workflow::open`, the embedded zero-config store |

#![cfg_attr(docsrs, feature(doc_cfg))]

pub use durably_core::{
    Backoff, BoxError, DEFAULT_RETRIES, Error, MemoryStore, NewRun, Result, Retryable, RunContext, RunFilter,
    RunHistory, RunRecord, RunStatus, RunUpdate, SignalRecord, StepInfo, StepRecord, StepStatus, Store, TaskCall,
    Workflow, WorkflowBuilder, backoff, current_step, idempotency_key, now_ms, signal, signal_timeout, sleep, step,
};
pub use durably_macros::{task, workflow};

#[doc(hidden)]
pub use durably_core::private as __private;

/// What a workflow author needs in scope: `use durably::prelude::*;`.
pub mod prelude {
    pub use crate::backoff::{constant, exponential, linear};
    pub use crate::{Error, Workflow, signal, signal_timeout, sleep, step, task, workflow};
}
