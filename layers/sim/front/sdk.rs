//! The AWS SDK's side of the front, in process (feature `smithy`): an SDK `HttpClient` that
//! hands each signed request to a [`SimService`] as a `tower::Service` call. No socket, so an
//! SDK client configured with it runs on tokio's paused clock like the rest of the simulator.
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
