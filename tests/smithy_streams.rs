//! Bedrock's streaming operations through the real `aws-sdk-bedrockruntime` client configured
//! by `SdkHeadroom::configure_bedrock`, against the simulator's front (in process, paused
//! clock): `InvokeModelWithResponseStream` reserved and settled from its chunks, and errors
//! inside a stream after its `200` classified and reported to the quota, the breaker and the
//! metrics, while the caller still gets the SDK's typed stream error.
#![cfg(all(feature = "sim", feature = "bedrock", feature = "metrics"))]

mod support {
    pub mod capture;
    pub mod sdk;
}

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::error::{ConverseStreamOutputError, ResponseStreamError};
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, InferenceConfiguration, Message, ResponseStream,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tokio::time::Instant;
use tower_headroom::Profile;
use tower_headroom::admission::{Limit, Quota};
use tower_headroom::breaker::{BreakerConfig, BreakerRegistry, State};
use tower_headroom::sim::front::{SimService, sdk_http_client};
use tower_headroom::sim::{BedrockSim, ModelConfig, OutputLength};
use tower_headroom::smithy::SdkHeadroom;

/// Burndown 5 in the model table: output tokens count five times.
const SONNET4: &str = "us.anthropic.claude-sonnet-4-20250514-v1:0";
/// Not an Anthropic model (burndown 1): the front streams text chunks, usage only in
/// Bedrock's metrics.
const LLAMA: &str = "meta.llama3-70b-instruct-v1:0";
const LIMIT: u64 = 1_000_000;
const THROTTLE_MESSAGE: &str = "Too many tokens, please wait before trying again.";

/// A front serving `models` (42 output tokens each), whose streams break with `fault` if set.
fn front(fault: Option<&str>) -> SimService {
    front_with(fault, "The stream broke.")
}

fn front_with(fault: Option<&str>, other_message: &str) -> SimService {
    let model = |id: &str| {
        ModelConfig::builder(id, "us-east-1")
            .ttft(Duration::from_millis(100))
            .per_output_token(Duration::ZERO)
            .output(OutputLength::Fixed { tokens: 42 })
            .rpm(1_000)
            .tpm(10_000_000)
            .build()
            .unwrap()
    };
    let sim = BedrockSim::builder()
        .model(model(SONNET4))
        .model(model(LLAMA))
        .build()
        .unwrap();
    let mut builder = SimService::builder().bedrock(sim);
    if let Some(kind) = fault {
        let message = if kind.eq_ignore_ascii_case("throttlingException") {
            THROTTLE_MESSAGE
        } else {
            other_message
        };
        builder = builder.stream_exception(kind, message);
    }
    builder.build().unwrap()
}

struct Setup {
    client: aws_sdk_bedrockruntime::Client,
    quota: Quota<Arc<str>>,
    breakers: BreakerRegistry<Arc<str>>,
    front: SimService,
}

/// A client with a quota of `LIMIT` units a minute and a breaker per model that opens on its
/// first counted failure.
fn setup(fault: Option<&str>) -> Setup {
    setup_on(front(fault), true)
}

/// As [`setup`] on `front`; without `admission` the client has no quota (only breakers).
fn setup_on(front: SimService, admission: bool) -> Setup {
    use aws_sdk_bedrockruntime::config::{Credentials, Region};
    let quota: Quota<Arc<str>> = Quota::new(Limit::per_minute().units(LIMIT).build().unwrap());
    let breakers = BreakerRegistry::builder(
        BreakerConfig::builder()
            .consecutive_failures(1)
            .open_for(Duration::from_secs(30))
            .build()
            .unwrap(),
    )
    .build()
    .unwrap();
    let builder = SdkHeadroom::builder(Profile::Bedrock).breaker_registry(breakers.clone());
    let headroom = if admission {
        builder.quota(quota.clone()).build().unwrap()
    } else {
        builder.build().unwrap()
    };
    let builder = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version_latest()
        .region(Region::from_static("us-east-1"))
        .endpoint_url("http://bedrock.sim")
        .credentials_provider(Credentials::new(
            "AKIDSTREAMS",
            "secret",
            None,
            None,
            "test",
        ))
        .time_source(support::sdk::VirtualTime::now())
        .http_client(sdk_http_client(front.clone()));
    let config = headroom.configure_bedrock(builder).unwrap().build();
    Setup {
        client: aws_sdk_bedrockruntime::Client::from_conf(config),
        quota,
        breakers,
        front,
    }
}

