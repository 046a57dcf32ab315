//! The front's OpenAI- and Anthropic-style endpoints: `POST /v1/chat/completions` and
//! `POST /v1/messages` over an [`LlmEndpointSim`] (see its module docs for the vendor facts
//! and their sources).
//!
//! The request's text (`messages[].content`, strings or `text` blocks, and Anthropic's
//! `system`) is counted as one token per four characters, as the Bedrock front does; its
//! `max_tokens` (OpenAI also `max_completion_tokens`; required by Anthropic) bounds the
//! output; `"stream": true` asks for server-sent events (OpenAI adds the final usage chunk
//! when `stream_options.include_usage` is set). The answer (JSON or the whole event stream)
//! is sent once the simulated latency has passed. Every answer, refusals included, carries
//! the vendor's rate-limit headers. Bad input gets the vendor's 400 `invalid_request_error`.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::HeaderValue;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::Head;
use super::bedrock_wire::{estimate_tokens, text_chars};
use super::wire::{JSON, WireResponse, bytes_response};
use crate::ConfigError;
use crate::sim::llm::{LimitState, LlmCall, LlmEndpointSim, LlmRefusal, LlmReply, LlmShape};

/// The content type of a server-sent-event stream.
pub(crate) const EVENT_STREAM: &str = "text/event-stream";

/// What the front reads from a request.
#[derive(Debug)]
struct Ask {
    input_tokens: u64,
    max_tokens: Option<u64>,
    stream: bool,
    include_usage: bool,
    model: String,
}

fn invalid(shape: LlmShape, message: &str) -> WireResponse {
    let body = match shape {
        LlmShape::OpenAi => json!({"error": {
            "message": message, "type": "invalid_request_error", "param": null, "code": null,
        }}),
        _ => {
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}})
        }
    };
    json_answer(StatusCode::BAD_REQUEST, &body)
}

fn json_answer(status: StatusCode, body: &Value) -> WireResponse {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    bytes_response(JSON, status, Bytes::from(bytes), "")
}

/// A model name fit to echo: printable, short; anything else is replaced.
fn model_name(value: Option<&Value>) -> String {
    match value.and_then(Value::as_str) {
        Some(m)
            if !m.is_empty()
                && m.len() <= 128
                && m.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:/@".contains(&b)) =>
        {
            m.to_owned()
        }
        _ => String::from("sim-model"),
    }
}

fn parse(shape: LlmShape, body: &[u8]) -> Result<Ask, &'static str> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return Err("The request body is not a valid JSON object.");
    };
    let Some(Value::Array(messages)) = map.get("messages") else {
        return Err("messages: field required, an array");
    };
    // A message's `content` is a string or an array of blocks with `text`.
    let mut chars: u64 = messages
        .iter()
        .filter_map(|m| m.get("content"))
        .map(text_chars)
        .sum();
    if let (LlmShape::Anthropic, Some(system)) = (shape, map.get("system")) {
        chars = chars.saturating_add(text_chars(system));
    }
    let positive = |name: &str| -> Result<Option<u64>, &'static str> {
        match map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n >= 1 => Ok(Some(n)),
                _ => Err("max_tokens: must be a positive integer"),
            },
        }
    };
    let max_tokens = match shape {
        LlmShape::OpenAi => positive("max_completion_tokens")?.or(positive("max_tokens")?),
        _ => Some(positive("max_tokens")?.ok_or("max_tokens: field required")?),
    };
    let stream = map.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = map
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(Ask {
        input_tokens: estimate_tokens(chars),
        max_tokens,
        stream,
        include_usage,
        model: model_name(map.get("model")),
    })
}

impl super::SimServiceBuilder {
    /// Serves an OpenAI-style (`POST /v1/chat/completions`) or Anthropic-style
    /// (`POST /v1/messages`) endpoint from `sim`, by its shape; a second one of the same shape
    /// replaces the first.
    pub fn llm(mut self, sim: LlmEndpointSim) -> Self {
        self.llm.retain(|s| s.shape() != sim.shape());
        self.llm.push(sim);
        self
    }

    /// The `[openai]` and `[anthropic]` sections of a configuration file.
    pub(super) fn llm_from_file(mut self, file: &super::SimFile) -> Result<Self, ConfigError> {
        for (shape, config) in [
            (LlmShape::OpenAi, &file.openai),
            (LlmShape::Anthropic, &file.anthropic),
        ] {
            if let Some(config) = config {
                self = self.llm(LlmEndpointSim::from_config(shape, config.clone())?);
            }
        }
        Ok(self)
    }
}

