//! What the `#[task]` and `#[workflow]` macros expand to. Not a public API: it may change in any
//! release.

use std::future::Future;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{BoxError, Error, Result, Retryable};
pub use crate::recovery::{DurableWorkflow, output_json};
use crate::task::TaskCall;
pub use crate::task::{AttemptFuture, TaskFailure, TaskSpec};
use crate::workflow::Workflow;

/// The `Ok` and `Err` types of a task's or workflow's declared return type.
pub trait TaskOutput {
    /// The success type.
    type Ok;
    /// The error type.
    type Err;
    /// Converts into a plain `Result`.
    fn into_result(self) -> Result<Self::Ok, Self::Err>;
}

impl<T, E> TaskOutput for Result<T, E> {
    type Ok = T;
    type Err = E;
    fn into_result(self) -> Result<T, E> {
        self
    }
}

/// A call of a `#[task]` function.
pub fn task_call<T, F>(spec: TaskSpec, make: F) -> TaskCall<T>
where
    F: FnMut() -> AttemptFuture<T> + Send + 'static,
    T: Serialize + DeserializeOwned + Send + 'static,
{
    TaskCall::new(spec, Box::new(make))
}

/// Autoref specialisation: `(&&Probe(&e)).durably_is_retryable()` asks `Retryable` when the
/// error type implements it, and says "retry" otherwise.
pub struct Probe<'a, E>(pub &'a E);

/// Picked when the error implements [`Retryable`].
pub trait ViaRetryable {
    /// Whether to retry.
    fn durably_is_retryable(&self) -> bool;
}

impl<E: Retryable> ViaRetryable for &Probe<'_, E> {
    fn durably_is_retryable(&self) -> bool {
        self.0.is_retryable()
    }
}

/// Picked for every other error type.
pub trait ViaDefault {
    /// Always `true`; `TaskFailure::new` still stops on `Error::Permanent`.
    fn durably_is_retryable(&self) -> bool;
}

impl<E> ViaDefault for Probe<'_, E> {
    fn durably_is_retryable(&self) -> bool {
        true
    }
}

/// A workflow's arguments, collected as a JSON object for the run record and the default id.
#[derive(Debug)]
pub struct WorkflowInput {
    args: Result<Vec<(&'static str, serde_json::Value)>, ArgError>,
}

/// The first argument that failed to serialize.
#[derive(Debug)]
struct ArgError {
    name: &'static str,
    type_name: &'static str,
    error: serde_json::Error,
}

impl Default for WorkflowInput {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkflowInput {
    /// No arguments yet.
    pub fn new() -> Self {
        WorkflowInput { args: Ok(Vec::new()) }
    }

    /// Adds argument `name`.
    pub fn arg<T: Serialize + ?Sized>(mut self, name: &'static str, value: &T) -> Self {
        if let Ok(args) = &mut self.args {
            match serde_json::to_value(value) {
                Ok(v) => args.push((name, v)),
                Err(error) => {
                    self.args = Err(ArgError { name, type_name: std::any::type_name::<T>(), error })
                }
            }
        }
        self
    }

    fn to_json(&self, run_id: &str) -> Result<String> {
        match &self.args {
            Ok(args) => {
                let map: serde_json::Map<String, serde_json::Value> =
                    args.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
                Ok(serde_json::Value::Object(map).to_string())
            }
            Err(ArgError { name, type_name, error }) => Err(Error::Serialize {
                run_id: run_id.to_owned(),
                step_id: format!("input.{name}"),
                what: "workflow argument",
                type_name,
                source: serde_json::Error::io(std::io::Error::other(error.to_string())),
            }),
        }
    }

    /// `<app>-<workflow>-<arg>-<arg>…`: strings as they are, other values as JSON.
    fn default_id(&self, app: &str, workflow: &str) -> String {
        let mut id = format!("{app}-{workflow}");
        if let Ok(args) = &self.args {
            for (_, v) in args {
                id.push('-');
                match v {
                    serde_json::Value::String(s) => id.push_str(s),
                    other => id.push_str(&other.to_string()),
                }
            }
        }
        id
    }
}

/// How the run id of a workflow call is chosen.
#[derive(Debug, Clone)]
pub enum RunId {
    /// From the `id = "…"` template, already formatted.
    Template(String),
    /// Given by the caller (`with_id`).
    Explicit(String),
    /// `<app>-<workflow>-<args>`.
    Default,
}

/// A call of a `#[workflow]` function.
pub fn run_workflow<F, Fut, R>(
    wf: &Workflow,
    workflow: &'static str,
    run_id: RunId,
    input: WorkflowInput,
    body: F,
) -> impl Future<Output = Result<R::Ok>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: TaskOutput,
    R::Ok: Serialize + DeserializeOwned + Send + 'static,
    R::Err: Into<BoxError>,
{
    let run_id = match run_id {
        RunId::Template(id) | RunId::Explicit(id) => id,
        RunId::Default => input.default_id(wf.app(), workflow),
    };
    let json = input.to_json(&run_id).map(Some);
    wf.execute(workflow.to_owned(), run_id, json, move |_ctx| async move {
        body().await.into_result().map_err(Into::into)
    })
}

/// A `#[workflow]` parameter taken from the engine rather than from the caller.
pub trait FromWorkflow: Sized + Send + 'static {
    /// The value for a run executed by `wf`.
    fn from_workflow(wf: &Workflow) -> Result<Self>;
}

impl<T: Send + Sync + 'static> FromWorkflow for crate::State<T> {
    fn from_workflow(wf: &Workflow) -> Result<Self> {
        crate::State::from_workflow(wf)
    }
}