impl Setup {
    /// What the minute's window holds for `model`.
    fn held(&self, model: &str) -> u64 {
        self.quota
            .stats(&Arc::from(model), Instant::now())
            .and_then(|s| s.units_spent)
            .unwrap_or(0)
    }

    /// The learned units limit of `model`.
    fn limit(&self, model: &str) -> u64 {
        self.quota
            .stats(&Arc::from(model), Instant::now())
            .and_then(|s| s.units_limit)
            .unwrap_or(LIMIT)
    }

    fn breaker(&self, model: &str) -> State {
        self.breakers
            .peek(&Arc::from(model))
            .expect("the call took the model's breaker")
            .state()
    }

    fn served(&self) -> u64 {
        let stats = self.front.bedrock().unwrap().stats();
        stats.models.iter().map(|m| m.counts.admitted).sum()
    }

    /// An InvokeModelWithResponseStream call: an Anthropic messages body of 400 characters
    /// of text and `max_tokens` 2,000.
    async fn invoke_stream(
        &self,
        model: &str,
    ) -> Result<
        aws_sdk_bedrockruntime::operation::invoke_model_with_response_stream::InvokeModelWithResponseStreamOutput,
        aws_sdk_bedrockruntime::error::SdkError<
            aws_sdk_bedrockruntime::operation::invoke_model_with_response_stream::InvokeModelWithResponseStreamError,
        >,
    >{
        let body = serde_json::json!({
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 2_000,
            "messages": [{ "role": "user", "content": "x".repeat(400) }],
        });
        self.client
            .invoke_model_with_response_stream()
            .model_id(model)
            .content_type("application/json")
            .body(Blob::new(serde_json::to_vec(&body).unwrap()))
            .send()
            .await
    }

    async fn converse_stream(
        &self,
        model: &str,
    ) -> aws_sdk_bedrockruntime::operation::converse_stream::ConverseStreamOutput {
        self.client
            .converse_stream()
            .model_id(model)
            .messages(
                Message::builder()
                    .role(ConversationRole::User)
                    .content(ContentBlock::Text("x".repeat(400)))
                    .build()
                    .unwrap(),
            )
            .inference_config(InferenceConfiguration::builder().max_tokens(2_000).build())
            .send()
            .await
            .expect("the stream starts with a 200")
    }
}

/// The decoded JSON of every chunk the caller received, until the stream ends.
async fn read_chunks(
    output: &mut aws_sdk_bedrockruntime::operation::invoke_model_with_response_stream::InvokeModelWithResponseStreamOutput,
) -> Vec<serde_json::Value> {
    let mut chunks = Vec::new();
    while let Some(event) = output.body.recv().await.expect("no stream error") {
        if let ResponseStream::Chunk(part) = event {
            let bytes = part.bytes().expect("chunk bytes").as_ref();
            chunks.push(serde_json::from_slice(bytes).expect("a JSON chunk"));
        }
    }
    chunks
}

