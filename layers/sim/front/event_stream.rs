//! The streamed replies on the wire: the events Bedrock sends for a text completion, in
//! order, as AWS event-stream frames (`application/vnd.amazon.eventstream`).
//!
//! - ConverseStream: `messageStart`, one `contentBlockDelta` per [`TOKENS_PER_DELTA`] tokens
//!   of text (at least one), `contentBlockStop`, `messageStop` and `metadata` with the call's
//!   `usage` and `metrics.latencyMs` — the payload shapes the SDK's `ConverseStreamOutput`
//!   unmarshaller reads.
//! - InvokeModelWithResponseStream: `chunk` events whose payload is `{"bytes": "<base64>"}`
//!   ([PayloadPart](https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_PayloadPart.html)).
//!   For an Anthropic model (`anthropic.` in its id) the decoded chunks are the Messages
//!   streaming events — `message_start` (with `message.usage`: input and cache tokens),
//!   `content_block_start`, `content_block_delta`s, `content_block_stop`, `message_delta`
//!   (with `usage.output_tokens`) and `message_stop`; for other models, Titan-style
//!   `{"outputText", "index", "completionReason"}` chunks. The last chunk carries Bedrock's
//!   `amazon-bedrock-invocationMetrics` (`inputTokenCount`, `outputTokenCount`,
//!   `invocationLatency`, `firstByteLatency`, plus `cacheReadInputTokenCount` and
//!   `cacheWriteInputTokenCount` when the call used the prompt cache), as Bedrock adds it.
//!   `firstByteLatency` is the whole latency: the front sends the frames together.
//! - A [`StreamFault`] (`SimServiceBuilder::stream_exception`) replaces everything after the
//!   first content event with one `exception` message (`:message-type` `exception`,
//!   `:exception-type` the fault's type, payload `{"message": …}`), as Bedrock reports an
//!   error after the `200`
//!   ([ResponseStream](https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ResponseStream.html)).
//!
//! Each event frame carries the `:event-type`, `:content-type` and `:message-type` headers.
//!
//! The frames (prelude, headers, payload, both CRC32s) are written by
//! `aws-smithy-eventstream`, the codec the SDK decodes them with, rather than by hand.

use aws_smithy_eventstream::error::Error as FrameError;
use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;
use serde_json::{Value, json};

use super::bedrock_wire::{MAX_COMPLETION_TOKENS, Stop, Usage, completion_text};
use crate::ConfigError;

/// The content type of an event-stream body.
pub(crate) const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";

/// Tokens of filler text per `contentBlockDelta` event: a few words per event, as Bedrock
/// streams, without one frame per token for long completions.
pub(crate) const TOKENS_PER_DELTA: u64 = 32;

/// An exception every streamed reply sends after its first content event instead of the rest
/// of the stream: its `:exception-type` (as Bedrock spells it, e.g. `throttlingException`)
/// and its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StreamFault {
    pub(crate) exception_type: String,
    pub(crate) message: String,
}

impl StreamFault {
    /// Refuses a type that is empty, longer than 128 bytes or not ASCII letters and digits.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        let name = &self.exception_type;
        let plain = name.bytes().all(|b| b.is_ascii_alphanumeric());
        if name.is_empty() || name.len() > 128 || !plain {
            return Err(ConfigError::new(
                "stream_exception",
                name,
                "must be an exception type: 1 to 128 ASCII letters and digits",
            ));
        }
        Ok(())
    }
}

/// The token counts of each text event: [`TOKENS_PER_DELTA`] at a time, at least one event.
fn deltas(output: u64) -> impl Iterator<Item = u64> {
    let text_tokens = output.min(MAX_COMPLETION_TOKENS);
    let count = text_tokens.div_ceil(TOKENS_PER_DELTA).max(1);
    let mut left = text_tokens;
    (0..count).map(move |_| {
        let tokens = left.min(TOKENS_PER_DELTA);
        left -= tokens;
        tokens
    })
}

