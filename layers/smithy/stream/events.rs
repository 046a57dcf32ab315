//! What one event-stream message of a Bedrock stream says about the call: nothing yet, its
//! usage, or that it failed (and how, by the AWS error table).
//!
//! Shapes read (the module docs of [`super`] cite AWS's references):
//! - ConverseStream `metadata`: `{"usage": {"inputTokens", "outputTokens",
//!   "cacheReadInputTokens"?, "cacheWriteInputTokens"?}, …}`;
//! - InvokeModelWithResponseStream `chunk`: `{"bytes": "<base64>"}`
//!   ([PayloadPart](https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_PayloadPart.html)),
//!   whose decoded bytes are the model's own JSON chunk. Bedrock adds
//!   `"amazon-bedrock-invocationMetrics": {"inputTokenCount", "outputTokenCount",
//!   "invocationLatency", "firstByteLatency"}` to the last chunk of every model's stream;
//!   `cacheReadInputTokenCount` / `cacheWriteInputTokenCount` are read when present (AWS
//!   documents no cache fields there; the names follow the `x-amzn-bedrock-cache-*` headers).
//!   Without the metrics, an Anthropic stream's own counts
//!   ([Messages streaming](https://docs.anthropic.com/en/docs/build-with-claude/streaming)):
//!   `message_start`'s `message.usage` (input and cache tokens), `message_delta`'s
//!   `usage.output_tokens` (the cumulative output count), read at `message_stop`;
//! - an `exception` message (`:exception-type`, payload `{"message": …}`) or an `error`
//!   message (`:error-code`, `:error-message`).

use aws_smithy_types::event_stream::{HeaderValue, Message};
use serde_json::Value;

use crate::bedrock::TokenCounts;
use crate::classify::aws;
use crate::{Outcome, OutcomeKind};

/// What a message says about the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Nothing that ends the call.
    Nothing,
    /// The call's usage: it completed.
    Usage(TokenCounts),
    /// The call failed with this outcome, classified by the AWS error table.
    Failed(Outcome),
}

/// Reads a stream's messages in order, keeping what an Anthropic stream reports before it
/// ends.
#[derive(Debug, Default)]
pub(crate) struct EventReader {
    /// `message_start`'s counts (output 0 until `message_delta`).
    anthropic: Option<TokenCounts>,
}

impl EventReader {
    /// What `message` says.
    pub(crate) fn read(&mut self, message: &Message) -> Seen {
        match header(message, ":message-type") {
            Some("event") => match header(message, ":event-type") {
                Some("metadata") => {
                    metadata_usage(message.payload()).map_or(Seen::Nothing, Seen::Usage)
                }
                Some("chunk") => self.chunk(message.payload()),
                _ => Seen::Nothing,
            },
            Some("exception") => {
                let code = header(message, ":exception-type").unwrap_or_default();
                let text = exception_message(message.payload());
                Seen::Failed(failure(code, text.as_deref()))
            }
            Some("error") => {
                let code = header(message, ":error-code").unwrap_or_default();
                Seen::Failed(failure(code, header(message, ":error-message")))
            }
            _ => Seen::Nothing,
        }
    }

    /// An InvokeModelWithResponseStream `chunk`'s payload.
    fn chunk(&mut self, payload: &[u8]) -> Seen {
        let Some(chunk) = chunk_json(payload) else {
            return Seen::Nothing;
        };
        if let Some(counts) = invocation_metrics(&chunk) {
            return Seen::Usage(counts);
        }
        match chunk.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                self.anthropic = chunk
                    .get("message")
                    .and_then(|m| m.get("usage"))
                    .and_then(|usage| super::super::bedrock::anthropic_usage(usage, false));
                Seen::Nothing
            }
            Some("message_delta") => {
                let output = chunk
                    .get("usage")
                    .and_then(|u| u.get("output_tokens"))
                    .and_then(Value::as_u64);
                if let (Some(counts), Some(output)) = (self.anthropic.as_mut(), output) {
                    counts.output = output;
                }
                Seen::Nothing
            }
            Some("message_stop") => self.anthropic.take().map_or(Seen::Nothing, Seen::Usage),
            _ => Seen::Nothing,
        }
    }
}

/// The outcome of a stream error: `code` and `message` through the one AWS table. An unknown
/// code with no telling message is `Fatal`, as for HTTP errors without a status.
fn failure(code: &str, message: Option<&str>) -> Outcome {
    Outcome::new(match aws::classify(code, message) {
        // Not a success whatever the table says: the stream broke.
        OutcomeKind::Success => OutcomeKind::Fatal,
        kind => kind,
    })
}

