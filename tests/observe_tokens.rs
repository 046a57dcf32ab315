//! `headroom_tokens_total` counts the tokens an answer reports, by type, under the target that
//! answered: the Tower stack with `BedrockUsage` (the `InvokeModel` headers), and the SDK
//! adapter with the real `aws-sdk-bedrockruntime` client against the simulator's front.
#![cfg(feature = "metrics")]

mod support {
    pub mod metrics;
    #[cfg(all(feature = "sim", feature = "bedrock"))]
    pub mod sdk;
}

use std::convert::Infallible;

use metrics_util::debugging::DebuggingRecorder;
use support::metrics::token;
use tower::ServiceExt;
use tower_headroom::admission::{FixedCost, Limit, Quota};
use tower_headroom::bedrock::{BedrockUsage, ModelTable};
use tower_headroom::fallback::Target;
use tower_headroom::observe::names;
use tower_headroom::stack::StackBuilder;
use tower_headroom::{Cost, HttpClassifier};

#[tokio::test(start_paused = true)]
async fn the_stack_counts_the_tokens_in_bedrock_headers() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let upstream = tower::service_fn(|_model: &'static str| async {
        Ok::<_, Infallible>(
            http::Response::builder()
                .header("x-amzn-bedrock-input-token-count", "1000")
                .header("x-amzn-bedrock-output-token-count", "300")
                .header("x-amzn-bedrock-cache-read-input-token-count", "5000")
                .body(())
                .unwrap(),
        )
    });
    let limit = Limit::per_minute().units(10_000_000).build().unwrap();
    let stack = StackBuilder::bedrock(HttpClassifier::new())
        .target(
            Target::new("haiku", "haiku")
                .model("anthropic.claude-3-haiku-20240307-v1:0")
                .region("us-east-1"),
        )
        .admission(Quota::new(limit), FixedCost(Cost::new(1, 2_000)))
        .usage(BedrockUsage::new(ModelTable::builtin()))
        .rewrite(upstream, |call: &mut &'static str, model: &&'static str| {
            *call = model
        })
        .unwrap();
    for _ in 0..2 {
        let response = stack.clone().oneshot("").await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let series = snapshotter.snapshot().into_vec();
    let haiku = [
        ("target", "haiku"),
        ("model", "anthropic.claude-3-haiku-20240307-v1:0"),
        ("region", "us-east-1"),
    ];
    assert_eq!(token(&series, "input", &haiku), 2_000);
    assert_eq!(token(&series, "output", &haiku), 600);
    assert_eq!(token(&series, "cache_read", &haiku), 10_000);
    assert_eq!(token(&series, "cache_write", &haiku), 0);
}

/// The admission layer counts what its answers report under its labels, as the stack does
/// per target.
#[tokio::test(start_paused = true)]
async fn the_admission_layer_counts_the_tokens_in_bedrock_headers() {
    use tower::Layer;
    use tower_headroom::admission::{AdmissionLayer, Fixed};
    use tower_headroom::observe::Labels;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let upstream = tower::service_fn(|()| async {
        Ok::<_, Infallible>(
            http::Response::builder()
                .header("x-amzn-bedrock-input-token-count", "700")
                .header("x-amzn-bedrock-output-token-count", "90")
                .header("x-amzn-bedrock-cache-write-input-token-count", "4")
                .body(())
                .unwrap(),
        )
    });
    let limit = Limit::per_minute().units(10_000_000).build().unwrap();
    let svc = AdmissionLayer::new(
        Quota::new(limit),
        Fixed::new("haiku", FixedCost(Cost::units(2_000))),
    )
    .usage(BedrockUsage::new(ModelTable::builtin()))
    .classify(HttpClassifier::new())
    .labels(Labels::target("haiku").region("us-east-1"))
    .layer(upstream);
    svc.clone().oneshot(()).await.unwrap();
    svc.oneshot(()).await.unwrap();
    let series = snapshotter.snapshot().into_vec();
    let haiku = [("target", "haiku"), ("region", "us-east-1")];
    assert_eq!(token(&series, "input", &haiku), 1_400);
    assert_eq!(token(&series, "output", &haiku), 180);
    assert_eq!(token(&series, "cache_read", &haiku), 0);
    assert_eq!(token(&series, "cache_write", &haiku), 8);
}

#[tokio::test(start_paused = true)]
async fn a_stack_whose_usage_reader_reads_no_tokens_has_no_token_series() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let upstream =
        tower::service_fn(|_: &'static str| async { Ok::<_, Infallible>(http::Response::new(())) });
    let stack = StackBuilder::bedrock(HttpClassifier::new())
        .target(Target::new("table", "table"))
        .services(vec![upstream])
        .unwrap();
    stack.oneshot("").await.unwrap();
    let series = snapshotter.snapshot().into_vec();
    assert!(
        series
            .iter()
            .all(|(key, ..)| key.key().name() != names::TOKENS)
    );
    assert!(
        series
            .iter()
            .any(|(key, ..)| key.key().name() == names::ATTEMPTS)
    );
}

#[cfg(all(feature = "sim", feature = "bedrock"))]
#[tokio::test(start_paused = true)]
async fn the_sdk_adapter_counts_converse_usage() {
    use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, Message};
    use tower_headroom::Profile;
    use tower_headroom::sim::front::sdk_http_client;
    use tower_headroom::smithy::SdkHeadroom;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let model = support::sdk::HAIKU;
    let front = support::sdk::haiku_front(1_000_000);
    let headroom = SdkHeadroom::builder(Profile::Bedrock).build().unwrap();
    let config = support::sdk::bedrock_sim_config(sdk_http_client(front), "secret");
    let client = aws_sdk_bedrockruntime::Client::from_conf(
        headroom.configure_bedrock(config).unwrap().build(),
    );
    let message = Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text("hello there".into()))
        .build()
        .unwrap();
    let mut reported = (0, 0);
    for _ in 0..3 {
        let output = client
            .converse()
            .model_id(model)
            .messages(message.clone())
            .send()
            .await
            .unwrap();
        let usage = output.usage().unwrap();
        reported.0 += u64::try_from(usage.input_tokens()).unwrap();
        reported.1 += u64::try_from(usage.output_tokens()).unwrap();
    }
    assert_eq!(reported.1, 15);
    assert!(reported.0 > 0);
    let series = snapshotter.snapshot().into_vec();
    let labels = [("model", model), ("region", "us-east-1")];
    assert_eq!(token(&series, "input", &labels), reported.0);
    assert_eq!(token(&series, "output", &labels), reported.1);
}
