//! Streamed (server-sent-event) answers settled from their usage event, through the
//! admission layer and the stack, on tokio's paused clock.
#![cfg(feature = "llm-http")]

mod support {
    #[cfg(feature = "metrics")]
    pub mod metrics;
    pub mod spans;
}

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_headroom::HttpClassifier;
use tower_headroom::admission::{
    AdmissionLayer, Cost, Fixed, FixedCost, Learning, Limit, Quota, Settlement,
};
use tower_headroom::fallback::Target;
use tower_headroom::llm_http::sse::{
    MAX_EVENT_BYTES, SseUsage, SseUsageReader, StreamEnd, StreamShape, settle_stream,
};
use tower_headroom::stack::StackBuilder;

const ESTIMATE: u64 = 1_000;

/// A body that yields its chunks one frame at a time.
#[derive(Debug)]
struct Chunks(VecDeque<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

fn chunks(parts: &[&str]) -> Chunks {
    Chunks(parts.iter().map(|p| Bytes::from(p.to_string())).collect())
}

const OPENAI: &[&str] = &[
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello usage error\"}}],\"usage\":null}\n\n",
    // The final usage chunk, split across two frames.
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tok",
    "ens\":120,\"completion_tokens\":30,\"total_tokens\":150}}\r\n\r\n",
    "data: [DONE]\n\n",
];

const ANTHROPIC: &[&str] = &[
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"usage\":{\"input_tokens\":200,\"cache_creation_input_tokens\":10,\"cache_read_input_tokens\":500,\"output_tokens\":1}}}\n\n",
    "event: ping\ndata: {\"type\": \"ping\"}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":40}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
];

fn quota() -> Quota<&'static str> {
    Quota::new(
        Limit::per_minute()
            .requests(1_000)
            .units(1_000_000)
            .learning(Learning::OFF)
            .build()
            .unwrap(),
    )
}

fn spent(quota: &Quota<&'static str>) -> u64 {
    quota
        .stats(&"llm", Instant::now())
        .and_then(|s| s.units_spent)
        .unwrap()
}

fn stream_response(parts: &[&str]) -> http::Response<Chunks> {
    http::Response::builder()
        .header("content-type", "text/event-stream; charset=utf-8")
        .body(chunks(parts))
        .unwrap()
}

/// An upstream answering every call with a stream of `parts`.
fn upstream(
    parts: &'static [&'static str],
) -> impl Service<
    (),
    Response = http::Response<Chunks>,
    Error = Infallible,
    Future = std::future::Ready<Result<http::Response<Chunks>, Infallible>>,
> + Clone {
    tower::service_fn(move |()| std::future::ready(Ok(stream_response(parts))))
}

async fn through_admission(parts: &'static [&'static str], read: Option<usize>) -> u64 {
    let quota = quota();
    let layer = AdmissionLayer::new(
        quota.clone(),
        Fixed::new("llm", FixedCost(Cost::units(ESTIMATE))),
    )
    .usage(SseUsage::new())
    .classify(HttpClassifier::new());
    let svc = layer.layer(upstream(parts));
    let response = svc.oneshot(()).await.unwrap();
    assert!(response.extensions().get::<Settlement>().is_some());
    // Until the body is read, the call counts at its estimate.
    assert_eq!(spent(&quota), ESTIMATE);
    let mut response = settle_stream(response);
    assert!(response.extensions().get::<Settlement>().is_none());
    match read {
        None => {
            let body = response.into_body().collect().await.unwrap().to_bytes();
            // Every byte passed through unchanged.
            assert_eq!(body, parts.concat().as_bytes());
        }
        Some(frames) => {
            for _ in 0..frames {
                response.body_mut().frame().await.unwrap().unwrap();
            }
            drop(response);
        }
    }
    tokio::time::advance(Duration::from_millis(1)).await;
    spent(&quota)
}

#[tokio::test(start_paused = true)]
async fn an_openai_stream_settles_to_its_final_usage_chunk() {
    assert_eq!(through_admission(OPENAI, None).await, 150);
}

#[tokio::test(start_paused = true)]
async fn an_anthropic_stream_settles_to_its_message_delta_usage() {
    // 200 input + 10 cache writes + 40 output (the latest, cumulative); cache reads are free.
    assert_eq!(through_admission(ANTHROPIC, None).await, 250);
}

