//! The HTTP front over the Bedrock simulator's quotas as bedrock-runtime enforces them: a
//! Converse call without `maxTokens` reserves the model's maximum from the model table, a
//! spent day is the daily `ThrottlingException` on the wire, a marked prompt prefix is written
//! then read from the cache and reported in `usage`; the TOML file's new fields.
#![cfg(feature = "sim")]

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_headroom::sim::front::{SimFile, SimFileError, SimService};
use tower_headroom::sim::{BedrockSim, DAILY_MESSAGE, ModelConfig, OutputLength};

const SONNET4: &str = "us.anthropic.claude-sonnet-4-20250514-v1:0";
const SONNET4_PATH: &str = "us.anthropic.claude-sonnet-4-20250514-v1%3A0";

fn front(config: ModelConfig) -> SimService {
    let bedrock = BedrockSim::builder().model(config).seed(1).build().unwrap();
    SimService::builder().bedrock(bedrock).build().unwrap()
}

/// A Converse body of 40 characters (10 estimated tokens), with `maxTokens` if given.
fn converse(max_tokens: Option<u64>) -> Request<Full<Bytes>> {
    let mut body = json!({
        "messages": [{"role": "user", "content": [{"text": "0123456789012345678901234567890123456789"}]}],
    });
    if let Some(max) = max_tokens {
        body["inferenceConfig"] = json!({ "maxTokens": max });
    }
    Request::post(format!("/model/{SONNET4_PATH}/converse"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

async fn json_of(response: Response<Full<Bytes>>) -> Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(start_paused = true)]
async fn converse_without_max_tokens_reserves_the_models_maximum() {
    let front = front(
        ModelConfig::builder(SONNET4, "us-east-1")
            .tpm(150_000)
            .output(OutputLength::Fixed { tokens: 40 })
            .ttft(Duration::from_millis(100))
            .build()
            .unwrap(),
    );
    // Two calls at once without maxTokens: 64,010 reserved each, 128,020 of 150,000; a third
    // does not fit, while one with maxTokens 1,000 does.
    let calls: Vec<_> = (0..2)
        .map(|_| tokio::spawn(front.clone().oneshot(converse(None))))
        .collect();
    tokio::task::yield_now().await;
    let third = front.clone().oneshot(converse(None)).await.unwrap();
    assert_eq!(third.status(), 429);
    assert_eq!(third.headers()["x-amzn-errortype"], "ThrottlingException");
    let capped = front.clone().oneshot(converse(Some(1_000))).await.unwrap();
    assert_eq!(capped.status(), 200);
    for call in calls {
        let response = call.await.unwrap().unwrap();
        assert_eq!(response.status(), 200);
        let body = json_of(response).await;
        assert_eq!(body["usage"]["inputTokens"], 10);
        assert_eq!(body["usage"]["outputTokens"], 40);
        assert!(body["usage"].get("cacheReadInputTokens").is_none());
    }
    let stats = front.bedrock().unwrap().stats();
    let model = &stats.models[0];
    assert_eq!(model.tokens_reserved, 2 * 64_010 + 1_010);
    // Settled at burndown 5: 10 + 40 × 5 each.
    assert_eq!(model.tokens_settled, 3 * 210);
    assert_eq!(model.counts.throttled_tokens, 1);
}

#[tokio::test(start_paused = true)]
async fn a_spent_day_is_the_daily_throttle_on_the_wire() {
    let front = front(
        ModelConfig::builder(SONNET4, "us-east-1")
            .tpm(10_000)
            .tpd(10_000)
            .output(OutputLength::Fixed { tokens: 100 })
            .build()
            .unwrap(),
    );
    // 10 + 100 × 5 = 510 settled per call, 1,010 reserved: 18 calls fit in the day's 10,000
    // (the 19th would reserve 1,010 on 9,180).
    for _ in 0..18 {
        let response = front.clone().oneshot(converse(Some(1_000))).await.unwrap();
        assert_eq!(response.status(), 200);
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    let response = front.clone().oneshot(converse(Some(1_000))).await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(
        response.headers()["x-amzn-errortype"],
        "ThrottlingException"
    );
    assert_eq!(json_of(response).await["message"], DAILY_MESSAGE);
    let stats = front.bedrock().unwrap().stats();
    assert_eq!(stats.models[0].counts.throttled_daily, 1);
    assert_eq!(stats.models[0].counts.throttled_tokens, 0);
}

/// A Converse body whose system prompt (400 characters, 100 tokens) ends with a cache point,
/// and a user message of 40 characters (10 tokens).
fn cached_converse(path_model: &str) -> Request<Full<Bytes>> {
    let body = json!({
        "system": [{"text": "s".repeat(400)}, {"cachePoint": {"type": "default"}}],
        "messages": [{"role": "user", "content": [{"text": "0123456789012345678901234567890123456789"}]}],
        "inferenceConfig": {"maxTokens": 100},
    });
    Request::post(format!("/model/{path_model}/converse"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_marked_prefix_is_written_then_read_and_reported_in_usage() {
    let front = front(
        ModelConfig::builder(SONNET4, "us-east-1")
            .tpm(200_000)
            .output(OutputLength::Fixed { tokens: 20 })
            .build()
            .unwrap(),
    );
    let usage = |body: &Value| {
        let u = &body["usage"];
        (
            u["inputTokens"].as_u64().unwrap(),
            u["cacheWriteInputTokens"].as_u64().unwrap(),
            u["cacheReadInputTokens"].as_u64().unwrap(),
            u["totalTokens"].as_u64().unwrap(),
        )
    };
    let first = json_of(
        front
            .clone()
            .oneshot(cached_converse(SONNET4_PATH))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(usage(&first), (10, 100, 0, 130));
    let second = json_of(
        front
            .clone()
            .oneshot(cached_converse(SONNET4_PATH))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(usage(&second), (10, 0, 100, 130));
    // Five minutes without a hit: written again.
    tokio::time::sleep(Duration::from_secs(301)).await;
    let third = json_of(
        front
            .clone()
            .oneshot(cached_converse(SONNET4_PATH))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(usage(&third), (10, 100, 0, 130));

    let stats = front.bedrock().unwrap().stats();
    let model = &stats.models[0];
    assert_eq!(
        (model.cache_write_tokens, model.cache_read_tokens),
        (200, 100)
    );
    // Reserved: 10 + cache + 100 each; settled: 10 + cache write + 20 × 5.
    assert_eq!(model.tokens_reserved, 3 * 210);
    assert_eq!(
        model.tokens_settled,
        (10 + 100 + 100) + (10 + 100) + (10 + 100 + 100)
    );

    // The same marks in an InvokeModel body (Anthropic's `cache_control`): the prefix is
    // cached for the model, whatever the operation.
    let invoke = Request::post(format!("/model/{SONNET4_PATH}/invoke"))
        .body(Full::new(Bytes::from(
            json!({
                "anthropic_version": "bedrock-2023-05-31",
                "max_tokens": 100,
                "system": [{"type": "text", "text": "s".repeat(400), "cache_control": {"type": "ephemeral"}}],
                "messages": [{"role": "user", "content": "0123456789012345678901234567890123456789"}],
            })
            .to_string(),
        )))
        .unwrap();
    let body = json_of(front.clone().oneshot(invoke).await.unwrap()).await;
    assert_eq!(
        body["usage"],
        json!({"input_tokens": 10, "output_tokens": 20,
               "cache_creation_input_tokens": 0, "cache_read_input_tokens": 100})
    );
}

#[test]
fn the_file_takes_tpd_account_tpd_and_optional_rpm_with_table_defaults() {
    let file = SimFile::from_toml(
        r#"
        [bedrock]
        account_tpd = 90000000

        [[bedrock.models]]
        model_id = "us.anthropic.claude-sonnet-4-20250514-v1:0"
        region = "us-east-1"
        tpm = 200000
        tpd = 5000000

        [[bedrock.models]]
        model_id = "anthropic.claude-3-5-sonnet-20240620-v1:0"
        region = "us-east-1"
        rpm = 150
        tpm = 200000
        burndown = 2
        max_output_tokens = 4096
        "#,
    )
    .unwrap();
    let bedrock = file.bedrock.as_ref().unwrap();
    assert_eq!(bedrock.account_tpd, Some(90_000_000));
    let sonnet4 = &bedrock.models[0];
    assert_eq!(sonnet4.rpm, None);
    assert_eq!(sonnet4.tpd, Some(5_000_000));
    assert_eq!((sonnet4.burndown, sonnet4.max_output_tokens), (5, 64_000));
    let sonnet35 = &bedrock.models[1];
    assert_eq!(sonnet35.rpm, Some(150));
    assert_eq!(sonnet35.tokens_per_day(), 200_000 * 1_440);
    // Explicit values override the table's.
    assert_eq!((sonnet35.burndown, sonnet35.max_output_tokens), (2, 4_096));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let service = SimService::from_file(&file, None).unwrap();
        let stats = service.bedrock().unwrap().stats();
        assert_eq!(
            (stats.models[0].rpm, stats.models[0].tpd),
            (None, 5_000_000)
        );
        assert_eq!(
            (stats.models[1].rpm, stats.models[1].tpd),
            (Some(150), 200_000 * 1_440)
        );
    });
}

#[test]
fn bad_day_quotas_in_the_file_name_the_field() {
    let invalid = |text: &str| match SimFile::from_toml(text) {
        Err(SimFileError::Invalid(error)) => error,
        other => panic!("expected a config error, got {other:?}"),
    };
    let err =
        invalid("[[bedrock.models]]\nmodel_id = \"m\"\nregion = \"r\"\ntpm = 1000\ntpd = 999\n");
    assert_eq!((err.field(), err.value()), ("tpd", "999"));
    let err = invalid(
        "[bedrock]\naccount_tpd = 0\n[[bedrock.models]]\nmodel_id = \"m\"\nregion = \"r\"\ntpm = 1\n",
    );
    assert_eq!(err.field(), "account_tpd");
    let err = invalid("[[bedrock.models]]\nmodel_id = \"m\"\nregion = \"r\"\nrpm = 0\ntpm = 1\n");
    assert_eq!(err.field(), "rpm");
    // The default `default_max_tokens` of the front is gone: the simulator reserves each
    // model's own maximum.
    assert!(matches!(
        SimFile::from_toml("[front]\ndefault_max_tokens = 4096\n"),
        Err(SimFileError::Parse(_))
    ));
}