/// The reservation is the input estimate plus `max_tokens` (as Bedrock reserves), held while the
/// stream is unread; reading it settles the window to the real counts with burndown (an
/// Anthropic model's stream, and another model's, whose usage is only in Bedrock's metrics).
#[tokio::test(start_paused = true)]
async fn invoke_model_with_response_stream_settles_to_the_real_count_with_burndown() {
    let setup = setup(None);
    // 400 characters of text plus the role "user": 404 characters, 101 tokens at 4 a token.
    let reserved = 101 + 2_000;

    let mut output = setup.invoke_stream(SONNET4).await.unwrap();
    assert_eq!(
        setup.held(SONNET4),
        reserved,
        "reserved until the stream says"
    );
    let chunks = read_chunks(&mut output).await;
    // The caller's chunks are untouched: the Anthropic events, the metrics last.
    assert_eq!(chunks.first().unwrap()["type"], "message_start");
    let metrics = &chunks.last().unwrap()["amazon-bedrock-invocationMetrics"];
    // The front counts 100 input tokens (the 400 characters of content) and 42 output.
    assert_eq!(metrics["inputTokenCount"], 100);
    assert_eq!(metrics["outputTokenCount"], 42);
    assert_eq!(setup.held(SONNET4), 100 + 42 * 5, "settled with burndown 5");

    // Another model, burndown 1: its metrics chunk settles it.
    let mut output = setup.invoke_stream(LLAMA).await.unwrap();
    let chunks = read_chunks(&mut output).await;
    assert!(chunks.first().unwrap().get("outputText").is_some());
    assert_eq!(setup.held(LLAMA), 100 + 42);
    assert_eq!(setup.served(), 2);
}

/// A stream dropped unread keeps its reservation, as a ConverseStream does.
#[tokio::test(start_paused = true)]
async fn an_invoke_stream_dropped_unread_keeps_its_reservation() {
    let setup = setup(None);
    let output = setup.invoke_stream(SONNET4).await.unwrap();
    drop(output);
    assert_eq!(setup.held(SONNET4), 101 + 2_000);
}

/// What one mid-stream exception must do.
struct Case {
    /// The `:exception-type` the front sends.
    kind: &'static str,
    /// The `class` label it is counted under.
    class: &'static str,
    /// Whether it counts for the model's breaker.
    breaker: bool,
    /// Whether it teaches the quota.
    teaches: bool,
}

const CASES: &[Case] = &[
    Case {
        kind: "throttlingException",
        class: "throttled_tokens",
        breaker: false,
        teaches: true,
    },
    Case {
        kind: "serviceUnavailableException",
        class: "unavailable",
        breaker: true,
        teaches: false,
    },
    Case {
        kind: "modelStreamErrorException",
        class: "transient",
        breaker: true,
        teaches: false,
    },
    Case {
        kind: "internalServerException",
        class: "transient",
        breaker: true,
        teaches: false,
    },
    Case {
        kind: "modelTimeoutException",
        class: "timeout",
        breaker: true,
        teaches: false,
    },
    Case {
        kind: "validationException",
        class: "fatal",
        breaker: false,
        teaches: false,
    },
    // Not Bedrock's spelling: the SDK no longer recognises it (the caller gets an unhandled
    // error with that code), the table still does.
    Case {
        kind: "THROTTLINGEXCEPTION",
        class: "throttled_tokens",
        breaker: false,
        teaches: true,
    },
];

/// Sum of counter `name` over the series whose labels include all of `labels`.
fn counter(recorder: &DebuggingRecorder, name: &str, labels: &[(&str, &str)]) -> u64 {
    recorder
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == name)
        .filter(|(key, ..)| {
            labels
                .iter()
                .all(|(k, v)| key.key().labels().any(|l| l.key() == *k && l.value() == *v))
        })
        .map(|(.., value)| match value {
            DebugValue::Counter(n) => n,
            _ => 0,
        })
        .sum()
}

