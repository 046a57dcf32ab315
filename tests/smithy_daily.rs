//! A spent daily quota through the real `aws-sdk-bedrockruntime` client configured by
//! `SdkHeadroom`, on tokio's paused clock: a canned in-process connector answers one model
//! with Bedrock's "Too many tokens per day" `ThrottlingException` and the other with a
//! Converse answer. The adapter moves to the fallback model at once, never retries into the
//! spent day without one, and counts the daily class apart.
#![cfg(feature = "bedrock")]

mod support {
    pub mod sdk;
}

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_bedrockruntime::operation::converse::ConverseError;
use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, Message};
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, SharedHttpClient, SharedHttpConnector, http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::http::{Response as SdkResponse, StatusCode};
use aws_smithy_types::body::SdkBody;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tokio::time::Instant;
use tower_headroom::Profile;
use tower_headroom::fallback::Target;
use tower_headroom::smithy::SdkHeadroom;

const SONNET: &str = "anthropic.claude-sonnet-4-20250514-v1:0";
const HAIKU: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";
const DAILY: &str = r#"{"message":"Too many tokens per day, please wait before trying again."}"#;
const ANSWER: &str = r#"{"output":{"message":{"role":"assistant","content":[{"text":"ok"}]}},"stopReason":"end_turn","usage":{"inputTokens":3,"outputTokens":1,"totalTokens":4},"metrics":{"latencyMs":10}}"#;

/// Every request that reached the connector: when, and the model id in its path.
type Log = Arc<Mutex<Vec<(Instant, String)>>>;

/// A connector whose day is spent for the models in `spent`; the others answer.
fn canned(spent: &'static [&'static str], log: Log) -> SharedHttpClient {
    #[derive(Debug)]
    struct Canned {
        spent: &'static [&'static str],
        log: Log,
    }
    impl HttpConnector for Canned {
        fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
            let uri = request.uri().replace("%3A", ":");
            let model = uri
                .split_once("/model/")
                .and_then(|(_, rest)| rest.split_once('/'))
                .map_or(String::new(), |(model, _)| model.to_owned());
            self.log
                .lock()
                .unwrap()
                .push((Instant::now(), model.clone()));
            let response = if self.spent.contains(&model.as_str()) {
                let mut response =
                    SdkResponse::new(StatusCode::try_from(429).unwrap(), SdkBody::from(DAILY));
                response
                    .headers_mut()
                    .insert("x-amzn-errortype", "ThrottlingException");
                response
            } else {
                let mut response =
                    SdkResponse::new(StatusCode::try_from(200).unwrap(), SdkBody::from(ANSWER));
                response
                    .headers_mut()
                    .insert("content-type", "application/json");
                response
            };
            HttpConnectorFuture::ready(Ok(response))
        }
    }
    http_client_fn(move |_, _| {
        SharedHttpConnector::new(Canned {
            spent,
            log: Arc::clone(&log),
        })
    })
}

fn client(headroom: &SdkHeadroom, http: SharedHttpClient) -> aws_sdk_bedrockruntime::Client {
    use aws_sdk_bedrockruntime::config::{Credentials, Region};
    let builder = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version_latest()
        .region(Region::from_static("us-east-1"))
        .endpoint_url("http://bedrock.local")
        .credentials_provider(Credentials::new(
            support::sdk::ACCESS_KEY,
            support::sdk::SECRET_KEY,
            None,
            None,
            "test",
        ))
        .http_client(http);
    aws_sdk_bedrockruntime::Client::from_conf(headroom.configure_bedrock(builder).unwrap().build())
}

async fn converse(
    client: &aws_sdk_bedrockruntime::Client,
    model: &str,
) -> Result<(), aws_sdk_bedrockruntime::error::SdkError<ConverseError>> {
    client
        .converse()
        .model_id(model)
        .messages(
            Message::builder()
                .role(ConversationRole::User)
                .content(ContentBlock::Text("hello".into()))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .map(drop)
}

/// The value of counter `name` whose labels include all of `labels`.
fn counter(
    snapshot: &[(
        metrics_util::CompositeKey,
        Option<metrics::Unit>,
        Option<metrics::SharedString>,
        DebugValue,
    )],
    name: &str,
    labels: &[(&str, &str)],
) -> u64 {
    snapshot
        .iter()
        .filter(|(key, ..)| key.key().name() == name)
        .filter(|(key, ..)| {
            labels
                .iter()
                .all(|(k, v)| key.key().labels().any(|l| l.key() == *k && l.value() == *v))
        })
        .map(|(.., value)| match value {
            DebugValue::Counter(n) => *n,
            _ => 0,
        })
        .sum()
}

#[tokio::test(start_paused = true)]
async fn a_spent_day_moves_the_sdk_client_to_the_fallback_model_at_once() {
    let recorder = DebuggingRecorder::new();
    let metrics = recorder.snapshotter();
    let _recorder = metrics::set_default_local_recorder(&recorder);
    let log = Log::default();
    let headroom = SdkHeadroom::builder(Profile::Bedrock)
        .target(Target::new("fb-sonnet", Arc::<str>::from(SONNET)))
        .target(Target::new("fb-haiku", Arc::<str>::from(HAIKU)))
        .build()
        .unwrap();
    let client = client(&headroom, canned(&[SONNET], Arc::clone(&log)));
    let t0 = Instant::now();
    converse(&client, SONNET).await.unwrap();
    let log = log.lock().unwrap().clone();
    let models: Vec<&str> = log.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(models, [SONNET, HAIKU]);
    // No wait between them: the move is at once.
    assert_eq!(log[1].0, t0);
    let snapshot = metrics.snapshot().into_vec();
    let daily = [("target", "fb-sonnet"), ("class", "throttled_daily")];
    assert_eq!(counter(&snapshot, "headroom_attempts_total", &daily), 1);
    let minute = [("target", "fb-sonnet"), ("class", "throttled_tokens")];
    assert_eq!(counter(&snapshot, "headroom_attempts_total", &minute), 0);
}

#[tokio::test(start_paused = true)]
async fn a_spent_day_with_no_fallback_is_not_retried() {
    let recorder = DebuggingRecorder::new();
    let metrics = recorder.snapshotter();
    let _recorder = metrics::set_default_local_recorder(&recorder);
    let log = Log::default();
    let headroom = SdkHeadroom::builder(Profile::Bedrock).build().unwrap();
    let client = client(&headroom, canned(&[HAIKU], Arc::clone(&log)));
    let t0 = Instant::now();
    let error = converse(&client, HAIKU).await.unwrap_err();
    assert!(matches!(
        error.into_service_error(),
        ConverseError::ThrottlingException(_)
    ));
    // One request, no retry a minute later (the SDK's own loop asked the adapter and stopped).
    assert_eq!(log.lock().unwrap().len(), 1);
    assert!(t0.elapsed() < Duration::from_secs(1));
    let snapshot = metrics.snapshot().into_vec();
    let stopped = [("reason", "quota_exhausted")];
    assert_eq!(
        counter(&snapshot, "headroom_retries_exhausted_total", &stopped),
        1
    );
}
