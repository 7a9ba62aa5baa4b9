//! What every run of one engine shares: the app name, the store, the retry defaults and the
//! application state registered on the [`Workflow`](crate::Workflow). It sits below the run
//! context, so that a context reaches the store and the state without knowing the engine.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::backoff::RetryPolicy;
use crate::error::{Error, Result};
use crate::store::Store;

/// Application state by type: one value of each type, shared by every run of the engine.
#[derive(Clone, Default)]
pub(crate) struct States {
    values: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl States {
    /// Registers `value` as the state of type `S`, replacing an earlier one of that type.
    pub(crate) fn insert<S: Send + Sync + 'static>(&mut self, value: Arc<S>) {
        self.values.insert(TypeId::of::<S>(), value);
    }

    /// The state of type `S`, or an error naming the type and how to register it.
    pub(crate) fn get<S: Send + Sync + 'static>(&self) -> Result<Arc<S>> {
        self.values.get(&TypeId::of::<S>()).cloned().and_then(|value| value.downcast::<S>().ok()).ok_or_else(
            || Error::Invalid {
                what: "workflow state",
                detail: format!(
                    "no state of type `{}` is registered on this Workflow; register it with \
                     `Workflow::builder(..).state(value)`",
                    std::any::type_name::<S>()
                ),
            },
        )
    }

    /// How many values are registered.
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }
}

/// Application state of type `T`, registered on the engine with
/// [`WorkflowBuilder::state`](crate::WorkflowBuilder::state): as a `#[workflow]` parameter it is
/// taken from the engine that executes the run (recovered runs included), the way axum's
/// `State` extractor takes it from the router. It is no argument of the generated entry points
/// and no part of the run's recorded input or id.
///
/// ```ignore
/// #[durably::workflow(id = "report-{topic}")]
/// async fn report(State(llm): State<LlmClient>, topic: String) -> anyhow::Result<String> {
///     summarize(llm.clone(), topic).await
/// }
/// let wf = Workflow::builder("app").state(LlmClient::new()).build();
/// report(&wf, "rust".into()).await?;
/// ```
#[derive(Debug)]
pub struct State<T>(pub Arc<T>);

impl<T> Clone for State<T> {
    fn clone(&self) -> Self {
        State(self.0.clone())
    }
}

impl<T> std::ops::Deref for State<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Send + Sync + 'static> State<T> {
    /// The state of type `T` registered on `wf`, or an error naming the type.
    pub fn from_workflow(wf: &crate::Workflow) -> Result<Self> {
        wf.state::<T>().map(State)
    }
}

/// The parts of an engine a run needs while it executes.
pub(crate) struct Env {
    /// The app name: the workflow name of `Workflow::run` runs.
    pub(crate) app: String,
    pub(crate) store: Arc<dyn Store>,
    /// Retries and backoff of tasks that set none.
    pub(crate) retry: RetryPolicy,
    /// How many of its newest events each run's log keeps (rule 27 of docs/design.md).
    pub(crate) max_events_per_run: u64,
    /// Written by `WorkflowBuilder::state` and `Workflow::set_state`, read by runs; never held
    /// across an `.await`.
    pub(crate) states: RwLock<States>,
    /// The rate limits defined with `Workflow::add_rate_limit`, by key.
    pub(crate) rate_limits: crate::rate::RateLimitTable,
}

impl Env {
    /// The state of type `S`: see [`States::get`].
    pub(crate) fn state<S: Send + Sync + 'static>(&self) -> Result<Arc<S>> {
        self.states.read().unwrap_or_else(|e| e.into_inner()).get::<S>()
    }

    /// Registers the state of type `S`, replacing an earlier one.
    pub(crate) fn set_state<S: Send + Sync + 'static>(&self, value: Arc<S>) {
        self.states.write().unwrap_or_else(|e| e.into_inner()).insert(value);
    }

    /// How many state values are registered.
    pub(crate) fn state_count(&self) -> usize {
        self.states.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}
