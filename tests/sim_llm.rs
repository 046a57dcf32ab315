//! The simulator's OpenAI- and Anthropic-style endpoints through its HTTP front: answers,
//! streams, rate-limit headers, refusals, as the crate's classifier and SSE reader read them.
#![cfg(all(feature = "sim", feature = "llm-http"))]

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_headroom::classify::retry_after::rate_limits;
use tower_headroom::llm_http::sse::{SseUsageReader, StreamEnd, StreamShape};
use tower_headroom::sim::front::{Server, SimService};
use tower_headroom::sim::{Episode, LlmEndpointSim, LlmShape, OutputLength};
use tower_headroom::{Classify, HttpClassifier, OutcomeKind, ThrottleScope};

const WALL: Duration = Duration::from_secs(1_700_000_000);

fn sim(shape: LlmShape) -> tower_headroom::sim::llm::LlmEndpointSimBuilder {
    LlmEndpointSim::builder(shape)
        .rpm(100)
        .tpm(10_000)
        .output(OutputLength::Fixed { tokens: 20 })
        .wall_clock(SystemTime::UNIX_EPOCH + WALL)
}

fn front(sim: LlmEndpointSim) -> SimService {
    SimService::builder().llm(sim).build().unwrap()
}

fn request(shape: LlmShape, body: Value) -> Request<Full<Bytes>> {
    Request::post(shape.path())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// 400 characters of text: 100 input tokens.
fn ask(max_tokens: u64, stream: bool) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "x".repeat(400)}],
        "max_tokens": max_tokens,
        "stream": stream,
        "stream_options": {"include_usage": true},
    })
}

async fn send(front: &SimService, request: Request<Full<Bytes>>) -> (Response<()>, Bytes) {
    let response = front.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (Response::from_parts(parts, ()), bytes)
}

fn header<'a>(response: &'a Response<()>, name: &str) -> &'a str {
    response.headers()[name].to_str().unwrap()
}

fn stream_usage(body: &[u8]) -> StreamEnd {
    let mut reader = SseUsageReader::new();
    reader
        .feed(body)
        .or_else(|| reader.finish())
        .expect("a usage event")
}

#[tokio::test(start_paused = true)]
async fn openai_answers_carry_usage_and_rate_limit_headers() {
    let front = front(sim(LlmShape::OpenAi).build().unwrap());
    let (response, body) = send(&front, request(LlmShape::OpenAi, ask(1_000, false))).await;
    assert_eq!(response.status(), 200);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["usage"]["prompt_tokens"], 100);
    assert_eq!(body["usage"]["completion_tokens"], 20);
    assert_eq!(header(&response, "x-ratelimit-limit-requests"), "100");
    assert_eq!(header(&response, "x-ratelimit-remaining-requests"), "99");
    assert_eq!(header(&response, "x-ratelimit-limit-tokens"), "10000");
    // Charged: 100 input + 1,000 max_tokens.
    assert_eq!(header(&response, "x-ratelimit-remaining-tokens"), "8900");
    // 1,100 tokens of a 10,000-a-minute bucket refill in 6.6 s.
    assert_eq!(header(&response, "x-ratelimit-reset-tokens"), "6.6s");
    assert_eq!(header(&response, "x-ratelimit-reset-requests"), "600ms");
    let limits = rate_limits(response.headers(), SystemTime::UNIX_EPOCH + WALL);
    let tokens = limits.tokens.unwrap();
    assert_eq!(tokens.remaining, Some(8_900));
    assert_eq!(tokens.reset, Some(Duration::from_millis(6_600)));
    assert_eq!(
        HttpClassifier::new().classify(Ok(&response)).kind,
        OutcomeKind::Success
    );
}

#[tokio::test(start_paused = true)]
async fn openai_streams_end_with_a_usage_chunk_and_done() {
    let front = front(sim(LlmShape::OpenAi).build().unwrap());
    let (response, body) = send(&front, request(LlmShape::OpenAi, ask(1_000, true))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "text/event-stream");
    let text = std::str::from_utf8(&body).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert!(text.contains("\"object\":\"chat.completion.chunk\""));
    let StreamEnd::Usage(usage) = stream_usage(&body) else {
        panic!("no usage")
    };
    assert_eq!(
        (usage.shape, usage.input, usage.output),
        (StreamShape::OpenAi, 100, 20)
    );
    // Without include_usage there is no usage chunk.
    let mut plain = ask(1_000, true);
    plain.as_object_mut().unwrap().remove("stream_options");
    let (_, body) = send(&front, request(LlmShape::OpenAi, plain)).await;
    let mut reader = SseUsageReader::new();
    assert_eq!(reader.feed(&body).or_else(|| reader.finish()), None);
}

