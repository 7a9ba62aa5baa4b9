//! The quick start: an order pipeline of five checkpointed tasks on the embedded SQLite store
//! (`./durably.db`). The program runs the pipeline in a child process, kills that process with
//! SIGKILL in the middle of the run, then executes the same run id again: the finished steps
//! come back from the store without running, and only the rest executes.
//!
//! ```text
//! cargo run --example quickstart
//! ```

#![allow(clippy::print_stdout)] // an example talks to its user

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use durably::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    id: String,
    items: Vec<String>,
}

#[durably::task(retries = 3, backoff = exponential(2.0, 60.0))]
async fn fetch_order(order_id: String) -> Result<Order, std::io::Error> {
    println!("  [ran]     fetch_order({order_id})");
    slow().await;
    Ok(Order { id: order_id, items: vec!["keyboard".into(), "mouse".into(), "monitor".into()] })
}

#[durably::task(retries = 3)]
async fn reserve_item(item: String) -> Result<String, std::io::Error> {
    println!("  [ran]     reserve_item({item})");
    slow().await;
    Ok(format!("reserved {item}"))
}

#[durably::task(at_most_once)]
async fn charge_card(order_id: String, amount_cents: u64) -> Result<String, std::io::Error> {
    // The step's idempotency key is the same on every attempt: pass it to the payment API.
    let key = durably::idempotency_key().unwrap_or_default();
    println!("  [ran]     charge_card({order_id}, {amount_cents}) idempotency key {key}");
    slow().await;
    Ok(format!("charge-{order_id}"))
}

#[durably::workflow(id = "order-{order_id}")]
async fn process_order(order_id: String) -> anyhow::Result<String> {
    let order = fetch_order(order_id.clone()).await?;
    println!("  [step]    fetch_order -> {} items", order.items.len());
    for (i, item) in order.items.iter().enumerate() {
        let r = reserve_item(item.clone()).step_id(format!("reserve-{i}")).await?;
        println!("  [step]    reserve-{i} -> {r}");
    }
    let charge = charge_card(order.id.clone(), 12_900).await?;
    println!("  [step]    charge_card -> {charge}");
    Ok(format!("order {} done: {charge}", order.id))
}

async fn slow() {
    tokio::time::sleep(Duration::from_millis(150)).await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        // The child: run the pipeline until the parent kills it.
        Some("--child") => {
            let order_id = args.next().unwrap_or_default();
            let wf = Workflow::open("quickstart").await?;
            process_order(&wf, order_id).await?;
            Ok(())
        }
        _ => parent().await,
    }
}

async fn parent() -> anyhow::Result<()> {
    let order_id = format!("{}", durably::now_ms());
    let run_id = format!("order-{order_id}");
    println!("1. Executing run {run_id} in a child process, to be killed mid-run:");
    let mut child =
        Command::new(std::env::current_exe()?).args(["--child", &order_id]).stdout(Stdio::piped()).spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no child stdout"))?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if line.contains("reserve-1 ->") {
            child.kill()?; // SIGKILL: no destructor, no flush, like a crash or an OOM kill
            child.wait()?;
            println!("  *** killed the process with SIGKILL ***");
            break;
        }
    }

    println!("\n2. Executing the same run id again in this process:");
    let wf = Workflow::open("quickstart").await?;
    let result = process_order::with_id(&wf, &run_id, order_id).await?;
    println!("  => {result}");

    println!("\n3. The run's checkpoints in ./durably.db:");
    for step in wf.list_steps(&run_id).await? {
        println!(
            "  {:<12} {:<10} attempts={} value={}",
            step.step_id,
            step.status,
            step.attempts,
            step.value.as_deref().unwrap_or("")
        );
    }
    println!("\nSteps shown with [ran] in part 2 are the only ones that executed again.");
    Ok(())
}
