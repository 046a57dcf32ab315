//! `configure_bedrock` / `configure_dynamodb` say what they replaced on the config builder —
//! the retry config, the retry partition and the stalled-stream protection, old and new
//! values — in one `debug` event of target `tower_headroom::smithy`, with nothing of the
//! credentials in it.
#![cfg(all(feature = "sim", feature = "bedrock", feature = "dynamodb"))]

mod support {
    pub mod capture;
    pub mod sdk;
}

use std::time::Duration;

use aws_sdk_bedrockruntime::config::retry::RetryConfig;
use aws_sdk_bedrockruntime::config::{Credentials, Region, StalledStreamProtectionConfig};
use aws_smithy_runtime::client::retries::RetryPartition;
use support::capture::logged;
use tower_headroom::Profile;
use tower_headroom::smithy::SdkHeadroom;

const TARGET: &str = "tower_headroom::smithy";

#[test]
fn configure_bedrock_logs_each_setting_it_replaced_with_old_and_new_values() {
    let headroom = SdkHeadroom::builder(Profile::Bedrock).build().unwrap();
    let builder = aws_sdk_bedrockruntime::Config::builder()
        .region(Region::from_static("us-east-1"))
        .credentials_provider(Credentials::new(
            support::sdk::ACCESS_KEY,
            support::sdk::SECRET_KEY,
            None,
            None,
            "test",
        ))
        .retry_config(
            RetryConfig::adaptive()
                .with_max_attempts(7)
                .with_max_backoff(Duration::from_secs(3)),
        )
        .retry_partition(RetryPartition::new("mine"))
        .stalled_stream_protection(
            StalledStreamProtectionConfig::enabled()
                .grace_period(Duration::from_secs(9))
                .build(),
        )
        .http_client(support::sdk::http_client());
    let (config, log) = logged(&[TARGET], || headroom.configure_bedrock(builder));
    let config = config.unwrap().build();

    let events: Vec<&str> = log.lines().filter(|l| l.contains("replaced")).collect();
    assert_eq!(events.len(), 1, "{log}");
    let event = events[0];
    assert!(event.contains("DEBUG tower_headroom::smithy"), "{event}");
    assert!(
        event.contains(
            "configure_bedrock replaced the retry config, the retry partition and the \
             stalled-stream protection"
        ),
        "{event}"
    );
    let retry = config.retry_config().unwrap();
    assert_eq!(retry.max_attempts(), headroom.sdk_max_attempts());
    for field in [
        "old_retry_config=adaptive mode, max_attempts 7, initial_backoff 1s, max_backoff 3s"
            .to_owned(),
        format!(
            "new_retry_config=standard mode, max_attempts {}, initial_backoff 1s, max_backoff {:?}",
            headroom.sdk_max_attempts(),
            headroom.sdk_max_backoff()
        ),
        "old_retry_partition=mine".to_owned(),
        "new_retry_partition=tower-headroom (token bucket unlimited)".to_owned(),
        "old_stalled_stream_protection=upload check on, download check on, grace_period 9s"
            .to_owned(),
        "new_stalled_stream_protection=upload check off, download check on, grace_period 9s"
            .to_owned(),
    ] {
        assert!(event.contains(&field), "{field} not in {event}");
    }
    // What the event says is what the config holds.
    assert_eq!(
        config.retry_partition().unwrap().to_string(),
        "tower-headroom"
    );
    let stalls = config.stalled_stream_protection().unwrap();
    assert!(stalls.is_enabled() && !stalls.upload_enabled() && stalls.download_enabled());
    assert_eq!(stalls.grace_period(), Duration::from_secs(9));
    assert!(
        !log.contains(support::sdk::ACCESS_KEY) && !log.contains(support::sdk::SECRET_KEY),
        "{log}"
    );
}

#[test]
fn configure_dynamodb_says_which_settings_were_the_sdks_defaults() {
    let headroom = SdkHeadroom::builder(Profile::DynamoDb).build().unwrap();
    let builder = aws_sdk_dynamodb::Config::builder().http_client(support::sdk::http_client());
    let (config, log) = logged(&[TARGET], || headroom.configure_dynamodb(builder));
    config.unwrap();
    let events: Vec<&str> = log.lines().filter(|l| l.contains("replaced")).collect();
    assert_eq!(events.len(), 1, "{log}");
    let event = events[0];
    for field in [
        "configure_dynamodb replaced",
        "old_retry_config=unset (the SDK's default)",
        "old_retry_partition=unset (the SDK's default)",
        "old_stalled_stream_protection=unset (the SDK's default)",
        "new_stalled_stream_protection=upload check off, download check on",
        "new_retry_partition=tower-headroom",
    ] {
        assert!(event.contains(field), "{field} not in {event}");
    }
}
