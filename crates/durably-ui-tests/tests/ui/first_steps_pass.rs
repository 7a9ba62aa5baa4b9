//! What a python-durable user writes first compiles without a warning: `constant(0)` (seconds as
//! an integer), a parameter used only in the `id` template, and application state taken as a
//! `State<T>` parameter, which is no argument of the entry points and no part of the run's input.
#![deny(warnings)]

use std::sync::atomic::{AtomicU32, Ordering};

use durably::{MemoryStore, State, Workflow};

static ATTEMPTS: AtomicU32 = AtomicU32::new(0);

/// Fails once, then succeeds; retried at once.
#[durably::task(retries = 2, backoff = constant(0))]
async fn flaky() -> Result<u32, std::io::Error> {
    if ATTEMPTS.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err(std::io::Error::other("first attempt fails"));
    }
    Ok(1)
}

/// `customer` only names the run.
#[durably::workflow(id = "order-{customer}")]
async fn order(customer: String, amount: u32) -> anyhow::Result<u32> {
    Ok(flaky().await? + amount)
}

struct Prices {
    tax_percent: u32,
}

/// Application state as a parameter, before and between recorded ones.
#[durably::workflow(id = "tax-{id}")]
async fn tax(State(prices): State<Prices>, id: u32, amount: u32) -> anyhow::Result<u32> {
    Ok(amount * prices.tax_percent / 100 + id - id)
}

#[tokio::main]
async fn main() -> durably::Result<()> {
    let wf = Workflow::builder("ui").store(MemoryStore::new()).state(Prices { tax_percent: 10 }).build();
    assert_eq!(order(&wf, "ada".into(), 41).await?, 42);
    assert!(wf.get_run("order-ada").await?.is_some());
    assert_eq!(ATTEMPTS.load(Ordering::SeqCst), 2);

    assert_eq!(tax(&wf, 7, 200).await?, 20);
    let run = wf.get_run("tax-7").await?.expect("run id from the template");
    let input: serde_json::Value = serde_json::from_str(run.input.as_deref().expect("input")).expect("json");
    assert_eq!(input, serde_json::json!({"id": 7, "amount": 200}), "state is not recorded");
    assert_eq!(tax::with_id(&wf, "t2", 1, 100).await?, 10);

    // Recovery rebuilds the recorded arguments and takes the state from the recovering engine.
    wf.register::<tax>();
    assert_eq!(wf.start::<_, u32>("tax", "t3", &serde_json::json!({"id": 3, "amount": 50})).await?, 5);

    // An engine without the state refuses the run before opening it, naming the type.
    let bare = Workflow::builder("ui").store(MemoryStore::new()).build();
    let err = tax(&bare, 1, 1).await.expect_err("no state registered");
    assert!(err.to_string().contains("Prices"), "{err}");
    assert!(bare.get_run("tax-1").await?.is_none());
    Ok(())
}
