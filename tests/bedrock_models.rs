//! The Bedrock model table and what reads it: burndown and maximum output per model family and
//! per id form, the unknown-model defaults and their one warning, typed errors for bad entries,
//! and a call without `maxTokens` reserved at its model's maximum and settled to the real count
//! — through `LlmEstimator` and a Tower stack, and through the AWS SDK adapter — with the
//! fallback router weighing each target at its own model's cost.

mod support {
    pub mod capture;
}

use std::sync::{Arc, Mutex};

use tokio::time::Instant;
use tower::ServiceExt;
use tower_headroom::HttpClassifier;
use tower_headroom::admission::{Cost, Estimate, Limit, LlmEstimator, LlmInput, Quota, Usage};
use tower_headroom::bedrock::{BedrockUsage, ModelSpec, ModelTable, TokenCounts};
use tower_headroom::fallback::{Served, Target};
use tower_headroom::stack::StackBuilder;

const SONNET4: &str = "anthropic.claude-sonnet-4-20250514-v1:0";
const HAIKU3: &str = "anthropic.claude-3-haiku-20240307-v1:0";

#[test]
fn every_family_and_every_id_form_has_its_numbers() {
    let table = ModelTable::builtin();
    let cases: &[(&str, u32, u64)] = &[
        // Burndown 5 (the Bedrock user guide's list), their maxima from the model cards.
        ("anthropic.claude-3-7-sonnet-20250219-v1:0", 5, 64_000),
        (SONNET4, 5, 64_000),
        ("anthropic.claude-sonnet-4-5-20250929-v1:0", 5, 64_000),
        ("anthropic.claude-sonnet-4-6", 5, 64_000),
        ("anthropic.claude-haiku-4-5-20251001-v1:0", 5, 64_000),
        ("anthropic.claude-opus-4-20250514-v1:0", 5, 32_000),
        ("anthropic.claude-opus-4-1-20250805-v1:0", 5, 32_000),
        ("anthropic.claude-opus-4-5-20251101-v1:0", 5, 64_000),
        ("anthropic.claude-opus-4-6-v1", 5, 128_000),
        // Burndown 1: Claude 3 and 3.5, Nova, Llama, Mistral.
        ("anthropic.claude-3-5-sonnet-20240620-v1:0", 1, 8_192),
        ("anthropic.claude-3-5-sonnet-20241022-v2:0", 1, 8_192),
        ("anthropic.claude-3-5-haiku-20241022-v1:0", 1, 8_192),
        (HAIKU3, 1, 4_096),
        ("anthropic.claude-3-sonnet-20240229-v1:0", 1, 4_096),
        ("anthropic.claude-3-opus-20240229-v1:0", 1, 4_096),
        ("amazon.nova-micro-v1:0", 1, 10_000),
        ("amazon.nova-lite-v1:0", 1, 10_000),
        ("amazon.nova-pro-v1:0", 1, 10_000),
        ("amazon.nova-premier-v1:0", 1, 32_000),
        ("meta.llama3-70b-instruct-v1:0", 1, 2_048),
        ("meta.llama3-3-70b-instruct-v1:0", 1, 2_048),
        ("mistral.mistral-large-2402-v1:0", 1, 8_192),
        // Inference-profile ids of every geography, and ARNs.
        ("us.anthropic.claude-sonnet-4-20250514-v1:0", 5, 64_000),
        ("eu.anthropic.claude-sonnet-4-5-20250929-v1:0", 5, 64_000),
        ("apac.anthropic.claude-sonnet-4-20250514-v1:0", 5, 64_000),
        ("global.anthropic.claude-opus-4-5-20251101-v1:0", 5, 64_000),
        ("us.amazon.nova-premier-v1:0", 1, 32_000),
        ("us.meta.llama3-3-70b-instruct-v1:0", 1, 2_048),
        (
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-sonnet-4-20250514-v1:0",
            5,
            64_000,
        ),
        (
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0",
            1,
            4_096,
        ),
        (
            "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.anthropic.claude-opus-4-1-20250805-v1:0",
            5,
            32_000,
        ),
    ];
    for &(id, burndown, max) in cases {
        assert_eq!(
            table.lookup(id),
            Some(ModelSpec::new(burndown, max)),
            "{id}"
        );
    }
    // An application inference profile's ARN names no model; a version the table does not
    // know yet does not borrow an older version's smaller maximum.
    for id in [
        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6",
        "anthropic.claude-opus-4-8",
        "cohere.command-r-v1:0",
    ] {
        assert_eq!(table.lookup(id), None, "{id}");
        assert_eq!(table.spec(id), ModelSpec::UNKNOWN, "{id}");
    }
    // The unknown-model spec is the largest of each number in the table.
    assert_eq!(ModelSpec::UNKNOWN, ModelSpec::new(5, 128_000));
}

