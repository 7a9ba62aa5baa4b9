//! The HTTP transport of the agent's clients: reqwest, without async-openai's retry layer, and
//! keeping what async-openai drops from an error response: its `retry-after` headers (and the
//! body, which async-openai would parse too), so that the agent core decides retries from them.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;

use crate::core::provider;

/// A provider's error response, status, body and asked-for wait.
#[derive(Debug, Clone)]
pub(crate) struct HttpFailure {
    pub(crate) status: u16,
    pub(crate) body: String,
    pub(crate) retry_after: Option<Duration>,
}

impl fmt::Display for HttpFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&provider::describe(self.status, &provider::ErrorBody::parse(&self.body), &self.body))
    }
}

impl std::error::Error for HttpFailure {}

/// Sends requests with reqwest and turns an error response into an [`HttpFailure`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Transport {
    client: reqwest::Client,
}

impl Transport {
    pub(crate) fn new(client: reqwest::Client) -> Self {
        Transport { client }
    }
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send + 'static>>;

impl tower::Service<HttpRequestFactory> for Transport {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: HttpRequestFactory) -> Self::Future {
        let client = self.client.clone();
        Box::pin(async move {
            let request = request.build().await?;
            let response = client.execute(request).await.map_err(OpenAIError::Reqwest)?;
            if response.status().is_success() {
                return Ok(response);
            }
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let retry_after = provider::retry_after(|name| headers.get(name).and_then(|v| v.to_str().ok()));
            let body = response.text().await.unwrap_or_default();
            Err(OpenAIError::Boxed(Box::new(HttpFailure { status, body, retry_after })))
        })
    }
}
