#[durably::task(retry = 3)]
async fn fetch(url: String) -> Result<String, durably::Error> {
    Ok(url)
}

#[durably::task(timeout = 3)]
async fn other(url: String) -> Result<String, durably::Error> {
    Ok(url)
}

#[durably::workflow(run_id = "x-{source}")]
async fn pipeline(source: String) -> Result<String, durably::Error> {
    Ok(source)
}

fn main() {}
