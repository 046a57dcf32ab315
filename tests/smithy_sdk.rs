//! The real `aws-sdk-bedrockruntime` and `aws-sdk-dynamodb` clients configured by
//! `SdkHeadroom::configure_*`, against the simulator's front.
//!
//! Bedrock runs in process on the paused clock (the SDK's requests handed to the front as
//! `tower::Service` calls), so delays are asserted exactly; DynamoDB writes go through the front
//! to dynalite over loopback (started per test; a machine without it fails with
//! "run scripts/dynalite").
#![cfg(all(feature = "sim", feature = "bedrock", feature = "dynamodb"))]

mod support {
    pub mod capture;
    pub mod dynalite;
    pub mod sdk;
}

use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_bedrockruntime::operation::converse::ConverseError;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, InferenceConfiguration, Message,
};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, SharedHttpClient, SharedHttpConnector,
    http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::http::{Response as SdkResponse, StatusCode};
use aws_smithy_types::body::SdkBody;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tokio::time::Instant;
use tower_headroom::admission::{Cost, Headroom, Limit, Quota};
use tower_headroom::breaker::BreakerConfig;
use tower_headroom::fallback::Target;
use tower_headroom::retry::{BackoffBuilder, QuotaWindow};
use tower_headroom::sim::front::{SimService, sdk_http_client};
use tower_headroom::sim::{BedrockSim, Episode, ModelConfig, OutputLength};
use tower_headroom::smithy::SdkHeadroom;
use tower_headroom::{CircuitOpen, Profile};

const SONNET: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const DOWN: &str = "meta.llama3-70b-instruct-v1:0";
const SLOW: &str = "mistral.mistral-large-2402-v1:0";
const CANARY_PROMPT: &str = "CANARY-PROMPT-9c1e the launch codes are";

