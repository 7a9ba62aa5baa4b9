//! Retry policy for the steps an agent creates.

use durably_core::Backoff;
use durably_core::backoff::exponential;

/// Retries and backoff for one kind of agent step (model calls or tool calls).
///
/// Provider-level retries are turned off by the agents of this crate: the framework owns
/// retries, so that each attempt is visible in the step record and in tracing.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct TaskConfig {
    /// Retries after the first attempt (`retries + 1` attempts in all).
    pub retries: u32,
    /// The wait between attempts.
    pub backoff: Backoff,
}

impl TaskConfig {
    /// `retries` retries with `backoff` between attempts.
    pub fn new(retries: u32, backoff: Backoff) -> Self {
        TaskConfig { retries, backoff }
    }

    /// The same policy with `n` retries.
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// The same policy with another backoff.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }
}

impl Default for TaskConfig {
    /// Three retries, exponential backoff of 2 s, 4 s, 8 s (capped at 60 s).
    fn default() -> Self {
        TaskConfig { retries: 3, backoff: exponential(2.0, 60.0) }
    }
}