impl super::SimService {
    /// The OpenAI- or Anthropic-style endpoint of `shape` behind the front, if any (for its
    /// statistics).
    pub fn llm(&self, shape: LlmShape) -> Option<&LlmEndpointSim> {
        self.inner.llm.iter().find(|s| s.shape() == shape)
    }
}

/// Answers one call to `sim`, or the front's refusal of its body (too large, unreadable).
pub(crate) async fn answer(
    sim: &LlmEndpointSim,
    head: &Head,
    body: Result<Bytes, super::wire::WireError>,
) -> WireResponse {
    match body {
        Ok(body) => handle(sim, head, &body).await,
        Err(error) => {
            let message = if error.status == StatusCode::BAD_REQUEST {
                "The request body could not be read or is too large."
            } else {
                "The request could not be read."
            };
            invalid(sim.shape(), message)
        }
    }
}

/// Answers one call to `sim`.
async fn handle(sim: &LlmEndpointSim, head: &Head, body: &[u8]) -> WireResponse {
    let shape = sim.shape();
    let ask = match parse(shape, body) {
        Ok(ask) => ask,
        Err(message) => return invalid(shape, message),
    };
    let mut call = LlmCall::new(ask.input_tokens, ask.max_tokens);
    if let Some(caller) = &head.caller {
        call = call.caller(caller.clone());
    }
    let now = tokio::time::Instant::now();
    let result = sim.admit(&call, now);
    let latency = match &result {
        Ok(reply) => reply.latency,
        Err(_) => sim.error_latency(),
    };
    tokio::time::sleep_until(crate::sim::after(now, latency)).await;
    let id = format!("{}{}", id_prefix(shape), &head.request_id);
    let mut response = match result {
        Ok(reply) => {
            tracing::debug!(
                shape = ?shape,
                input_tokens = reply.input_tokens,
                output_tokens = reply.output_tokens,
                "sim front: llm call served"
            );
            let mut response = if ask.stream {
                let events = match shape {
                    LlmShape::OpenAi => openai_stream(&id, &ask, &reply),
                    _ => anthropic_stream(&id, &ask, &reply),
                };
                bytes_response(EVENT_STREAM, StatusCode::OK, Bytes::from(events), "")
            } else {
                json_answer(StatusCode::OK, &reply_body(shape, &id, &ask, &reply))
            };
            rate_limit_headers(shape, &reply.limits, response.headers_mut());
            response
        }
        Err(error) => {
            tracing::debug!(shape = ?shape, refusal = ?error.refusal, "sim front: llm call refused");
            refusal(shape, error.refusal, &error.limits)
        }
    };
    response.headers_mut().remove(super::wire::REQUEST_ID);
    let request_id = match shape {
        LlmShape::OpenAi => "x-request-id",
        _ => "request-id",
    };
    if let Ok(value) = HeaderValue::from_str(&head.request_id) {
        response.headers_mut().insert(request_id, value);
    }
    response
}

fn id_prefix(shape: LlmShape) -> &'static str {
    match shape {
        LlmShape::OpenAi => "chatcmpl-",
        _ => "msg_",
    }
}

/// The text of an answer: a fixed word per output token, never anything from the request.
fn text(tokens: u64) -> String {
    "lorem ".repeat(usize::try_from(tokens.min(100_000)).unwrap_or(0))
}

fn reply_body(shape: LlmShape, id: &str, ask: &Ask, reply: &LlmReply) -> Value {
    let text = text(reply.output_tokens);
    match shape {
        LlmShape::OpenAi => json!({
            "id": id,
            "object": "chat.completion",
            "created": 0,
            "model": ask.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": if reply.hit_max_tokens { "length" } else { "stop" },
            }],
            "usage": {
                "prompt_tokens": reply.input_tokens,
                "completion_tokens": reply.output_tokens,
                "total_tokens": reply.input_tokens + reply.output_tokens,
            },
        }),
        _ => json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": ask.model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": if reply.hit_max_tokens { "max_tokens" } else { "end_turn" },
            "stop_sequence": null,
            "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
        }),
    }
}

/// OpenAI's chunks: the role, the text in pieces, the finish reason, the usage chunk when
/// asked for, `[DONE]`.
fn openai_stream(id: &str, ask: &Ask, reply: &LlmReply) -> String {
    let usage_null = if ask.include_usage {
        ",\"usage\":null"
    } else {
        ""
    };
    let chunk = |delta: Value, finish: Value| {
        let choices = json!([{"index": 0, "delta": delta, "finish_reason": finish}]);
        format!(
            "data: {{\"id\":{},\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":{},\"choices\":{}{}}}\n\n",
            json!(id),
            json!(ask.model),
            choices,
            usage_null
        )
    };
    let mut out = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
    for piece in pieces(reply.output_tokens) {
        out.push_str(&chunk(json!({"content": text(piece)}), Value::Null));
    }
    let finish = if reply.hit_max_tokens {
        "length"
    } else {
        "stop"
    };
    out.push_str(&chunk(json!({}), json!(finish)));
    if ask.include_usage {
        let usage = json!({
            "id": id, "object": "chat.completion.chunk", "created": 0, "model": ask.model,
            "choices": [],
            "usage": {
                "prompt_tokens": reply.input_tokens,
                "completion_tokens": reply.output_tokens,
                "total_tokens": reply.input_tokens + reply.output_tokens,
            },
        });
        let _ = write!(out, "data: {usage}\n\n");
    }
    out.push_str("data: [DONE]\n\n");
    out
}