#[tokio::test]
async fn an_unknown_model_warns_once_per_id_and_never_logs_request_data() {
    let table = ModelTable::builtin();
    let log = support::capture::captured(&["tower_headroom::bedrock"], async {
        for _ in 0..3 {
            assert_eq!(table.spec("acme.model-one-v1"), ModelSpec::UNKNOWN);
        }
        assert_eq!(table.spec("acme.model-two-v1"), ModelSpec::UNKNOWN);
        // Known models never warn.
        table.spec(SONNET4);
        // Clones share what was warned about.
        table.clone().spec("acme.model-one-v1");
    })
    .await;
    let warnings: Vec<_> = log
        .lines()
        .filter(|l| l.contains("not in the model table"))
        .collect();
    assert_eq!(warnings.len(), 2, "{log}");
    assert!(warnings[0].contains("WARN") && warnings[0].contains("acme.model-one-v1"));
    assert!(warnings[1].contains("acme.model-two-v1"));
    assert!(warnings[0].contains("max_output_tokens=128000"), "{log}");
}

#[test]
fn bad_table_entries_are_typed_config_errors() {
    let table = ModelTable::builtin();
    let field = |r: Result<ModelTable, tower_headroom::admission::ConfigError>| {
        r.map(|_| ()).unwrap_err().field().to_owned()
    };
    assert_eq!(
        field(table.clone().with_model("acme.x", ModelSpec::new(0, 10))),
        "burndown"
    );
    assert_eq!(
        field(table.clone().with_model("acme.x", ModelSpec::new(1, 0))),
        "max_output_tokens"
    );
    assert_eq!(
        field(table.clone().with_model(" ", ModelSpec::new(1, 1))),
        "model"
    );
    assert_eq!(
        field(table.clone().with_model("us.acme.x", ModelSpec::new(1, 1))),
        "model"
    );
    assert_eq!(
        field(table.clone().with_model(
            "arn:aws:bedrock:us-east-1::foundation-model/acme.x",
            ModelSpec::new(1, 1)
        )),
        "model"
    );
    assert_eq!(
        field(table.clone().with_unknown(ModelSpec::new(0, 1))),
        "burndown"
    );
    // Good entries override and add, and reach every id form.
    let table = table
        .with_model(
            "anthropic.claude-sonnet-4-20250514",
            ModelSpec::new(5, 8_000),
        )
        .unwrap()
        .with_model("acme.model", ModelSpec::new(2, 1_000))
        .unwrap()
        .with_unknown(ModelSpec::new(3, 3_000))
        .unwrap();
    assert_eq!(
        table
            .spec("eu.anthropic.claude-sonnet-4-20250514-v1:0")
            .max_output_tokens,
        8_000
    );
    assert_eq!(table.spec("us.acme.model-v2"), ModelSpec::new(2, 1_000));
    assert_eq!(table.spec("other.model"), ModelSpec::new(3, 3_000));
}

/// A chat request: what the stack clones, rewrites and estimates.
#[derive(Clone, Debug)]
struct Chat {
    model: &'static str,
    prompt: String,
    max_tokens: Option<u64>,
}

fn estimator() -> impl Estimate<Chat> + Clone {
    LlmEstimator::new(|chat: &Chat| LlmInput {
        input_chars: chat.prompt.chars().count() as u64,
        max_tokens: chat.max_tokens,
    })
    .models(ModelTable::builtin())
    .model_of(|chat: &Chat| chat.model)
}

#[test]
fn llm_estimator_reserves_the_models_maximum_and_settles_with_its_burndown() {
    let estimate = estimator();
    let open = Chat {
        model: SONNET4,
        prompt: "x".repeat(400),
        max_tokens: None,
    };
    // 100 input tokens and Sonnet 4's 64,000 output tokens.
    assert_eq!(estimate.estimate(&open), Cost::units(64_100));
    assert_eq!(estimate.estimate_for(&open, HAIKU3), Cost::units(4_196));
    let capped = Chat {
        max_tokens: Some(500),
        ..open.clone()
    };
    assert_eq!(estimate.estimate(&capped), Cost::units(600));
    // The real count: input + cache write + output × 5; the cache-read tokens are released.
    let counts = TokenCounts::new(100, 300).with_cache(5_000, 50);
    let spec = ModelTable::builtin().spec(SONNET4);
    assert_eq!(counts.usage(spec), Usage::units(100 + 50 + 300 * 5));
    assert_eq!(spec.reservation(100, 5_000, 50, None), 69_150);
}