#[tokio::test(start_paused = true)]
async fn anthropic_streams_carry_usage_in_message_start_and_message_delta() {
    let front = front(sim(LlmShape::Anthropic).build().unwrap());
    let body = json!({
        "model": "claude-3-5-haiku",
        "system": "y".repeat(40),
        "messages": [{"role": "user", "content": [{"type": "text", "text": "x".repeat(360)}]}],
        "max_tokens": 500,
        "stream": true,
    });
    let (response, bytes) = send(&front, request(LlmShape::Anthropic, body.clone())).await;
    assert_eq!(response.status(), 200);
    let text = std::str::from_utf8(&bytes).unwrap();
    for event in [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ] {
        assert!(text.contains(&format!("event: {event}\n")), "{event}");
    }
    let StreamEnd::Usage(usage) = stream_usage(&bytes) else {
        panic!("no usage")
    };
    assert_eq!(
        (usage.shape, usage.input, usage.output),
        (StreamShape::Anthropic, 100, 20)
    );
    assert_eq!(
        header(&response, "anthropic-ratelimit-requests-limit"),
        "100"
    );
    assert_eq!(
        header(&response, "anthropic-ratelimit-tokens-remaining"),
        "9400"
    );
    // 600 tokens refill in 3.6 s, on the simulator's wall clock (rounded up to the second).
    assert_eq!(
        header(&response, "anthropic-ratelimit-tokens-reset"),
        "2023-11-14T22:13:24Z"
    );
    // The JSON answer.
    let mut plain = body;
    plain["stream"] = json!(false);
    let (_, bytes) = send(&front, request(LlmShape::Anthropic, plain)).await;
    let reply: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(reply["type"], "message");
    assert_eq!(
        reply["usage"],
        json!({"input_tokens": 100, "output_tokens": 20})
    );
}

#[tokio::test(start_paused = true)]
async fn over_the_token_bucket_openai_answers_429_with_retry_after_ms() {
    let front = front(sim(LlmShape::OpenAi).build().unwrap());
    // 100 + 4,000 tokens each: two fit in the 10,000 bucket, the third does not.
    for _ in 0..2 {
        let (response, _) = send(&front, request(LlmShape::OpenAi, ask(4_000, false))).await;
        assert_eq!(response.status(), 200);
    }
    let (response, body) = send(&front, request(LlmShape::OpenAi, ask(4_000, false))).await;
    assert_eq!(response.status(), 429);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_exceeded");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    // 1,800 left plus 1 s of refill during the two answers (167): 4,100 needed, 12.8 s.
    let ms: u64 = header(&response, "retry-after-ms").parse().unwrap();
    let secs: u64 = header(&response, "retry-after").parse().unwrap();
    assert_eq!(ms, 12_800);
    assert_eq!(secs, ms.div_ceil(1_000));
    // A throttle; its scope stays unknown, since no bucket reads zero (the call was larger
    // than what was left).
    let outcome = HttpClassifier::new().classify(Ok(&response));
    assert_eq!(outcome.kind, OutcomeKind::Throttled(ThrottleScope::Unknown));
    let delay = outcome.retry_after.unwrap();
    assert!(Duration::from_millis(ms) <= delay && delay <= Duration::from_secs(secs));
    // After that wait, it fits.
    tokio::time::advance(Duration::from_millis(ms)).await;
    let (response, _) = send(&front, request(LlmShape::OpenAi, ask(4_000, false))).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test(start_paused = true)]
async fn past_the_billing_cap_every_call_is_insufficient_quota() {
    let front = front(sim(LlmShape::OpenAi).billing_cap(2_500).build().unwrap());
    for expected in [200, 200, 429, 429] {
        let (response, body) = send(&front, request(LlmShape::OpenAi, ask(1_000, false))).await;
        assert_eq!(response.status(), expected);
        if expected == 429 {
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["error"]["type"], "insufficient_quota");
            assert_eq!(body["error"]["code"], "insufficient_quota");
            assert!(response.headers().get("retry-after-ms").is_none());
        }
    }
    let stats = front.llm(LlmShape::OpenAi).unwrap().stats();
    assert_eq!(stats.insufficient_quota, 2);
    assert_eq!(stats.counts.throttled(), 0);
}