/// The string value of header `name`.
fn header<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| match h.value() {
            HeaderValue::String(s) => Some(s.as_str()),
            _ => None,
        })
}

/// The `message` of an exception's JSON payload (only matched, never kept or logged).
fn exception_message(payload: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(payload).ok()?;
    let message = value.get("message").or_else(|| value.get("Message"))?;
    message.as_str().map(str::to_owned)
}

/// The token counts of a `metadata` event's payload: `usage.inputTokens`, `outputTokens`,
/// `cacheReadInputTokens`, `cacheWriteInputTokens` (the cache counts 0 when absent).
fn metadata_usage(payload: &[u8]) -> Option<TokenCounts> {
    let value: Value = serde_json::from_slice(payload).ok()?;
    let usage = value.get("usage")?;
    let cached = |name: &str| usage.get(name).map_or(Some(0), Value::as_u64);
    Some(
        TokenCounts::new(
            usage.get("inputTokens")?.as_u64()?,
            usage.get("outputTokens")?.as_u64()?,
        )
        .with_cache(
            cached("cacheReadInputTokens")?,
            cached("cacheWriteInputTokens")?,
        ),
    )
}

/// The model's own JSON chunk inside a `chunk` payload `{"bytes": "<base64>"}`.
fn chunk_json(payload: &[u8]) -> Option<Value> {
    let part: Value = serde_json::from_slice(payload).ok()?;
    let bytes = aws_smithy_types::base64::decode(part.get("bytes")?.as_str()?).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The counts of a chunk's `amazon-bedrock-invocationMetrics`, when it has them.
fn invocation_metrics(chunk: &Value) -> Option<TokenCounts> {
    let metrics = chunk.get("amazon-bedrock-invocationMetrics")?;
    let cached = |name: &str| metrics.get(name).map_or(Some(0), Value::as_u64);
    Some(
        TokenCounts::new(
            metrics.get("inputTokenCount")?.as_u64()?,
            metrics.get("outputTokenCount")?.as_u64()?,
        )
        .with_cache(
            cached("cacheReadInputTokenCount")?,
            cached("cacheWriteInputTokenCount")?,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ThrottleScope;
    use crate::bedrock::ModelSpec;
    use aws_smithy_types::event_stream::Header;

    fn message(
        kind: &'static str,
        type_header: (&'static str, &'static str),
        payload: &[u8],
    ) -> Message {
        Message::new(payload.to_vec())
            .add_header(Header::new(
                ":message-type",
                HeaderValue::String(kind.into()),
            ))
            .add_header(Header::new(
                type_header.0,
                HeaderValue::String(type_header.1.into()),
            ))
    }

    fn chunk(json: &str) -> Message {
        let payload = serde_json::json!({ "bytes": aws_smithy_types::base64::encode(json) });
        message(
            "event",
            (":event-type", "chunk"),
            payload.to_string().as_bytes(),
        )
    }

    #[test]
    fn reads_metadata_usage_and_ignores_garbage() {
        let payload = br#"{"usage":{"inputTokens":12,"outputTokens":30,"totalTokens":42},"metrics":{"latencyMs":5}}"#;
        let charged = |payload: &[u8], burndown| {
            metadata_usage(payload).map(|c| c.charged(ModelSpec::new(burndown, 1)))
        };
        assert_eq!(charged(payload, 1), Some(42));
        assert_eq!(charged(payload, 5), Some(162));
        // Cache reads are released, cache writes charged.
        let cached = br#"{"usage":{"inputTokens":12,"outputTokens":30,"cacheReadInputTokens":900,"cacheWriteInputTokens":7}}"#;
        assert_eq!(charged(cached, 5), Some(12 + 7 + 150));
        assert_eq!(charged(b"not json", 1), None);
        assert_eq!(charged(br#"{"usage":{"inputTokens":-1}}"#, 1), None);
        assert_eq!(
            charged(
                br#"{"usage":{"inputTokens":1,"outputTokens":1,"cacheReadInputTokens":"x"}}"#,
                1
            ),
            None
        );
    }

    #[test]
    fn a_chunk_with_invocation_metrics_ends_the_call_with_its_counts() {
        let mut reader = EventReader::default();
        assert_eq!(
            reader.read(&chunk(r#"{"outputText":"hi","index":0}"#)),
            Seen::Nothing
        );
        let last = r#"{"outputText":"","completionReason":"FINISH","amazon-bedrock-invocationMetrics":
            {"inputTokenCount":11,"outputTokenCount":29,"invocationLatency":900,"firstByteLatency":300,
             "cacheReadInputTokenCount":500,"cacheWriteInputTokenCount":4}}"#;
        assert_eq!(
            reader.read(&chunk(last)),
            Seen::Usage(TokenCounts::new(11, 29).with_cache(500, 4))
        );
        // Bad base64, bad JSON inside, a negative count: nothing.
        let bad = message("event", (":event-type", "chunk"), br#"{"bytes":"%%%"}"#);
        assert_eq!(reader.read(&bad), Seen::Nothing);
        assert_eq!(reader.read(&chunk("not json")), Seen::Nothing);
        let negative =
            r#"{"amazon-bedrock-invocationMetrics":{"inputTokenCount":-1,"outputTokenCount":2}}"#;
        assert_eq!(reader.read(&chunk(negative)), Seen::Nothing);
    }

    #[test]
    fn an_anthropic_stream_ends_at_message_stop_with_start_and_delta_counts() {
        let mut reader = EventReader::default();
        let start = r#"{"type":"message_start","message":{"id":"m","usage":
            {"input_tokens":25,"output_tokens":1,"cache_read_input_tokens":100,"cache_creation_input_tokens":3}}}"#;
        assert_eq!(reader.read(&chunk(start)), Seen::Nothing);
        let delta =
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}"#;
        assert_eq!(reader.read(&chunk(delta)), Seen::Nothing);
        let message_delta = r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}"#;
        assert_eq!(reader.read(&chunk(message_delta)), Seen::Nothing);
        assert_eq!(
            reader.read(&chunk(r#"{"type":"message_stop"}"#)),
            Seen::Usage(TokenCounts::new(25, 15).with_cache(100, 3))
        );
        // Bedrock's metrics in the same chunk win.
        let mut reader = EventReader::default();
        reader.read(&chunk(start));
        let stop = r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":7,"outputTokenCount":8}}"#;
        assert_eq!(
            reader.read(&chunk(stop)),
            Seen::Usage(TokenCounts::new(7, 8))
        );
        // A stop without a start says nothing.
        let mut reader = EventReader::default();
        assert_eq!(
            reader.read(&chunk(r#"{"type":"message_stop"}"#)),
            Seen::Nothing
        );
    }

    #[test]
    fn exceptions_are_classified_by_the_aws_table_without_regard_to_case() {
        let exception = |kind: &'static str, text: &str| {
            let payload = serde_json::json!({ "message": text }).to_string();
            EventReader::default().read(&message(
                "exception",
                (":exception-type", kind),
                payload.as_bytes(),
            ))
        };
        let failed = |kind| Seen::Failed(Outcome::new(kind));
        assert_eq!(
            exception(
                "throttlingException",
                "Too many tokens, please wait before trying again."
            ),
            failed(OutcomeKind::Throttled(ThrottleScope::Tokens))
        );
        assert_eq!(
            exception("serviceUnavailableException", "Service unavailable."),
            failed(OutcomeKind::Unavailable)
        );
        assert_eq!(
            exception(
                "serviceUnavailableException",
                "Model is currently overloaded."
            ),
            failed(OutcomeKind::Overloaded)
        );
        assert_eq!(
            exception("modelStreamErrorException", "x"),
            failed(OutcomeKind::Transient)
        );
        assert_eq!(
            exception("internalServerException", "x"),
            failed(OutcomeKind::Transient)
        );
        assert_eq!(
            exception("modelTimeoutException", "x"),
            failed(OutcomeKind::Timeout)
        );
        assert_eq!(
            exception("validationException", "x"),
            failed(OutcomeKind::Fatal)
        );
        assert_eq!(
            exception("ThrottlingException", "x"),
            failed(OutcomeKind::Throttled(ThrottleScope::Unknown))
        );
        assert_eq!(
            exception("somethingNewException", "x"),
            failed(OutcomeKind::Fatal)
        );
        // A generic error message, by its code header.
        let error = message("error", (":error-code", "throttlingException"), b"");
        assert_eq!(
            EventReader::default().read(&error),
            failed(OutcomeKind::Throttled(ThrottleScope::Unknown))
        );
    }
}
