//! Test support: the real AWS SDK clients pointed at the simulator's front.
//!
//! The SDK crates are built without their default HTTPS client (no rustls/aws-lc to compile;
//! the front speaks plain HTTP on loopback): the clients use the simulator's
//! `loopback_http_client`.

#![allow(dead_code)]

use aws_smithy_runtime_api::client::http::SharedHttpClient;

/// Fake static credentials; tests assert these strings never reach the front's logs.
pub const ACCESS_KEY: &str = "AKIDFAKECANARY0000001";
/// The fake secret key (a canary as well).
pub const SECRET_KEY: &str = "fake-secret-canary-do-not-log";

/// A plain-HTTP client for SDK configs (`http_client(...)`).
pub fn http_client() -> SharedHttpClient {
    tower_headroom::sim::front::loopback_http_client()
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

/// The model of [`haiku_front`].
pub const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";

/// The simulator's Bedrock with one model, [`HAIKU`] in us-east-1 (10 ms to the first token,
/// 5 output tokens, `tpm` tokens a minute), started now, behind its in-process front.
pub fn haiku_front(tpm: u64) -> tower_headroom::sim::front::SimService {
    use tower_headroom::sim::{BedrockSim, ModelConfig, OutputLength};
    let sim = BedrockSim::builder()
        .start(tokio::time::Instant::now())
        .model(
            ModelConfig::builder(HAIKU, "us-east-1")
                .ttft(std::time::Duration::from_millis(10))
                .per_output_token(std::time::Duration::ZERO)
                .output(OutputLength::Fixed { tokens: 5 })
                .tpm(tpm)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    tower_headroom::sim::front::SimService::builder()
        .bedrock(sim)
        .build()
        .unwrap()
}

/// A Bedrock Runtime config for the simulator's front reached through `http` (e.g.
/// `sim::front::sdk_http_client`): us-east-1, fake credentials with `secret`, the SDK's
/// defaults otherwise — for `SdkHeadroom::configure_bedrock`, which sets the retries.
pub fn bedrock_sim_config(
    http: SharedHttpClient,
    secret: &str,
) -> aws_sdk_bedrockruntime::config::Builder {
    use aws_sdk_bedrockruntime::config::{Credentials, Region};
    aws_sdk_bedrockruntime::Config::builder()
        .behavior_version_latest()
        .region(Region::from_static("us-east-1"))
        .endpoint_url("http://bedrock.sim")
        .credentials_provider(Credentials::new(ACCESS_KEY, secret, None, None, "test"))
        .http_client(http)
}

/// A DynamoDB config for the simulator's front reached through `http` (e.g.
/// `sim::front::sdk_http_client`): us-east-1, fake credentials, tokio's clock as the SDK's
/// time source, the SDK's defaults otherwise — for `SdkHeadroom::configure_dynamodb`.
pub fn dynamodb_sim_config(http: SharedHttpClient) -> aws_sdk_dynamodb::config::Builder {
    use aws_sdk_dynamodb::config::{Credentials, Region};
    aws_sdk_dynamodb::Config::builder()
        .behavior_version_latest()
        .region(Region::from_static("us-east-1"))
        .endpoint_url("http://dynamodb.sim")
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
        .time_source(VirtualTime::now())
        .http_client(http)
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

/// Creates the `orders` table (hash key `pk`, a string; on demand) the wire tests write to.
pub async fn create_orders(client: &aws_sdk_dynamodb::Client) {
    client
        .create_table()
        .table_name("orders")
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
}

/// The SDK's clock on tokio's (paused) time, so its time-based checks (stalled streams,
/// signing) see the virtual seconds pass.
#[derive(Debug)]
pub struct VirtualTime {
    epoch: std::time::SystemTime,
    start: tokio::time::Instant,
}

impl VirtualTime {
    /// The wall clock now, advancing with tokio's clock from here.
    pub fn now() -> Self {
        VirtualTime {
            epoch: std::time::SystemTime::now(),
            start: tokio::time::Instant::now(),
        }
    }
}

impl aws_smithy_async::time::TimeSource for VirtualTime {
    fn now(&self) -> std::time::SystemTime {
        self.epoch + self.start.elapsed()
    }
}

/// An HTTP client that shows each signed request to `see`, then hands it to `inner`.
pub fn recording(
    inner: SharedHttpClient,
    see: impl Fn(&aws_smithy_runtime_api::client::orchestrator::HttpRequest) + Send + Sync + 'static,
) -> SharedHttpClient {
    use aws_smithy_runtime_api::client::http::{
        HttpClient, HttpConnector, HttpConnectorFuture, SharedHttpConnector, http_client_fn,
    };
    use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
    use std::sync::Arc;

    type See = Arc<dyn Fn(&HttpRequest) + Send + Sync>;
    struct Recording {
        inner: SharedHttpConnector,
        see: See,
    }
    impl std::fmt::Debug for Recording {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Recording")
        }
    }
    impl HttpConnector for Recording {
        fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
            (self.see)(&request);
            self.inner.call(request)
        }
    }
    let see: See = Arc::new(see);
    http_client_fn(move |settings, components| {
        SharedHttpConnector::new(Recording {
            inner: inner.http_connector(settings, components),
            see: Arc::clone(&see),
        })
    })
}

/// The simulator's DynamoDB with one provisioned table, `orders` (`rcu` and `wcu`, 5 ms a
/// call, partition key `pk`, the simulator's defaults otherwise), behind its in-process front.
pub fn orders_front(rcu: u64, wcu: u64) -> tower_headroom::sim::front::SimService {
    use tower_headroom::sim::{DynamoSim, TableConfig};
    let sim = DynamoSim::builder()
        .table(
            TableConfig::builder("orders")
                .rcu(rcu)
                .wcu(wcu)
                .latency(std::time::Duration::from_millis(5))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    tower_headroom::sim::front::SimService::builder()
        .dynamodb(sim)
        .partition_key("orders", "pk")
        .build()
        .unwrap()
}

/// `orders`' console numbers as a user writes them (the DynamoDB profile's limit, one line
/// for the table, nothing tuned), and an SDK adapter over that quota.
pub fn orders_headroom(
    rcu: u64,
    wcu: u64,
) -> (
    tower_headroom::admission::Quota<std::sync::Arc<str>>,
    tower_headroom::smithy::SdkHeadroom,
) {
    use tower_headroom::Profile;
    use tower_headroom::dynamodb::TableLimits as _;
    let quota = tower_headroom::admission::Quota::builder(
        Profile::DynamoDb.limit().units(wcu).build().unwrap(),
    )
    .table("orders", rcu, wcu)
    .unwrap()
    .build();
    let headroom = tower_headroom::smithy::SdkHeadroom::builder(Profile::DynamoDb)
        .quota(quota.clone())
        .build()
        .unwrap();
    (quota, headroom)
}
