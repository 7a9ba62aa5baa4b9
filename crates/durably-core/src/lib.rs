//! The engine of [durably](https://docs.rs/durably): workflows whose tasks are checkpointed to a
//! [`Store`], so that executing a run again after a crash returns finished tasks from the store
//! and runs only the rest.
//!
//! Most users depend on the `durably` facade, which re-exports this crate with the attribute
//! macros and the SQLite store.
//!
//! Several processes may share a store: a run being executed holds a [`Lease`] in it (see
//! [`Leases::acquire_lease`]), renewed in the background every third of
//! [`WorkflowBuilder::lease_ttl`], so that a second executor gets [`Error::RunInProgress`] (or
//! waits for it, with [`WorkflowBuilder::wait_for_lease`]). Workflows registered with
//! [`Workflow::register`] or [`Workflow::register_fn`] are resumed by [`Workflow::recover`] and
//! [`Workflow::run_worker`] once their executor's lease has expired.

mod admin;
pub mod backoff;
mod cancel;
mod child;
mod context;
mod env;
mod error;
mod events;
pub mod journal;
mod json;
mod lease;
mod memory;
mod patch;
#[doc(hidden)]
pub mod private;
mod queue;
mod rate;
mod recovery;
mod schedule;
mod signal;
pub mod store;
mod store_retry;
mod sync;
mod task;
mod worker;
mod workflow;

pub use admin::{EXPORT_FORMAT, RunExport};
pub use backoff::{Backoff, RetryPolicy};
pub use cancel::CANCEL_POLL;
pub use child::{Child, ChildHandle, child};
pub use context::{RunContext, StepInfo, current_step, idempotency_key, spawn, state};
pub use env::State;
pub use error::{BoxError, Error, Result, RetryAfter, Retryable, StoreErrorKind};
pub use events::{DEFAULT_MAX_EVENTS_PER_RUN, EVENT_PAGE, EventFeed, FINAL_KINDS, FLUSH_AFTER, FLUSH_AT};
pub use lease::DEFAULT_LEASE_TTL;
pub use memory::MemoryStore;
pub use patch::patched;
pub use queue::{EnqueueOptions, Queue, RunHandle};
pub use rate::RateGrant;
pub use recovery::{DurableWorkflow, RecoveryReport, WorkerHandle};
pub use schedule::{MAX_MISSED_TICKS, Missed, Schedule};
pub use signal::{INTERNAL_SIGNAL_PREFIX, is_internal_signal, signal, signal_timeout, sleep};
pub use store::{
    Admin, Claim, EventRecord, Events, Journal, Lease, LeaseOutcome, LeasedOpen, Leases, NewEvent, NewRun,
    QueueLimits, QueueStats, QueuedRun, Queues, Rate, RateAcquire, RateCost, RateDecision, RateLimit,
    RateLimits, RunFilter, RunHistory, RunRecord, RunStatus, RunUpdate, SignalRecord, Signals, SingleProcess,
    StepRecord, StepStatus, Store, now_ms,
};
pub use task::{TaskCall, step};
pub use worker::{DEFAULT_PARK_AFTER, DEFAULT_WORKER_CONCURRENCY, QueueWorker};
pub use workflow::{DEFAULT_RETRIES, Workflow, WorkflowBuilder};
