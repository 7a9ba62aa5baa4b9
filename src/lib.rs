//! # durably
//!
//! Durable async workflows and LLM agents for Rust. Each task of a workflow (an API call, a
//! model request, a tool call) is checkpointed to a store; executing the same run id again
//! after a crash returns finished tasks from the store without running them, and runs only the
//! rest.
//!
//! ## Tasks and workflows
//!
//! ```
//! use durably::prelude::*;
//!
//! #[durably::task(retries = 3, backoff = exponential(2.0, 60.0))]
//! async fn fetch_price(sku: String) -> Result<u32, std::io::Error> {
//!     Ok(sku.len() as u32 * 100) // an HTTP call in real life
//! }
//!
//! #[durably::workflow(id = "quote-{customer}")]
//! async fn quote(customer: String, skus: Vec<String>) -> anyhow::Result<u32> {
//!     let mut total = 0;
//!     for (i, sku) in skus.into_iter().enumerate() {
//!         // one checkpoint per iteration
//!         total += fetch_price(sku).step_id(format!("price-{i}")).await?;
//!     }
//!     Ok(total)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> anyhow::Result<()> {
//! // `Workflow::open("my-app")` keeps runs in ./durably.db; this example keeps them in memory.
//! let wf = Workflow::builder("my-app").store(durably::MemoryStore::new()).build();
//! let total = quote(&wf, "ana".into(), vec!["kb".into(), "mouse".into()]).await?;
//! assert_eq!(total, 700);
//! // Executing the run again returns its stored output; no task runs.
//! assert_eq!(quote(&wf, "ana".into(), vec![]).await?, 700);
//! assert_eq!(wf.list_steps("quote-ana").await?.len(), 2);
//! # Ok(()) }
//! ```
//!
//! ## The closure form
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> durably::Result<()> {
//! let wf = durably::Workflow::builder("my-app").build(); // MemoryStore by default
//! let sum: u32 = wf
//!     .run("order-42", |_ctx| async {
//!         let a = durably::step("a", || async { Ok::<_, std::io::Error>(1u32) }).retries(2).await?;
//!         let b = durably::step("b", || async { Ok::<_, std::io::Error>(2u32) }).await?;
//!         Ok::<_, durably::Error>(a + b)
//!     })
//!     .await?;
//! assert_eq!(sum, 3);
//! # Ok(()) }
//! ```
//!
//! ## Signals: waiting on a human
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> durably::Result<()> {
//! let wf = durably::Workflow::builder("my-app").build();
//! // Delivered before the run waits for it (a web handler may run first); first write wins.
//! assert!(wf.complete("order-7", "approval", &true).await?);
//! assert!(!wf.complete("order-7", "approval", &false).await?);
//! let approved: bool = wf.run("order-7", |_| durably::signal("approval")).await?;
//! assert!(approved);
//! # Ok(()) }
//! ```
//!
//! `durably::signal_timeout(name, duration)` gives up with `None` at a recorded deadline, and
//! `durably::sleep(duration)` records its wake time, so a restarted run waits only for what is
//! left.
//!
//! ## Several processes: leases and recovery
//!
//! Processes may share a store (one SQLite file, a Redis or PostgreSQL server). A run being
//! executed holds a lease, renewed in the background: another engine that executes the same run
//! id gets [`Error::RunInProgress`] (or waits, with `wait_for_lease(true)`), so no step runs
//! twice at once. A run whose process died becomes recoverable once its lease expires:
//! registered workflows are resumed from their checkpoints with their stored input.
//!
//! ```
//! use std::time::Duration;
//!
//! #[durably::workflow(id = "invoice-{n}")]
//! async fn invoice(n: u32) -> anyhow::Result<u32> {
//!     Ok(n * 2) // tasks in real life
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> anyhow::Result<()> {
//! let wf = durably::Workflow::builder("billing")
//!     .lease_ttl(Duration::from_secs(30)) // the default: renewed every 10 s while a run executes
//!     .build();
//! wf.register::<invoice>();
//! let report = wf.recover().await?; // at start-up: resume what crashed processes left behind
//! assert!(report.resumed.is_empty() && report.unregistered.is_empty());
//! let worker = wf.worker(Duration::from_secs(5)); // or keep recovering in the background
//! assert_eq!(invoice(&wf, 21).await?, 42);
//! worker.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! ## Features
//!
//! | feature  | default | what it adds |
//! |----------|---------|--------------|
//! | `sqlite` | yes     | [`SqliteStore`] and [`Workflow::open`](OpenSqlite::open), the embedded zero-config store |
//! | `otel`   | no      | `durably::otel`: OpenTelemetry traces (one trace per run) and metrics over OTLP |

#![cfg_attr(docsrs, feature(doc_cfg))]

pub use durably_core::{
    Admin, Backoff, BoxError, Child, ChildHandle, DEFAULT_LEASE_TTL, DEFAULT_MAX_EVENTS_PER_RUN,
    DEFAULT_PARK_AFTER, DEFAULT_RETRIES, DEFAULT_WORKER_CONCURRENCY, DurableWorkflow, EnqueueOptions, Error,
    EventFeed, EventRecord, Events, Journal, Lease, LeaseOutcome, LeasedOpen, Leases, MAX_MISSED_TICKS,
    MemoryStore, Missed, NewEvent, NewRun, Queue, QueueStats, QueueWorker, Queues, RateGrant, RateLimit,
    RateLimits, RecoveryReport, Result, RetryPolicy, Retryable, RunContext, RunFilter, RunHandle, RunHistory,
    RunRecord, RunStatus, RunUpdate, Schedule, SignalRecord, Signals, SingleProcess, State, StepInfo,
    StepRecord, StepStatus, Store, StoreErrorKind, TaskCall, WorkerHandle, Workflow, WorkflowBuilder,
    backoff, child, current_step, idempotency_key, is_internal_signal, journal, now_ms, patched, signal,
    signal_timeout, sleep, spawn, state, step, store,
};
/// `#[durably::durable_pipeline]` is [`workflow`] under its python-durable name, for multi-agent
/// pipelines: agent runs (`durably::agent::openai::OpenAiAgent::run`, the rig `DurableAgent`)
/// called in its body are part of its run, each model call and tool call a step of it. See
/// `durably::agent::pipeline`.
pub use durably_macros::workflow as durable_pipeline;
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
    pub use crate::{
        Error, Missed, Queue, RunContext, Schedule, State, Workflow, child, patched, signal, signal_timeout,
        sleep, spawn, step, task, workflow,
    };
}

/// At-rest protection for stored values (feature `encryption`): the `durably-codec` crate.
#[cfg(feature = "encryption")]
#[cfg_attr(docsrs, doc(cfg(feature = "encryption")))]
pub mod codec {
    pub use durably_codec::*;
}

/// OpenTelemetry (feature `otel`): the `durably-otel` crate. Each run is one trace across its
/// executions, each step a span (replayed ones marked), each model request a span with the
/// GenAI semantic-convention attributes; metrics of runs, steps, retries and tokens; all
/// exported over OTLP/HTTP.
///
/// ```no_run
/// # fn main() -> Result<(), durably::otel::Error> {
/// // OTEL_EXPORTER_OTLP_ENDPOINT (default http://localhost:4318), OTEL_SERVICE_NAME.
/// let telemetry = durably::otel::init(durably::otel::OtelConfig::default())?;
/// // ... run workflows ...
/// telemetry.shutdown()?;
/// # Ok(()) }
/// ```
#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub mod otel {
    pub use durably_otel::*;
}

/// The Redis store (feature `redis`).
#[cfg(feature = "redis")]
pub mod redis {
    pub use durably_redis::*;
}

/// The PostgreSQL store (feature `postgres`).
#[cfg(feature = "postgres")]
pub mod postgres {
    pub use durably_postgres::*;
}

/// Durable LLM agents (features `rig` and `openai`).
pub mod agent {
    pub use durably_agent::*;
}