#[tokio::test(start_paused = true)]
async fn anthropic_refusals_are_rate_limit_errors_and_529_overloads() {
    let overloaded = sim(LlmShape::Anthropic)
        .overload(Episode::new(
            Duration::from_secs(10),
            Duration::from_secs(5),
        ))
        .build()
        .unwrap();
    let front = front(overloaded);
    let call = |max_tokens| {
        request(
            LlmShape::Anthropic,
            json!({"messages": [{"role": "user", "content": "x".repeat(400)}], "max_tokens": max_tokens}),
        )
    };
    let (response, _) = send(&front, call(9_000)).await;
    assert_eq!(response.status(), 200);
    let (response, body) = send(&front, call(9_000)).await;
    assert_eq!(response.status(), 429);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    // 900 left plus 0.5 s of refill (83): 9,100 needed, 48.7 s, rounded up.
    let secs: u64 = header(&response, "retry-after").parse().unwrap();
    assert_eq!(secs, 49);
    assert!(matches!(
        HttpClassifier::new().classify(Ok(&response)).kind,
        OutcomeKind::Throttled(_)
    ));
    tokio::time::advance(Duration::from_secs(10)).await;
    let (response, body) = send(&front, call(10)).await;
    assert_eq!(response.status(), 529);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["type"], "overloaded_error");
    assert_eq!(
        HttpClassifier::new().classify(Ok(&response)).kind,
        OutcomeKind::Overloaded
    );
    // Bad input: the vendor's 400.
    let (response, body) = send(
        &front,
        request(LlmShape::Anthropic, json!({"messages": []})),
    )
    .await;
    assert_eq!(response.status(), 400);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
}

/// A real HTTP client (hyper) against the front on a loopback socket.
#[tokio::test]
async fn a_hyper_client_streams_from_the_front_on_loopback() {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let front = SimService::builder()
        .llm(
            sim(LlmShape::OpenAi)
                .latency(Duration::from_millis(1))
                .per_output_token(Duration::ZERO)
                .build()
                .unwrap(),
        )
        .llm(
            sim(LlmShape::Anthropic)
                .latency(Duration::from_millis(1))
                .per_output_token(Duration::ZERO)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), front)
        .await
        .unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let uri = format!("{}{}", server.url(), LlmShape::OpenAi.path());
    let request = Request::post(uri)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(ask(100, true).to_string())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut reader = SseUsageReader::new();
    let mut body = response.into_body();
    let mut end = None;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame.unwrap().data_ref() {
            end = end.or(reader.feed(data));
        }
    }
    assert!(matches!(end, Some(StreamEnd::Usage(u)) if u.input == 100 && u.output == 20));
    let uri = format!("{}{}", server.url(), LlmShape::Anthropic.path());
    let request = Request::post(uri)
        .body(Full::new(Bytes::from(
            json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}).to_string(),
        )))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let reply: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(reply["usage"]["output_tokens"], 5);
    server.shutdown().await.unwrap();
}

/// The whole chain: the stack with admission in front of the simulator's Anthropic-style
/// endpoint, a streamed answer handed to its body and settled from its usage events.
#[tokio::test(start_paused = true)]
async fn a_streamed_answer_from_the_front_settles_the_stack_s_reservation() {
    use tower::Service;
    use tower_headroom::admission::{Cost, FixedCost, Learning, Limit, Quota};
    use tower_headroom::fallback::Target;
    use tower_headroom::llm_http::sse::{SseUsage, settle_stream};
    use tower_headroom::stack::StackBuilder;

    let front = front(sim(LlmShape::Anthropic).build().unwrap());
    let quota: Quota<&'static str> = Quota::new(
        Limit::per_minute()
            .units(100_000)
            .learning(Learning::OFF)
            .build()
            .unwrap(),
    );
    let mut stack = StackBuilder::http()
        .target(Target::new("claude", "claude"))
        .admission(quota.clone(), FixedCost(Cost::units(5_000)))
        .usage(SseUsage::new())
        .services(vec![front.clone()])
        .unwrap();
    let body = json!({
        "messages": [{"role": "user", "content": "x".repeat(400)}],
        "max_tokens": 500,
        "stream": true,
    });
    let response = ServiceExt::<Request<Full<Bytes>>>::ready(&mut stack)
        .await
        .unwrap()
        .call(request(LlmShape::Anthropic, body))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let spent = || {
        quota
            .stats(&"claude", tokio::time::Instant::now())
            .and_then(|s| s.units_spent)
    };
    assert_eq!(spent(), Some(5_000));
    let events = settle_stream(response).into_body().collect().await.unwrap();
    assert!(
        std::str::from_utf8(&events.to_bytes())
            .unwrap()
            .ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
    );
    // 100 input + 20 output tokens.
    assert_eq!(spent(), Some(120));
}
