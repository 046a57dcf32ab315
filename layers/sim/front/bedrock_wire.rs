//! Bedrock Runtime's restJson1 wire format, as far as the simulator needs it: the operation
//! and model id in the path, the region in the SigV4 credential scope, the token counts in a
//! Converse or Anthropic-messages body, and the reply bodies.
//!
//! Input tokens are *estimated* from the request text: one token per four characters
//! (rounded up) of every text the model would read — the `text` of message content blocks
//! (or a message's plain string content) and the system prompt; images and other non-text
//! blocks are not counted.
//! That is the usual rule of thumb for English text with Claude-family tokenizers; exact counts
//! would need the model's tokenizer, and the quota semantics only need a stable, plausible
//! number. The text itself is only counted, never kept or logged.

use percent_encoding::percent_decode_str;
use serde_json::{Map, Value, json};

use super::prompt_cache::{self, CachePrefix};
use super::wire::WireError;

/// Characters per estimated token.
pub(crate) const CHARS_PER_TOKEN: u64 = 4;

/// The Bedrock operations the front speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BedrockOp {
    /// `POST /model/{modelId}/converse`
    Converse,
    /// `POST /model/{modelId}/converse-stream` (a Converse body; the reply is an event stream)
    ConverseStream,
    /// `POST /model/{modelId}/invoke` (Anthropic messages body)
    Invoke,
    /// `POST /model/{modelId}/invoke-with-response-stream` (Anthropic messages body; the reply
    /// is an event stream of `chunk`s)
    InvokeStream,
}

impl BedrockOp {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            BedrockOp::Converse => "Converse",
            BedrockOp::ConverseStream => "ConverseStream",
            BedrockOp::Invoke => "InvokeModel",
            BedrockOp::InvokeStream => "InvokeModelWithResponseStream",
        }
    }
}

/// Splits `/model/{modelId}/{converse|converse-stream|invoke|invoke-with-response-stream}` into the decoded model id and the operation.
///
/// The SDK percent-encodes the model id as one path segment, so an inference-profile ARN's
/// `:` and `/` arrive as `%3A` and `%2F`; a decoded id that is empty, not UTF-8 or longer than
/// 2048 bytes (Bedrock's limit) is refused.
pub(crate) fn parse_path(path: &str) -> Option<(String, BedrockOp)> {
    let rest = path.strip_prefix("/model/")?;
    let (raw_id, op) = rest.rsplit_once('/')?;
    let op = match op {
        "converse" => BedrockOp::Converse,
        "converse-stream" => BedrockOp::ConverseStream,
        "invoke" => BedrockOp::Invoke,
        "invoke-with-response-stream" => BedrockOp::InvokeStream,
        _ => return None,
    };
    // An undecoded '/' would mean the id was not one segment.
    if raw_id.is_empty() || raw_id.contains('/') {
        return None;
    }
    let id = percent_decode_str(raw_id).decode_utf8().ok()?;
    if id.is_empty() || id.len() > 2048 || id.chars().any(char::is_control) {
        return None;
    }
    Some((id.into_owned(), op))
}

/// The region of a SigV4 `Authorization` header's credential scope:
/// `AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/bedrock/aws4_request, ...`.
///
/// Only the region is taken out, and only if it looks like one (lowercase letters, digits and
/// dashes, at most 32): the rest of the header is a credential and is never copied or logged.
pub(crate) fn region_from_authorization(header: &str) -> Option<&str> {
    let scope = header.split("Credential=").nth(1)?;
    let scope = scope.split([',', ' ']).next()?;
    let mut parts = scope.split('/');
    let _access_key = parts.next()?;
    let _date = parts.next()?;
    let region = parts.next()?;
    let valid = !region.is_empty()
        && region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    valid.then_some(region)
}

/// What a request asks of the model: its estimated input tokens and its output cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ask {
    pub input_tokens: u64,
    /// `None` when the request names no cap (Converse's `inferenceConfig.maxTokens` is
    /// optional).
    pub max_tokens: Option<u64>,
    /// The prefix the request marks for the prompt cache, part of `input_tokens`.
    pub cache: Option<CachePrefix>,
}

/// Estimated tokens for `chars` characters of text.
pub(crate) fn estimate_tokens(chars: u64) -> u64 {
    chars.div_ceil(CHARS_PER_TOKEN)
}

