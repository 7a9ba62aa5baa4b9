struct Client;

impl Client {
    #[durably::task]
    async fn fetch(&self, url: String) -> Result<String, durably::Error> {
        Ok(url)
    }

    #[durably::workflow]
    async fn pipeline(self, source: String) -> Result<String, durably::Error> {
        Ok(source)
    }
}

fn main() {
    let _ = Client;
}
