//! The SDK adapter's metrics stay bounded: a client calling more model ids than the adapter
//! keeps apart reports the rest under one overflow target, and an ARN shows only its resource
//! name in a label — the real `aws-sdk-bedrockruntime` client against the simulator's front.
#![cfg(all(feature = "sim", feature = "bedrock", feature = "metrics"))]

mod support {
    pub mod sdk;
}

use std::collections::HashSet;

use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, Message};
use metrics_util::debugging::DebuggingRecorder;
use tower_headroom::Profile;
use tower_headroom::retry::RetryPolicy;
use tower_headroom::sim::front::sdk_http_client;
use tower_headroom::smithy::SdkHeadroom;

#[tokio::test(start_paused = true)]
async fn label_sets_are_capped_and_arns_show_their_resource_name() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _recorder = metrics::set_default_local_recorder(&recorder);
    let front = support::sdk::haiku_front(1_000_000);
    let headroom = SdkHeadroom::builder(Profile::Bedrock)
        .retry(RetryPolicy::builder().max_attempts(1).build().unwrap())
        .build()
        .unwrap();
    let config = support::sdk::bedrock_sim_config(sdk_http_client(front), support::sdk::SECRET_KEY);
    let client = aws_sdk_bedrockruntime::Client::from_conf(
        headroom.configure_bedrock(config).unwrap().build(),
    );
    let message = Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text("hi".into()))
        .build()
        .unwrap();
    // An ARN, then 300 model ids the front does not know (each answered at once).
    let arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123";
    let ids = std::iter::once(arn.to_owned()).chain((0..300).map(|i| format!("acme.model-{i}-v1")));
    for id in ids {
        let _ = client
            .converse()
            .model_id(id)
            .messages(message.clone())
            .send()
            .await;
    }
    let attempts: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == "headroom_attempts_total")
        .collect();
    let label = |key: &metrics_util::CompositeKey, name: &str| {
        key.key()
            .labels()
            .find(|l| l.key() == name)
            .map(|l| l.value().to_owned())
            .unwrap_or_default()
    };
    let sets: HashSet<(String, String)> = attempts
        .iter()
        .map(|(key, ..)| (label(key, "target"), label(key, "model")))
        .collect();
    // 256 label sets of their own, the rest under one overflow target.
    assert_eq!(sets.len(), 257, "{}", sets.len());
    assert!(sets.contains(&("_overflow".to_owned(), String::new())));
    // The first ids kept their own series, the ARN under its resource name only.
    assert!(sets.iter().any(|(_, model)| model == "acme.model-0-v1"));
    assert!(sets.iter().any(|(_, model)| model == "abc123"), "{sets:?}");
    assert!(!sets.iter().any(|(_, model)| model == "acme.model-299-v1"));
    for (target, model) in &sets {
        assert!(!target.contains("123456789012") && !model.contains("123456789012"));
    }
}
