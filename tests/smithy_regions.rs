//! Cross-region fallback inside one AWS SDK client: an attempt moved to a target in another
//! region resolves its endpoint and signs for that region, and the next attempt back on the
//! client's own region signs for it again — the real `aws-sdk-bedrockruntime` client against
//! the simulator's front, which serves each request from the region of its credential scope.
#![cfg(all(feature = "sim", feature = "bedrock"))]

mod support {
    pub mod sdk;
}

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, InferenceConfiguration, Message,
};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use tokio::time::Instant;
use tower_headroom::Profile;
use tower_headroom::admission::{Limit, Quota};
use tower_headroom::fallback::Target;
use tower_headroom::sim::front::{SimService, sdk_http_client};
use tower_headroom::sim::{BedrockSim, Episode, ModelConfig, OutputLength};
use tower_headroom::smithy::SdkHeadroom;

const SONNET: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const EAST: &str = "us-east-1";
const WEST: &str = "us-west-2";
/// The west target's quota key: the same model has a quota of its own in each region.
const SONNET_WEST: &str = "sonnet@us-west-2";

/// What reached the network: each request's host, model path and signing region.
#[derive(Clone, Debug, PartialEq)]
struct Sent {
    host: String,
    path: String,
    region: String,
}

type Log = Arc<Mutex<Vec<Sent>>>;

/// An HTTP client that logs each signed request's host, model path and signing region.
fn recording(inner: SharedHttpClient, log: Log) -> SharedHttpClient {
    support::sdk::recording(inner, move |request| {
        let uri: http::Uri = request.uri().parse().unwrap();
        // `Credential=AKID/20240101/us-west-2/bedrock/aws4_request`: the third field.
        let region = request
            .headers()
            .get("authorization")
            .and_then(|a| a.split("Credential=").nth(1))
            .and_then(|scope| scope.split('/').nth(2))
            .unwrap_or_default()
            .to_owned();
        let path = uri.path().split("/model/").nth(1).unwrap_or_default();
        log.lock().unwrap().push(Sent {
            host: uri.host().unwrap_or_default().to_owned(),
            path: path.to_owned(),
            region,
        });
    })
}

fn model(region: &str) -> tower_headroom::sim::ModelConfigBuilder {
    ModelConfig::builder(SONNET, region)
        .ttft(Duration::from_millis(100))
        .per_output_token(Duration::ZERO)
        .output(OutputLength::Fixed { tokens: 42 })
        .tpm(1_000_000)
}

/// Sonnet in both regions; `east_down` / `west_down`: that region answers 503 for an hour.
fn front(start: Instant, east_down: bool, west_down: bool) -> SimService {
    let hour = Episode::new(Duration::ZERO, Duration::from_secs(3600));
    let region = |name: &str, down: bool| {
        let m = model(name);
        if down { m.outage(hour) } else { m }.build().unwrap()
    };
    let sim = BedrockSim::builder()
        .start(start)
        .model(region(EAST, east_down))
        .model(region(WEST, west_down))
        .build()
        .unwrap();
    SimService::builder().bedrock(sim).build().unwrap()
}

/// The route a user writes: Sonnet here, then Sonnet in us-west-2 under a key of its own.
fn headroom(quota: Option<Quota<Arc<str>>>) -> SdkHeadroom {
    let builder = SdkHeadroom::builder(Profile::Bedrock)
        .seed(7)
        .target(Target::new("east", Arc::<str>::from(SONNET)).model("sonnet"))
        .target_model(
            Target::new("west", Arc::<str>::from(SONNET_WEST))
                .model("sonnet")
                .region(WEST),
            SONNET,
        );
    match quota {
        Some(quota) => builder.quota(quota),
        None => builder,
    }
    .build()
    .unwrap()
}

