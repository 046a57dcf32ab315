//! Test support: the real AWS SDK clients pointed at the simulator's front.
//!
//! The SDK crates are built without their default HTTPS client (no rustls/aws-lc to compile;
//! the front speaks plain HTTP on loopback), so this file supplies the `HttpClient`: a
//! hyper-util client over TCP. Only public Smithy traits are used.

#![allow(dead_code)]

use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, SharedHttpClient, SharedHttpConnector, http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::body::SdkBody;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::TokioExecutor;

/// Fake static credentials; tests assert these strings never reach the front's logs.
pub const ACCESS_KEY: &str = "AKIDFAKECANARY0000001";
/// The fake secret key (a canary as well).
pub const SECRET_KEY: &str = "fake-secret-canary-do-not-log";

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

/// A plain-HTTP client for SDK configs (`http_client(...)`).
pub fn http_client() -> SharedHttpClient {
    let connector = Loopback {
        client: Client::builder(TokioExecutor::new()).build_http(),
    };
    http_client_fn(move |_, _| SharedHttpConnector::new(connector.clone()))
}

/// A Bedrock Runtime client for `endpoint` in `region`, fake credentials, retries off.
pub fn bedrock(endpoint: &str, region: &'static str) -> aws_sdk_bedrockruntime::Client {
    bedrock_with(endpoint, region, http_client())
}

/// A Bedrock Runtime client over `client` (e.g. `sim::front::sdk_http_client`).
pub fn bedrock_with(
    endpoint: &str,
    region: &'static str,
    client: SharedHttpClient,
) -> aws_sdk_bedrockruntime::Client {
    use aws_sdk_bedrockruntime::config::{Credentials, Region, retry::RetryConfig};
    let config = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version_latest()
        .region(Region::from_static(region))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
        .retry_config(RetryConfig::disabled())
        .http_client(client)
        .build();
    aws_sdk_bedrockruntime::Client::from_conf(config)
}

/// A DynamoDB client for `endpoint`, fake credentials, retries off.
pub fn dynamodb(endpoint: &str) -> aws_sdk_dynamodb::Client {
    use aws_sdk_dynamodb::config::{Credentials, Region, retry::RetryConfig};
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version_latest()
        .region(Region::from_static("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
        .retry_config(RetryConfig::disabled())
        .http_client(http_client())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}