/// Characters of the text inside `value`: a string itself (Anthropic's `"content": "..."` and
/// `"system": "..."`), else every `text` field found recursively (Converse's and Anthropic's
/// content blocks, tool results). Other fields — block types, image bytes, ids — are not
/// model text and are not counted.
pub(crate) fn text_chars(value: &Value) -> u64 {
    fn blocks(value: &Value) -> u64 {
        match value {
            Value::Array(items) => items.iter().map(blocks).sum(),
            Value::Object(map) => map
                .iter()
                .map(|(key, v)| match v {
                    Value::String(s) if key == "text" => s.chars().count() as u64,
                    _ => blocks(v),
                })
                .sum(),
            _ => 0,
        }
    }
    match value {
        Value::String(s) => s.chars().count() as u64,
        other => blocks(other),
    }
}

fn object(body: &[u8]) -> Result<Map<String, Value>, WireError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(WireError::serialization(
            "The request body must be a JSON object.",
        )),
        Err(_) => Err(WireError::serialization(
            "The request body is not valid JSON.",
        )),
    }
}

fn positive_int(value: &Value, field: &str) -> Result<u64, WireError> {
    match value.as_u64() {
        Some(n) if n >= 1 => Ok(n),
        _ => Err(WireError::validation(format!(
            "1 validation error detected: Value at '{field}' failed to satisfy constraint: Member must be an integer greater than or equal to 1"
        ))),
    }
}

/// Reads a Converse body: `messages` (required, non-empty), `system`,
/// `inferenceConfig.maxTokens`.
pub(crate) fn parse_converse(body: &[u8]) -> Result<Ask, WireError> {
    let map = object(body)?;
    let messages = match map.get("messages") {
        Some(Value::Array(messages)) if !messages.is_empty() => messages,
        Some(Value::Array(_)) => {
            return Err(WireError::validation(
                "A conversation must start with a user message. Try again with a conversation that starts with a user message.",
            ));
        }
        Some(_) => return Err(WireError::serialization("'messages' must be a list.")),
        None => {
            return Err(WireError::validation(
                "1 validation error detected: Value null at 'messages' failed to satisfy constraint: Member must not be null",
            ));
        }
    };
    let chars: u64 = messages
        .iter()
        .map(|m| m.get("content").map_or(0, text_chars))
        .sum::<u64>()
        + map.get("system").map_or(0, text_chars);
    let max_tokens = match map.get("inferenceConfig").and_then(|c| c.get("maxTokens")) {
        None | Some(Value::Null) => None,
        Some(v) => Some(positive_int(v, "inferenceConfig.maxTokens")?),
    };
    Ok(Ask {
        input_tokens: estimate_tokens(chars),
        max_tokens,
        cache: prompt_cache::prefix(&map),
    })
}

/// Reads an Anthropic messages body (InvokeModel on a Claude model): `max_tokens` (required),
/// `messages` (required, non-empty), `system`.
pub(crate) fn parse_anthropic(body: &[u8]) -> Result<Ask, WireError> {
    let map = object(body)?;
    let Some(max_tokens) = map.get("max_tokens") else {
        return Err(WireError::validation(
            "Malformed input request: #: required key [max_tokens] not found, please reformat your input and try again.",
        ));
    };
    let max_tokens = positive_int(max_tokens, "max_tokens")?;
    let messages = match map.get("messages") {
        Some(Value::Array(messages)) if !messages.is_empty() => messages,
        _ => {
            return Err(WireError::validation(
                "Malformed input request: #: required key [messages] not found or empty, please reformat your input and try again.",
            ));
        }
    };
    let chars: u64 = messages
        .iter()
        .map(|m| m.get("content").map_or(0, text_chars))
        .sum::<u64>()
        + map.get("system").map_or(0, text_chars);
    Ok(Ask {
        input_tokens: estimate_tokens(chars),
        max_tokens: Some(max_tokens),
        cache: prompt_cache::prefix(&map),
    })
}

/// Filler text of about `tokens` tokens: the simulator's completion (its length is what
/// matters, not its words).
pub(crate) fn completion_text(tokens: u64) -> String {
    // "sim " is four characters, one estimated token; capped so a huge max_tokens cannot make
    // the front allocate without bound.
    "sim ".repeat(usize::try_from(tokens.min(MAX_COMPLETION_TOKENS)).unwrap_or(0))
}