/// A client in us-east-1; `endpoint`: a custom endpoint URL (else AWS's, resolved per region).
fn client(
    headroom: &SdkHeadroom,
    http: SharedHttpClient,
    endpoint: Option<&str>,
) -> aws_sdk_bedrockruntime::Client {
    use aws_sdk_bedrockruntime::config::{Credentials, Region};
    let mut builder = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version_latest()
        .region(Region::from_static(EAST))
        .credentials_provider(Credentials::new(
            support::sdk::ACCESS_KEY,
            support::sdk::SECRET_KEY,
            None,
            None,
            "test",
        ))
        .http_client(http);
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    let config = headroom.configure_bedrock(builder).unwrap().build();
    aws_sdk_bedrockruntime::Client::from_conf(config)
}

async fn converse(
    client: &aws_sdk_bedrockruntime::Client,
) -> Result<
    aws_sdk_bedrockruntime::operation::converse::ConverseOutput,
    aws_sdk_bedrockruntime::error::SdkError<
        aws_sdk_bedrockruntime::operation::converse::ConverseError,
    >,
> {
    client
        .converse()
        .model_id(SONNET)
        .messages(
            Message::builder()
                .role(ConversationRole::User)
                .content(ContentBlock::Text("hello".repeat(40)))
                .build()
                .unwrap(),
        )
        .inference_config(InferenceConfiguration::builder().max_tokens(100).build())
        .send()
        .await
}

#[tokio::test(start_paused = true)]
async fn an_outage_moves_the_attempt_to_the_other_region_signed_for_it() {
    let start = Instant::now();
    let log = Log::default();
    let http = recording(sdk_http_client(front(start, true, false)), Arc::clone(&log));
    let quota: Quota<Arc<str>> = Quota::new(Limit::per_minute().units(1_000_000).build().unwrap());
    let headroom = headroom(Some(quota.clone()));
    let client = client(&headroom, http, Some("http://bedrock.sim"));
    let output = converse(&client).await.unwrap();
    assert_eq!(output.usage().unwrap().output_tokens(), 42);
    let sent = log.lock().unwrap().clone();
    let sent: Vec<_> = sent
        .iter()
        .map(|s| (s.region.as_str(), s.path.as_str()))
        .collect();
    let path = "anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse";
    // Same model id in the path, the second attempt signed for us-west-2: the front served it
    // from the west region's model (the east one is down).
    assert_eq!(sent, [(EAST, path), (WEST, path)]);
    // Each region's quota key was charged for its own attempt: the east attempt's 503 gave
    // its units back, the west one settled to its usage.
    let now = Instant::now();
    let used = |key: &str| {
        quota
            .stats(&Arc::from(key), now)
            .and_then(|s| s.units_spent)
            .unwrap_or(0)
    };
    assert_eq!(used(SONNET), 0);
    assert!(used(SONNET_WEST) > 0);
}

#[tokio::test(start_paused = true)]
async fn without_a_custom_endpoint_the_moved_attempt_resolves_the_other_regions_endpoint() {
    let start = Instant::now();
    let log = Log::default();
    let http = recording(sdk_http_client(front(start, true, false)), Arc::clone(&log));
    let client = client(&headroom(None), http, None);
    converse(&client).await.unwrap();
    let sent = log.lock().unwrap().clone();
    let hosts: Vec<_> = sent
        .iter()
        .map(|s| (s.host.as_str(), s.region.as_str()))
        .collect();
    assert_eq!(
        hosts,
        [
            ("bedrock-runtime.us-east-1.amazonaws.com", EAST),
            ("bedrock-runtime.us-west-2.amazonaws.com", WEST),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_both_regions_failed_starts_over_in_the_clients_region() {
    let start = Instant::now();
    let log = Log::default();
    let http = recording(sdk_http_client(front(start, true, true)), Arc::clone(&log));
    let client = client(&headroom(None), http, Some("http://bedrock.sim"));
    assert!(converse(&client).await.is_err());
    let sent = log.lock().unwrap().clone();
    let regions: Vec<_> = sent.iter().map(|s| s.region.as_str()).collect();
    // East, moved west, then the retry from the preferred target: east again, signed for it.
    assert!(regions.len() >= 3, "{regions:?}");
    assert_eq!(regions[..3], [EAST, WEST, EAST], "{regions:?}");
    for pair in regions.windows(2) {
        assert_ne!(pair[0], pair[1], "each failure moves on: {regions:?}");
    }
}