/// Each exception type inside an InvokeModelWithResponseStream `200`: the caller's typed
/// error, the class counted, the quota taught by a throttle, the breaker opened by an
/// unavailable or broken model, nothing else.
#[tokio::test(start_paused = true)]
async fn each_mid_stream_exception_is_classified_and_reported_to_the_cores() {
    for case in CASES {
        let recorder = DebuggingRecorder::new();
        let _local = metrics::set_default_local_recorder(&recorder);
        let setup = setup(Some(case.kind));
        let mut output = setup.invoke_stream(SONNET4).await.unwrap();
        // The first chunk arrives, then the SDK's typed error.
        let first = output.body.recv().await.unwrap();
        assert!(
            matches!(first, Some(ResponseStream::Chunk(_))),
            "{}",
            case.kind
        );
        let error = output.body.recv().await.expect_err(case.kind);
        let service = error.as_service_error().expect("a service error");
        let typed = match case.kind {
            "throttlingException" => matches!(service, ResponseStreamError::ThrottlingException(_)),
            "serviceUnavailableException" => {
                matches!(service, ResponseStreamError::ServiceUnavailableException(_))
            }
            "modelStreamErrorException" => {
                matches!(service, ResponseStreamError::ModelStreamErrorException(_))
            }
            "internalServerException" => {
                matches!(service, ResponseStreamError::InternalServerException(_))
            }
            "modelTimeoutException" => {
                matches!(service, ResponseStreamError::ModelTimeoutException(_))
            }
            "validationException" => matches!(service, ResponseStreamError::ValidationException(_)),
            // Unknown to the SDK: an unhandled error with the exception's message.
            _ => {
                use aws_sdk_bedrockruntime::error::ProvideErrorMetadata;
                service.message() == Some(THROTTLE_MESSAGE)
                    && !matches!(service, ResponseStreamError::ThrottlingException(_))
            }
        };
        assert!(typed, "{}: the caller gets {service:?}", case.kind);

        let labels = [("model", SONNET4), ("class", case.class)];
        assert_eq!(
            counter(&recorder, "headroom_attempts_total", &labels),
            1,
            "{}: counted as {}",
            case.kind,
            case.class
        );
        assert_eq!(
            setup.limit(SONNET4) < LIMIT,
            case.teaches,
            "{}: the quota learned {}",
            case.kind,
            setup.limit(SONNET4)
        );
        // The estimate stays spent: the model ran until the error.
        assert_eq!(setup.held(SONNET4), 101 + 2_000, "{}", case.kind);
        let expected = if case.breaker {
            State::Open
        } else {
            State::Closed
        };
        assert_eq!(setup.breaker(SONNET4), expected, "{}", case.kind);
        if case.breaker {
            // The next call fails fast, unsent.
            assert!(setup.invoke_stream(SONNET4).await.is_err());
            assert_eq!(setup.served(), 1, "{}", case.kind);
        }
    }
}

/// ConverseStream's exceptions go the same way.
#[tokio::test(start_paused = true)]
async fn converse_stream_exceptions_are_classified_the_same_way() {
    use aws_sdk_bedrockruntime::types::ConverseStreamOutput as Event;

    let throttled = setup(Some("throttlingException"));
    let mut output = throttled.converse_stream(SONNET4).await;
    let error = loop {
        match output.stream.recv().await {
            Ok(Some(Event::Metadata(_))) => panic!("no usage after a throttle"),
            Ok(Some(_)) => {}
            Ok(None) => panic!("the stream ended without its error"),
            Err(error) => break error,
        }
    };
    assert!(matches!(
        error.as_service_error(),
        Some(ConverseStreamOutputError::ThrottlingException(_))
    ));
    assert!(
        throttled.limit(SONNET4) < LIMIT,
        "a mid-stream throttle teaches the quota"
    );
    assert_eq!(throttled.breaker(SONNET4), State::Closed);

    let unavailable = setup(Some("serviceUnavailableException"));
    let mut output = unavailable.converse_stream(SONNET4).await;
    let error = loop {
        match output.stream.recv().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the stream ended without its error"),
            Err(error) => break error,
        }
    };
    assert!(matches!(
        error.as_service_error(),
        Some(ConverseStreamOutputError::ServiceUnavailableException(_))
    ));
    assert_eq!(unavailable.limit(SONNET4), LIMIT);
    assert_eq!(unavailable.breaker(SONNET4), State::Open);
}

