//! The AWS SDK's side of the front (feature `smithy`): [`sdk_http_client`], an SDK `HttpClient`
//! that hands each signed request to a [`SimService`] as a `tower::Service` call — no socket, so
//! an SDK client configured with it runs on tokio's paused clock like the rest of the
//! simulator — and [`loopback_http_client`], a plain-HTTP client for a front served on a port.
//!
//! ```no_run
//! # async fn run(front: tower_headroom::sim::front::SimService) {
//! let config = aws_sdk_bedrockruntime::Config::builder()
//!     .behavior_version_latest()
//!     .endpoint_url("http://simulator.invalid") // never dialled
//!     .http_client(tower_headroom::sim::front::sdk_http_client(front))
//!     .build();
//! # let _ = config; }
//! ```

use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, SharedHttpClient, SharedHttpConnector, http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::body::SdkBody;
use tower_service::Service;

use super::SimService;

#[derive(Clone, Debug)]
struct InProcess {
    front: SimService,
}

impl HttpConnector for InProcess {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let mut front = self.front.clone();
        HttpConnectorFuture::new(async move {
            let request = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::other(e.into(), None))?;
            let Ok(()) = std::future::poll_fn(|cx| {
                Service::<http::Request<SdkBody>>::poll_ready(&mut front, cx)
            })
            .await;
            let Ok(response) = front.call(request).await;
            HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                .map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// An SDK `HttpClient` (for `config::Builder::http_client`) that answers every request from
/// `front`, in process.
pub fn sdk_http_client(front: SimService) -> SharedHttpClient {
    let connector = InProcess { front };
    http_client_fn(move |_, _| SharedHttpConnector::new(connector.clone()))
}

/// An SDK `HttpClient` speaking plain HTTP/1.1 over TCP (hyper-util), for SDK clients pointed
/// at a front served by [`Server`](super::Server) (`endpoint_url("http://127.0.0.1:…")`).
///
/// The SDK's default client speaks HTTPS only; this one lets examples and tests reach the
/// simulator without building a TLS stack. Not for real AWS endpoints, which are HTTPS.
pub fn loopback_http_client() -> SharedHttpClient {
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
    use hyper_util::rt::TokioExecutor;

    #[derive(Clone, Debug)]
    struct Loopback {
        client: Client<TcpConnector, SdkBody>,
    }
    impl HttpConnector for Loopback {
        fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
            let client = self.client.clone();
            HttpConnectorFuture::new(async move {
                let request = request
                    .try_into_http1x()
                    .map_err(|e| ConnectorError::other(e.into(), None))?;
                let response = client
                    .request(request)
                    .await
                    .map_err(|e| ConnectorError::io(e.into()))?;
                HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                    .map_err(|e| ConnectorError::other(e.into(), None))
            })
        }
    }
    let connector = Loopback {
        client: Client::builder(TokioExecutor::new()).build_http(),
    };
    http_client_fn(move |_, _| SharedHttpConnector::new(connector.clone()))
}