/// The whole ConverseStream body of a completed call: its usage, why it stopped, and its
/// latency; with a `fault`, the first delta and then the exception.
///
/// Fails only if a frame were too large for the format (16 MiB), which these small events
/// never are.
pub(crate) fn converse_stream_reply(
    usage: &Usage,
    stop: Stop,
    latency_ms: u64,
    fault: Option<&StreamFault>,
) -> Result<Bytes, FrameError> {
    let mut buf = Vec::new();
    write_event(&mut buf, "messageStart", &json!({ "role": "assistant" }))?;
    for tokens in deltas(usage.output) {
        write_event(
            &mut buf,
            "contentBlockDelta",
            &json!({ "contentBlockIndex": 0, "delta": { "text": completion_text(tokens) } }),
        )?;
        if let Some(fault) = fault {
            write_exception(&mut buf, fault)?;
            return Ok(Bytes::from(buf));
        }
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

/// The whole InvokeModelWithResponseStream body of a completed call on `model` (see the
/// module docs); with a `fault`, the first chunk and then the exception.
pub(crate) fn invoke_stream_reply(
    model: &str,
    id: &str,
    usage: &Usage,
    stop: Stop,
    latency_ms: u64,
    fault: Option<&StreamFault>,
) -> Result<Bytes, FrameError> {
    let mut metrics = json!({
        "inputTokenCount": usage.input,
        "outputTokenCount": usage.output,
        "invocationLatency": latency_ms,
        "firstByteLatency": latency_ms,
    });
    if usage.cache_read > 0 || usage.cache_write > 0 {
        metrics["cacheReadInputTokenCount"] = usage.cache_read.into();
        metrics["cacheWriteInputTokenCount"] = usage.cache_write.into();
    }
    let mut chunks = Vec::new();
    if model.contains("anthropic.") {
        let mut start_usage = usage.anthropic();
        start_usage["output_tokens"] = 1.into();
        chunks.push(json!({
            "type": "message_start",
            "message": {
                "id": id, "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": start_usage,
            },
        }));
        chunks.push(json!({
            "type": "content_block_start", "index": 0,
            "content_block": { "type": "text", "text": "" },
        }));
        for tokens in deltas(usage.output) {
            chunks.push(json!({
                "type": "content_block_delta", "index": 0,
                "delta": { "type": "text_delta", "text": completion_text(tokens) },
            }));
        }
        chunks.push(json!({ "type": "content_block_stop", "index": 0 }));
        chunks.push(json!({
            "type": "message_delta",
            "delta": { "stop_reason": stop.anthropic_str(), "stop_sequence": null },
            "usage": { "output_tokens": usage.output },
        }));
        chunks.push(json!({ "type": "message_stop", "amazon-bedrock-invocationMetrics": metrics }));
    } else {
        for tokens in deltas(usage.output) {
            chunks.push(json!({
                "outputText": completion_text(tokens), "index": 0, "completionReason": null,
            }));
        }
        let reason = match stop {
            Stop::EndTurn => "FINISH",
            Stop::MaxTokens => "LENGTH",
        };
        chunks.push(json!({
            "outputText": "", "index": 0, "completionReason": reason,
            "amazon-bedrock-invocationMetrics": metrics,
        }));
    }
    let mut buf = Vec::new();
    for chunk in &chunks {
        // Serializing a `Value` cannot fail: its keys are strings.
        let bytes = serde_json::to_vec(chunk).unwrap_or_default();
        let payload = json!({ "bytes": aws_smithy_types::base64::encode(bytes) });
        write_event(&mut buf, "chunk", &payload)?;
        if let Some(fault) = fault {
            write_exception(&mut buf, fault)?;
            break;
        }
    }
    Ok(Bytes::from(buf))
}

/// Appends one `exception` frame: Bedrock's error inside a stream.
fn write_exception(buf: &mut Vec<u8>, fault: &StreamFault) -> Result<(), FrameError> {
    let payload = serde_json::to_vec(&json!({ "message": fault.message })).unwrap_or_default();
    let message = Message::new(payload)
        .add_header(Header::new(
            ":exception-type",
            HeaderValue::String(fault.exception_type.clone().into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ))
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String("exception".into()),
        ));
    write_message_to(&message, buf)
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
        let events = decode(
            converse_stream_reply(&Usage::plain(10, 70), Stop::EndTurn, 1234, None).unwrap(),
        );
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
            decode(converse_stream_reply(&Usage::plain(3, 0), Stop::MaxTokens, 0, None).unwrap());
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
        let body = converse_stream_reply(&Usage::plain(1, 1), Stop::EndTurn, 1, None).unwrap();
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

    /// Every frame's message type, event or exception type, and JSON payload (a `chunk`'s
    /// decoded bytes).
    fn decode_any(mut body: Bytes) -> Vec<(String, String, Value)> {
        let mut frames = Vec::new();
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
            let kind = header(":message-type").expect("a message type");
            let name = header(":event-type")
                .or_else(|| header(":exception-type"))
                .expect("an event or exception type");
            let mut payload: Value = serde_json::from_slice(message.payload()).unwrap();
            if name == "chunk" {
                let bytes =
                    aws_smithy_types::base64::decode(payload["bytes"].as_str().unwrap()).unwrap();
                payload = serde_json::from_slice(&bytes).unwrap();
            }
            frames.push((kind, name, payload));
        }
        frames
    }

    #[test]
    fn an_anthropic_invoke_stream_is_its_messages_events_with_bedrocks_metrics_last() {
        let usage = Usage {
            input: 10,
            output: 40,
            cache_read: 100,
            cache_write: 0,
        };
        let body = invoke_stream_reply(
            "us.anthropic.claude-3-5-haiku-20241022-v1:0",
            "msg_1",
            &usage,
            Stop::EndTurn,
            250,
            None,
        )
        .unwrap();
        let frames = decode_any(body);
        assert!(frames.iter().all(|(k, n, _)| k == "event" && n == "chunk"));
        let types: Vec<&str> = frames
            .iter()
            .map(|(.., p)| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let start = &frames[0].2["message"]["usage"];
        assert_eq!(start["input_tokens"], 10);
        assert_eq!(start["cache_read_input_tokens"], 100);
        assert_eq!(frames[5].2["usage"]["output_tokens"], 40);
        let metrics = &frames[6].2["amazon-bedrock-invocationMetrics"];
        assert_eq!(
            *metrics,
            json!({
                "inputTokenCount": 10, "outputTokenCount": 40, "invocationLatency": 250,
                "firstByteLatency": 250, "cacheReadInputTokenCount": 100,
                "cacheWriteInputTokenCount": 0,
            })
        );
        let text: String = frames
            .iter()
            .filter_map(|(.., p)| p["delta"]["text"].as_str())
            .collect();
        assert_eq!(text, completion_text(40));
    }

    #[test]
    fn another_models_invoke_stream_is_text_chunks_with_the_metrics_last() {
        let frames = decode_any(
            invoke_stream_reply(
                "amazon.titan-text-express-v1",
                "m",
                &Usage::plain(3, 5),
                Stop::MaxTokens,
                9,
                None,
            )
            .unwrap(),
        );
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].2["outputText"], completion_text(5));
        let last = &frames[1].2;
        assert_eq!(last["completionReason"], "LENGTH");
        assert_eq!(
            last["amazon-bedrock-invocationMetrics"],
            json!({ "inputTokenCount": 3, "outputTokenCount": 5, "invocationLatency": 9, "firstByteLatency": 9 })
        );
    }

    #[test]
    fn a_fault_ends_either_stream_after_its_first_content_event() {
        let fault = StreamFault {
            exception_type: String::from("throttlingException"),
            message: String::from("Too many tokens, please wait before trying again."),
        };
        let usage = Usage::plain(10, 100);
        let converse =
            decode_any(converse_stream_reply(&usage, Stop::EndTurn, 1, Some(&fault)).unwrap());
        let names: Vec<(&str, &str)> = converse
            .iter()
            .map(|(k, n, _)| (k.as_str(), n.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("event", "messageStart"),
                ("event", "contentBlockDelta"),
                ("exception", "throttlingException")
            ]
        );
        assert_eq!(converse[2].2, json!({ "message": fault.message }));
        let invoke = decode_any(
            invoke_stream_reply(
                "anthropic.claude-3-haiku-20240307-v1:0",
                "m",
                &usage,
                Stop::EndTurn,
                1,
                Some(&fault),
            )
            .unwrap(),
        );
        assert_eq!(invoke.len(), 2);
        assert_eq!(invoke[0].2["type"], "message_start");
        assert_eq!(
            (invoke[1].0.as_str(), invoke[1].1.as_str()),
            ("exception", "throttlingException")
        );
    }

    #[test]
    fn a_stream_exception_must_be_a_plain_type() {
        use crate::sim::front::SimService;
        for bad in ["", "throttling Exception", "x\ny", &"a".repeat(129)] {
            let error = SimService::builder()
                .stream_exception(bad, "m")
                .build()
                .unwrap_err();
            assert!(error.to_string().contains("stream_exception"), "{error}");
        }
        assert!(
            SimService::builder()
                .stream_exception("modelStreamErrorException", "m")
                .build()
                .is_ok()
        );
    }

    proptest::proptest! {
        #[test]
        fn usage_and_text_follow_the_counts(input in 0u64..1_000_000, output in 0u64..2_000, latency in 0u64..100_000) {
            let events = decode(converse_stream_reply(&Usage::plain(input, output), Stop::EndTurn, latency, None).unwrap());
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
