#[durably::task]
fn fetch(url: String) -> Result<String, durably::Error> {
    Ok(url)
}

#[durably::workflow]
fn pipeline(source: String) -> Result<String, durably::Error> {
    Ok(source)
}

fn main() {
    let _ = fetch(String::new());
    let _ = pipeline(String::new());
}
