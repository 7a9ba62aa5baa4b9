//! [`Signals`]: delivering signals to runs, first write wins, and waking whoever waits for one.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::store::SignalRecord;

/// Signals delivered to runs.
#[async_trait]
pub trait Signals: Send + Sync {
    /// Records a signal unless one of that name was already delivered to the run: first write
    /// wins. Returns `true` when this call delivered it. The run need not exist yet.
    async fn deliver_signal(&self, run_id: &str, signal: &SignalRecord) -> Result<bool>;

    /// The payload of a delivered signal.
    async fn get_signal(&self, run_id: &str, name: &str) -> Result<Option<String>>;

    /// Every signal delivered to `run_id` (also before the run existed), oldest first, then by
    /// name. Read-only, unlike `open_run`: for exports and operators' tools.
    ///
    /// The default fails with [`Error::Invalid`]: a store must implement it to support export.
    async fn list_signals(&self, run_id: &str) -> Result<Vec<SignalRecord>> {
        Err(unsupported("list_signals", run_id))
    }

    /// Resolves when a signal *may* have been delivered to `run_id` by another process, or after
    /// at most `max_wait`. The engine checks `get_signal` after it returns, and wakes waiters of
    /// its own process without it. The default sleeps for `max_wait`: right for a store only one
    /// process uses, and merely slow for others. Stores shared between processes shorten the
    /// wait (a poll interval) or listen for a notification.
    async fn wait_for_signal(&self, run_id: &str, name: &str, max_wait: Duration) {
        let _ = (run_id, name);
        tokio::time::sleep(max_wait).await;
    }
}

/// The error of an optional operation a store does not implement, asked for run `run_id`.
pub(crate) fn unsupported(op: &str, run_id: &str) -> Error {
    unsupported_for(op, &format!("run `{run_id}`"))
}

/// The error of an optional operation a store does not implement, asked for `subject`.
pub(crate) fn unsupported_for(op: &str, subject: &str) -> Error {
    Error::Invalid {
        what: "store operation",
        detail: format!("this store does not implement `{op}` (asked for {subject})"),
    }
}

#[async_trait]
impl<S: Signals + ?Sized> Signals for Arc<S> {
    async fn deliver_signal(&self, run_id: &str, signal: &SignalRecord) -> Result<bool> {
        (**self).deliver_signal(run_id, signal).await
    }
    async fn get_signal(&self, run_id: &str, name: &str) -> Result<Option<String>> {
        (**self).get_signal(run_id, name).await
    }
    async fn list_signals(&self, run_id: &str) -> Result<Vec<SignalRecord>> {
        (**self).list_signals(run_id).await
    }
    async fn wait_for_signal(&self, run_id: &str, name: &str, max_wait: Duration) {
        (**self).wait_for_signal(run_id, name, max_wait).await
    }
}