/// What a debugging recorder holds.
type Snapshot = Vec<(
    metrics_util::CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

/// The value of counter `name` whose labels include all of `labels`.
fn counter(snapshot: &Snapshot, name: &str, labels: &[(&str, &str)]) -> u64 {
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

fn model(id: &str) -> tower_headroom::sim::ModelConfigBuilder {
    ModelConfig::builder(id, "us-east-1")
        .ttft(Duration::from_millis(100))
        .per_output_token(Duration::ZERO)
        .output(OutputLength::Fixed { tokens: 42 })
        .rpm(1_000)
        .tpm(1_000_000)
}

/// Haiku allows 2 requests a minute; Sonnet is overloaded for the first hour; Llama is down.
fn sim(start: Instant) -> BedrockSim {
    BedrockSim::builder()
        .start(start)
        .model(model(HAIKU).rpm(2).build().unwrap())
        .model(
            model(SONNET)
                .overload(Episode::new(Duration::ZERO, Duration::from_secs(3600)))
                .build()
                .unwrap(),
        )
        .model(
            model(DOWN)
                .outage(Episode::new(Duration::ZERO, Duration::from_secs(3600)))
                .build()
                .unwrap(),
        )
        .model(model(SLOW).ttft(Duration::from_secs(5)).build().unwrap())
        .build()
        .unwrap()
}

/// Bedrock's retry profile with its quota window anchored at the simulator's start (the
/// default aligns to the wall clock, which the paused clock does not follow).
fn policy(start: Instant) -> tower_headroom::retry::RetryPolicyBuilder {
    Profile::Bedrock
        .retry()
        .backoff(BackoffBuilder::default().quota_window_at(
            QuotaWindow::new(Duration::from_secs(60), start, Duration::from_secs(2)).unwrap(),
        ))
        .seed(7)
}

/// Every request that reached the backend: when, and its path.
type Log = Arc<Mutex<Vec<(Instant, String)>>>;

/// An HTTP client that logs each request (when, and its path), then hands it to `inner`.
fn recording(inner: SharedHttpClient, log: Log) -> SharedHttpClient {
    support::sdk::recording(inner, move |request| {
        let path = request
            .uri()
            .split_once("/model/")
            .map_or(request.uri().to_owned(), |(_, p)| p.to_owned());
        log.lock().unwrap().push((Instant::now(), path));
    })
}

fn bedrock_client<S>(
    headroom: &SdkHeadroom<S>,
    http: SharedHttpClient,
) -> aws_sdk_bedrockruntime::Client
where
    S: tower_headroom::admission::QuotaStore<Arc<str>> + 'static,
{
    bedrock_client_with(headroom, http, |builder| builder)
}

fn bedrock_client_with<S>(
    headroom: &SdkHeadroom<S>,
    http: SharedHttpClient,
    adjust: impl FnOnce(
        aws_sdk_bedrockruntime::config::Builder,
    ) -> aws_sdk_bedrockruntime::config::Builder,
) -> aws_sdk_bedrockruntime::Client
where
    S: tower_headroom::admission::QuotaStore<Arc<str>> + 'static,
{
    // The SDK's defaults throughout (stalled-stream protection on): what users run.
    let builder = support::sdk::bedrock_sim_config(http, support::sdk::SECRET_KEY)
        .time_source(support::sdk::VirtualTime::now());
    let config = headroom.configure_bedrock(adjust(builder)).unwrap().build();
    aws_sdk_bedrockruntime::Client::from_conf(config)
}

async fn converse(
    client: &aws_sdk_bedrockruntime::Client,
    model: &str,
    max_tokens: i32,
) -> Result<
    aws_sdk_bedrockruntime::operation::converse::ConverseOutput,
    aws_sdk_bedrockruntime::error::SdkError<ConverseError>,
> {
    client
        .converse()
        .model_id(model)
        .messages(
            Message::builder()
                .role(ConversationRole::User)
                .content(ContentBlock::Text(CANARY_PROMPT.repeat(10)))
                .build()
                .unwrap(),
        )
        .inference_config(
            InferenceConfiguration::builder()
                .max_tokens(max_tokens)
                .build(),
        )
        .send()
        .await
}

fn front(start: Instant) -> (SimService, Log, SharedHttpClient) {
    let front = SimService::builder().bedrock(sim(start)).build().unwrap();
    let log = Log::default();
    let http = recording(sdk_http_client(front.clone()), Arc::clone(&log));
    (front, log, http)
}

#[tokio::test(start_paused = true)]
async fn a_quota_throttle_is_retried_at_the_next_window_and_not_before() {
    let start = Instant::now();
    let (_front, log, http) = front(start);
    let headroom = SdkHeadroom::builder(Profile::Bedrock)
        .retry(policy(start).build().unwrap())
        .no_breakers()
        .build()
        .unwrap();
    let client = bedrock_client(&headroom, http);
    converse(&client, HAIKU, 100).await.unwrap();
    converse(&client, HAIKU, 100).await.unwrap();
    // The third call in the minute is throttled (rpm 2), then retried in the next window.
    let third = Instant::now();
    converse(&client, HAIKU, 100).await.unwrap();
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 4, "{log:?}");
    let retry_at = log[3].0;
    let boundary = start + Duration::from_secs(60);
    assert!(log[2].0 >= third && log[2].0 < boundary);
    assert!(
        retry_at >= boundary,
        "retried {:?} before the window",
        boundary - retry_at
    );
    assert!(
        retry_at <= boundary + Duration::from_secs(2),
        "spread is 2 s"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_to_the_millisecond() {
    let start = Instant::now();
    let (front, log, _) = front(start);
    // The first answer is a 429 asking for 7 s; later requests reach the simulator.
    let first = Arc::new(Mutex::new(true));
    let inner = sdk_http_client(front);
    let scripted = http_client_fn(move |settings, components| {
        #[derive(Debug)]
        struct Scripted {
            first: Arc<Mutex<bool>>,
            inner: SharedHttpConnector,
        }
        impl HttpConnector for Scripted {
            fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
                if std::mem::replace(&mut *self.first.lock().unwrap(), false) {
                    let mut response = SdkResponse::new(
                        StatusCode::try_from(429).unwrap(),
                        SdkBody::from(r#"{"message":"Too many requests, please wait."}"#),
                    );
                    response
                        .headers_mut()
                        .insert("x-amzn-errortype", "ThrottlingException");
                    response.headers_mut().insert("retry-after", "7");
                    return HttpConnectorFuture::ready(Ok(response));
                }
                self.inner.call(request)
            }
        }
        SharedHttpConnector::new(Scripted {
            first: Arc::clone(&first),
            inner: inner.http_connector(settings, components),
        })
    });
    let http = recording(scripted, Arc::clone(&log));
    let headroom = SdkHeadroom::builder(Profile::Bedrock)
        .retry(policy(start).build().unwrap())
        .no_breakers()
        .build()
        .unwrap();
    let client = bedrock_client(&headroom, http);
    converse(&client, HAIKU, 100).await.unwrap();
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 2);
    let waited = log[1].0 - log[0].0;
    // Retry-After plus at most the policy's 10% server jitter.
    assert!(waited >= Duration::from_secs(7), "{waited:?}");
    assert!(waited <= Duration::from_millis(7_700), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn a_fatal_error_is_not_retried() {
    let start = Instant::now();
    let (_front, log, http) = front(start);
    let headroom = SdkHeadroom::builder(Profile::Bedrock)
        .retry(policy(start).build().unwrap())
        .build()
        .unwrap();
    let client = bedrock_client(&headroom, http);
    let error = converse(&client, "no.such-model-v1:0", 100)
        .await
        .unwrap_err();
    assert!(matches!(
        error.into_service_error(),
        ConverseError::ValidationException(_)
    ));
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_overloaded_model_falls_back_to_the_next_and_the_metrics_say_so() {
    // The test runs on one thread (the paused clock's runtime): a recorder of its own.
    let recorder = DebuggingRecorder::new();
    let metrics = recorder.snapshotter();
    let _recorder = metrics::set_default_local_recorder(&recorder);
    let start = Instant::now();
    let (_front, log, http) = front(start);
    let headroom = SdkHeadroom::builder(Profile::Bedrock)
        .retry(policy(start).build().unwrap())
        .target(Target::new("fb-sonnet", Arc::<str>::from(SONNET)))
        .target(Target::new("fb-haiku", Arc::<str>::from(HAIKU)))
        .build()
        .unwrap();
    let client = bedrock_client(&headroom, http);
    let t0 = Instant::now();
    let output = converse(&client, SONNET, 100).await.unwrap();
    assert_eq!(output.usage().unwrap().output_tokens(), 42);
    let log = log.lock().unwrap().clone();
    let paths: Vec<&str> = log.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse",
            "anthropic.claude-3-haiku-20240307-v1%3A0/converse"
        ]
    );
    // The move to the next model is immediate: only the first attempt's latency passed.
    assert!(log[1].0 - t0 < Duration::from_secs(1));
    let degraded = [
        ("target", "fb-haiku"),
        ("model", HAIKU),
        ("degraded", "true"),
    ];
    let overloaded = [("target", "fb-sonnet"), ("class", "overloaded")];
    // A snapshot resets the recorder's counters: take one.
    let snapshot = metrics.snapshot().into_vec();
    assert_eq!(counter(&snapshot, "headroom_fallback_total", &degraded), 1);
    assert_eq!(
        counter(&snapshot, "headroom_attempts_total", &overloaded),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn usage_settles_the_reservation_to_the_real_token_count() {
    let start = Instant::now();
    let (front, _log, http) = front(start);
    let quota: Quota<Arc<str>> = Quota::new(Limit::per_minute().units(1_000).build().unwrap());
    let headroom = SdkHeadroom::builder(Profile::Bedrock)
        .retry(policy(start).build().unwrap())
        .quota(quota.clone())
        .build()
        .unwrap();
    let client = bedrock_client(&headroom, http);
    // 390 characters: ~98 input tokens, plus max_tokens 500 reserved.
    converse(&client, HAIKU, 500).await.unwrap();
    let stats = front.bedrock().unwrap().stats();
    let haiku = stats.models.iter().find(|m| &*m.model_id == HAIKU).unwrap();
    let real = haiku.windows[0].tokens;
    assert!(real < 200, "42 output tokens plus the input: {real}");
    // The window holds what the call really spent, not the ~98 + 500 tokens reserved: a call
    // of the rest of the minute's 1,000 is admitted at once; one more token waits for the
    // first call to leave the window.
    let key: Arc<str> = Arc::from(HAIKU);
    let now = Instant::now();
    let stats = quota.stats(&key, now).unwrap();
    assert_eq!(stats.units_spent, Some(real));
    assert_eq!(
        quota.admit_wait(&key, Cost::units(1_000 - real), now),
        Some(Duration::ZERO)
    );
    assert!(
        quota
            .admit_wait(&key, Cost::units(1_001 - real), now)
            .unwrap()
            > Duration::from_secs(59)
    );
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_fails_fast_without_a_network_call() {
    let start = Instant::now();
    let (_front, log, http) = front(start);
    let headroom = SdkHeadroom::builder(Profile::Bedrock)
        // Two attempts, and a deadline shorter than the breaker's open time, so the fast
        // failure is not waited out.
        .retry(
            policy(start)
                .max_attempts(2)
                .deadline(Duration::from_secs(10))
                .build()
                .unwrap(),
        )
        .breaker(
            BreakerConfig::builder()
                .consecutive_failures(2)
                .open_for(Duration::from_secs(30))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let client = bedrock_client(&headroom, http);
    assert!(converse(&client, DOWN, 100).await.is_err());
    assert_eq!(
        log.lock().unwrap().len(),
        2,
        "both attempts reached the backend"
    );
    let before = Instant::now();
    let error = converse(&client, DOWN, 100).await.unwrap_err();
    assert_eq!(
        log.lock().unwrap().len(),
        2,
        "no request while the circuit is open"
    );
    assert_eq!(before.elapsed(), Duration::ZERO);
    let open = tower_headroom::classify::find::<CircuitOpen>(&error)
        .expect("the fast failure carries CircuitOpen");
    // Open for 30 s plus the breaker's jitter (up to 20% by default).
    assert!(open.retry_in > Duration::ZERO && open.retry_in <= Duration::from_secs(36));
}

#[tokio::test(start_paused = true)]
async fn configure_without_an_http_client_is_a_typed_error() {
    let headroom = SdkHeadroom::builder(Profile::Bedrock).build().unwrap();
    let error = headroom
        .configure_bedrock(aws_sdk_bedrockruntime::Config::builder())
        .unwrap_err();
    assert!(error.to_string().contains("http_client"), "{error}");
    let zero = SdkHeadroom::builder(Profile::Bedrock)
        .deadline(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(zero.to_string().contains("deadline"), "{zero}");
}

/// Display of an error and every source below it.
fn display_chain(error: &(dyn Error + 'static)) -> String {
    let mut text = String::new();
    let mut link = Some(error);
    while let Some(e) = link {
        text.push_str(&e.to_string());
        text.push('\n');
        link = e.source();
    }
    text
}

#[tokio::test(start_paused = true)]
async fn prompts_and_credentials_never_reach_logs_metrics_or_errors() {
    let recorder = DebuggingRecorder::new();
    let metrics = recorder.snapshotter();
    let _recorder = metrics::set_default_local_recorder(&recorder);
    let start = Instant::now();
    let (_front, _log, http) = front(start);
    let quota: Quota<Arc<str>> = Quota::new(Limit::per_minute().units(100_000).build().unwrap());
    let headroom = SdkHeadroom::builder(Profile::Bedrock)
        .retry(
            policy(start)
                .max_attempts(2)
                .deadline(Duration::from_secs(10))
                .build()
                .unwrap(),
        )
        .target(Target::new("canary-sonnet", Arc::<str>::from(SONNET)))
        .target(Target::new("canary-haiku", Arc::<str>::from(HAIKU)))
        .breaker(
            BreakerConfig::builder()
                .consecutive_failures(2)
                .build()
                .unwrap(),
        )
        .quota(quota)
        .build()
        .unwrap();
    let client = bedrock_client(&headroom, http);
    let mut errors = String::new();
    let logs = support::capture::captured(&["tower_headroom"], async {
        // Fallback, throttles (Haiku: 2 a minute), a server error, a fast failure.
        for model in [SONNET, SONNET, SONNET, DOWN, DOWN, DOWN] {
            if let Err(e) = converse(&client, model, 100).await {
                errors.push_str(&display_chain(&e));
            }
        }
    })
    .await;
    assert!(logs.contains("tower_headroom"), "the capture works: {logs}");
    assert!(
        logs.contains("canary-haiku"),
        "the fallback was logged: {logs}"
    );
    assert!(!errors.is_empty(), "some calls failed");
    let labels: String = metrics
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, ..)| format!("{:?}\n", key.key()))
        .collect();
    assert!(
        labels.contains("canary-sonnet"),
        "metrics were recorded: {labels}"
    );
    for secret in [
        "CANARY-PROMPT",
        support::sdk::ACCESS_KEY,
        support::sdk::SECRET_KEY,
    ] {
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
        assert!(!labels.contains(secret), "{secret} in a metric label");
        assert!(!errors.contains(secret), "{secret} in an error:\n{errors}");
    }
}

/// DynamoDB through the front to dynalite, on the real clock: costs from item sizes, usage from
/// `ConsumedCapacity` (asked for by the adapter and removed from what the caller sees), writes
/// paced by the table's quota so the table never throttles.
#[tokio::test]
async fn dynamodb_writes_are_paced_settled_and_stored() {
    use aws_sdk_dynamodb::types::{AttributeValue, ReturnConsumedCapacity};
    use tower_headroom::sim::front::Server;
    use tower_headroom::sim::{DynamoSim, TableConfig};

    let dynalite = support::dynalite::start();
    let direct = support::sdk::dynamodb(&dynalite.url());
    support::sdk::create_orders(&direct).await;
    let sim = DynamoSim::builder()
        .table(
            TableConfig::builder("orders")
                .rcu(100)
                .wcu(4)
                .partitions(1)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let front = SimService::builder()
        .dynamodb(sim)
        .dynamodb_upstream(dynalite.url())
        .build()
        .unwrap();
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), front.clone())
        .await
        .unwrap();

    let quota: Quota<Arc<str>> = Quota::new(Limit::per_second().units(4).build().unwrap());
    let headroom = SdkHeadroom::builder(Profile::DynamoDb)
        .quota(quota.clone())
        .build()
        .unwrap();
    let builder = aws_sdk_dynamodb::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_dynamodb::config::Region::from_static("us-east-1"))
        .endpoint_url(server.url())
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            support::sdk::ACCESS_KEY,
            support::sdk::SECRET_KEY,
            None,
            None,
            "test",
        ))
        .http_client(support::sdk::http_client());
    let client =
        aws_sdk_dynamodb::Client::from_conf(headroom.configure_dynamodb(builder).unwrap().build());

    let started = std::time::Instant::now();
    for i in 0..4 {
        // ~2 KB: two write units each, 8 in all against 4 a second.
        let put = client
            .put_item()
            .table_name("orders")
            .item("pk", AttributeValue::S(format!("order-{i}")))
            .item("note", AttributeValue::S("x".repeat(2000)))
            .send()
            .await
            .unwrap();
        assert!(
            put.consumed_capacity().is_none(),
            "the adapter's own ConsumedCapacity request is not shown to a caller who did not ask"
        );
    }
    let elapsed = started.elapsed();
    // A caller who asks still gets it.
    let asked = client
        .put_item()
        .table_name("orders")
        .item("pk", AttributeValue::S("order-asked".into()))
        .return_consumed_capacity(ReturnConsumedCapacity::Total)
        .send()
        .await
        .unwrap();
    assert_eq!(
        asked.consumed_capacity().unwrap().capacity_units(),
        Some(1.0)
    );

    // Paced by the quota: 8 units at 4 a second take more than a second, and the table
    // never throttled.
    assert!(elapsed >= Duration::from_millis(1_000), "{elapsed:?}");
    let stats = front.dynamodb().unwrap().stats();
    let table = &stats.tables[0];
    assert_eq!(table.writes.throttled_capacity, 0, "{table:?}");
    assert_eq!(table.writes.admitted, 5);
    // 2 + 2 + 2 + 2 + 1 write units, as the adapter estimated and ConsumedCapacity reported.
    assert_eq!(table.consumed_wcu(), 9.0);
    // The items are in dynalite.
    let got = direct
        .get_item()
        .table_name("orders")
        .key("pk", AttributeValue::S("order-3".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(got.item().unwrap()["note"].as_s().unwrap().len(), 2000);
    server.shutdown().await.unwrap();
}

/// `ConverseStream`: the reservation settles from the stream's `metadata` event as the caller
/// reads it; a stream dropped unread keeps what was reserved.
#[tokio::test(start_paused = true)]
async fn a_stream_settles_from_its_usage_event_or_keeps_the_estimate_when_dropped() {
    use aws_sdk_bedrockruntime::types::ConverseStreamOutput as Event;

    let start = Instant::now();
    let (front, _log, http) = front(start);
    let quota: Quota<Arc<str>> = Quota::new(Limit::per_minute().units(10_000).build().unwrap());
    let headroom = SdkHeadroom::builder(Profile::Bedrock)
        .retry(policy(start).build().unwrap())
        .quota(quota.clone())
        .build()
        .unwrap();
    let client = bedrock_client(&headroom, http);
    let stream = |max_tokens: i32| {
        client
            .converse_stream()
            .model_id(HAIKU)
            .messages(
                Message::builder()
                    .role(ConversationRole::User)
                    .content(ContentBlock::Text("x".repeat(400)))
                    .build()
                    .unwrap(),
            )
            .inference_config(
                InferenceConfiguration::builder()
                    .max_tokens(max_tokens)
                    .build(),
            )
            .send()
    };
    let key: Arc<str> = Arc::from(HAIKU);
    // What the minute's window holds.
    let held = |quota: &Quota<Arc<str>>| {
        quota
            .stats(&key, Instant::now())
            .and_then(|s| s.units_spent)
            .unwrap_or(0)
    };

    let mut output = stream(2_000).await.unwrap();
    let mut usage = None;
    while let Some(event) = output.stream.recv().await.unwrap() {
        if let Event::Metadata(metadata) = event {
            usage = metadata
                .usage()
                .map(|u| (u.input_tokens() + u.output_tokens()) as u64);
        }
    }
    let usage = usage.expect("a metadata event");
    assert_eq!(usage, 100 + 42);
    // Settled to 142 units, not the 2,100 reserved.
    assert_eq!(held(&quota), 142);

    // Dropped unread: the 100 + 2,000 reserved stay spent (a minute and a time slot later,
    // the first call has left the window).
    tokio::time::sleep(Duration::from_secs(61)).await;
    let output = stream(2_000).await.unwrap();
    drop(output);
    assert_eq!(held(&quota), 2_100);
    assert_eq!(
        front.bedrock().unwrap().stats().models[0].counts.admitted,
        2
    );
}

/// An attempt waits for admission in the HTTP client within the call's deadline, and never
/// longer than `MAX_ADMISSION_WAIT` (the request is signed before it waits): a longer wait is
/// answered at once, unsent, and the SDK retries when the quota has room, without spending the
/// retry budget; a wait past the call's deadline fails the call at once, unsent.
#[tokio::test(start_paused = true)]
async fn admission_waits_are_bounded_and_a_longer_wait_is_a_retry_not_a_request() {
    let start = Instant::now();
    let (_front, log, http) = front(start);
    // One request per ten minutes: the second call waits 600 s, past one attempt's 240 s.
    let quota: Quota<Arc<str>> = Quota::new(
        Limit::per_window(Duration::from_secs(600))
            .requests(1)
            .build()
            .unwrap(),
    );
    let headroom = SdkHeadroom::builder(Profile::Bedrock)
        .retry(policy(start).build().unwrap())
        .quota(quota.clone())
        .deadline(Duration::from_secs(15 * 60))
        .build()
        .unwrap();
    let client = bedrock_client(&headroom, http.clone());
    converse(&client, HAIKU, 10).await.unwrap();
    converse(&client, HAIKU, 10).await.unwrap();
    let sent = log.lock().unwrap().clone();
    assert_eq!(sent.len(), 2, "the shed attempt sent nothing: {sent:?}");
    let gap = sent[1].0 - sent[0].0;
    // Shed at once (600 s > 240 s), retried when the window has room (plus at most 10%).
    assert!(
        gap >= Duration::from_secs(600) && gap <= Duration::from_secs(661),
        "{gap:?}"
    );

    // A call whose deadline the wait would pass fails at once, and sends nothing.
    let impatient = SdkHeadroom::builder(Profile::Bedrock)
        .retry(policy(start).build().unwrap())
        .quota(quota)
        .deadline(Duration::from_secs(2))
        .build()
        .unwrap();
    let client = bedrock_client(&impatient, http);
    let before = Instant::now();
    assert!(converse(&client, HAIKU, 10).await.is_err());
    assert!(
        before.elapsed() < Duration::from_secs(1),
        "{:?}",
        before.elapsed()
    );
    assert_eq!(log.lock().unwrap().len(), 2);
}

/// One breaker registry behind a Tower stack and an SDK client: failures seen through the stack
/// open the breaker the SDK client then fails fast on, without a request.
#[tokio::test(start_paused = true)]
async fn a_tower_stack_and_an_sdk_client_share_their_breakers() {
    use tower::ServiceExt;
    use tower_headroom::StackBuilder;
    use tower_headroom::breaker::BreakerRegistry;
    use tower_headroom::retry::RetryPolicy;

    let start = Instant::now();
    let (_front, log, http) = front(start);
    let registry: BreakerRegistry<Arc<str>> = BreakerRegistry::builder(
        BreakerConfig::builder()
            .consecutive_failures(2)
            .open_for(Duration::from_secs(30))
            .build()
            .unwrap(),
    )
    .build()
    .unwrap();
    // The Tower stack's target is named after the model, as the SDK client's key is.
    let down = tower::service_fn(|_req: http::Request<String>| async {
        Ok::<_, tower_headroom::BoxError>(
            http::Response::builder().status(503).body(String::new())?,
        )
    });
    let stack = StackBuilder::http()
        .target(Target::new(DOWN, "llama"))
        .retry(RetryPolicy::builder().max_attempts(1).build().unwrap())
        .breaker_registry(registry.clone())
        .services(vec![down])
        .unwrap();
    for _ in 0..2 {
        let response = stack
            .clone()
            .oneshot(http::Request::new(String::new()))
            .await;
        assert!(response.map_or(true, |r| r.status() == 503));
    }
    let headroom = SdkHeadroom::builder(Profile::Bedrock)
        .retry(
            policy(start)
                .deadline(Duration::from_secs(10))
                .build()
                .unwrap(),
        )
        .breaker_registry(registry)
        .build()
        .unwrap();
    let client = bedrock_client(&headroom, http);
    let error = converse(&client, DOWN, 10).await.unwrap_err();
    assert!(tower_headroom::classify::find::<CircuitOpen>(&error).is_some());
    assert!(
        log.lock().unwrap().is_empty(),
        "the SDK client sent nothing"
    );
}

/// An overloaded model's 503 spends no tokens: the attempt it answers gives its whole
/// reservation back instead of keeping the estimate. (A 429 does too, but it also teaches the
/// quota a lower limit, which would hide the refund here.)
#[tokio::test(start_paused = true)]
async fn a_refused_attempt_gives_its_reservation_back() {
    let start = Instant::now();
    let (_front, log, http) = front(start);
    let quota: Quota<Arc<str>> = Quota::new(Limit::per_minute().units(60_000).build().unwrap());
    let headroom = SdkHeadroom::builder(Profile::Bedrock)
        .retry(policy(start).max_attempts(1).build().unwrap())
        .no_breakers()
        .quota(quota.clone())
        .build()
        .unwrap();
    let client = bedrock_client(&headroom, http);
    assert!(converse(&client, SONNET, 4_000).await.is_err());
    assert_eq!(log.lock().unwrap().len(), 1);
    // Paced at 1 ms a token, the refused attempt would hold ~4,100 tokens (4.1 s, less the
    // 100 ms it took) had it kept its estimate.
    let wait = quota
        .admit_wait(&Arc::from(SONNET), Cost::units(1), Instant::now())
        .unwrap();
    assert_eq!(wait, Duration::ZERO, "the 503 kept its estimate");
}

/// An attempt may wait for admission longer than the SDK's stalled-stream grace period (5 s),
/// with the SDK's defaults and its clock on virtual time: the request goes out when the quota
/// has room, not as a stalled upload.
#[tokio::test(start_paused = true)]
async fn a_long_admission_wait_is_not_a_stalled_upload() {
    let start = Instant::now();
    let (_front, log, http) = front(start);
    // Six requests a minute, paced: one every 10 s, waited for.
    let quota: Quota<Arc<str>> = Quota::new(
        Limit::per_minute()
            .requests(6)
            .burst(Duration::ZERO)
            .build()
            .unwrap(),
    );
    let headroom = SdkHeadroom::builder(Profile::Bedrock)
        .retry(policy(start).max_attempts(1).build().unwrap())
        .quota(quota)
        .build()
        .unwrap();
    let client = bedrock_client(&headroom, http);
    converse(&client, HAIKU, 10).await.unwrap();
    converse(&client, HAIKU, 10).await.unwrap();
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 2);
    let gap = log[1].0 - log[0].0;
    assert!(
        gap >= Duration::from_secs(9) && gap <= Duration::from_secs(10),
        "{gap:?}"
    );
}

/// The SDK's attempt timeout drops an attempt before the interceptor's after-attempt hook; the
/// policy still decides: a timed-out call is not retried when the policy says timeouts are not
/// retried (the model may have run it), and is retried when it says they are.
#[tokio::test(start_paused = true)]
async fn an_attempt_timeout_is_decided_by_the_policy() {
    use aws_sdk_bedrockruntime::config::timeout::TimeoutConfig;

    for retry_timeouts in [false, true] {
        let start = Instant::now();
        let (_front, log, http) = front(start);
        let headroom = SdkHeadroom::builder(Profile::Bedrock)
            .retry(
                policy(start)
                    .max_attempts(2)
                    .retry_timeouts(retry_timeouts)
                    .build()
                    .unwrap(),
            )
            .no_breakers()
            .build()
            .unwrap();
        let client = bedrock_client_with(&headroom, http, |builder| {
            builder.timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(1))
                    .build(),
            )
        });
        let error = converse(&client, SLOW, 10).await.unwrap_err();
        assert!(
            matches!(
                error,
                aws_sdk_bedrockruntime::error::SdkError::TimeoutError(_)
            ),
            "{error:?}"
        );
        let sent = log.lock().unwrap().len();
        assert_eq!(
            sent,
            if retry_timeouts { 2 } else { 1 },
            "retry_timeouts = {retry_timeouts}"
        );
    }
}

/// The adapter's own attempt timeout, scaled by the call's estimate as the Tower stack scales
/// it: a short call to a model slower than its timeout is abandoned and retried (the policy
/// retries timeouts), a call allowed more tokens waits long enough.
#[tokio::test(start_paused = true)]
async fn the_attempt_timeout_scales_with_the_calls_estimate() {
    use tower_headroom::timeout::AttemptTimeout;

    // A second, plus two milliseconds per estimated token.
    let timeout = AttemptTimeout::scaled(
        Duration::from_secs(1),
        Duration::from_millis(2),
        Duration::from_secs(60),
    )
    .unwrap();
    for (max_tokens, served) in [(10, false), (4_000, true)] {
        let start = Instant::now();
        let (_front, log, http) = front(start);
        let headroom = SdkHeadroom::builder(Profile::Bedrock)
            .retry(policy(start).max_attempts(2).build().unwrap())
            .attempt_timeout(timeout)
            .no_breakers()
            .build()
            .unwrap();
        let client = bedrock_client(&headroom, http);
        let result = converse(&client, SLOW, max_tokens).await;
        let sent = log.lock().unwrap().len();
        if served {
            // About 100 input tokens + 4,000: over eight seconds for a five-second model.
            assert!(result.is_ok(), "{result:?}");
            assert_eq!(sent, 1);
        } else {
            let error = result.unwrap_err();
            let source = std::error::Error::source(&error).map(|e| format!("{e:?}"));
            assert!(
                format!("{error:?}").contains("AttemptTimedOut"),
                "{error:?} / {source:?}"
            );
            assert_eq!(sent, 2, "the timed-out attempt was retried once");
            // Two attempts of about 1.2 s each, and the timeout backoff between them.
            let took = start.elapsed();
            assert!(took >= Duration::from_millis(2_400), "{took:?}");
            assert!(took < Duration::from_secs(5), "{took:?}");
        }
    }
}

/// The adapter's adaptive concurrency limit: with one slot for a slow model, a second call
/// made while the first is in flight fails at once, unsent, with `ConcurrencyLimited`; the
/// first completes and frees its slot.
#[tokio::test(start_paused = true)]
async fn a_full_concurrency_limit_sheds_the_attempt_unsent() {
    use tower_headroom::concurrency::{ConcurrencyConfig, ConcurrencyLimited};

    let start = Instant::now();
    let (_front, log, http) = front(start);
    let one = ConcurrencyConfig::builder()
        .initial_limit(1)
        .limits(1, 4)
        .build()
        .unwrap();
    let headroom = SdkHeadroom::builder(Profile::Bedrock)
        .retry(policy(start).build().unwrap())
        .concurrency(one)
        .no_breakers()
        .build()
        .unwrap();
    let client = bedrock_client(&headroom, http);
    let first = tokio::spawn({
        let client = client.clone();
        async move { converse(&client, SLOW, 10).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sent = Instant::now();
    let error = converse(&client, SLOW, 10).await.unwrap_err();
    assert_eq!(sent.elapsed(), Duration::ZERO, "shed at once");
    let limited = tower_headroom::classify::find::<ConcurrencyLimited>(&error)
        .unwrap_or_else(|| panic!("{error:?}"));
    assert_eq!((limited.limit, limited.in_flight), (1, 1));
    assert!(first.await.unwrap().is_ok());
    assert_eq!(log.lock().unwrap().len(), 1, "the shed call sent nothing");
}
