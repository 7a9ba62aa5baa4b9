//! `durable_tool`: one tool function made durable, usable inside any workflow.

use std::future::Future;
use std::sync::Arc;

use durably_core::{Backoff, BoxError, TaskCall};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::TaskConfig;

/// Makes the tool function `f` durable: every [`call`](DurableTool::call) inside a workflow run
/// is a checkpointed step named `name` (ids `name`, `name#1`, `name#2`… in call order, or what
/// `.step_id(..)` says), with its own retries and backoff. A recorded call returns its value
/// without running `f`; outside a run a call is a plain async call.
///
/// ```no_run
/// use durably_agent::durable_tool;
/// use durably_core::backoff::exponential;
///
/// async fn web_search(query: String) -> Result<String, std::io::Error> {
///     Ok(format!("results for {query}"))
/// }
///
/// # async fn demo(wf: durably_core::Workflow) -> durably_core::Result<()> {
/// let search = durable_tool("web_search", web_search).retries(3).backoff(exponential(2.0, 60.0));
/// let found: Vec<String> = wf
///     .run("research-1", |_ctx| async move {
///         let mut found = Vec::new();
///         for (i, q) in ["rust", "durable execution"].iter().enumerate() {
///             found.push(search.call(q.to_string()).step_id(format!("q-{i}")).await?);
///         }
///         Ok::<_, durably_core::Error>(found)
///     })
///     .await?;
/// # Ok(()) }
/// ```
///
/// The attribute form is `#[durably::task(retries = 3, backoff = exponential(2.0, 60.0))]` on
/// the tool's `async fn`: the same step per call, declared where the function is. Errors are
/// retried unless they are `durably::Error::permanent(e)`.
pub fn durable_tool<A, R, E, F, Fut>(name: impl Into<String>, f: F) -> DurableTool<F>
where
    F: Fn(A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send + 'static,
{
    DurableTool { name: name.into(), f: Arc::new(f), retries: None, backoff: None }
}

/// A durable tool function; from [`durable_tool`]. Cheap to clone.
pub struct DurableTool<F> {
    name: String,
    f: Arc<F>,
    retries: Option<u32>,
    backoff: Option<Backoff>,
}

impl<F> Clone for DurableTool<F> {
    fn clone(&self) -> Self {
        DurableTool {
            name: self.name.clone(),
            f: self.f.clone(),
            retries: self.retries,
            backoff: self.backoff,
        }
    }
}

impl<F> std::fmt::Debug for DurableTool<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableTool")
            .field("name", &self.name)
            .field("retries", &self.retries)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl<F> DurableTool<F> {
    /// Up to `n` retries per call (`n + 1` attempts); otherwise the workflow's default.
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = Some(n);
        self
    }

    /// The wait between attempts; otherwise the workflow's default.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// Retries and backoff from a [`TaskConfig`].
    pub fn config(self, config: TaskConfig) -> Self {
        self.retries(config.retries).backoff(config.backoff)
    }

    /// The step name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// One call of the tool: a step of the current run (the arguments are cloned for each
    /// attempt). Await it; set `.step_id(..)` first in loops.
    pub fn call<A, R, E, Fut>(&self, args: A) -> TaskCall<R>
    where
        F: Fn(A) -> Fut + Send + Sync + 'static,
        A: Clone + Send + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let f = self.f.clone();
        let mut call = durably_core::step(self.name.clone(), move || f(args.clone()));
        if let Some(n) = self.retries {
            call = call.retries(n);
        }
        if let Some(b) = self.backoff {
            call = call.backoff(b);
        }
        call
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use durably_core::backoff::constant;
    use durably_core::{MemoryStore, Workflow};

    use super::*;

    #[tokio::test]
    async fn each_call_is_a_step_retried_then_replayed_on_the_next_execution() {
        let wf = Workflow::builder("t").store(MemoryStore::new()).build();
        let runs = Arc::new(AtomicU32::new(0));
        let counter = runs.clone();
        let tool = durable_tool("search", move |q: String| {
            let counter = counter.clone();
            async move {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                // The first attempt fails: the step retries it.
                if n == 0 { Err(std::io::Error::other("flaky")) } else { Ok(format!("found {q}")) }
            }
        })
        .retries(2)
        .backoff(constant(0.0));
        let crash = Arc::new(AtomicBool::new(true));
        let body = |tool: DurableTool<_>, crash: Arc<AtomicBool>| async move {
            let a = tool.call("a".to_string()).await?;
            let b = tool.call("b".to_string()).await?;
            if crash.swap(false, Ordering::SeqCst) {
                return Err(durably_core::Error::Invalid {
                    what: "test",
                    detail: "crash after the calls".into(),
                });
            }
            Ok::<_, durably_core::Error>(vec![a, b])
        };
        assert!(wf.run("r1", |_| body(tool.clone(), crash.clone())).await.is_err());
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        let steps = wf.list_steps("r1").await.unwrap();
        let ids: Vec<&str> = steps.iter().map(|s| s.step_id.as_str()).collect();
        assert_eq!(ids, ["search", "search#1"]);
        assert_eq!(steps[0].attempts, 2);
        // The failed run executes again: both calls come back from their steps.
        let again = wf.run("r1", |_| body(tool.clone(), crash.clone())).await.unwrap();
        assert_eq!(again, ["found a", "found b"]);
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }
}
