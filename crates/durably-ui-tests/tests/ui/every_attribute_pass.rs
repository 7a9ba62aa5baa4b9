//! Every attribute argument of both macros, expanded, compiled and run against MemoryStore.
#![deny(warnings)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use durably::{MemoryStore, Workflow};

/// An error that knows whether it is worth retrying.
#[derive(Debug, thiserror::Error)]
#[error("fetch failed (permanent: {permanent})")]
pub struct FetchError {
    permanent: bool,
}

impl durably::Retryable for FetchError {
    fn is_retryable(&self) -> bool {
        !self.permanent
    }
}

static FETCHES: AtomicU32 = AtomicU32::new(0);
const RETRIES: u32 = 1;

/// Fetches `n` copies of `url`; fails once first when `flaky`.
#[durably::task(name = "fetch", retries = 2, backoff = exponential(0.001, 0.01).jitter(0.1), at_most_once)]
pub async fn fetch_data(url: String, n: u32, flaky: bool) -> Result<Vec<String>, FetchError> {
    let attempt = FETCHES.fetch_add(1, Ordering::SeqCst);
    if flaky && attempt == 0 {
        return Err(FetchError { permanent: false });
    }
    Ok(vec![url; n as usize])
}

/// Always fails permanently: `Retryable` says so, so it runs once despite `retries`.
#[durably::task(retries = 5, backoff = constant(0.001))]
async fn doomed(counter: Arc<AtomicU32>) -> Result<u32, FetchError> {
    counter.fetch_add(1, Ordering::SeqCst);
    Err(FetchError { permanent: true })
}

#[durably::task(retries = RETRIES, backoff = durably::backoff::linear(0.001, 0.001), at_most_once = false)]
async fn add(mut a: u32, b: u32) -> anyhow::Result<u32> {
    a += b;
    Ok(a)
}

#[durably::task]
async fn echo<T>(value: T) -> Result<T, durably::Error>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    Ok(value)
}

/// Runs the tasks above; parameters named like the generated code's own locals are fine.
#[durably::workflow(id = "pipeline-{source}-{n:03}-{{v1}}", name = "pipeline")]
pub async fn run_pipeline(source: String, n: u32, wf: bool, run_id: String) -> anyhow::Result<String> {
    let data = fetch_data(format!("https://example.invalid/{source}"), n, true).await?;
    let sum = add(1, 2).step_id("sum").await?;
    let same = echo(run_id).await?;
    let counter = Arc::new(AtomicU32::new(0));
    let failed = doomed(counter.clone()).await.is_err();
    Ok(format!("{} {sum} {same} {wf} {failed} {}", data.join(","), counter.load(Ordering::SeqCst)))
}

#[durably::workflow]
async fn r#untemplated() -> Result<u8, durably::Error> {
    Ok(7)
}

#[tokio::main]
async fn main() -> durably::Result<()> {
    let wf = Workflow::builder("ui").store(MemoryStore::new()).build();
    let out = run_pipeline(&wf, "users".into(), 2, true, "r".into()).await?;
    assert_eq!(out, "https://example.invalid/users,https://example.invalid/users 3 r true true 1");
    assert_eq!(FETCHES.load(Ordering::SeqCst), 2, "one retry of the flaky fetch");
    let run = wf.get_run("pipeline-users-002-{v1}").await?.expect("run id from the template");
    assert_eq!(run.workflow, "pipeline");

    // Executing the completed run again returns its stored output.
    let again = run_pipeline(&wf, "users".into(), 2, true, "r".into()).await?;
    assert_eq!(again, out);
    assert_eq!(FETCHES.load(Ordering::SeqCst), 2);

    let explicit = String::from("my-run-123");
    run_pipeline::with_id(&wf, explicit, "users".into(), 2, false, "r".into()).await?;
    assert!(wf.get_run("my-run-123").await?.is_some());
    assert_eq!(untemplated::with_id(&wf, "u").await?, 7);
    assert_eq!(untemplated(&wf).await?, 7);

    // Outside a run a task is a plain async call.
    assert_eq!(add(2, 3).await?, 5);
    Ok(())
}
