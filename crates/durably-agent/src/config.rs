//! Retry policy for the steps an agent creates: the core's one [`RetryPolicy`].

use durably_core::RetryPolicy;

/// Retries and backoff for one kind of agent step (model calls or tool calls): the core's
/// [`RetryPolicy`] (default three retries, waiting 2 s, 4 s, 8 s, capped at 60 s).
///
/// Provider-level retries are turned off by the agents of this crate: the framework owns
/// retries, so that each attempt is visible in the step record and in tracing.
pub type TaskConfig = RetryPolicy;