/// A call of a `#[workflow]` function with `State` parameters: `states` were taken from the
/// engine (or failed to be, which fails the call before the run is opened).
pub fn run_workflow_with_state<S, F, Fut, R>(
    wf: &Workflow,
    workflow: &'static str,
    run_id: RunId,
    input: WorkflowInput,
    states: Result<S>,
    body: F,
) -> impl Future<Output = Result<R::Ok>>
where
    S: Send + 'static,
    F: FnOnce(S) -> Fut + Send + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: TaskOutput,
    R::Ok: Serialize + DeserializeOwned + Send + 'static,
    R::Err: Into<BoxError>,
{
    let run = states.map(|states| run_workflow(wf, workflow, run_id, input, move || body(states)));
    async move { run?.await }
}

/// The future `DurableWorkflow::execute_stored` returns.
pub use crate::recovery::StoredRun;

/// A run's stored input (the JSON object of its arguments), taken apart argument by argument
/// when a registered workflow is resumed.
#[derive(Debug)]
pub struct StoredArgs {
    run_id: String,
    workflow: &'static str,
    args: serde_json::Map<String, serde_json::Value>,
}

impl StoredArgs {
    /// Parses the stored input of run `run_id` of `workflow`. No input at all is read as no
    /// arguments (a workflow without parameters).
    pub fn parse(run_id: &str, workflow: &'static str, input: Option<&str>) -> Result<Self> {
        let args = match input {
            None => serde_json::Map::new(),
            Some(json) => serde_json::from_str(json).map_err(|source| Error::Deserialize {
                run_id: run_id.to_owned(),
                step_id: "input".into(),
                what: "stored workflow input",
                type_name: "a JSON object of the workflow's arguments",
                source,
            })?,
        };
        Ok(StoredArgs { run_id: run_id.to_owned(), workflow, args })
    }

    fn take<T: DeserializeOwned>(&mut self, name: &'static str) -> Result<T> {
        let value = self.args.remove(name).ok_or_else(|| Error::Corrupt {
            run_id: self.run_id.clone(),
            step_id: None,
            detail: format!(
                "the stored input of workflow `{}` has no argument `{name}` (was the parameter added after \
                 the run started?)",
                self.workflow
            ),
        })?;
        serde_json::from_value(value).map_err(|source| Error::Deserialize {
            run_id: self.run_id.clone(),
            step_id: format!("input.{name}"),
            what: "stored workflow argument",
            type_name: std::any::type_name::<T>(),
            source,
        })
    }
}

/// Autoref specialisation for decoding a stored argument:
/// `(&&ArgDecoder::<T>::new()).durably_decode(&mut args, "name")` deserializes when `T`
/// implements `Deserialize`, and otherwise fails at run time saying the workflow cannot be
/// resumed from its stored input (so that such workflows still compile and run normally).
pub struct ArgDecoder<T>(PhantomData<fn() -> T>);

impl<T> Default for ArgDecoder<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> ArgDecoder<T> {
    /// A decoder for `T`.
    pub fn new() -> Self {
        ArgDecoder(PhantomData)
    }
}

/// Picked when the argument type implements `Deserialize`.
pub trait DecodeViaSerde<T> {
    /// Takes argument `name` out of the stored input.
    fn durably_decode(&self, args: &mut StoredArgs, name: &'static str) -> Result<T>;
}

impl<T: DeserializeOwned> DecodeViaSerde<T> for &ArgDecoder<T> {
    fn durably_decode(&self, args: &mut StoredArgs, name: &'static str) -> Result<T> {
        args.take(name)
    }
}

/// Picked for argument types that do not implement `Deserialize`.
pub trait DecodeFallback<T> {
    /// Always fails: the argument cannot be rebuilt from JSON.
    fn durably_decode(&self, args: &mut StoredArgs, name: &'static str) -> Result<T>;
}

impl<T> DecodeFallback<T> for ArgDecoder<T> {
    fn durably_decode(&self, args: &mut StoredArgs, name: &'static str) -> Result<T> {
        Err(Error::Invalid {
            what: "registered workflow",
            detail: format!(
                "cannot resume run `{}` of workflow `{}`: its argument `{name}` of type `{}` does not implement \
                 serde::Deserialize, so it cannot be rebuilt from the stored input",
                args.run_id,
                args.workflow,
                std::any::type_name::<T>()
            ),
        })
    }
}