/// The most tokens of filler text a reply carries, whatever the simulator counted.
pub(crate) const MAX_COMPLETION_TOKENS: u64 = 1 << 20;

/// Why a completion stopped, in Converse's and Anthropic's spellings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    EndTurn,
    MaxTokens,
}

impl Stop {
    /// Converse's `stopReason`.
    pub(crate) fn converse_str(self) -> &'static str {
        match self {
            Stop::EndTurn => "end_turn",
            Stop::MaxTokens => "max_tokens",
        }
    }
}

/// A served call's token counts, as the replies report them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    /// Input tokens, cache tokens apart.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: u64,
    /// Input tokens written to the prompt cache.
    pub cache_write: u64,
}

impl Usage {
    /// A call that used no prompt cache.
    #[cfg(test)]
    pub(crate) fn plain(input: u64, output: u64) -> Self {
        Usage {
            input,
            output,
            ..Usage::default()
        }
    }

    /// Converse's `usage` (`TokenUsage`): `inputTokens`, `outputTokens`, `totalTokens` (every
    /// token of the call, cache tokens included) and, when the call used the prompt cache,
    /// `cacheReadInputTokens` and `cacheWriteInputTokens`.
    pub(crate) fn converse(&self) -> Value {
        let total = self
            .input
            .saturating_add(self.output)
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_write);
        let mut usage = json!({
            "inputTokens": self.input,
            "outputTokens": self.output,
            "totalTokens": total,
        });
        if self.cache_read > 0 || self.cache_write > 0 {
            usage["cacheReadInputTokens"] = self.cache_read.into();
            usage["cacheWriteInputTokens"] = self.cache_write.into();
        }
        usage
    }

    /// The Anthropic messages API's `usage`: `input_tokens`, `output_tokens` and, when the
    /// call used the prompt cache, `cache_creation_input_tokens` and
    /// `cache_read_input_tokens`.
    pub(crate) fn anthropic(&self) -> Value {
        let mut usage = json!({
            "input_tokens": self.input,
            "output_tokens": self.output,
        });
        if self.cache_read > 0 || self.cache_write > 0 {
            usage["cache_creation_input_tokens"] = self.cache_write.into();
            usage["cache_read_input_tokens"] = self.cache_read.into();
        }
        usage
    }
}

/// The Converse reply body.
pub(crate) fn converse_reply(usage: &Usage, stop: Stop, latency_ms: u64) -> Value {
    json!({
        "output": {
            "message": {
                "role": "assistant",
                "content": [{ "text": completion_text(usage.output) }],
            }
        },
        "stopReason": stop.converse_str(),
        "usage": usage.converse(),
        "metrics": { "latencyMs": latency_ms },
    })
}

impl Stop {
    /// The Anthropic messages API's `stop_reason`.
    pub(crate) fn anthropic_str(self) -> &'static str {
        match self {
            Stop::EndTurn => "end_turn",
            Stop::MaxTokens => "max_tokens",
        }
    }
}

