//! Where durably keeps runs, steps and signals: the [`Store`] a backend implements, built from
//! four capability traits, and the records it keeps.
//!
//! A store is [`Journal`] (runs and their steps), [`Signals`] (delivery and waking waiters),
//! [`Leases`] (what keeps processes sharing a store from running a run twice or overwriting a
//! cancellation), [`Admin`] (listing and deleting runs), [`Queues`] (runs waiting for a
//! worker, parked runs), [`Events`] (each run's event log) and [`RateLimits`] (request and
//! token budgets shared by every process). [`Store`] is implemented for every type that
//! implements all seven, so `Arc<dyn Store>` is what the engine holds. `Queues`, `Events` and
//! `RateLimits` have defaults that refuse: a store without them still runs workflows in place.
//!
//! Calling a store's methods needs the trait that declares them in scope:
//! `use durably_core::store::prelude::*;` brings all of them.
//!
//! A store only one process uses implements `Journal`, `Signals` and `Admin` and gets `Leases`
//! from the [`SingleProcess`] adapter.

mod admin;
mod events;
mod journal;
mod leases;
mod queues;
mod rates;
mod records;
mod signals;
mod single;
mod waits;

pub use admin::Admin;
pub use events::{EventRecord, Events, NewEvent};
pub use journal::Journal;
pub use leases::Leases;
pub use queues::{Claim, QueueLimits, QueueStats, QueuedRun, Queues, Rate};
pub use rates::{
    LoggedGrant, RateAcquire, RateCost, RateDecision, RateLimit, RateLimits, decide, duration_ms,
};
pub use records::{
    Lease, LeaseOutcome, LeasedOpen, NewRun, RunFilter, RunHistory, RunRecord, RunStatus, RunUpdate,
    SignalRecord, StepRecord, StepStatus,
};
pub use signals::Signals;
pub use single::SingleProcess;
pub use waits::{WaitRegistry, Waiting};

/// Everything needed to call a store: `use durably_core::store::prelude::*;`.
pub mod prelude {
    pub use super::{Admin, Events, Journal, Leases, Queues, RateLimits, Signals, Store};
}

/// Where durably keeps runs, steps and signals: a [`Journal`], [`Signals`], [`Leases`],
/// [`Admin`], [`Queues`], [`Events`] and [`RateLimits`] in one, shared between tasks and
/// threads (`Arc<dyn Store>`).
///
/// It is implemented for every type that implements the seven; implement those. Every method
/// that writes must have made its write durable (to the store's own standard) before it
/// returns. The conformance suite in `durably-testkit` checks each behaviour.
pub trait Store:
    Journal + Signals + Leases + Admin + Queues + Events + RateLimits + Send + Sync + 'static
{
}

impl<S: Journal + Signals + Leases + Admin + Queues + Events + RateLimits + Send + Sync + 'static + ?Sized>
    Store for S
{
}

/// The current time in milliseconds since the Unix epoch, by this machine's clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
