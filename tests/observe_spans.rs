//! A call is one `headroom.call` span with a `headroom.attempt` span per attempt, carrying the
//! OpenTelemetry GenAI attributes, and no span field ever holds request or response data:
//! the Tower stack (a canary in the request body, the answers' headers and bodies), and the
//! SDK adapter with the real `aws-sdk-bedrockruntime` client against the simulator's front.

mod support {
    #[cfg(all(feature = "sim", feature = "bedrock"))]
    pub mod sdk;
    pub mod spans;
}

use std::convert::Infallible;

use tower::ServiceExt;
use tower_headroom::HttpClassifier;
use tower_headroom::admission::{FixedCost, Limit, Quota};
use tower_headroom::bedrock::{BedrockUsage, ModelTable};
use tower_headroom::fallback::Target;
use tower_headroom::stack::StackBuilder;

const CANARY: &str = "CANARY-prompt-sk-live-0123456789";

fn no_canary(spans: &[support::spans::Recorded]) {
    for span in spans {
        for (name, value) in &span.fields {
            assert!(!value.contains(CANARY), "{} {name}={value}", span.name);
            assert!(
                !value.contains("123456789012"),
                "{} {name}={value}",
                span.name
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_stack_opens_a_call_span_and_one_per_attempt_with_genai_attributes() {
    // Sonnet answers 503 (the canary in a header and the body), Haiku 200 with its tokens.
    let upstream = tower::service_fn(|request: http::Request<String>| async move {
        assert!(request.body().contains(CANARY));
        let model = request.uri().path().to_owned();
        let response = if model.contains("sonnet") {
            http::Response::builder()
                .status(503)
                .header("x-debug", CANARY)
                .body(format!("overloaded: {CANARY}"))
        } else {
            http::Response::builder()
                .header("x-amzn-bedrock-input-token-count", "1000")
                .header("x-amzn-bedrock-output-token-count", "300")
                .header("x-amzn-bedrock-cache-read-input-token-count", "5000")
                .header("x-debug", CANARY)
                .body(format!("answer: {CANARY}"))
        };
        Ok::<_, Infallible>(response.unwrap())
    });
    let limit = Limit::per_minute().units(10_000_000).build().unwrap();
    let profile = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/sonnet-p";
    let stack = StackBuilder::bedrock(HttpClassifier::new())
        .target(
            Target::new("sonnet", "sonnet")
                .model(profile)
                .region("us-east-1"),
        )
        .target(
            Target::new("haiku", "haiku")
                .model("anthropic.claude-3-haiku-20240307-v1:0")
                .region("us-east-1"),
        )
        .admission(
            Quota::new(limit),
            FixedCost(tower_headroom::Cost::new(1, 2_000)),
        )
        .usage(BedrockUsage::new(ModelTable::builtin()))
        .rewrite(
            upstream,
            |request: &mut http::Request<String>, model: &&'static str| {
                *request.uri_mut() = format!("/model/{model}/invoke").parse().unwrap();
            },
        )
        .unwrap();
    let spans = support::spans::recorded(async {
        let request = http::Request::builder()
            .header("authorization", format!("Bearer {CANARY}"))
            .body(format!("prompt: {CANARY}"))
            .unwrap();
        let response = stack.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
    })
    .await;
    no_canary(&spans);
    let names: Vec<_> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["headroom.call", "headroom.attempt", "headroom.attempt"]
    );
    let (call, first, second) = (&spans[0], &spans[1], &spans[2]);
    assert_eq!(call.field("gen_ai.provider.name"), Some("aws.bedrock"));
    // A Bedrock stack's calls are chats unless named otherwise.
    assert_eq!(call.field("gen_ai.operation.name"), Some("chat"));
    assert_eq!(call.field("otel.kind"), Some("client"));
    assert_eq!(call.field("class"), Some("success"));
    assert_eq!(call.field("error.type"), None);
    assert_eq!(call.field("attempts"), Some("2"));
    assert_eq!(
        call.field("gen_ai.request.model"),
        Some("anthropic.claude-3-haiku-20240307-v1:0")
    );
    assert_eq!(call.field("gen_ai.usage.input_tokens"), Some("6000"));
    assert_eq!(call.field("gen_ai.usage.output_tokens"), Some("300"));

    assert_eq!(first.parent.as_deref(), Some("headroom.call"));
    assert_eq!(first.field("target_name"), Some("sonnet"));
    // An inference profile's ARN shows only its resource name.
    assert_eq!(first.field("gen_ai.request.model"), Some("sonnet-p"));
    assert_eq!(first.field("region"), Some("us-east-1"));
    assert_eq!(first.field("attempt"), Some("1"));
    assert_eq!(first.field("hop"), Some("0"));
    assert_eq!(first.field("class"), Some("unavailable"));
    assert_eq!(first.field("error.type"), Some("unavailable"));
    assert_eq!(first.field("gen_ai.usage.input_tokens"), None);

    assert_eq!(second.parent.as_deref(), Some("headroom.call"));
    assert_eq!(second.field("target_name"), Some("haiku"));
    assert_eq!(second.field("attempt"), Some("2"));
    assert_eq!(second.field("hop"), Some("1"));
    assert_eq!(second.field("class"), Some("success"));
    assert_eq!(second.field("error.type"), None);
    assert_eq!(second.field("gen_ai.usage.output_tokens"), Some("300"));
}

/// The operation name of the call spans of an HTTP stack: none unless named, the given
/// name when named.
async fn http_operation(operation: Option<&'static str>) -> Option<String> {
    let upstream = tower::service_fn(|_request: http::Request<String>| async move {
        Ok::<_, Infallible>(http::Response::new(String::new()))
    });
    let mut builder = StackBuilder::http().target(Target::new("embed", "embed"));
    if let Some(operation) = operation {
        builder = builder.operation(operation);
    }
    let stack = builder.services(vec![upstream]).unwrap();
    let spans = support::spans::recorded(async {
        let response = stack.oneshot(http::Request::new(String::new())).await;
        assert_eq!(response.unwrap().status(), 200);
    })
    .await;
    assert_eq!(spans[0].name, "headroom.call");
    assert_eq!(spans[0].field("gen_ai.provider.name"), None);
    spans[0].field("gen_ai.operation.name").map(str::to_owned)
}

#[tokio::test(start_paused = true)]
async fn a_stack_names_the_operation_it_is_told() {
    assert_eq!(http_operation(None).await, None);
    assert_eq!(
        http_operation(Some("embeddings")).await.as_deref(),
        Some("embeddings")
    );
}

#[cfg(all(feature = "sim", feature = "bedrock"))]
#[tokio::test(start_paused = true)]
async fn the_sdk_adapter_opens_a_chat_span_under_the_sdks_own() {
    use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, Message};
    use tower_headroom::Profile;
    use tower_headroom::sim::front::sdk_http_client;
    use tower_headroom::smithy::SdkHeadroom;

    let model = support::sdk::HAIKU;
    let front = support::sdk::haiku_front(1_000_000);
    let headroom = SdkHeadroom::builder(Profile::Bedrock).build().unwrap();
    // The canary as the secret key: no span may carry it.
    let config = support::sdk::bedrock_sim_config(sdk_http_client(front), CANARY);
    let client = aws_sdk_bedrockruntime::Client::from_conf(
        headroom.configure_bedrock(config).unwrap().build(),
    );
    let spans = support::spans::recorded(async {
        let output = client
            .converse()
            .model_id(model)
            .messages(
                Message::builder()
                    .role(ConversationRole::User)
                    .content(ContentBlock::Text(format!("prompt: {CANARY}")))
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(output.usage().unwrap().output_tokens(), 5);
    })
    .await;
    let ours: Vec<_> = spans
        .iter()
        .filter(|s| s.name.starts_with("headroom."))
        .cloned()
        .collect();
    no_canary(&ours);
    assert_eq!(ours.len(), 2, "{ours:?}");
    let (call, attempt) = (&ours[0], &ours[1]);
    assert_eq!(call.name, "headroom.call");
    // Under the SDK orchestrator's operation span; the attempt's beside its `try_attempt`.
    assert_eq!(call.parent.as_deref(), Some("try_op"));
    assert!(
        spans
            .iter()
            .any(|s| s.name == "try_attempt" && s.parent.as_deref() == Some("try_op"))
    );
    assert_eq!(call.field("gen_ai.provider.name"), Some("aws.bedrock"));
    assert_eq!(call.field("gen_ai.operation.name"), Some("chat"));
    assert_eq!(call.field("gen_ai.request.model"), Some(model));
    assert_eq!(call.field("class"), Some("success"));
    assert_eq!(call.field("gen_ai.usage.output_tokens"), Some("5"));
    assert_eq!(attempt.name, "headroom.attempt");
    assert_eq!(attempt.parent.as_deref(), Some("headroom.call"));
    assert_eq!(attempt.field("attempt"), Some("1"));
    assert_eq!(attempt.field("region"), Some("us-east-1"));
    assert_eq!(attempt.field("class"), Some("success"));
}
