#[durably::task]
async fn notify(user: String) {
    let _ = user;
}

#[durably::workflow]
async fn pipeline(source: String) {
    let _ = source;
}

fn main() {}
