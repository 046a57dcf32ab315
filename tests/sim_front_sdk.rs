//! The real `aws-sdk-bedrockruntime` and `aws-sdk-dynamodb` clients against the simulator's
//! HTTP front on loopback, DynamoDB data stored in dynalite (started per test; a machine
//! without it fails with "run scripts/dynalite").
//!
//! Real sockets, so the real clock: the simulators are configured with millisecond latencies.
#![cfg(all(feature = "sim", feature = "smithy"))]

mod support {
    pub mod capture;
    pub mod dynalite;
    pub mod sdk;
}

use std::time::Duration;

use aws_sdk_bedrockruntime::error::ProvideErrorMetadata;
use aws_sdk_bedrockruntime::operation::converse::ConverseError;
use aws_sdk_bedrockruntime::operation::converse_stream::ConverseStreamError;
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, ConverseStreamOutput, InferenceConfiguration, Message,
    StopReason,
};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnConsumedCapacity};
use support::sdk::{ACCESS_KEY, SECRET_KEY};
use tower_headroom::sim::front::{Server, SimService};
use tower_headroom::sim::{BedrockSim, DynamoSim, Episode, ModelConfig, OutputLength, TableConfig};

const SONNET: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const PROFILE: &str = "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0";
const CANARY_PROMPT: &str = "CANARY-PROMPT-7f3a please summarise the secret plan";

fn model(id: &str, region: &str) -> tower_headroom::sim::ModelConfigBuilder {
    ModelConfig::builder(id, region)
        .ttft(Duration::from_millis(1))
        .per_output_token(Duration::ZERO)
        .output(OutputLength::Fixed { tokens: 42 })
}