#[tokio::test(start_paused = true)]
async fn a_stream_dropped_early_keeps_the_estimate() {
    assert_eq!(through_admission(OPENAI, Some(2)).await, ESTIMATE);
    assert_eq!(through_admission(ANTHROPIC, Some(4)).await, ESTIMATE);
}

#[tokio::test(start_paused = true)]
async fn a_plain_answer_is_settled_at_once_and_carries_no_settlement() {
    let quota = quota();
    let layer = AdmissionLayer::new(
        quota.clone(),
        Fixed::new("llm", FixedCost(Cost::units(ESTIMATE))),
    )
    .usage(SseUsage::new().with_inner(|_: &http::Response<String>| tower_headroom::Usage::units(7)))
    .classify(HttpClassifier::new());
    let svc = layer.layer(tower::service_fn(|()| {
        std::future::ready(Ok::<_, Infallible>(
            http::Response::builder()
                .header("content-type", "application/json")
                .body(String::from("{}"))
                .unwrap(),
        ))
    }));
    let response = svc.oneshot(()).await.unwrap();
    assert!(response.extensions().get::<Settlement>().is_none());
    assert_eq!(spent(&quota), 7);
}

#[tokio::test(start_paused = true)]
async fn an_error_answer_with_a_stream_type_is_not_deferred() {
    let quota = quota();
    let layer = AdmissionLayer::new(
        quota.clone(),
        Fixed::new("llm", FixedCost(Cost::units(ESTIMATE))),
    )
    .usage(SseUsage::new())
    .classify(HttpClassifier::new());
    let svc = layer.layer(tower::service_fn(|()| {
        std::future::ready(Ok::<_, Infallible>(
            http::Response::builder()
                .status(429)
                .header("content-type", "text/event-stream")
                .body(String::new())
                .unwrap(),
        ))
    }));
    let response = svc.oneshot(()).await.unwrap();
    assert!(response.extensions().get::<Settlement>().is_none());
    // A throttle spent nothing: refunded at once.
    assert_eq!(spent(&quota), 0);
}

#[tokio::test(start_paused = true)]
async fn the_stack_hands_a_stream_to_its_body_too() {
    for (parts, settled) in [(OPENAI, 150), (ANTHROPIC, 250)] {
        let quota = quota();
        let mut stack = StackBuilder::http()
            .target(Target::new("llm", "llm"))
            .admission(quota.clone(), FixedCost(Cost::units(ESTIMATE)))
            .usage(SseUsage::new())
            .rewrite(upstream(parts), |_: &mut (), _: &&'static str| {})
            .unwrap();
        let response = stack.ready().await.unwrap().call(()).await.unwrap();
        assert_eq!(spent(&quota), ESTIMATE);
        let body = settle_stream(response).into_body().collect().await.unwrap();
        assert_eq!(body.to_bytes(), parts.concat().as_bytes());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(spent(&quota), settled);
    }
}

#[test]
fn the_reader_reads_both_shapes_in_any_framing() {
    for (parts, expected) in [
        (OPENAI, (StreamShape::OpenAi, 120, 30, 0)),
        (ANTHROPIC, (StreamShape::Anthropic, 200, 40, 500)),
    ] {
        let whole = parts.concat();
        // Every split of the stream into bytes gives the same end.
        for step in [1, 2, 3, 7, 64, whole.len()] {
            let mut reader = SseUsageReader::new();
            let end = whole
                .as_bytes()
                .chunks(step)
                .find_map(|c| reader.feed(c))
                .or_else(|| reader.finish());
            let Some(StreamEnd::Usage(usage)) = end else {
                panic!("no usage with step {step}: {end:?}");
            };
            assert_eq!(
                (usage.shape, usage.input, usage.output, usage.cache_read),
                expected
            );
        }
    }
}

#[test]
fn error_events_end_the_stream_as_errors() {
    let mut reader = SseUsageReader::new();
    let end = reader.feed(
        b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
    );
    assert_eq!(end, Some(StreamEnd::Error));
    let mut reader = SseUsageReader::new();
    let end = reader.feed(b"data: {\"error\":{\"message\":\"x\",\"type\":\"server_error\"}}\n\n");
    assert_eq!(end, Some(StreamEnd::Error));
    // A stream cut before its usage tells nothing.
    let mut reader = SseUsageReader::new();
    assert_eq!(reader.feed(OPENAI[0].as_bytes()), None);
    assert_eq!(reader.finish(), None);
}

#[test]
fn oversized_and_malformed_events_are_skipped_without_panicking() {
    let mut reader = SseUsageReader::new();
    // An event larger than the bound, whose text even looks like usage, is skipped whole.
    let mut big =
        b"data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1},\"pad\":\"".to_vec();
    big.extend(std::iter::repeat_n(b'x', MAX_EVENT_BYTES));
    big.extend_from_slice(b"\"}\n\n");
    assert_eq!(reader.feed(&big), None);
    // Garbage: bad JSON, wrong types, negative and huge numbers, stray fields and colons.
    for garbage in [
        &b"data: {not json\n\n"[..],
        b"data: {\"usage\":{\"prompt_tokens\":-1,\"completion_tokens\":2}}\n\n",
        b"data: {\"usage\":{\"prompt_tokens\":\"a\",\"completion_tokens\":2}}\n\n",
        b"data: {\"usage\":[1,2]}\n\n",
        b"data: {\"type\":\"message_delta\",\"usage\":\"x\"}\n\n",
        b":comment\nfield-without-colon\nretry: 10\n\n",
        b"\xff\xfe\x00\r\r\n\n",
    ] {
        assert_eq!(reader.feed(garbage), None);
    }
    // The reader still follows the stream afterwards.
    let end = reader.feed(OPENAI.concat().as_bytes());
    assert!(matches!(end, Some(StreamEnd::Usage(u)) if u.units() == 150));
    // Random bytes in random framings never panic.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..200 {
        let mut reader = SseUsageReader::new();
        for _ in 0..50 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 97) as usize;
            const ALPHABET: &[u8] = b"data: {}\"usage\n\r:[DONE]x1";
            let bytes: Vec<u8> = (0..len)
                .map(|i| ALPHABET[(seed as usize + i * 31) % ALPHABET.len()])
                .collect();
            let _ = reader.feed(&bytes);
        }
        let _ = reader.finish();
    }
}

