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
    RunHistory, RunRecord, RunStatus, RunUpdate, SignalRecord, StepInfo, StepRecord, StepStatus, Store,
    TaskCall, Workflow, WorkflowBuilder, backoff, current_step, idempotency_key, now_ms, signal,
    signal_timeout, sleep, step,
};
pub use durably_macros::{task, workflow};

#[doc(hidden)]
pub use durably_core::private as __private;

#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use durably_sqlite::{Durability, SqliteOptions, SqliteStore, SqliteStoreBuilder};

/// The file `Workflow::open` uses: `durably.db` in the working directory.
#[cfg(feature = "sqlite")]
pub const DEFAULT_DB_PATH: &str = "durably.db";

/// `Workflow::open`: the zero-configuration engine on the embedded SQLite store.
///
/// It is a trait because the engine lives in `durably-core`, which knows no store driver; the
/// [`prelude`] brings it into scope.
///
/// ```no_run
/// use durably::prelude::*;
/// # async fn demo() -> durably::Result<()> {
/// let wf = Workflow::open("my-app").await?; // ./durably.db, created on first use
/// let other = Workflow::open_path("my-app", "/var/lib/my-app/runs.db").await?;
/// # Ok(()) }
/// ```
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub trait OpenSqlite: Sized {
    /// An engine named `app` on `./durably.db` with default options (durability `Full`).
    fn open(app: impl Into<String> + Send) -> impl std::future::Future<Output = Result<Self>> + Send;

    /// An engine named `app` on the SQLite file at `path`.
    fn open_path(
        app: impl Into<String> + Send,
        path: impl AsRef<std::path::Path> + Send,
    ) -> impl std::future::Future<Output = Result<Self>> + Send;
}

#[cfg(feature = "sqlite")]
impl OpenSqlite for Workflow {
    async fn open(app: impl Into<String> + Send) -> Result<Self> {
        Self::open_path(app, DEFAULT_DB_PATH).await
    }

    async fn open_path(
        app: impl Into<String> + Send,
        path: impl AsRef<std::path::Path> + Send,
    ) -> Result<Self> {
        let store = SqliteStore::open(path).await?;
        Ok(Workflow::builder(app).store(store).build())
    }
}

/// What a workflow author needs in scope: `use durably::prelude::*;`.
pub mod prelude {
    #[cfg(feature = "sqlite")]
    pub use crate::OpenSqlite as _;
    pub use crate::backoff::{constant, exponential, linear};
    pub use crate::{Error, Workflow, signal, signal_timeout, sleep, step, task, workflow};
}
