#[durably::task(name = fetch, retries = "3", backoff = 2.0, at_most_once = "yes")]
async fn fetch(url: String) -> Result<String, durably::Error> {
    Ok(url)
}

#[durably::task(retries = -1, name = "")]
async fn negative(url: String) -> Result<String, durably::Error> {
    Ok(url)
}

#[durably::task(retries(3), name = "a", name = "b")]
async fn listed(url: String) -> Result<String, durably::Error> {
    Ok(url)
}

#[durably::task]
async fn destructured((a, b): (u32, u32)) -> Result<u32, durably::Error> {
    Ok(a + b)
}

fn main() {}