/// Anthropic's events, each with its `event:` name.
fn anthropic_stream(id: &str, ask: &Ask, reply: &LlmReply) -> String {
    let mut out = String::new();
    let mut event = |name: &str, data: Value| {
        let _ = write!(out, "event: {name}\ndata: {data}\n\n");
    };
    event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": ask.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1},
        }}),
    );
    event(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    event("ping", json!({"type": "ping"}));
    for piece in pieces(reply.output_tokens) {
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "text_delta", "text": text(piece)}}),
        );
    }
    event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    );
    let stop = if reply.hit_max_tokens {
        "max_tokens"
    } else {
        "end_turn"
    };
    event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
               "usage": {"output_tokens": reply.output_tokens}}),
    );
    event("message_stop", json!({"type": "message_stop"}));
    out
}

/// The output in up to eight pieces.
fn pieces(tokens: u64) -> impl Iterator<Item = u64> {
    let n = tokens.clamp(1, 8);
    (0..n).map(move |i| tokens / n + u64::from(i < tokens % n))
}

/// A refusal in the vendor's shape, with its headers.
fn refusal(shape: LlmShape, refusal: LlmRefusal, limits: &LimitState) -> WireResponse {
    let (status, body, wait) = match (shape, refusal) {
        (LlmShape::OpenAi, LlmRefusal::Requests { wait } | LlmRefusal::Tokens { wait }) => {
            let what = if matches!(refusal, LlmRefusal::Requests { .. }) {
                format!(
                    "Rate limit reached for requests per min (RPM): Limit {}, Used {}, Requested 1. Please try again in {}.",
                    limits.requests_limit,
                    limits.requests_limit - limits.requests_remaining.min(limits.requests_limit),
                    go_duration(wait)
                )
            } else {
                format!(
                    "Rate limit reached for tokens per min (TPM): Limit {}, Remaining {}. Please try again in {}.",
                    limits.tokens_limit,
                    limits.tokens_remaining,
                    go_duration(wait)
                )
            };
            let body = json!({"error": {
                "message": what, "type": "rate_limit_exceeded",
                "param": null, "code": "rate_limit_exceeded",
            }});
            (StatusCode::TOO_MANY_REQUESTS, body, Some(wait))
        }
        (LlmShape::OpenAi, LlmRefusal::InsufficientQuota) => (
            StatusCode::TOO_MANY_REQUESTS,
            json!({"error": {
                "message": "You exceeded your current quota, please check your plan and billing details.",
                "type": "insufficient_quota", "param": null, "code": "insufficient_quota",
            }}),
            None,
        ),
        (LlmShape::OpenAi, _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": {
                "message": "The engine is currently overloaded, please try again later.",
                "type": "server_error", "param": null, "code": null,
            }}),
            None,
        ),
        (_, LlmRefusal::Requests { wait } | LlmRefusal::Tokens { wait }) => {
            let what = if matches!(refusal, LlmRefusal::Requests { .. }) {
                "This request would exceed the rate limit for your organization of requests per minute."
            } else {
                "This request would exceed the rate limit for your organization of tokens per minute."
            };
            let body =
                json!({"type": "error", "error": {"type": "rate_limit_error", "message": what}});
            (StatusCode::TOO_MANY_REQUESTS, body, Some(wait))
        }
        (_, LlmRefusal::InsufficientQuota) => (
            StatusCode::BAD_REQUEST,
            json!({"type": "error", "error": {"type": "invalid_request_error",
                   "message": "Your credit balance is too low to access the Anthropic API."}}),
            None,
        ),
        (_, _) => (
            // 529, which `http` has no name for.
            StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            None,
        ),
    };
    let mut response = json_answer(status, &body);
    let headers = response.headers_mut();
    rate_limit_headers(shape, limits, headers);
    if let Some(wait) = wait {
        let secs = wait
            .as_secs()
            .saturating_add(u64::from(wait.subsec_nanos() > 0))
            .max(1);
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        if shape == LlmShape::OpenAi {
            let ms = u64::try_from(wait.as_millis())
                .unwrap_or(u64::MAX)
                .saturating_add(u64::from(wait.subsec_nanos() % 1_000_000 > 0))
                .max(1);
            headers.insert("retry-after-ms", HeaderValue::from(ms));
        }
    }
    response
}