mod props {
    use proptest::prelude::*;
    use tower_headroom::llm_http::sse::{SseUsageReader, StreamEnd};

    fn read(bytes: &[u8], cuts: &[usize]) -> Option<StreamEnd> {
        let mut reader = SseUsageReader::new();
        let mut at = 0;
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.sort_unstable();
        points.push(bytes.len());
        for point in points {
            if let Some(end) = reader.feed(&bytes[at..point.max(at)]) {
                return Some(end);
            }
            at = point.max(at);
        }
        reader.finish()
    }

    proptest! {
        /// Arbitrary bytes, arbitrarily framed: the reader never panics.
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..2_000),
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            let _ = read(&bytes, &cuts);
        }

        /// A valid stream with noise events mixed in gives the same usage however it is cut.
        #[test]
        fn any_framing_of_a_stream_gives_its_usage(
            prompt in 0u64..1_000_000,
            completion in 0u64..1_000_000,
            noise in proptest::collection::vec("[a-z \"{}:,]{0,40}", 0..10),
            cuts in proptest::collection::vec(any::<usize>(), 0..30),
            crlf in any::<bool>(),
        ) {
            let mut stream = String::new();
            for n in &noise {
                stream.push_str(&format!("data: {{\"choices\":[{{\"delta\":{{\"content\":{n:?}}}}}],\"usage\":null}}\n\n"));
                stream.push_str(": keep-alive\n\n");
            }
            stream.push_str(&format!(
                "data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":{prompt},\"completion_tokens\":{completion}}}}}\n\ndata: [DONE]\n\n"
            ));
            if crlf {
                stream = stream.replace('\n', "\r\n");
            }
            let end = read(stream.as_bytes(), &cuts);
            let Some(StreamEnd::Usage(usage)) = end else {
                return Err(TestCaseError::fail(format!("{end:?}")));
            };
            prop_assert_eq!((usage.input, usage.output), (prompt, completion));
        }
    }
}

/// A stream that ends without a usage event (OpenAI without `include_usage`) is a success at
/// its estimate.
#[tokio::test(start_paused = true)]
async fn a_stream_without_a_usage_event_settles_at_its_estimate() {
    const NO_USAGE: &[&str] = &[
        "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        "data: [DONE]\n\n",
    ];
    assert_eq!(through_admission(NO_USAGE, None).await, ESTIMATE);
}

