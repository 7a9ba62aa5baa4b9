//! The engine of [durably](https://docs.rs/durably): workflows whose tasks are checkpointed to a
//! [`Store`], so that executing a run again after a crash returns finished tasks from the store
//! and runs only the rest.
//!
//! Most users depend on the `durably` facade, which re-exports this crate with the attribute
//! macros and the SQLite store.

mod error;
mod memory;
mod store;

pub use error::{BoxError, Error, Result, Retryable};
pub use memory::MemoryStore;
pub use store::{
    NewRun, RunFilter, RunHistory, RunRecord, RunStatus, RunUpdate, SignalRecord, StepRecord, StepStatus, Store,
    now_ms,
};
