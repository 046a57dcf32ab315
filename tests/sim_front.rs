//! The simulator's HTTP front in process (no sockets), on tokio's paused clock: the wire shapes
//! of successes and errors, and bad input.
#![cfg(feature = "sim")]

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::{Service, ServiceExt};
use tower_headroom::classify::aws;
use tower_headroom::sim::front::{SimFile, SimService};
use tower_headroom::sim::{
    BedrockSim, CapacityModel, DynamoSim, Episode, ModelConfig, OutputLength, SimError, TableConfig,
};
use tower_headroom::{OutcomeKind, ThrottleScope};

const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const HAIKU_PATH: &str = "anthropic.claude-3-haiku-20240307-v1%3A0";

fn model(region: &str) -> tower_headroom::sim::ModelConfigBuilder {
    ModelConfig::builder(HAIKU, region)
        .ttft(Duration::from_millis(200))
        .per_output_token(Duration::from_millis(10))
        .output(OutputLength::Fixed { tokens: 50 })
}

fn front(models: Vec<ModelConfig>) -> SimService {
    let bedrock = BedrockSim::builder()
        .models(models)
        .seed(1)
        .build()
        .unwrap();
    SimService::builder().bedrock(bedrock).build().unwrap()
}

fn converse(path_model: &str, body: Value) -> Request<Full<Bytes>> {
    Request::post(format!("/model/{path_model}/converse"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn hello(max_tokens: u64) -> Value {
    // 40 characters of text: 10 estimated tokens.
    json!({
        "messages": [{"role": "user", "content": [{"text": "0123456789012345678901234567890123456789"}]}],
        "inferenceConfig": {"maxTokens": max_tokens},
    })
}

async fn send(front: &mut SimService, request: Request<Full<Bytes>>) -> Response<Full<Bytes>> {
    ServiceExt::<Request<Full<Bytes>>>::ready(front)
        .await
        .unwrap()
        .call(request)
        .await
        .unwrap()
}

async fn json_of(response: Response<Full<Bytes>>) -> Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

/// The code, message and status a client sees, classified as the AWS SDK adapters will.
async fn classify(response: Response<Full<Bytes>>) -> (OutcomeKind, String, String) {
    let status = response.status().as_u16();
    let code = response.headers()["x-amzn-errortype"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = json_of(response).await;
    let message = body["message"].as_str().unwrap().to_owned();
    let kind = aws::classify_with_status(&code, Some(&message), status);
    (kind, code, message)
}

#[tokio::test(start_paused = true)]
async fn converse_round_trips_usage_and_the_latency_model() {
    let mut front = front(vec![
        model("us-east-1").rpm(10).tpm(100_000).build().unwrap(),
    ]);
    let started = tokio::time::Instant::now();
    let response = send(&mut front, converse(HAIKU_PATH, hello(100))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = json_of(response).await;
    assert_eq!(
        body["usage"],
        json!({"inputTokens": 10, "outputTokens": 50, "totalTokens": 60})
    );
    assert_eq!(body["stopReason"], "end_turn");
    assert_eq!(body["output"]["message"]["role"], "assistant");
    // ttft + 50 tokens x 10 ms, on the paused clock.
    assert_eq!(body["metrics"]["latencyMs"], 700);
    assert_eq!(started.elapsed(), Duration::from_millis(700));

    // A cap below the output length stops at the cap.
    let body = json_of(send(&mut front, converse(HAIKU_PATH, hello(20))).await).await;
    assert_eq!(body["usage"]["outputTokens"], 20);
    assert_eq!(body["stopReason"], "max_tokens");
}

#[tokio::test(start_paused = true)]
async fn invoke_model_speaks_the_anthropic_messages_body() {
    let mut front = front(vec![
        model("us-east-1").rpm(10).tpm(100_000).build().unwrap(),
    ]);
    let request = Request::post(format!("/model/{HAIKU_PATH}/invoke"))
        .body(Full::new(Bytes::from(
            json!({
                "anthropic_version": "bedrock-2023-05-31",
                "max_tokens": 30,
                "system": "You are terse.",
                "messages": [{"role": "user", "content": "Say hi in two words."}],
            })
            .to_string(),
        )))
        .unwrap();
    let response = send(&mut front, request).await;
    assert_eq!(response.status(), 200);
    // 14 + 20 characters: 9 tokens.
    assert_eq!(response.headers()["x-amzn-bedrock-input-token-count"], "9");
    assert_eq!(
        response.headers()["x-amzn-bedrock-output-token-count"],
        "30"
    );
    let body = json_of(response).await;
    assert_eq!(
        body["usage"],
        json!({"input_tokens": 9, "output_tokens": 30})
    );
    assert_eq!(body["stop_reason"], "max_tokens");
    assert_eq!(body["type"], "message");
    assert_eq!(body["model"], HAIKU);
}

#[tokio::test(start_paused = true)]
async fn throttles_are_bedrocks_429s_with_the_scope_in_the_message() {
    let mut front = front(vec![
        model("us-east-1")
            .rpm(2)
            .tpm(1_000)
            .max_output_tokens(1_000)
            .build()
            .unwrap(),
    ]);
    assert_eq!(
        send(&mut front, converse(HAIKU_PATH, hello(100)))
            .await
            .status(),
        200
    );

    // The first call settled at 10 + 50 tokens: 10 + 950 more is over 1,000 TPM.
    let response = send(&mut front, converse(HAIKU_PATH, hello(950))).await;
    assert_eq!(response.status(), 429);
    let (kind, code, message) = classify(response).await;
    assert_eq!(code, "ThrottlingException");
    assert_eq!(message, "Too many tokens, please wait before trying again.");
    assert_eq!(kind, OutcomeKind::Throttled(ThrottleScope::Tokens));

    assert_eq!(
        send(&mut front, converse(HAIKU_PATH, hello(100)))
            .await
            .status(),
        200
    );
    let (kind, _, message) =
        classify(send(&mut front, converse(HAIKU_PATH, hello(100))).await).await;
    assert_eq!(
        message,
        "Too many requests, please wait before trying again."
    );
    assert_eq!(kind, OutcomeKind::Throttled(ThrottleScope::Requests));

    // The next window has room again.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        send(&mut front, converse(HAIKU_PATH, hello(100)))
            .await
            .status(),
        200
    );
}

#[tokio::test(start_paused = true)]
async fn overload_and_outage_answers_classify_as_intended() {
    let config = model("us-east-1")
        .rpm(100)
        .tpm(1_000_000)
        .overload(Episode::new(Duration::ZERO, Duration::from_secs(60)))
        .outage(Episode::new(
            Duration::from_secs(60),
            Duration::from_secs(60),
        ))
        .build()
        .unwrap();
    let mut front = front(vec![config]);
    let response = send(&mut front, converse(HAIKU_PATH, hello(100))).await;
    assert_eq!(response.status(), 503);
    let (kind, code, message) = classify(response).await;
    assert_eq!(code, "ServiceUnavailableException");
    assert_eq!(
        message,
        format!("Model {HAIKU} is currently overloaded. Please try again later.")
    );
    assert_eq!(kind, OutcomeKind::Overloaded);

    tokio::time::sleep(Duration::from_secs(60)).await;
    let (kind, code, message) =
        classify(send(&mut front, converse(HAIKU_PATH, hello(100))).await).await;
    assert_eq!(
        (code.as_str(), message.as_str()),
        (
            "ServiceUnavailableException",
            "Service temporarily unavailable"
        )
    );
    assert_eq!(kind, OutcomeKind::Unavailable);
}

#[tokio::test(start_paused = true)]
async fn wire_errors_carry_exactly_what_the_core_said() {
    // Every rejection the core can produce for a model, through the wire and back.
    let mut front = front(vec![
        model("us-east-1")
            .rpm(1)
            .tpm(10_000)
            .max_concurrency(1)
            .build()
            .unwrap(),
    ]);
    let direct = BedrockSim::builder()
        .model(model("us-east-1").rpm(1).tpm(10_000).build().unwrap())
        .build()
        .unwrap();
    let _ = send(&mut front, converse(HAIKU_PATH, hello(100))).await;
    let mut sim = direct.clone();
    let call = || tower_headroom::sim::ModelCall::new(HAIKU, "us-east-1", 10, 100);
    let _ = sim.ready().await.unwrap().call(call()).await;
    let expected: SimError = sim.ready().await.unwrap().call(call()).await.unwrap_err();
    let response = send(&mut front, converse(HAIKU_PATH, hello(100))).await;
    assert_eq!(response.status(), expected.status());
    let (kind, code, message) = classify(response).await;
    assert_eq!(code, expected.code());
    assert_eq!(message, expected.message());
    assert_eq!(kind, expected.outcome().kind);
}

#[tokio::test(start_paused = true)]
async fn the_region_comes_from_the_signature_scope() {
    let mut front = front(vec![
        model("us-east-1").rpm(1).tpm(100_000).build().unwrap(),
        model("eu-west-3").rpm(1).tpm(100_000).build().unwrap(),
    ]);
    let signed = |region: &str| {
        let mut request = converse(HAIKU_PATH, hello(100));
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/{region}/bedrock/aws4_request, SignedHeaders=host, Signature=00"
        );
        request
            .headers_mut()
            .insert("authorization", auth.parse().unwrap());
        request
    };
    assert_eq!(send(&mut front, signed("eu-west-3")).await.status(), 200);
    // us-east-1 (also the default region) still has its own quota.
    assert_eq!(
        send(&mut front, converse(HAIKU_PATH, hello(100)))
            .await
            .status(),
        200
    );
    assert_eq!(send(&mut front, signed("eu-west-3")).await.status(), 429);
    // A region with no such model is a validation error, as Bedrock answers an unknown id.
    let response = send(&mut front, signed("ap-south-1")).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["x-amzn-errortype"],
        "ValidationException"
    );
}

#[tokio::test(start_paused = true)]
async fn bad_bedrock_input_gets_aws_400s() {
    let mut front = SimService::builder()
        .bedrock(
            BedrockSim::builder()
                .model(model("us-east-1").rpm(100).tpm(100_000).build().unwrap())
                .build()
                .unwrap(),
        )
        .max_body_bytes(1024)
        .build()
        .unwrap();
    let raw = |path: &str, body: &'static [u8]| {
        Request::post(path.to_owned())
            .body(Full::new(Bytes::from_static(body)))
            .unwrap()
    };
    let cases = [
        (
            raw(&format!("/model/{HAIKU_PATH}/converse"), b"{not json"),
            "SerializationException",
        ),
        (
            raw(&format!("/model/{HAIKU_PATH}/converse"), b"{}"),
            "ValidationException",
        ),
        (
            raw(&format!("/model/{HAIKU_PATH}/invoke"), b"{\"messages\":[]}"),
            "ValidationException",
        ),
        // ConverseStream is served: its body is checked as Converse's.
        (
            raw("/model/x/converse-stream", b"{}"),
            "ValidationException",
        ),
        // Served now, and an Anthropic body needs `max_tokens`.
        (
            raw("/model/x/invoke-with-response-stream", b"{}"),
            "ValidationException",
        ),
        (
            raw("/model/x/invoke-stream", b"{}"),
            "UnknownOperationException",
        ),
        (raw("/nowhere", b"{}"), "UnknownOperationException"),
        (
            raw(&format!("/model/{HAIKU_PATH}/converse"), &[b'x'; 2048]),
            "ValidationException",
        ),
        (
            Request::get(format!("/model/{HAIKU_PATH}/converse"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
            "UnknownOperationException",
        ),
        // A maxTokens over the model's limit: the core's own validation.
        (
            converse(HAIKU_PATH, hello(1_000_000)),
            "ValidationException",
        ),
    ];
    for (request, expected) in cases {
        let response = send(&mut front, request).await;
        assert_eq!(response.status(), 400, "{expected}");
        assert_eq!(response.headers()["x-amzn-errortype"], expected);
        assert!(json_of(response).await["message"].is_string());
    }
}

/// A front over a table split evenly over two partitions (DynamoDB before adaptive capacity:
/// a key's partition throttles at 1 WCU/s); adaptive capacity is in `sim_front_dynamodb.rs`.
fn dynamo_front() -> SimService {
    let sim = DynamoSim::builder()
        .table(
            TableConfig::builder("orders")
                .rcu(10)
                .wcu(2)
                .partitions(2)
                .capacity_model(CapacityModel::EvenSplit)
                .latency(Duration::from_millis(5))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    SimService::builder()
        .dynamodb(sim)
        .partition_key("orders", "pk")
        .build()
        .unwrap()
}

fn dynamo(op: &str, body: Value) -> Request<Full<Bytes>> {
    Request::post("/")
        .header("x-amz-target", format!("DynamoDB_20120810.{op}"))
        .header("content-type", "application/x-amz-json-1.0")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn put(key: &str, payload_bytes: usize) -> Request<Full<Bytes>> {
    dynamo(
        "PutItem",
        json!({
            "TableName": "orders",
            "Item": {"pk": {"S": key}, "data": {"S": "x".repeat(payload_bytes)}},
            "ReturnConsumedCapacity": "TOTAL",
        }),
    )
}

#[tokio::test(start_paused = true)]
async fn dynamodb_writes_are_charged_and_report_consumed_capacity() {
    let mut front = dynamo_front();
    // 2 + 1 + 4 + 2000 bytes: two write units.
    let response = send(&mut front, put("a", 2000)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/x-amz-json-1.0"
    );
    let body = json_of(response).await;
    assert_eq!(body["ConsumedCapacity"]["TableName"], "orders");
    assert_eq!(body["ConsumedCapacity"]["CapacityUnits"], 2.0);

    // The key's partition (1 WCU/s) is now in debt: the next write to it is throttled ...
    let response = send(&mut front, put("a", 10)).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["content-type"],
        "application/x-amz-json-1.0"
    );
    let body = json_of(response).await;
    assert_eq!(
        body["__type"],
        "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"
    );
    let kind = aws::classify(body["__type"].as_str().unwrap(), body["message"].as_str());
    assert_eq!(kind, OutcomeKind::Throttled(ThrottleScope::Capacity));
    let stats = front.dynamodb().unwrap().stats();
    assert_eq!(stats.tables[0].writes.throttled_capacity, 1);

    // ... and admitted again once the debt is paid.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(send(&mut front, put("a", 10)).await.status(), 200);
}

#[tokio::test(start_paused = true)]
async fn dynamodb_batch_writes_return_throttled_items_unprocessed() {
    let mut front = dynamo_front();
    let hot = front
        .dynamodb()
        .unwrap()
        .partition("orders", "hot")
        .unwrap();
    let cold = (0..100)
        .map(|i| format!("k{i}"))
        .find(|k| front.dynamodb().unwrap().partition("orders", k).unwrap() != hot)
        .unwrap();
    let item = |key: &str| json!({"PutRequest": {"Item": {"pk": {"S": key}, "v": {"S": "x".repeat(1500)}}}});
    // Two 2-unit writes to the hot key's 1 WCU/s partition: the first is admitted into debt,
    // the second throttled; the cold key's write goes through.
    let request = dynamo(
        "BatchWriteItem",
        json!({
            "RequestItems": {"orders": [item("hot"), item("hot"), item(&cold)]},
            "ReturnConsumedCapacity": "TOTAL",
        }),
    );
    let body = json_of(send(&mut front, request).await).await;
    let unprocessed = body["UnprocessedItems"]["orders"].as_array().unwrap();
    assert_eq!(unprocessed.len(), 1);
    assert_eq!(unprocessed[0]["PutRequest"]["Item"]["pk"]["S"], "hot");
    assert_eq!(body["ConsumedCapacity"][0]["CapacityUnits"], 4.0);

    // When every item is throttled, the whole call fails.
    let request = dynamo(
        "BatchWriteItem",
        json!({"RequestItems": {"orders": [item("hot")]}}),
    );
    let response = send(&mut front, request).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        json_of(response).await["__type"],
        "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"
    );
}

#[tokio::test(start_paused = true)]
async fn dynamodb_reads_without_a_store_are_charged_minimum_units() {
    let mut front = dynamo_front();
    let get = |consistent: bool| {
        dynamo(
            "GetItem",
            json!({"TableName": "orders", "Key": {"pk": {"S": "a"}}, "ConsistentRead": consistent,
                   "ReturnConsumedCapacity": "INDEXES"}),
        )
    };
    let body = json_of(send(&mut front, get(false)).await).await;
    assert_eq!(body["ConsumedCapacity"]["CapacityUnits"], 0.5);
    assert_eq!(body["ConsumedCapacity"]["Table"]["CapacityUnits"], 0.5);
    let body = json_of(send(&mut front, get(true)).await).await;
    assert_eq!(body["ConsumedCapacity"]["ReadCapacityUnits"], 1.0);
}

#[tokio::test(start_paused = true)]
async fn bad_dynamodb_input_gets_aws_json_400s() {
    let mut front = dynamo_front();
    let raw = |target: &str, body: &'static [u8]| {
        Request::post("/")
            .header("x-amz-target", target)
            .body(Full::new(Bytes::from_static(body)))
            .unwrap()
    };
    let cases = [
        (
            raw("DynamoDB_20120810.PutItem", b"garbage"),
            "com.amazon.coral.service#SerializationException",
        ),
        (
            raw("DynamoDB_20120810.PutItem", b"[]"),
            "com.amazon.coral.service#SerializationException",
        ),
        (
            raw("DynamoDB_20120810.FlyToTheMoon", b"{}"),
            "com.amazon.coral.service#UnknownOperationException",
        ),
        (
            raw("NotDynamo.PutItem", b"{}"),
            "com.amazon.coral.service#UnknownOperationException",
        ),
        (
            raw("DynamoDB_20120810.PutItem", b"{}"),
            "com.amazon.coral.validate#ValidationException",
        ),
        (
            raw(
                "DynamoDB_20120810.PutItem",
                br#"{"TableName":"orders","Item":{"other":{"S":"x"}}}"#,
            ),
            "com.amazon.coral.validate#ValidationException",
        ),
        (
            raw(
                "DynamoDB_20120810.BatchWriteItem",
                br#"{"RequestItems":{"orders":[{"PutRequest":{}}]}}"#,
            ),
            "com.amazon.coral.validate#ValidationException",
        ),
        // No store: table operations cannot be answered.
        (
            raw("DynamoDB_20120810.CreateTable", br#"{"TableName":"t"}"#),
            "com.amazon.coral.validate#ValidationException",
        ),
    ];
    for (request, expected) in cases {
        let response = send(&mut front, request).await;
        assert_eq!(response.status(), 400, "{expected}");
        assert_eq!(
            response.headers()["content-type"],
            "application/x-amz-json-1.0"
        );
        assert_eq!(json_of(response).await["__type"], expected);
    }
}

#[test]
fn a_bad_config_file_names_the_field_and_the_value() {
    let err = SimFile::from_toml(
        "[[bedrock.models]]\nmodel_id = \"m\"\nregion = \"us-east-1\"\nrpm = -5\ntpm = 10\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("rpm") && err.contains("-5"), "{err}");

    let err = SimFile::from_toml("[front]\nlisten = \"nowhere\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("listen") && err.contains("nowhere"), "{err}");

    let err = SimFile::from_toml("[front]\nlisen = \"127.0.0.1:1\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("lisen"), "{err}");

    // Parsed, but out of range: the core's validation, with the field's name.
    let err = SimFile::from_toml("[[dynamodb.tables]]\nname = \"t\"\nrcu = 0\nwcu = 0\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("cu") && err.contains('0'), "{err}");

    let err = SimFile::from_toml(
        "[bedrock]\nwindow_phase_s = 75\n[[bedrock.models]]\nmodel_id = \"m\"\nregion = \"r\"\nrpm = 1\ntpm = 5000\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("window_phase") && err.contains("75"), "{err}");

    let file = SimFile::from_toml("[front]\ndynamodb_upstream = \"ftp://x\"\n").unwrap();
    let err = SimService::from_file(&file, None).unwrap_err();
    assert_eq!(err.field(), "dynamodb_upstream");
}

#[test]
fn the_example_config_loads_and_builds() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sim.toml");
    let file = SimFile::load(std::path::Path::new(path)).unwrap();
    assert!(file.bedrock.is_some() && file.has_tables());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let front = SimService::from_file(&file, Some("http://127.0.0.1:9")).unwrap();
        // Both LLM endpoints are served.
        for shape in [
            tower_headroom::sim::LlmShape::OpenAi,
            tower_headroom::sim::LlmShape::Anthropic,
        ] {
            assert_eq!(front.llm(shape).map(|s| s.shape()), Some(shape));
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the body, the front answers (never panics) and garbage is a 400.
    #[test]
    fn any_body_gets_an_answer(body in proptest::collection::vec(any::<u8>(), 0..512), dynamo_target in any::<bool>()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let status = runtime.block_on(async {
            let bedrock = BedrockSim::builder().model(model("us-east-1").rpm(1000).tpm(1_000_000).build().unwrap()).build().unwrap();
            let dynamo = DynamoSim::builder().table(TableConfig::builder("orders").rcu(10).wcu(10).build().unwrap()).build().unwrap();
            let mut front = SimService::builder().bedrock(bedrock).dynamodb(dynamo).partition_key("orders", "pk").build().unwrap();
            let request = if dynamo_target {
                Request::post("/").header("x-amz-target", "DynamoDB_20120810.PutItem")
                    .body(Full::new(Bytes::from(body.clone()))).unwrap()
            } else {
                Request::post(format!("/model/{HAIKU_PATH}/converse")).body(Full::new(Bytes::from(body.clone()))).unwrap()
            };
            send(&mut front, request).await.status()
        });
        let is_json_object = matches!(serde_json::from_slice::<Value>(&body), Ok(Value::Object(_)));
        if !is_json_object {
            prop_assert_eq!(status, 400);
        }
    }
}
