//! ConverseStream's reply on the wire: the events Bedrock sends for a text completion, in
//! order, as AWS event-stream frames (`application/vnd.amazon.eventstream`).
//!
//! `messageStart`, one `contentBlockDelta` per [`TOKENS_PER_DELTA`] tokens of text (at least
//! one), `contentBlockStop`, `messageStop` and `metadata` with the call's `usage` and
//! `metrics.latencyMs` — the payload shapes the SDK's `ConverseStreamOutput` unmarshaller
//! reads. Each frame carries the `:event-type`, `:content-type` and `:message-type` headers.
//!
//! The frames (prelude, headers, payload, both CRC32s) are written by
//! `aws-smithy-eventstream`, the codec the SDK decodes them with, rather than by hand.

use aws_smithy_eventstream::error::Error as FrameError;
use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;
use serde_json::{Value, json};

use super::bedrock_wire::{MAX_COMPLETION_TOKENS, Stop, Usage, completion_text};

/// The content type of an event-stream body.
pub(crate) const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";

/// Tokens of filler text per `contentBlockDelta` event: a few words per event, as Bedrock
/// streams, without one frame per token for long completions.
pub(crate) const TOKENS_PER_DELTA: u64 = 32;

/// The whole ConverseStream body of a completed call: its usage, why it stopped, and its
/// latency.
///
/// Fails only if a frame were too large for the format (16 MiB), which these small events
/// never are.
pub(crate) fn converse_stream_reply(
    usage: &Usage,
    stop: Stop,
    latency_ms: u64,
) -> Result<Bytes, FrameError> {
    let text_tokens = usage.output.min(MAX_COMPLETION_TOKENS);
    let deltas = text_tokens.div_ceil(TOKENS_PER_DELTA).max(1);
    let mut buf = Vec::new();
    write_event(&mut buf, "messageStart", &json!({ "role": "assistant" }))?;
    let mut left = text_tokens;
    for _ in 0..deltas {
        let tokens = left.min(TOKENS_PER_DELTA);
        left -= tokens;
        write_event(
            &mut buf,
            "contentBlockDelta",
            &json!({ "contentBlockIndex": 0, "delta": { "text": completion_text(tokens) } }),
        )?;
    }
    write_event(
        &mut buf,
        "contentBlockStop",
        &json!({ "contentBlockIndex": 0 }),
    )?;
    write_event(
        &mut buf,
        "messageStop",
        &json!({ "stopReason": stop.converse_str() }),
    )?;
    write_event(
        &mut buf,
        "metadata",
        &json!({
            "usage": usage.converse(),
            "metrics": { "latencyMs": latency_ms },
        }),
    )?;
    Ok(Bytes::from(buf))
}