/// A streamed answer's tokens reach `headroom_tokens_total` under the target that answered,
/// when its usage event arrives (not at the response's head), as a non-streamed answer's do:
/// OpenAI's cached tokens counted apart from its `prompt_tokens`, Anthropic's cache reads and
/// writes as reported.
#[cfg(feature = "metrics")]
#[tokio::test(start_paused = true)]
async fn the_stack_counts_a_streams_tokens_when_its_usage_event_arrives() {
    const OPENAI_CACHED: &[&str] = &[
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":120,\"completion_tokens\":30,\"prompt_tokens_details\":{\"cached_tokens\":100}}}\n\n",
        "data: [DONE]\n\n",
    ];
    // (stream, input, output, cache read, cache write)
    for (parts, counts) in [
        (OPENAI_CACHED, [20, 30, 100, 0]),
        (ANTHROPIC, [200, 40, 500, 10]),
    ] {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let _local = metrics::set_default_local_recorder(&recorder);
        let mut stack = StackBuilder::http()
            .target(Target::new("llm", "llm").model("gpt-4o").region("eu"))
            .admission(quota(), FixedCost(Cost::units(ESTIMATE)))
            .usage(SseUsage::new())
            .rewrite(upstream(parts), |_: &mut (), _: &&'static str| {})
            .unwrap();
        let response = stack.ready().await.unwrap().call(()).await.unwrap();
        let labels = [("target", "llm"), ("model", "gpt-4o"), ("region", "eu")];
        // The head arrived; the tokens are not known yet.
        assert_eq!(
            support::metrics::tokens(&snapshotter.snapshot().into_vec(), &labels),
            [0; 4]
        );
        let settlement = response.extensions().get::<Settlement>().unwrap().clone();
        settle_stream(response).into_body().collect().await.unwrap();
        assert_eq!(
            support::metrics::tokens(&snapshotter.snapshot().into_vec(), &labels),
            counts,
            "{parts:?}"
        );
        // A clone of the settled settlement cannot count the stream twice.
        let twice = tower_headroom::bedrock::TokenCounts {
            input: 1,
            output: 1,
            cache_read: 0,
            cache_write: 0,
        };
        settlement.settle_with_tokens(tower_headroom::Usage::units(2), &twice, Instant::now());
        assert_eq!(
            support::metrics::tokens(&snapshotter.snapshot().into_vec(), &labels),
            [0; 4]
        );
    }
}

/// The admission layer counts a stream's tokens under its own labels, as the stack does per
/// target.
#[cfg(feature = "metrics")]
#[tokio::test(start_paused = true)]
async fn the_admission_layer_counts_a_streams_tokens_under_its_labels() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let layer = AdmissionLayer::new(quota(), Fixed::new("llm", FixedCost(Cost::units(ESTIMATE))))
        .usage(SseUsage::new())
        .classify(HttpClassifier::new())
        .labels(tower_headroom::observe::Labels::target("gpt"));
    let response = layer.layer(upstream(OPENAI)).oneshot(()).await.unwrap();
    let labels = [("target", "gpt")];
    assert_eq!(
        support::metrics::tokens(&snapshotter.snapshot().into_vec(), &labels),
        [0; 4]
    );
    settle_stream(response).into_body().collect().await.unwrap();
    assert_eq!(
        support::metrics::tokens(&snapshotter.snapshot().into_vec(), &labels),
        [120, 30, 0, 0]
    );
}

/// A streamed answer's call span is held by its settlement until the stream ends, and carries
/// the tokens of the stream's usage event then (they are not known when the head arrives).
#[tokio::test(start_paused = true)]
async fn the_call_span_of_a_stream_carries_its_tokens() {
    let recorded = support::spans::recorded(async {
        let mut stack = StackBuilder::http()
            .target(Target::new("llm", "llm").model("claude").region("eu"))
            .admission(quota(), FixedCost(Cost::units(ESTIMATE)))
            .usage(SseUsage::new())
            .rewrite(upstream(ANTHROPIC), |_: &mut (), _: &&'static str| {})
            .unwrap();
        let response = stack.ready().await.unwrap().call(()).await.unwrap();
        settle_stream(response).into_body().collect().await.unwrap();
    })
    .await;
    let call = recorded
        .iter()
        .find(|span| span.name == "headroom.call")
        .expect("a call span");
    assert_eq!(call.field("class"), Some("success"));
    // 200 input + 500 cache read + 10 cache write; 40 output (the latest, cumulative).
    assert_eq!(call.field("gen_ai.usage.input_tokens"), Some("710"));
    assert_eq!(call.field("gen_ai.usage.output_tokens"), Some("40"));
}
