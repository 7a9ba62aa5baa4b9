//! Where durably keeps runs, steps and signals: the [`Store`] a backend implements, built from
//! four capability traits, and the records it keeps.
//!
//! A store is [`Journal`] (runs and their steps), [`Signals`] (delivery and waking waiters),
//! [`Leases`] (what keeps processes sharing a store from running a run twice or overwriting a
//! cancellation) and [`Admin`] (listing and deleting runs). [`Store`] is implemented for every
//! type that implements all four, so `Arc<dyn Store>` is what the engine holds.
//!
//! Calling a store's methods needs the trait that declares them in scope:
//! `use durably_core::store::prelude::*;` brings all of them.
//!
//! A store only one process uses implements `Journal`, `Signals` and `Admin` and gets `Leases`
//! from the [`SingleProcess`] adapter.

mod admin;
mod journal;
mod leases;
mod records;
mod signals;
mod single;
mod waits;

pub use admin::Admin;
pub use journal::Journal;
pub use leases::Leases;
pub use records::{
    Lease, LeaseOutcome, NewRun, RunFilter, RunHistory, RunRecord, RunStatus, RunUpdate, SignalRecord,
    StepRecord, StepStatus,
};
pub use signals::Signals;
pub use single::SingleProcess;
pub use waits::{WaitRegistry, Waiting};

/// Everything needed to call a store: `use durably_core::store::prelude::*;`.
pub mod prelude {
    pub use super::{Admin, Journal, Leases, Signals, Store};
}

/// Where durably keeps runs, steps and signals: a [`Journal`], [`Signals`], [`Leases`] and
/// [`Admin`] in one, shared between tasks and threads (`Arc<dyn Store>`).
///
/// It is implemented for every type that implements the four; implement those. Every method
/// that writes must have made its write durable (to the store's own standard) before it
/// returns. The conformance suite in `durably-testkit` checks each behaviour.
pub trait Store: Journal + Signals + Leases + Admin + Send + Sync + 'static {}

impl<S: Journal + Signals + Leases + Admin + Send + Sync + 'static + ?Sized> Store for S {}

/// The current time in milliseconds since the Unix epoch, by this machine's clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