/// Appends one `event` frame of type `event_type` with a JSON payload.
fn write_event(
    buf: &mut Vec<u8>,
    event_type: &'static str,
    payload: &Value,
) -> Result<(), FrameError> {
    // Serializing a `Value` cannot fail: its keys are strings.
    let payload = serde_json::to_vec(payload).unwrap_or_default();
    let message = Message::new(payload)
        .add_header(Header::new(
            ":event-type",
            HeaderValue::String(event_type.into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ))
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String("event".into()),
        ));
    write_message_to(&message, buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::read_message_from;
    use bytes::Buf;

    /// Decodes every frame (checking both CRCs) into its event type and JSON payload,
    /// asserting the headers every event must carry.
    fn decode(mut body: Bytes) -> Vec<(String, Value)> {
        let mut events = Vec::new();
        while body.has_remaining() {
            let message = read_message_from(&mut body).expect("a valid frame");
            let header = |name: &str| {
                message
                    .headers()
                    .iter()
                    .find(|h| h.name().as_str() == name)
                    .and_then(|h| h.value().as_string().ok())
                    .map(|s| s.as_str().to_owned())
            };
            assert_eq!(header(":message-type").as_deref(), Some("event"));
            assert_eq!(header(":content-type").as_deref(), Some("application/json"));
            let payload = serde_json::from_slice(message.payload()).expect("a JSON payload");
            events.push((header(":event-type").expect("an event type"), payload));
        }
        events
    }

    fn types(events: &[(String, Value)]) -> Vec<&str> {
        events.iter().map(|(t, _)| t.as_str()).collect()
    }

    fn text(events: &[(String, Value)]) -> String {
        events
            .iter()
            .filter(|(t, _)| t == "contentBlockDelta")
            .map(|(_, p)| p["delta"]["text"].as_str().expect("delta text"))
            .collect()
    }

    #[test]
    fn a_reply_is_start_deltas_stop_and_metadata_in_order() {
        let events =
            decode(converse_stream_reply(&Usage::plain(10, 70), Stop::EndTurn, 1234).unwrap());
        // 70 tokens: 32 + 32 + 6.
        assert_eq!(
            types(&events),
            [
                "messageStart",
                "contentBlockDelta",
                "contentBlockDelta",
                "contentBlockDelta",
                "contentBlockStop",
                "messageStop",
                "metadata"
            ]
        );
        assert_eq!(events[0].1, json!({ "role": "assistant" }));
        assert_eq!(events[1].1["contentBlockIndex"], 0);
        assert_eq!(events[4].1, json!({ "contentBlockIndex": 0 }));
        assert_eq!(events[5].1, json!({ "stopReason": "end_turn" }));
        assert_eq!(
            events[6].1,
            json!({
                "usage": { "inputTokens": 10, "outputTokens": 70, "totalTokens": 80 },
                "metrics": { "latencyMs": 1234 },
            })
        );
        // The text is as long as the output count says: one "sim " per token.
        assert_eq!(text(&events), completion_text(70));
    }

    #[test]
    fn an_empty_completion_still_has_one_delta_and_max_tokens_is_spelled_as_converse_does() {
        let events =
            decode(converse_stream_reply(&Usage::plain(3, 0), Stop::MaxTokens, 0).unwrap());
        assert_eq!(
            types(&events),
            [
                "messageStart",
                "contentBlockDelta",
                "contentBlockStop",
                "messageStop",
                "metadata"
            ]
        );
        assert_eq!(text(&events), "");
        assert_eq!(events[3].1["stopReason"], "max_tokens");
        assert_eq!(events[4].1["usage"]["totalTokens"], 3);
    }

    #[test]
    fn a_corrupted_frame_is_refused_by_the_decoder() {
        // The CRCs are really there: flipping one payload byte breaks the frame.
        let body = converse_stream_reply(&Usage::plain(1, 1), Stop::EndTurn, 1).unwrap();
        let mut bytes = body.to_vec();
        bytes[20] ^= 0x01;
        assert!(read_message_from(&mut Bytes::from(bytes)).is_err());
    }

    /// Through the whole front: the stream's usage is what the simulator settled, and a
    /// throttle before the stream is the ordinary restJson1 error answer.
    #[tokio::test(start_paused = true)]
    async fn the_front_answers_converse_stream_with_frames_or_the_converse_errors() {
        use crate::sim::front::SimService;
        use crate::sim::{BedrockSim, ModelConfig, OutputLength};
        use http_body_util::{BodyExt, Full};
        use std::time::Duration;
        use tower::ServiceExt;

        const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";
        let sim = BedrockSim::builder()
            .model(
                ModelConfig::builder(MODEL, "us-east-1")
                    .rpm(1)
                    .tpm(100_000)
                    .ttft(Duration::from_millis(300))
                    .per_output_token(Duration::from_millis(10))
                    .output(OutputLength::Fixed { tokens: 40 })
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let front = SimService::builder().bedrock(sim).build().unwrap();
        let request = || {
            http::Request::post("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream")
                .body(Full::new(Bytes::from_static(
                    br#"{"messages":[{"role":"user","content":[{"text":"Hello there!"}]}],
                    "inferenceConfig":{"maxTokens":100}}"#,
                )))
                .unwrap()
        };

        let started = tokio::time::Instant::now();
        let response = front.clone().oneshot(request()).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_millis(300 + 40 * 10));
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], EVENT_STREAM);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let events = decode(body);
        assert_eq!(events.first().unwrap().0, "messageStart");
        let metadata = &events.last().unwrap().1;
        let stats = front.bedrock().unwrap().stats();
        let model = stats.model(MODEL, "us-east-1").unwrap();
        assert_eq!(model.counts.completed, 1);
        assert_eq!(metadata["usage"]["inputTokens"], json!(model.input_tokens));
        assert_eq!(
            metadata["usage"]["outputTokens"],
            json!(model.output_tokens)
        );
        assert_eq!(metadata["usage"]["inputTokens"], 3); // 12 characters / 4
        assert_eq!(metadata["usage"]["outputTokens"], 40);
        assert_eq!(metadata["metrics"]["latencyMs"], 700);
        assert_eq!(text(&events), completion_text(40));

        // Over the 1 RPM quota: the throttle is an HTTP error, not a stream.
        let response = front.clone().oneshot(request()).await.unwrap();
        assert_eq!(response.status(), 429);
        assert_eq!(
            response.headers()["x-amzn-errortype"],
            "ThrottlingException"
        );
        assert_eq!(response.headers()["content-type"], "application/json");

        // A bad body is refused as for Converse.
        let bad = http::Request::post("/model/m/converse-stream")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        let response = front.clone().oneshot(bad).await.unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(
            response.headers()["x-amzn-errortype"],
            "ValidationException"
        );
    }

    proptest::proptest! {
        #[test]
        fn usage_and_text_follow_the_counts(input in 0u64..1_000_000, output in 0u64..2_000, latency in 0u64..100_000) {
            let events = decode(converse_stream_reply(&Usage::plain(input, output), Stop::EndTurn, latency).unwrap());
            let deltas = events.iter().filter(|(t, _)| t == "contentBlockDelta").count() as u64;
            proptest::prop_assert_eq!(deltas, output.div_ceil(TOKENS_PER_DELTA).max(1));
            proptest::prop_assert_eq!(text(&events).len() as u64, 4 * output);
            let metadata = &events.last().unwrap().1;
            proptest::prop_assert_eq!(&metadata["usage"]["inputTokens"], &json!(input));
            proptest::prop_assert_eq!(&metadata["usage"]["outputTokens"], &json!(output));
            proptest::prop_assert_eq!(&metadata["usage"]["totalTokens"], &json!(input + output));
            proptest::prop_assert_eq!(&metadata["metrics"]["latencyMs"], &json!(latency));
        }
    }
}