/// Neither the prompt, the completion, nor an exception's message reaches a log, a metric
/// label or an error of ours; the stream's end is logged by its class.
#[tokio::test(start_paused = true)]
async fn no_stream_text_reaches_logs_or_metric_labels() {
    const CANARY: &str = "CANARY-STREAM-7f3a";
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let setup = setup_on(
        front_with(
            Some("serviceUnavailableException"),
            &format!("{CANARY} the model said"),
        ),
        true,
    );
    let logs = support::capture::captured(&["tower_headroom"], async {
        let body = serde_json::json!({
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 100,
            "messages": [{ "role": "user", "content": CANARY }],
        });
        let mut output = setup
            .client
            .invoke_model_with_response_stream()
            .model_id(SONNET4)
            .body(Blob::new(serde_json::to_vec(&body).unwrap()))
            .send()
            .await
            .unwrap();
        while output.body.recv().await.is_ok_and(|event| event.is_some()) {}
    })
    .await;
    assert!(
        logs.contains("a streamed response failed after its 200") && logs.contains("unavailable"),
        "the stream's end is logged by its class: {logs}"
    );
    let labels: String = recorder
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, ..)| format!("{:?}\n", key.key()))
        .collect();
    assert!(labels.contains("unavailable"), "{labels}");
    for text in [CANARY, "sim sim", "serviceUnavailableException"] {
        assert!(!logs.contains(text), "{text} in the logs:\n{logs}");
        assert!(!labels.contains(text), "{text} in a metric label");
    }
}

/// A client without a quota still watches its streams: the breaker and the metrics hear a
/// mid-stream error.
#[tokio::test(start_paused = true)]
async fn without_a_quota_a_mid_stream_error_still_reaches_the_breaker_and_the_metrics() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let setup = setup_on(front(Some("modelTimeoutException")), false);
    let mut output = setup.invoke_stream(SONNET4).await.unwrap();
    let error = loop {
        match output.body.recv().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the stream ended without its error"),
            Err(error) => break error,
        }
    };
    assert!(matches!(
        error.as_service_error(),
        Some(ResponseStreamError::ModelTimeoutException(_))
    ));
    assert_eq!(setup.breaker(SONNET4), State::Open);
    let labels = [("model", SONNET4), ("class", "timeout")];
    assert_eq!(counter(&recorder, "headroom_attempts_total", &labels), 1);
    assert_eq!(setup.held(SONNET4), 0, "no quota, nothing held");
}

/// The tokens a stream's usage reports count in `headroom_tokens_total` as a non-streamed
/// answer's do: an InvokeModelWithResponseStream's metrics chunk and a ConverseStream's
/// `metadata` event, under the target that answered.
#[tokio::test(start_paused = true)]
async fn streamed_usage_counts_in_the_token_metric() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let setup = setup(None);
    // (input, output) counted since the last look: a snapshot takes the counts it reads.
    let tokens = || {
        let series = recorder.snapshotter().snapshot().into_vec();
        let count = |kind: &str| -> u64 {
            series
                .iter()
                .filter(|(key, ..)| key.key().name() == tower_headroom::observe::names::TOKENS)
                .filter(|(key, ..)| {
                    key.key()
                        .labels()
                        .any(|l| l.key() == "type" && l.value() == kind)
                })
                .map(|(.., value)| match value {
                    DebugValue::Counter(n) => *n,
                    _ => 0,
                })
                .sum()
        };
        (count("input"), count("output"))
    };

    let mut output = setup.invoke_stream(SONNET4).await.unwrap();
    assert_eq!(tokens(), (0, 0), "counted when the stream says");
    read_chunks(&mut output).await;
    // The front counts 100 input tokens and 42 output.
    assert_eq!(tokens(), (100, 42));

    let held = setup.held(SONNET4);
    let mut output = setup.converse_stream(SONNET4).await;
    while let Some(event) = output.stream.recv().await.expect("no stream error") {
        let _ = event;
    }
    let (input, out) = tokens();
    assert_eq!(out, 42);
    assert!(input > 0);
    // What the metric counts is what the window was settled to (burndown 5 on the output).
    assert_eq!(setup.held(SONNET4) - held, input + 5 * out);
}
