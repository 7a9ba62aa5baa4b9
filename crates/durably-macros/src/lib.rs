//! The `#[durably::task]` and `#[durably::workflow]` attribute macros.
//!
//! Use them through the `durably` facade, which re-exports them; the code they generate names
//! only `::durably::…` paths. They are thin: each one turns an `async fn` into a call of the
//! engine's hidden `durably::__private` API, and everything durable happens in the engine.
//!
//! # `#[durably::task]`
//!
//! ```ignore
//! #[durably::task(retries = 3, backoff = exponential(2.0, 60.0))]
//! async fn fetch_data(url: String) -> Result<Value, FetchError> { ... }
//!
//! let value = fetch_data(url).await?;                      // a checkpointed step inside a run
//! let value = fetch_data(url).step_id("first").await?;     // with an explicit step id
//! ```
//!
//! The function becomes `fn fetch_data(url: String) -> durably::TaskCall<Value>`. Parameters are
//! plain `name: Type` bindings taken by value; **each must be `Clone`**, because every attempt
//! runs the body on fresh clones of the arguments. The return type is a `Result<T, E>` where `T`
//! is serde-(de)serializable (it is what the store records) and `E` converts into a boxed error.
//! If `E` implements `durably::Retryable`, its answer decides whether an error is retried.
//!
//! # `#[durably::workflow]`
//!
//! ```ignore
//! #[durably::workflow(id = "order-{order_id}")]
//! async fn process_order(order_id: u64, amount: f64) -> anyhow::Result<Receipt> { ... }
//!
//! process_order(&wf, 42, 9.5).await?;                               // run id "order-42"
//! process_order::with_id(&wf, "order-42-retry", 42, 9.5).await?;    // an explicit run id
//! ```
//!
//! Parameters are serialized as the run's input (each must be `Serialize`), the output must be
//! serde-(de)serializable, and the function cannot be generic.

mod args;
mod backoff;
mod sig;
mod task;
mod template;
mod workflow;

use proc_macro::TokenStream;
use quote::quote;

/// Runs an expansion; on error, emits the compile errors followed by the untouched item, so
/// that the rest of the crate still resolves the fn and reports nothing else.
fn expand_or_keep(
    attr: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
    try_expand: fn(
        proc_macro2::TokenStream,
        proc_macro2::TokenStream,
    ) -> syn::Result<proc_macro2::TokenStream>,
) -> proc_macro2::TokenStream {
    match try_expand(attr, item.clone()) {
        Ok(tokens) => tokens,
        Err(error) => {
            let error = error.to_compile_error();
            quote!(#error #item)
        }
    }
}

/// Makes an `async fn` a durable task: inside a workflow run each call is a checkpointed step,
/// replayed from the store once it has succeeded; outside a run it is a plain async call.
///
/// ```ignore
/// #[durably::task]
/// async fn charge(account: String, cents: u64) -> Result<Receipt, PaymentError> { ... }
///
/// #[durably::task(name = "fetch", retries = 3, backoff = exponential(2.0, 60.0).jitter(0.1))]
/// async fn fetch_data(url: String) -> anyhow::Result<serde_json::Value> { ... }
/// ```
///
/// The function becomes a plain `fn` with the same parameters returning a
/// `durably::TaskCall<T>` (for a return type `Result<T, E>`): a `#[must_use]` future with
/// builder methods such as `.step_id(...)`.
///
/// # Arguments
///
/// | argument | meaning |
/// |---|---|
/// | `name = "fetch"` | the task name recorded with each step (and the step id prefix); defaults to the function name |
/// | `retries = 3` | retries after the first attempt (up to 4 attempts); a `u32` literal or constant; defaults to the workflow's setting |
/// | `backoff = exponential(2.0, 60.0)` | the wait between attempts; `exponential`, `linear` and `constant` may be written without a path, and `.jitter(f)` may follow; any other expression of type `durably::Backoff` works too |
/// | `at_most_once` | record the intent before running the body; a replay that finds the intent without a result stops with `AmbiguousEffect` instead of running it again |
///
/// # Requirements
///
/// - an `async fn`, not a method (for methods use `durably::step(name, || ...)`);
/// - parameters written `name: Type`, each `Clone` (every attempt runs on fresh clones) and
///   `Send + 'static`;
/// - a `Result<T, E>` return type, with `T: Serialize + DeserializeOwned` and `E` convertible
///   into a boxed error. An `E` implementing `durably::Retryable` decides which errors are
///   retried; other errors are retried unless they are `durably::Error::permanent`.
///
/// Doc comments, lint attributes, `cfg`, `must_use` and `deprecated` stay on the generated
/// function; other attributes (such as `tracing::instrument`) go to the async body.
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand_or_keep(attr.into(), item.into(), task::try_expand).into()
}

/// Makes an `async fn` a durable workflow: each execution is a run, identified by a run id,
/// whose tasks are checkpointed, so that executing the same run id again resumes after the last
/// finished task.
///
/// ```ignore
/// #[durably::workflow(id = "pipeline-{source}")]
/// async fn run_pipeline(source: String) -> anyhow::Result<u64> { ... }
///
/// run_pipeline(&wf, "users".into()).await?;                     // run id "pipeline-users"
/// run_pipeline::with_id(&wf, "my-run-123", "users".into()).await?;
/// ```
///
/// Two entry points are generated, both returning a future of `durably::Result<T>` (for a
/// return type `Result<T, E>`):
/// - `run_pipeline(&wf, args…)` runs under the id made from the `id` template, or, without
///   one, under an id derived from the app name, the workflow name and the arguments;
/// - `run_pipeline::with_id(&wf, run_id, args…)` runs under an explicit id.
///
/// # Arguments
///
/// | argument | meaning |
/// |---|---|
/// | `id = "order-{order_id}"` | the run id template; each `{placeholder}` must name a parameter (checked at compile time) and is formatted with `Display` (`{name:spec}` takes a format spec); `{{` and `}}` are literal braces |
/// | `name = "orders"` | the workflow name recorded with each run; defaults to the function name |
///
/// # Requirements
///
/// - an `async fn`, neither generic nor a method (inside methods use `wf.run(run_id, |ctx| ...)`);
/// - parameters written `name: Type`, each `Serialize + Send + 'static` (they are the run's
///   recorded input);
/// - a `Result<T, E>` return type with `T: Serialize + DeserializeOwned` and `E` convertible
///   into a boxed error.
///
/// Doc comments, `must_use` and `deprecated` go to the entry points, lint attributes to every
/// generated function, `cfg` to every generated item; other attributes (such as
/// `tracing::instrument`) go to the async body.
#[proc_macro_attribute]
pub fn workflow(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand_or_keep(attr.into(), item.into(), workflow::try_expand).into()
}

/// Expansion helpers for the unit tests of both macros.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod testing {
    use proc_macro2::TokenStream;

    type Expand = fn(TokenStream, TokenStream) -> syn::Result<TokenStream>;

    /// The expansion as text, checked to parse as Rust items.
    pub(crate) fn expand_ok(expand: Expand, attr: TokenStream, item: TokenStream) -> String {
        let tokens = expand(attr, item).unwrap();
        syn::parse2::<syn::File>(tokens.clone()).unwrap();
        tokens.to_string()
    }

    /// Every error message of a failing expansion.
    pub(crate) fn expand_err(expand: Expand, attr: TokenStream, item: TokenStream) -> Vec<String> {
        match expand(attr, item) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }
}