fn rate_limit_headers(shape: LlmShape, limits: &LimitState, headers: &mut HeaderMap) {
    let mut put = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    match shape {
        LlmShape::OpenAi => {
            put(
                "x-ratelimit-limit-requests",
                limits.requests_limit.to_string(),
            );
            put(
                "x-ratelimit-remaining-requests",
                limits.requests_remaining.to_string(),
            );
            put(
                "x-ratelimit-reset-requests",
                go_duration(limits.requests_reset),
            );
            put("x-ratelimit-limit-tokens", limits.tokens_limit.to_string());
            put(
                "x-ratelimit-remaining-tokens",
                limits.tokens_remaining.to_string(),
            );
            put("x-ratelimit-reset-tokens", go_duration(limits.tokens_reset));
        }
        _ => {
            put(
                "anthropic-ratelimit-requests-limit",
                limits.requests_limit.to_string(),
            );
            put(
                "anthropic-ratelimit-requests-remaining",
                limits.requests_remaining.to_string(),
            );
            put(
                "anthropic-ratelimit-requests-reset",
                rfc3339(limits.wall + limits.requests_reset),
            );
            put(
                "anthropic-ratelimit-tokens-limit",
                limits.tokens_limit.to_string(),
            );
            put(
                "anthropic-ratelimit-tokens-remaining",
                limits.tokens_remaining.to_string(),
            );
            put(
                "anthropic-ratelimit-tokens-reset",
                rfc3339(limits.wall + limits.tokens_reset),
            );
        }
    }
}

/// A Go-style duration, as OpenAI's reset headers give them: `0s`, `120ms`, `1.5s`, `6m0s`,
/// `1h2m3.5s` (to the millisecond, rounded up).
pub(crate) fn go_duration(d: Duration) -> String {
    let ms = d.as_nanos().div_ceil(1_000_000);
    if ms == 0 {
        return String::from("0s");
    }
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, frac) = (rest / 1_000, rest % 1_000);
    let mut out = String::new();
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if h > 0 || m > 0 {
        let _ = write!(out, "{m}m");
    }
    if frac == 0 {
        let _ = write!(out, "{s}s");
    } else {
        let frac = format!("{frac:03}");
        let _ = write!(out, "{s}.{}s", frac.trim_end_matches('0'));
    }
    out
}

/// An RFC 3339 UTC instant, to the second, rounded up: `2024-05-01T12:00:45Z`.
pub(crate) fn rfc3339(at: SystemTime) -> String {
    // Rounded up: a reset is never announced earlier than it comes.
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0));
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::retry_after::parse_go_duration;

    #[test]
    fn durations_read_back_as_go_durations() {
        for (d, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(120), "120ms"),
            (Duration::from_millis(1_500), "1.5s"),
            (Duration::from_secs(360), "6m0s"),
            (Duration::from_millis(3_723_500), "1h2m3.5s"),
            (Duration::from_nanos(1), "1ms"),
        ] {
            assert_eq!(go_duration(d), text);
            if !d.is_zero() {
                assert!(parse_go_duration(text).unwrap() >= d);
            }
        }
    }

    #[test]
    fn instants_print_as_rfc3339() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_714_564_845);
        assert_eq!(rfc3339(at), "2024-05-01T12:00:45Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn requests_are_read_without_panicking() {
        let ok = parse(
            LlmShape::OpenAi,
            br#"{"model":"gpt-4o","messages":[{"role":"user","content":"12345678"}],"max_tokens":5,"stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        assert_eq!(
            (ok.input_tokens, ok.max_tokens, ok.stream, ok.include_usage),
            (2, Some(5), true, true)
        );
        let anthropic = parse(
            LlmShape::Anthropic,
            br#"{"model":"x","system":"abcd","messages":[{"role":"user","content":[{"type":"text","text":"abcd"}]}],"max_tokens":9}"#,
        )
        .unwrap();
        assert_eq!(anthropic.input_tokens, 2);
        for bad in [
            &b"nope"[..],
            b"[]",
            br#"{"messages":"x"}"#,
            br#"{"messages":[],"max_tokens":-1}"#,
            br#"{"messages":[],"max_tokens":0}"#,
        ] {
            assert!(parse(LlmShape::OpenAi, bad).is_err());
        }
        // Anthropic requires max_tokens.
        assert!(parse(LlmShape::Anthropic, br#"{"messages":[]}"#).is_err());
        assert_eq!(model_name(Some(&json!("a\nb"))), "sim-model");
    }
}