fn bedrock_sim() -> BedrockSim {
    BedrockSim::builder()
        .model(
            model(HAIKU, "us-east-1")
                .rpm(2)
                .tpm(100_000)
                .build()
                .unwrap(),
        )
        .model(
            model(SONNET, "us-east-1")
                .rpm(100)
                .tpm(100_000)
                .overload(Episode::new(Duration::ZERO, Duration::from_secs(3600)))
                .build()
                .unwrap(),
        )
        .model(
            model(PROFILE, "us-west-2")
                .rpm(100)
                .tpm(100_000)
                .outage(Episode::new(Duration::ZERO, Duration::from_secs(3600)))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

fn message(text: &str) -> Message {
    Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text(text.to_owned()))
        .build()
        .unwrap()
}

async fn converse(
    client: &aws_sdk_bedrockruntime::Client,
    model: &str,
) -> Result<aws_sdk_bedrockruntime::operation::converse::ConverseOutput, ConverseError> {
    client
        .converse()
        .model_id(model)
        .messages(message(CANARY_PROMPT))
        .inference_config(InferenceConfiguration::builder().max_tokens(200).build())
        .send()
        .await
        .map_err(|e| e.into_service_error())
}

async fn converse_stream(
    client: &aws_sdk_bedrockruntime::Client,
    model: &str,
) -> Result<
    aws_sdk_bedrockruntime::operation::converse_stream::ConverseStreamOutput,
    ConverseStreamError,
> {
    client
        .converse_stream()
        .model_id(model)
        .messages(message(CANARY_PROMPT))
        .inference_config(InferenceConfiguration::builder().max_tokens(200).build())
        .send()
        .await
        .map_err(|e| e.into_service_error())
}

/// What a ConverseStream delivered, read with the SDK's own event receiver.
#[derive(Debug, Default)]
struct Streamed {
    /// Event kinds in arrival order, consecutive repeats (the deltas) collapsed.
    kinds: Vec<&'static str>,
    deltas: usize,
    text: String,
    stop: Option<StopReason>,
    usage: Option<aws_sdk_bedrockruntime::types::TokenUsage>,
    latency_ms: Option<i64>,
}

async fn read_stream(
    mut output: aws_sdk_bedrockruntime::operation::converse_stream::ConverseStreamOutput,
) -> Streamed {
    let mut streamed = Streamed::default();
    while let Some(event) = output.stream.recv().await.expect("a well-formed event") {
        let kind = match event {
            ConverseStreamOutput::MessageStart(start) => {
                assert_eq!(start.role(), &ConversationRole::Assistant);
                "messageStart"
            }
            ConverseStreamOutput::ContentBlockDelta(delta) => {
                assert_eq!(delta.content_block_index(), 0);
                streamed
                    .text
                    .push_str(delta.delta().unwrap().as_text().unwrap());
                streamed.deltas += 1;
                "contentBlockDelta"
            }
            ConverseStreamOutput::ContentBlockStop(stop) => {
                assert_eq!(stop.content_block_index(), 0);
                "contentBlockStop"
            }
            ConverseStreamOutput::MessageStop(stop) => {
                streamed.stop = Some(stop.stop_reason().clone());
                "messageStop"
            }
            ConverseStreamOutput::Metadata(metadata) => {
                streamed.usage = metadata.usage().cloned();
                streamed.latency_ms = metadata.metrics().map(|m| m.latency_ms());
                "metadata"
            }
            other => panic!("unexpected event {other:?}"),
        };
        if streamed.kinds.last() != Some(&kind) {
            streamed.kinds.push(kind);
        }
    }
    streamed
}

#[tokio::test]
async fn bedrock_converse_and_invoke_round_trip_and_errors_are_modeled() {
    let server = Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        SimService::builder()
            .bedrock(bedrock_sim())
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let east = support::sdk::bedrock(&server.url(), "us-east-1");
    let west = support::sdk::bedrock(&server.url(), "us-west-2");

    let logs = support::capture::captured(&["tower_headroom", "hyper", "hyper_util"], async {
        // Success: usage as Bedrock reports it.
        let output = converse(&east, HAIKU).await.unwrap();
        let usage = output.usage().unwrap();
        let expected_input = CANARY_PROMPT.chars().count().div_ceil(4) as i32;
        assert_eq!(usage.input_tokens(), expected_input);
        assert_eq!(usage.output_tokens(), 42);
        assert_eq!(usage.total_tokens(), expected_input + 42);
        assert_eq!(output.stop_reason().as_str(), "end_turn");
        assert!(output.metrics().is_some());
        let text = output.output().unwrap().as_message().unwrap().content()[0]
            .as_text()
            .unwrap();
        assert!(!text.is_empty());

        // InvokeModel with an Anthropic messages body.
        let body = serde_json::json!({
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": CANARY_PROMPT}],
        });
        let output = east
            .invoke_model()
            .model_id(HAIKU)
            .content_type("application/json")
            .body(Blob::new(body.to_string()))
            .send()
            .await
            .unwrap();
        let reply: serde_json::Value = serde_json::from_slice(output.body().as_ref()).unwrap();
        assert_eq!(reply["usage"]["input_tokens"], expected_input);
        assert_eq!(reply["usage"]["output_tokens"], 10);
        assert_eq!(reply["stop_reason"], "max_tokens");

        // Third call in the minute, over 2 RPM: a modeled ThrottlingException.
        match converse(&east, HAIKU).await.unwrap_err() {
            ConverseError::ThrottlingException(e) => {
                assert_eq!(
                    e.message(),
                    Some("Too many requests, please wait before trying again.")
                );
            }
            other => panic!("expected ThrottlingException, got {other:?}"),
        }

        // The overloaded model: ServiceUnavailableException with Bedrock's overload message.
        match converse(&east, SONNET).await.unwrap_err() {
            ConverseError::ServiceUnavailableException(e) => assert_eq!(
                e.message(),
                Some(
                    format!("Model {SONNET} is currently overloaded. Please try again later.")
                        .as_str()
                )
            ),
            other => panic!("expected ServiceUnavailableException, got {other:?}"),
        }

        // An inference profile ARN (':' and '/' in the path) in us-west-2, in an outage.
        match converse(&west, PROFILE).await.unwrap_err() {
            ConverseError::ServiceUnavailableException(e) => {
                assert_eq!(e.message(), Some("Service temporarily unavailable"));
            }
            other => panic!("expected ServiceUnavailableException, got {other:?}"),
        }

        // The region is the signature's: Haiku is not configured in us-west-2.
        let err = converse(&west, HAIKU).await.unwrap_err();
        assert!(
            matches!(err, ConverseError::ValidationException(_)),
            "{err:?}"
        );
        assert_eq!(err.code(), Some("ValidationException"));
    })
    .await;

    assert!(
        logs.contains("sim front"),
        "the front logged nothing: {logs}"
    );
    for secret in [ACCESS_KEY, SECRET_KEY, "CANARY-PROMPT", "Signature="] {
        assert!(
            !logs.contains(secret),
            "{secret} leaked into the logs:\n{logs}"
        );
    }
    server.shutdown().await.unwrap();
}

fn dynamo_front(store: &str) -> SimService {
    let sim = DynamoSim::builder()
        .table(
            TableConfig::builder("orders")
                .rcu(100)
                .wcu(5)
                .partitions(1)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    SimService::builder()
        .dynamodb(sim)
        .dynamodb_upstream(store)
        .build()
        .unwrap()
}

#[tokio::test]
async fn dynamodb_items_are_stored_in_dynalite_and_throttles_are_modeled() {
    let dynalite = support::dynalite::start();
    let front = dynamo_front(&dynalite.url());
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), front.clone())
        .await
        .unwrap();
    let client = support::sdk::dynamodb(&server.url());

    let logs = support::capture::captured(&["tower_headroom", "hyper", "hyper_util"], async {
        support::sdk::create_orders(&client).await;

        // A 2 KB item: two write units, as ConsumedCapacity reports.
        let put = client
            .put_item()
            .table_name("orders")
            .item("pk", AttributeValue::S("order-1".into()))
            .item("note", AttributeValue::S("x".repeat(2000)))
            .item("qty", AttributeValue::N("3".into()))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .unwrap();
        assert_eq!(put.consumed_capacity().unwrap().capacity_units(), Some(2.0));

        // Read back from dynalite through the front.
        let got = client
            .get_item()
            .table_name("orders")
            .key("pk", AttributeValue::S("order-1".into()))
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .unwrap();
        let item = got.item().unwrap();
        assert_eq!(item["qty"], AttributeValue::N("3".into()));
        assert_eq!(item["note"].as_s().unwrap().len(), 2000);
        assert_eq!(got.consumed_capacity().unwrap().capacity_units(), Some(1.0));

        // And directly from dynalite: the data really is stored there.
        let direct = support::sdk::dynamodb(&dynalite.url());
        let got = direct
            .get_item()
            .table_name("orders")
            .key("pk", AttributeValue::S("order-1".into()))
            .send()
            .await
            .unwrap();
        assert_eq!(got.item().unwrap()["qty"], AttributeValue::N("3".into()));

        // A 20 KB item takes the 5 WCU/s table deep into debt; the next write is throttled.
        client
            .put_item()
            .table_name("orders")
            .item("pk", AttributeValue::S("order-2".into()))
            .item("note", AttributeValue::S("y".repeat(20_000)))
            .send()
            .await
            .unwrap();
        let err = client
            .put_item()
            .table_name("orders")
            .item("pk", AttributeValue::S("order-3".into()))
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        match err {
            PutItemError::ProvisionedThroughputExceededException(e) => assert_eq!(
                e.message(),
                Some(
                    "The level of configured provisioned throughput for the table was exceeded. \
                     Consider increasing your provisioning level with the UpdateTable API."
                )
            ),
            other => panic!("expected ProvisionedThroughputExceededException, got {other:?}"),
        }
        // The throttled item never reached the store.
        let got = direct
            .get_item()
            .table_name("orders")
            .key("pk", AttributeValue::S("order-3".into()))
            .send()
            .await
            .unwrap();
        assert!(got.item().is_none());

        // Pass-through operations answer from the store.
        let tables = client.list_tables().send().await.unwrap();
        assert_eq!(tables.table_names(), ["orders"]);
    })
    .await;

    let stats = front.dynamodb().unwrap().stats();
    assert_eq!(stats.tables[0].writes.throttled_capacity, 1);
    assert_eq!(stats.tables[0].writes.admitted, 2);
    for secret in [ACCESS_KEY, SECRET_KEY, "Signature="] {
        assert!(
            !logs.contains(secret),
            "{secret} leaked into the logs:\n{logs}"
        );
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_front_learns_the_partition_key_of_an_existing_table_from_the_store() {
    let dynalite = support::dynalite::start();
    // The table is created behind the front's back, directly in the store.
    support::sdk::create_orders(&support::sdk::dynamodb(&dynalite.url())).await;
    let server = Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        dynamo_front(&dynalite.url()),
    )
    .await
    .unwrap();
    let client = support::sdk::dynamodb(&server.url());
    client
        .put_item()
        .table_name("orders")
        .item("pk", AttributeValue::S("k".into()))
        .send()
        .await
        .unwrap();
    let got = client
        .get_item()
        .table_name("orders")
        .key("pk", AttributeValue::S("k".into()))
        .send()
        .await
        .unwrap();
    assert!(got.item().is_some());
    server.shutdown().await.unwrap();
}

/// No socket at all: the SDK's requests handed to the front in process, on the paused clock —
/// the simulator's latency model is virtual time, and a throttle is still the modeled error.
#[tokio::test(start_paused = true)]
async fn the_sdk_runs_in_process_on_virtual_time() {
    let sim = BedrockSim::builder()
        .model(
            ModelConfig::builder(HAIKU, "us-east-1")
                .rpm(1)
                .tpm(100_000)
                .ttft(Duration::from_millis(400))
                .per_output_token(Duration::from_millis(10))
                .output(OutputLength::Fixed { tokens: 100 })
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let front = SimService::builder().bedrock(sim).build().unwrap();
    let client = support::sdk::bedrock_with(
        "http://simulator.invalid",
        "us-east-1",
        tower_headroom::sim::front::sdk_http_client(front.clone()),
    );
    let started = tokio::time::Instant::now();
    let output = converse(&client, HAIKU).await.unwrap();
    assert_eq!(output.usage().unwrap().output_tokens(), 100);
    // 400 ms to the first token + 100 x 10 ms, all virtual.
    assert_eq!(started.elapsed(), Duration::from_millis(1400));
    assert!(matches!(
        converse(&client, HAIKU).await.unwrap_err(),
        ConverseError::ThrottlingException(_)
    ));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(converse(&client, HAIKU).await.is_ok());
    let stats = front.bedrock().unwrap().stats();
    assert_eq!(stats.models[0].counts.admitted, 2);
    assert_eq!(stats.models[0].counts.throttled_requests, 1);
}

/// ConverseStream over loopback with the real SDK: the SDK's event receiver decodes every
/// frame, the usage in `metadata` is what the simulator settled, and a throttle before the
/// stream is the typed `ThrottlingException`.
#[tokio::test]
async fn bedrock_converse_stream_delivers_every_event_and_throttles_are_modeled() {
    let sim = BedrockSim::builder()
        .model(
            model(HAIKU, "us-east-1")
                .rpm(1)
                .tpm(100_000)
                .build()
                .unwrap(),
        )
        .model(
            model(SONNET, "us-east-1")
                .rpm(100)
                .tpm(100_000)
                .overload(Episode::new(Duration::ZERO, Duration::from_secs(3600)))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let front = SimService::builder().bedrock(sim).build().unwrap();
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), front.clone())
        .await
        .unwrap();
    let client = support::sdk::bedrock(&server.url(), "us-east-1");

    let logs = support::capture::captured(&["tower_headroom", "hyper", "hyper_util"], async {
        let output = converse_stream(&client, HAIKU).await.unwrap();
        let streamed = read_stream(output).await;
        assert_eq!(
            streamed.kinds,
            [
                "messageStart",
                "contentBlockDelta",
                "contentBlockStop",
                "messageStop",
                "metadata"
            ]
        );
        // 42 tokens of text in more than one delta.
        assert!(streamed.deltas > 1, "{streamed:?}");
        assert!(!streamed.text.is_empty());
        assert_eq!(streamed.stop, Some(StopReason::EndTurn));
        assert!(streamed.latency_ms.is_some());

        let usage = streamed.usage.expect("metadata carries usage");
        let stats = front.bedrock().unwrap().stats();
        let haiku = stats.model(HAIKU, "us-east-1").unwrap();
        assert_eq!(haiku.counts.completed, 1);
        assert_eq!(i64::from(usage.input_tokens()), haiku.input_tokens as i64);
        assert_eq!(i64::from(usage.output_tokens()), haiku.output_tokens as i64);
        assert_eq!(
            usage.input_tokens(),
            CANARY_PROMPT.chars().count().div_ceil(4) as i32
        );
        assert_eq!(usage.output_tokens(), 42);
        assert_eq!(
            usage.total_tokens(),
            usage.input_tokens() + usage.output_tokens()
        );

        // Second call in the minute, over 1 RPM: the typed throttle, before any stream.
        match converse_stream(&client, HAIKU).await.unwrap_err() {
            ConverseStreamError::ThrottlingException(e) => assert_eq!(
                e.message(),
                Some("Too many requests, please wait before trying again.")
            ),
            other => panic!("expected ThrottlingException, got {other:?}"),
        }
        // The overloaded model: the same ServiceUnavailableException as Converse.
        match converse_stream(&client, SONNET).await.unwrap_err() {
            ConverseStreamError::ServiceUnavailableException(e) => assert_eq!(
                e.message(),
                Some(
                    format!("Model {SONNET} is currently overloaded. Please try again later.")
                        .as_str()
                )
            ),
            other => panic!("expected ServiceUnavailableException, got {other:?}"),
        }
    })
    .await;

    let stats = front.bedrock().unwrap().stats();
    let haiku = stats.model(HAIKU, "us-east-1").unwrap();
    assert_eq!(haiku.counts.admitted, 1);
    assert_eq!(haiku.counts.throttled_requests, 1);
    assert!(logs.contains("ConverseStream"), "{logs}");
    for secret in [ACCESS_KEY, SECRET_KEY, "CANARY-PROMPT", "Signature="] {
        assert!(
            !logs.contains(secret),
            "{secret} leaked into the logs:\n{logs}"
        );
    }
    server.shutdown().await.unwrap();
}

/// In process on virtual time: the stream arrives once the latency model's time has passed,
/// and its usage settles the quota as Converse's does.
#[tokio::test(start_paused = true)]
async fn converse_stream_runs_in_process_on_virtual_time() {
    let sim = BedrockSim::builder()
        .model(
            ModelConfig::builder(HAIKU, "us-east-1")
                .rpm(10)
                .tpm(100_000)
                .ttft(Duration::from_millis(400))
                .per_output_token(Duration::from_millis(10))
                .output(OutputLength::Fixed { tokens: 100 })
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let front = SimService::builder().bedrock(sim).build().unwrap();
    let client = support::sdk::bedrock_with(
        "http://simulator.invalid",
        "us-east-1",
        tower_headroom::sim::front::sdk_http_client(front.clone()),
    );
    let started = tokio::time::Instant::now();
    let streamed = read_stream(converse_stream(&client, HAIKU).await.unwrap()).await;
    assert_eq!(started.elapsed(), Duration::from_millis(1400));
    assert_eq!(streamed.latency_ms, Some(1400));
    let usage = streamed.usage.unwrap();
    assert_eq!(usage.output_tokens(), 100);
    assert_eq!(streamed.text.len(), 400);
    let stats = front.bedrock().unwrap().stats();
    let haiku = stats.model(HAIKU, "us-east-1").unwrap();
    assert_eq!(
        haiku.tokens_settled,
        (usage.input_tokens() + usage.output_tokens()) as u64
    );
}
