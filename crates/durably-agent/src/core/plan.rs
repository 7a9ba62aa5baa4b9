//! The invocation plan: where an agent invocation's steps go. Inside a workflow run they are
//! steps of that run, under the prefix the invocation takes when it is called; outside one the
//! agent executes a run of its own (`<agent>-<hash of the prompt>` unless an id is given),
//! checked first against a completed run's record.

use std::future::Future;

use durably_core::{Result, RunContext, Workflow};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::completed::check_completed_run;
use super::ids::{Step, step_id};
use super::limits::within_deadline;
use super::settings::Settings;
use crate::request_hash;

/// Where an invocation's steps go.
#[derive(Debug, Clone)]
pub(crate) enum Plan {
    /// Into the enclosing run, under `prefix`.
    InRun { prefix: String },
    /// Into the run `run_id` of the agent's engine.
    Own { run_id: String },
}

impl Plan {
    /// The plan of an invocation made now: its prefix is taken at call time, so concurrent
    /// invocations in one run keep their ids.
    /// Outside a run, the invocation's own run is `own_run_id()`.
    pub(crate) fn now(settings: &Settings, own_run_id: impl FnOnce() -> String) -> Plan {
        match RunContext::current() {
            Some(ctx) => Plan::InRun { prefix: step_id(&settings.name, "", Step::Invocation(&ctx)).id },
            None => Plan::Own { run_id: own_run_id() },
        }
    }
}

impl Plan {
    /// The id of the run the invocation's steps go to.
    pub(crate) fn run_id(&self) -> String {
        match self {
            Plan::InRun { .. } => {
                RunContext::current().map(|ctx| ctx.run_id().to_owned()).unwrap_or_default()
            }
            Plan::Own { run_id } => run_id.clone(),
        }
    }
}

/// `<agent>-<first 16 hex digits of the hash of what>`.
pub(crate) fn default_run_id<T: Serialize + ?Sized>(agent: &str, what: &T) -> String {
    let hash = request_hash(what).unwrap_or_default();
    format!("{agent}-{}", hash.get(..16).unwrap_or(&hash))
}

/// Executes `body(prefix)` as `plan` says. A run of its own is first checked: when it is
/// completed, its step `first` must have recorded the hash `hash` computes.
pub(crate) async fn execute<T, F, Fut>(
    wf: &Workflow,
    settings: &Settings,
    plan: Plan,
    first: Step<'_>,
    hash: impl FnOnce(&str, &str) -> Result<String>,
    body: F,
) -> Result<T>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<T>>,
    T: Serialize + DeserializeOwned + Send + 'static,
{
    match plan {
        // Boxed: an invocation's future is large, and debug builds keep futures on the stack.
        Plan::InRun { prefix } => {
            Box::pin(within_deadline(settings, &prefix.clone(), Box::pin(body(prefix)))).await
        }
        Plan::Own { run_id } => {
            let name = &settings.name;
            let first = step_id(name, name, first).id;
            check_completed_run(wf, &run_id, &first, || hash(&run_id, &first)).await?;
            wf.run(run_id, |ctx| async move {
                // See above: boxed.
                let prefix = step_id(name, "", Step::Invocation(&ctx)).id;
                within_deadline(settings, &prefix.clone(), Box::pin(body(prefix))).await
            })
            .await
        }
    }
}
