#[durably::workflow]
async fn pipeline<T: serde::Serialize + Send + 'static>(input: T) -> Result<u32, durably::Error> {
    let _ = input;
    Ok(1)
}

#[durably::workflow]
async fn hidden_generic(input: impl serde::Serialize + Send + 'static) -> Result<u32, durably::Error> {
    let _ = input;
    Ok(1)
}

fn main() {}