/// The Anthropic messages reply body of InvokeModel.
pub(crate) fn anthropic_reply(model: &str, id: &str, usage: &Usage, stop: Stop) -> Value {
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{ "type": "text", "text": completion_text(usage.output) }],
        "stop_reason": stop.anthropic_str(),
        "stop_sequence": null,
        "usage": usage.anthropic(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_decode_the_model_id_segment() {
        assert_eq!(
            parse_path("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"),
            Some((
                String::from("anthropic.claude-3-haiku-20240307-v1:0"),
                BedrockOp::Converse
            ))
        );
        assert_eq!(
            parse_path(
                "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-haiku/invoke"
            ),
            Some((
                String::from(
                    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku"
                ),
                BedrockOp::Invoke
            ))
        );
        assert_eq!(parse_path("/model//converse"), None);
        assert_eq!(parse_path("/model/a/b/converse"), None);
        assert_eq!(
            parse_path("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream"),
            Some((
                String::from("anthropic.claude-3-haiku-20240307-v1:0"),
                BedrockOp::ConverseStream
            ))
        );
        assert_eq!(parse_path("/model/m/converse-streams"), None);
        assert_eq!(
            parse_path("/model/m/invoke-with-response-stream"),
            Some((String::from("m"), BedrockOp::InvokeStream))
        );
        assert_eq!(parse_path("/model/m/invoke-with-response-streams"), None);
        assert_eq!(parse_path("/models/m/converse"), None);
        assert_eq!(parse_path("/model/%FF/converse"), None);
        assert_eq!(parse_path("/model/%0A/converse"), None);
    }

    #[test]
    fn the_region_comes_from_the_credential_scope_only() {
        let header = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/eu-west-3/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc";
        assert_eq!(region_from_authorization(header), Some("eu-west-3"));
        assert_eq!(region_from_authorization("Bearer token"), None);
        assert_eq!(
            region_from_authorization("AWS4-HMAC-SHA256 Credential=AK/2024/EU WEST/bedrock"),
            None
        );
        assert_eq!(
            region_from_authorization("AWS4-HMAC-SHA256 Credential=AK"),
            None
        );
    }

    #[test]
    fn converse_counts_message_and_system_text() {
        let body = br#"{"messages":[{"role":"user","content":[{"text":"12345678"}]},
            {"role":"assistant","content":[{"text":"abcd"}]}],
            "system":[{"text":"xy"}],"inferenceConfig":{"maxTokens":300,"temperature":0.5}}"#;
        // 14 characters -> 4 tokens (rounded up).
        assert_eq!(
            parse_converse(body).unwrap(),
            Ask {
                input_tokens: 4,
                max_tokens: Some(300),
                cache: None,
            }
        );
        let body = br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#;
        assert_eq!(parse_converse(body).unwrap().max_tokens, None);
    }

    #[test]
    fn bad_converse_bodies_are_typed_errors() {
        let code = |body: &[u8]| parse_converse(body).unwrap_err().code;
        assert_eq!(code(b"not json"), "SerializationException");
        assert_eq!(code(b"[1,2]"), "SerializationException");
        assert_eq!(code(b"{}"), "ValidationException");
        assert_eq!(code(br#"{"messages":[]}"#), "ValidationException");
        assert_eq!(
            code(br#"{"messages":[{"content":[]}],"inferenceConfig":{"maxTokens":0}}"#),
            "ValidationException"
        );
        assert_eq!(
            code(br#"{"messages":[{"content":[]}],"inferenceConfig":{"maxTokens":"9"}}"#),
            "ValidationException"
        );
    }

    #[test]
    fn anthropic_bodies_need_max_tokens_and_count_string_or_block_content() {
        let body = br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":50,"system":"abcd",
            "messages":[{"role":"user","content":"12345678"},{"role":"user","content":[{"type":"text","text":"abcd"}]}]}"#;
        // The block's "type" is not text: 4 + 8 + 4 = 16 characters.
        assert_eq!(
            parse_anthropic(body).unwrap(),
            Ask {
                input_tokens: 4,
                max_tokens: Some(50),
                cache: None,
            }
        );
        let missing = br#"{"messages":[{"role":"user","content":"x"}]}"#;
        assert_eq!(
            parse_anthropic(missing).unwrap_err().code,
            "ValidationException"
        );
    }

    #[test]
    fn replies_carry_usage() {
        let reply = converse_reply(&Usage::plain(10, 3), Stop::MaxTokens, 42);
        assert_eq!(reply["usage"]["totalTokens"], 13);
        assert!(reply["usage"].get("cacheReadInputTokens").is_none());
        assert_eq!(reply["stopReason"], "max_tokens");
        assert_eq!(
            reply["output"]["message"]["content"][0]["text"],
            "sim sim sim "
        );
        let cached = Usage {
            cache_read: 400,
            cache_write: 20,
            ..Usage::plain(10, 3)
        };
        let reply = converse_reply(&cached, Stop::EndTurn, 42);
        assert_eq!(reply["usage"]["cacheReadInputTokens"], 400);
        assert_eq!(reply["usage"]["cacheWriteInputTokens"], 20);
        assert_eq!(reply["usage"]["totalTokens"], 433);
        let reply = anthropic_reply("m", "msg_1", &cached, Stop::EndTurn);
        assert_eq!(reply["usage"]["output_tokens"], 3);
        assert_eq!(reply["usage"]["cache_read_input_tokens"], 400);
        assert_eq!(reply["usage"]["cache_creation_input_tokens"], 20);
        assert_eq!(reply["stop_reason"], "end_turn");
    }
}