/// Each backend call's model and what the quota held for it while the call ran.
type Calls = Arc<Mutex<Vec<(&'static str, Option<u64>)>>>;

/// A Bedrock-shaped backend: answers with `InvokeModel`'s token-count headers and records, for
/// each call, the model it was for and what the quota held for that model while it ran.
fn backend(
    quota: Quota<&'static str>,
    seen: Calls,
) -> impl tower::Service<Chat, Response = http::Response<String>, Error = tower_headroom::BoxError> + Clone
{
    tower::service_fn(move |chat: Chat| {
        let spent = quota
            .stats(&chat.model, Instant::now())
            .and_then(|s| s.units_spent);
        seen.lock().unwrap().push((chat.model, spent));
        async move {
            Ok::<_, tower_headroom::BoxError>(
                http::Response::builder()
                    .header("x-amzn-bedrock-input-token-count", "100")
                    .header("x-amzn-bedrock-output-token-count", "300")
                    .header("x-amzn-bedrock-cache-read-input-token-count", "5000")
                    .header("x-amzn-bedrock-cache-write-input-token-count", "50")
                    .body(String::new())
                    .unwrap(),
            )
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_tower_stack_reserves_each_targets_own_maximum_and_settles_with_its_burndown() {
    let minute = |units| Limit::per_minute().units(units).build().unwrap();
    // Sonnet 4's window can never hold its 64,100-token reservation; Haiku's 10,000 holds
    // Haiku's own 4,196 but not Sonnet's.
    let quota: Quota<&'static str> = Quota::builder(minute(1_000_000))
        .key_limit(SONNET4, minute(50_000))
        .key_limit(HAIKU3, minute(10_000))
        .build();
    let seen = Calls::default();
    let stack = StackBuilder::bedrock(HttpClassifier::new())
        .target(Target::new("sonnet", SONNET4).model(SONNET4))
        .target(Target::new("haiku", HAIKU3).model(HAIKU3))
        .admission(quota.clone(), estimator())
        .usage(BedrockUsage::new(ModelTable::builtin()))
        .rewrite(
            backend(quota.clone(), Arc::clone(&seen)),
            |chat: &mut Chat, model: &&'static str| chat.model = *model,
        )
        .unwrap();
    let open = Chat {
        model: SONNET4,
        prompt: "x".repeat(400),
        max_tokens: None,
    };
    let response = stack.clone().oneshot(open.clone()).await.unwrap();
    let served = response.extensions().get::<Served>().unwrap();
    assert_eq!(&*served.name, "haiku");
    // Reserved at Haiku's own maximum, settled to Haiku's count (burndown 1).
    assert_eq!(*seen.lock().unwrap(), vec![(HAIKU3, Some(4_196))]);
    let now = Instant::now();
    let spent = |key| quota.stats(&key, now).and_then(|s| s.units_spent);
    assert_eq!(spent(HAIKU3), Some(100 + 50 + 300));
    assert_eq!(spent(SONNET4), Some(0));

    // With room on Sonnet 4: its own maximum reserved, settled with burndown 5.
    let roomy: Quota<&'static str> = Quota::new(minute(1_000_000));
    let seen = Calls::default();
    let stack = StackBuilder::bedrock(HttpClassifier::new())
        .target(Target::new("sonnet", SONNET4).model(SONNET4))
        .target(Target::new("haiku", HAIKU3).model(HAIKU3))
        .admission(roomy.clone(), estimator())
        .usage(BedrockUsage::new(ModelTable::builtin()))
        .rewrite(
            backend(roomy.clone(), Arc::clone(&seen)),
            |chat: &mut Chat, model: &&'static str| chat.model = *model,
        )
        .unwrap();
    stack.oneshot(open).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![(SONNET4, Some(64_100))]);
    let settled = roomy
        .stats(&SONNET4, Instant::now())
        .and_then(|s| s.units_spent);
    assert_eq!(settled, Some(100 + 50 + 300 * 5));
}

/// Routes of more than four model-labelled targets keep each target's own cost too (their
/// costs are kept apart from the inline ones of shorter routes).
#[tokio::test(start_paused = true)]
async fn a_long_route_weighs_its_fifth_target_at_its_own_models_cost() {
    let minute = |units| Limit::per_minute().units(units).build().unwrap();
    // Four Sonnet 4 targets whose windows cannot hold a 64,100-token reservation, then Haiku.
    let sonnets = [
        "us.anthropic.claude-sonnet-4-20250514-v1:0",
        "eu.anthropic.claude-sonnet-4-20250514-v1:0",
        "apac.anthropic.claude-sonnet-4-20250514-v1:0",
        "global.anthropic.claude-sonnet-4-20250514-v1:0",
    ];
    let mut quota = Quota::builder(minute(1_000_000)).key_limit(HAIKU3, minute(10_000));
    for sonnet in sonnets {
        quota = quota.key_limit(sonnet, minute(50_000));
    }
    let quota: Quota<&'static str> = quota.build();
    let seen = Calls::default();
    let mut builder = StackBuilder::bedrock(HttpClassifier::new());
    for (i, sonnet) in sonnets.iter().enumerate() {
        let name: &'static str = ["s0", "s1", "s2", "s3"][i];
        builder = builder.target(Target::new(name, *sonnet).model(*sonnet));
    }
    let stack = builder
        .target(Target::new("haiku", HAIKU3).model(HAIKU3))
        .max_hops(4)
        .admission(quota.clone(), estimator())
        .usage(BedrockUsage::new(ModelTable::builtin()))
        .rewrite(
            backend(quota.clone(), Arc::clone(&seen)),
            |chat: &mut Chat, model: &&'static str| chat.model = *model,
        )
        .unwrap();
    let open = Chat {
        model: sonnets[0],
        prompt: "x".repeat(400),
        max_tokens: None,
    };
    let response = stack.oneshot(open).await.unwrap();
    assert_eq!(
        &*response.extensions().get::<Served>().unwrap().name,
        "haiku"
    );
    assert_eq!(*seen.lock().unwrap(), vec![(HAIKU3, Some(4_196))]);
}

#[cfg(feature = "bedrock")]
mod sdk {
    use super::*;

    use aws_sdk_bedrockruntime::types::{
        ContentBlock, ConversationRole, InferenceConfiguration, Message,
    };
    use aws_smithy_runtime_api::client::http::{
        HttpConnector, HttpConnectorFuture, SharedHttpClient, SharedHttpConnector, http_client_fn,
    };
    use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
    use aws_smithy_runtime_api::http::{Response as SdkResponse, StatusCode};
    use aws_smithy_types::body::SdkBody;
    use tower_headroom::Profile;
    use tower_headroom::smithy::SdkHeadroom;

    /// The Converse answer: 100 input, 300 output, 5,000 read from and 50 written to the cache.
    const ANSWER: &str = r#"{"output":{"message":{"role":"assistant","content":[{"text":"ok"}]}},"stopReason":"end_turn","usage":{"inputTokens":100,"outputTokens":300,"totalTokens":5450,"cacheReadInputTokens":5000,"cacheWriteInputTokens":50},"metrics":{"latencyMs":10}}"#;

    type Seen = Arc<Mutex<Vec<(String, Option<u64>)>>>;

    /// A canned Bedrock: records each request's model (from its path) and what the quota held
    /// for that model while the request was in flight, and answers `ANSWER`.
    fn canned(quota: Quota<Arc<str>>, seen: Seen) -> SharedHttpClient {
        #[derive(Debug)]
        struct Canned {
            quota: Quota<Arc<str>>,
            seen: Seen,
        }
        impl HttpConnector for Canned {
            fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
                let encoded = request
                    .uri()
                    .split_once("/model/")
                    .and_then(|(_, rest)| rest.split_once('/'))
                    .map_or("", |(model, _)| model)
                    .replace("%3A", ":");
                let key: Arc<str> = Arc::from(encoded.as_str());
                let spent = self
                    .quota
                    .stats(&key, Instant::now())
                    .and_then(|s| s.units_spent);
                self.seen.lock().unwrap().push((encoded, spent));
                HttpConnectorFuture::ready(Ok(SdkResponse::new(
                    StatusCode::try_from(200).unwrap(),
                    SdkBody::from(ANSWER),
                )))
            }
        }
        http_client_fn(move |_settings, _components| {
            SharedHttpConnector::new(Canned {
                quota: quota.clone(),
                seen: Arc::clone(&seen),
            })
        })
    }

    fn client(headroom: &SdkHeadroom, http: SharedHttpClient) -> aws_sdk_bedrockruntime::Client {
        use aws_sdk_bedrockruntime::config::{Credentials, Region};
        let builder = aws_sdk_bedrockruntime::Config::builder()
            .behavior_version_latest()
            .region(Region::from_static("us-east-1"))
            .endpoint_url("http://bedrock.test")
            .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
            .http_client(http);
        let config = headroom.configure_bedrock(builder).unwrap().build();
        aws_sdk_bedrockruntime::Client::from_conf(config)
    }

    async fn converse_without_max_tokens(client: &aws_sdk_bedrockruntime::Client) {
        client
            .converse()
            .model_id(SONNET4)
            .messages(
                Message::builder()
                    .role(ConversationRole::User)
                    .content(ContentBlock::Text("x".repeat(400)))
                    .build()
                    .unwrap(),
            )
            .inference_config(InferenceConfiguration::builder().temperature(0.5).build())
            .send()
            .await
            .unwrap();
    }

    fn minute(units: u64) -> Limit {
        Limit::per_minute().units(units).build().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn sonnet_4_without_max_tokens_reserves_its_maximum_and_settles_to_the_real_count() {
        let quota: Quota<Arc<str>> = Quota::new(minute(1_000_000));
        let headroom = SdkHeadroom::builder(Profile::Bedrock)
            .quota(quota.clone())
            .build()
            .unwrap();
        let seen = Seen::default();
        let client = client(&headroom, canned(quota.clone(), Arc::clone(&seen)));
        converse_without_max_tokens(&client).await;
        // 400 characters: 100 input tokens, and Sonnet 4's 64,000 output tokens reserved.
        assert_eq!(
            *seen.lock().unwrap(),
            vec![(SONNET4.to_owned(), Some(64_100))]
        );
        // Settled: 100 input + 50 cache write + 300 output × 5; the 5,000 cache reads released.
        let key: Arc<str> = Arc::from(SONNET4);
        let spent = quota
            .stats(&key, Instant::now())
            .and_then(|s| s.units_spent);
        assert_eq!(spent, Some(1_650));
    }

    #[tokio::test(start_paused = true)]
    async fn the_router_weighs_each_target_at_its_own_models_cost() {
        // Sonnet 4's window can never hold its 64,100 tokens; Haiku's holds Haiku's 4,196.
        let quota: Quota<Arc<str>> = Quota::builder(minute(50_000))
            .key_limit(Arc::from(HAIKU3), minute(10_000))
            .build();
        let headroom = SdkHeadroom::builder(Profile::Bedrock)
            .target(Target::new("sonnet", Arc::from(SONNET4)))
            .target(Target::new("haiku", Arc::from(HAIKU3)))
            .quota(quota.clone())
            .build()
            .unwrap();
        let seen = Seen::default();
        let client = client(&headroom, canned(quota.clone(), Arc::clone(&seen)));
        converse_without_max_tokens(&client).await;
        // Sent to Haiku only, reserved at Haiku's own maximum, settled with burndown 1.
        assert_eq!(
            *seen.lock().unwrap(),
            vec![(HAIKU3.to_owned(), Some(4_196))]
        );
        let key: Arc<str> = Arc::from(HAIKU3);
        let spent = quota
            .stats(&key, Instant::now())
            .and_then(|s| s.units_spent);
        assert_eq!(spent, Some(100 + 50 + 300));
    }

    #[tokio::test(start_paused = true)]
    async fn a_custom_table_changes_the_reservation() {
        let quota: Quota<Arc<str>> = Quota::new(minute(1_000_000));
        let table = ModelTable::builtin()
            .with_model(
                "anthropic.claude-sonnet-4-20250514",
                ModelSpec::new(2, 1_000),
            )
            .unwrap();
        let headroom = SdkHeadroom::builder(Profile::Bedrock)
            .models(table)
            .quota(quota.clone())
            .build()
            .unwrap();
        let seen = Seen::default();
        let client = client(&headroom, canned(quota.clone(), Arc::clone(&seen)));
        converse_without_max_tokens(&client).await;
        assert_eq!(
            *seen.lock().unwrap(),
            vec![(SONNET4.to_owned(), Some(1_100))]
        );
        let key: Arc<str> = Arc::from(SONNET4);
        let spent = quota
            .stats(&key, Instant::now())
            .and_then(|s| s.units_spent);
        assert_eq!(spent, Some(100 + 50 + 300 * 2));
    }
}
