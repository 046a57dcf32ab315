//! What the SDK plug-ins cost per call: one `converse()` of the real `aws-sdk-bedrockruntime`
//! client, side by side in one run, `cargo bench --features bedrock --bench smithy`. Read the
//! ratios printed at the end, not the absolute numbers.
//!
//! Every client sends to the same in-process `HttpConnector` that answers a canned 200 Converse
//! body at once (no socket, no simulator latency), so the numbers are the SDK's own work —
//! endpoint resolution, SigV4 signing, serialization, deserialization, the retry loop — plus
//! whatever the plug-ins add:
//!
//! - `plain`: the client with `RetryConfig::standard()` and no plug-ins;
//! - `headroom_bare`: configured by [`SdkHeadroom::configure_bedrock`] with no quota, no
//!   breakers and no route, so the plug-ins' fixed cost (interceptor, classifier, HTTP client
//!   wrapper) shows apart from the cores';
//! - `headroom_quota_breaker`: a quota (requests and tokens, the reservation settled from the
//!   reply's `usage`) and the profile's breaker for the model, no fallback;
//! - `headroom_route`: the same plus a two-target route (the first target answers);
//! - `headroom_route_recorded`: the same client with a `metrics` recorder installed
//!   (metrics-util's `DebuggingRecorder`, a registry keyed by name and labels like the
//!   exporters'), since the adapter's metric calls cost little when no recorder listens.
//!
//! The other benches run with no `metrics` recorder, as in an application that does not export
//! metrics: the facade's calls go to its no-op recorder. The calls run on a current-thread runtime
//! (`block_on` per iteration: criterion's `async_tokio` feature is not enabled here), the same
//! for every client.

mod common;

use std::hint::black_box;
use std::sync::Arc;

use aws_sdk_bedrockruntime::config::retry::RetryConfig;
use aws_sdk_bedrockruntime::config::{Credentials, Region, StalledStreamProtectionConfig};
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, InferenceConfiguration, Message,
};
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, SharedHttpClient, SharedHttpConnector, http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::body::SdkBody;
use criterion::{Criterion, criterion_group, criterion_main};
use tower_headroom::Profile;
use tower_headroom::admission::{Limit, Quota};
use tower_headroom::fallback::Target;
use tower_headroom::smithy::SdkHeadroom;

const SONNET: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";

/// A Converse reply as Bedrock sends it (the shape the simulator's front writes).
const REPLY: &str = r#"{"output":{"message":{"role":"assistant","content":[{"text":"Hello there, how can I help?"}]}},"stopReason":"end_turn","usage":{"inputTokens":12,"outputTokens":8,"totalTokens":20},"metrics":{"latencyMs":120}}"#;

/// Answers every request with [`REPLY`] at once.
#[derive(Debug)]
struct Canned;

impl HttpConnector for Canned {
    fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
        let mut response = Response::new(StatusCode::try_from(200).unwrap(), SdkBody::from(REPLY));
        response
            .headers_mut()
            .insert("content-type", "application/json");
        response
            .headers_mut()
            .insert("x-amzn-requestid", "00000000-0000-0000-0000-000000000000");
        HttpConnectorFuture::ready(Ok(response))
    }
}

fn canned() -> SharedHttpClient {
    http_client_fn(|_, _| SharedHttpConnector::new(Canned))
}

/// The config every client starts from: plain HTTP endpoint, static fake credentials.
fn config() -> aws_sdk_bedrockruntime::config::Builder {
    aws_sdk_bedrockruntime::Config::builder()
        .behavior_version_latest()
        .region(Region::from_static("us-east-1"))
        .endpoint_url("http://bedrock.bench")
        .credentials_provider(Credentials::new(
            "AKIDBENCH0000000000",
            "bench-secret",
            None,
            None,
            "bench",
        ))
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .retry_config(RetryConfig::standard())
        .http_client(canned())
}

fn plain() -> aws_sdk_bedrockruntime::Client {
    aws_sdk_bedrockruntime::Client::from_conf(config().build())
}

fn with_headroom(headroom: &SdkHeadroom) -> aws_sdk_bedrockruntime::Client {
    let config = headroom.configure_bedrock(config()).unwrap().build();
    aws_sdk_bedrockruntime::Client::from_conf(config)
}

/// A quota no bench run can exhaust, on a real clock.
fn quota() -> Quota<Arc<str>> {
    Quota::new(
        Limit::per_second()
            .requests(1 << 40)
            .units(1 << 40)
            .build()
            .unwrap(),
    )
}

async fn converse(client: &aws_sdk_bedrockruntime::Client, message: &Message) -> u64 {
    let output = client
        .converse()
        .model_id(SONNET)
        .messages(message.clone())
        .inference_config(InferenceConfiguration::builder().max_tokens(100).build())
        .send()
        .await
        .unwrap();
    output.usage().map_or(0, |u| u.output_tokens() as u64)
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let message = Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text(
            "Say hello in one short sentence.".into(),
        ))
        .build()
        .unwrap();

    let bare = SdkHeadroom::builder(Profile::Bedrock)
        .no_breakers()
        .build()
        .unwrap();
    let quota_breaker = SdkHeadroom::builder(Profile::Bedrock)
        .quota(quota())
        .build()
        .unwrap();
    let route = SdkHeadroom::builder(Profile::Bedrock)
        .target(Target::new("sonnet", Arc::from(SONNET)))
        .target(Target::new("haiku", Arc::from(HAIKU)))
        .quota(quota())
        .build()
        .unwrap();
    let clients = [
        ("plain", plain()),
        ("headroom_bare", with_headroom(&bare)),
        ("headroom_quota_breaker", with_headroom(&quota_breaker)),
        ("headroom_route", with_headroom(&route)),
    ];

    // Every client answers, and reads the canned usage, before anything is timed.
    for (name, client) in &clients {
        let tokens = runtime.block_on(converse(client, &message));
        assert_eq!(tokens, 8, "{name}");
    }

    let mut group = c.benchmark_group("smithy");
    for (name, client) in &clients {
        group.bench_function(*name, |b| {
            b.iter(|| runtime.block_on(converse(black_box(client), &message)))
        });
    }
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    {
        let _recorder = metrics::set_default_local_recorder(&recorder);
        let route = &clients[3].1;
        group.bench_function("headroom_route_recorded", |b| {
            b.iter(|| runtime.block_on(converse(black_box(route), &message)))
        });
    }
    group.finish();

    for name in [
        "headroom_bare",
        "headroom_quota_breaker",
        "headroom_route",
        "headroom_route_recorded",
    ] {
        common::print_ratio("smithy", name, "plain");
    }
    common::print_overhead_ratio(
        "smithy",
        "headroom_quota_breaker",
        "headroom_route",
        "plain",
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
