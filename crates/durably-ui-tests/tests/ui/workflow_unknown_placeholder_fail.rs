#[durably::workflow(id = "order-{orderid}")]
async fn process_order(order_id: u64, amount: u32) -> Result<u64, durably::Error> {
    Ok(order_id + u64::from(amount))
}

#[durably::workflow(id = "run-{x}")]
async fn no_params() -> Result<(), durably::Error> {
    Ok(())
}

#[durably::workflow(id = "order-{order_id")]
async fn unclosed(order_id: u64) -> Result<u64, durably::Error> {
    Ok(order_id)
}

fn main() {}
