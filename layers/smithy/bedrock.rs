//! Amazon Bedrock Runtime (`aws-sdk-bedrockruntime`): costs from `Converse`, `ConverseStream`,
//! `InvokeModel` and `InvokeModelWithResponseStream` inputs, usage from their outputs (the
//! streams' from their events, see `super::stream`), model fallback by rewriting the model id
//! in the request path.
//!
//! Both sides use the [model table](crate::bedrock): a call reserves its input tokens plus its
//! `maxTokens` (an `InvokeModel*` JSON body's `max_tokens` and its relatives), or the model's
//! maximum output when it sets none (re-estimated for a fallback target's own model), and
//! settles to input + cache write + output × the burndown of the model the attempt went to,
//! with the counts from Converse `usage`, `InvokeModel`'s token-count headers or an Anthropic
//! body's `usage`, or a stream's `metadata` event, `amazon-bedrock-invocationMetrics` or
//! Anthropic `message_start` / `message_delta` usage.

use std::sync::Arc;

use aws_sdk_bedrockruntime::operation::converse::{ConverseInput, ConverseOutput};
use aws_sdk_bedrockruntime::operation::converse_stream::ConverseStreamInput;
use aws_sdk_bedrockruntime::operation::invoke_model::{InvokeModelInput, InvokeModelOutput};
use aws_sdk_bedrockruntime::operation::invoke_model_with_response_stream::InvokeModelWithResponseStreamInput;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, InferenceConfiguration, Message, SystemContentBlock, ToolResultContentBlock,
};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{Input, Output};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_types::config_bag::ConfigBag;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::call::{Prepared, Reserve};
use super::interceptor::Shape;
use super::{Estimation, SdkHeadroom};
use crate::admission::{Cost, LlmInput, QuotaStore};
use crate::bedrock::TokenCounts;
use crate::error::ConfigError;

/// Characters a Smithy label keeps as they are (RFC 3986 unreserved).
const LABEL: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Debug)]
pub(crate) struct Bedrock;

impl Shape for Bedrock {
    fn gen_ai(&self, input: &Input) -> (Option<&'static str>, Option<&'static str>) {
        // The GenAI conventions' operation for a chat API; InvokeModel's body is the model's
        // own format, whose operation the adapter does not read.
        let chat = input.downcast_ref::<ConverseInput>().is_some()
            || input.downcast_ref::<ConverseStreamInput>().is_some();
        (Some(crate::observe::span::BEDROCK), chat.then_some("chat"))
    }

    fn prepare(&self, input: &mut Input, estimation: &Estimation) -> Option<Prepared> {
        let (model, llm, stream) = if let Some(input) = input.downcast_ref::<ConverseInput>() {
            let llm = converse_input(input.messages(), input.system(), input.inference_config());
            (input.model_id()?, llm, false)
        } else if let Some(input) = input.downcast_ref::<ConverseStreamInput>() {
            let llm = converse_input(input.messages(), input.system(), input.inference_config());
            (input.model_id()?, llm, true)
        } else if let Some(input) = input.downcast_ref::<InvokeModelInput>() {
            let body = input.body().map(|b| b.as_ref()).unwrap_or_default();
            (input.model_id()?, invoke_input(body), false)
        } else if let Some(input) = input.downcast_ref::<InvokeModelWithResponseStreamInput>() {
            // Reserved as InvokeModel; settled from its stream's chunks (`super::stream`).
            let body = input.body().map(|b| b.as_ref()).unwrap_or_default();
            (input.model_id()?, invoke_input(body), true)
        } else {
            return None;
        };
        let tokens = Reserve {
            input_tokens: llm.input_chars.div_ceil(estimation.chars_per_token.max(1)),
            max_tokens: llm.max_tokens,
        };
        // The call's own model's numbers; a fallback target's are applied when the router
        // weighs it and when an attempt goes there (`Prepared::cost_on`).
        let spec = estimation.models.spec(model);
        let cost = Cost::units(spec.reservation(tokens.input_tokens, 0, 0, tokens.max_tokens));
        Some(Prepared {
            key: Arc::from(model),
            cost,
            tokens: Some(tokens),
            stream,
            asked_usage: false,
            routable: true,
            keys_are_models: true,
            also: Vec::new(),
        })
    }

    fn region(&self, cfg: &ConfigBag) -> Option<Arc<str>> {
        cfg.load::<aws_sdk_bedrockruntime::config::Region>()
            .map(|region| Arc::from(region.as_ref()))
    }

    fn regional(&self) -> bool {
        true
    }

    /// The operation's endpoint parameters (built once per operation from the client's
    /// config) get the new region — the endpoint rules then resolve
    /// `bedrock-runtime.{region}.amazonaws.com`, or keep a custom endpoint URL — and the
    /// signing region, which SigV4 takes from the config bag when the resolved endpoint names
    /// none (Bedrock's endpoints name none), is set in the operation's own layer. The
    /// orchestrator resolves both after `read_before_attempt` on every attempt.
    fn reregion(&self, cfg: &mut ConfigBag, region: &str) -> Result<(), BoxError> {
        use aws_sdk_bedrockruntime::config::endpoint::Params;
        use aws_smithy_runtime_api::client::endpoint::EndpointResolverParams;
        use aws_types::region::{Region, SigningRegion};
        let params = cfg
            .get_mut_from_interceptor_state::<EndpointResolverParams>()
            .and_then(|params| params.get_mut::<Params>())
            .ok_or("no Bedrock endpoint parameters to move to another region")?;
        *params = Params::builder()
            .region(region)
            .set_use_dual_stack(params.use_dual_stack())
            .set_use_fips(params.use_fips())
            .set_endpoint(params.endpoint().map(str::to_owned))
            .build()?;
        cfg.interceptor_state()
            .store_put(SigningRegion::from(Region::new(region.to_owned())));
        Ok(())
    }

    fn retarget(&self, request: &mut HttpRequest, key: &str) -> Result<(), BoxError> {
        let uri = request.uri();
        // The model id is the segment after the last `/model/` of the path (an endpoint URL may
        // carry a path of its own), before the operation.
        let path_end = uri.find('?').unwrap_or(uri.len());
        let start = uri[..path_end]
            .rfind("/model/")
            .map(|i| i + "/model/".len())
            .ok_or("not a Bedrock model request: no /model/ in the path")?;
        let end = uri[start..path_end]
            .find('/')
            .map(|i| start + i)
            .ok_or("no operation after the model id")?;
        let encoded = utf8_percent_encode(key, LABEL).to_string();
        let rewritten = format!("{}{}{}", &uri[..start], encoded, &uri[end..]);
        request
            .set_uri(rewritten)
            .map_err(|e| -> BoxError { Box::new(e) })
    }

    fn usage(
        &self,
        output: &Output,
        response: Option<&HttpResponse>,
        estimation: &Estimation,
        key: &str,
    ) -> Option<u64> {
        let counts = self.tokens(output, response)?;
        Some(counts.charged(estimation.models.spec(key)))
    }

    fn tokens(&self, output: &Output, response: Option<&HttpResponse>) -> Option<TokenCounts> {
        let counts = if let Some(output) = output.downcast_ref::<ConverseOutput>() {
            let usage = output.usage()?;
            let count = |n: i32| u64::try_from(n).ok();
            let cached = |n: Option<i32>| n.map_or(Some(0), count);
            TokenCounts::new(count(usage.input_tokens())?, count(usage.output_tokens())?)
                .with_cache(
                    cached(usage.cache_read_input_tokens())?,
                    cached(usage.cache_write_input_tokens())?,
                )
        } else if let Some(output) = output.downcast_ref::<InvokeModelOutput>() {
            // Bedrock reports the counts in headers for most models; Anthropic bodies too.
            let headers = response.and_then(|response| {
                TokenCounts::from_header_fn(|name| response.headers().get(name).map(str::to_owned))
            });
            match headers {
                Some(counts) => counts,
                None => anthropic_counts(output.body().as_ref())?,
            }
        } else {
            return None;
        };
        Some(counts)
    }
}

/// The counts of an Anthropic Messages body's `usage` (`input_tokens`, `output_tokens`,
/// `cache_read_input_tokens`, `cache_creation_input_tokens`).
fn anthropic_counts(body: &[u8]) -> Option<TokenCounts> {
    let body: serde_json::Value = serde_json::from_slice(body).ok()?;
    anthropic_usage(body.get("usage")?, true)
}

/// The counts of an Anthropic `usage` object: an `InvokeModel` body's, or a streamed
/// `message_start`'s (whose `output_tokens`, when `output_required` is false, may be absent:
/// the stream's `message_delta` reports the output). A count that is there must be a number.
pub(crate) fn anthropic_usage(
    usage: &serde_json::Value,
    output_required: bool,
) -> Option<TokenCounts> {
    let cached = |name: &str| usage.get(name).map_or(Some(0), serde_json::Value::as_u64);
    let output = match usage.get("output_tokens") {
        Some(n) => n.as_u64()?,
        None if !output_required => 0,
        None => return None,
    };
    Some(
        TokenCounts::new(usage.get("input_tokens")?.as_u64()?, output).with_cache(
            cached("cache_read_input_tokens")?,
            cached("cache_creation_input_tokens")?,
        ),
    )
}

/// The characters of a Converse request's text, and its `maxTokens`.
fn converse_input(
    messages: &[Message],
    system: &[SystemContentBlock],
    config: Option<&InferenceConfiguration>,
) -> LlmInput {
    let chars = |s: &str| s.chars().count() as u64;
    let mut input_chars = 0u64;
    for message in messages {
        for block in message.content() {
            input_chars += match block {
                ContentBlock::Text(text) => chars(text),
                ContentBlock::ToolResult(result) => result
                    .content()
                    .iter()
                    .map(|c| match c {
                        ToolResultContentBlock::Text(text) => chars(text),
                        _ => 0,
                    })
                    .sum(),
                _ => 0,
            };
        }
    }
    for block in system {
        if let SystemContentBlock::Text(text) = block {
            input_chars += chars(text);
        }
    }
    let max_tokens = config
        .and_then(|c| c.max_tokens())
        .and_then(|n| u64::try_from(n).ok());
    LlmInput {
        input_chars,
        max_tokens,
    }
}

/// The characters of an `InvokeModel` JSON body's text (every string under `messages`,
/// `system`, `prompt` or `inputText`) and its output cap (`max_tokens`, `maxTokens`,
/// `max_tokens_to_sample`, `max_gen_len`, `textGenerationConfig.maxTokenCount`).
fn invoke_input(body: &[u8]) -> LlmInput {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        // Not JSON: count the bytes, reserve the model's maximum output.
        return LlmInput {
            input_chars: body.len() as u64,
            max_tokens: None,
        };
    };
    fn text_chars(value: &serde_json::Value) -> u64 {
        match value {
            serde_json::Value::String(s) => s.chars().count() as u64,
            serde_json::Value::Array(items) => items.iter().map(text_chars).sum(),
            serde_json::Value::Object(map) => map.values().map(text_chars).sum(),
            _ => 0,
        }
    }
    let input_chars = ["messages", "system", "prompt", "inputText"]
        .iter()
        .filter_map(|key| value.get(key))
        .map(text_chars)
        .sum();
    let max_tokens = [
        "max_tokens",
        "maxTokens",
        "max_tokens_to_sample",
        "max_gen_len",
    ]
    .iter()
    .find_map(|key| value.get(key).and_then(|v| v.as_u64()))
    .or_else(|| {
        value
            .get("textGenerationConfig")
            .and_then(|c| c.get("maxTokenCount"))
            .and_then(|v| v.as_u64())
    });
    LlmInput {
        input_chars,
        max_tokens,
    }
}

impl<S: QuotaStore<Arc<str>> + 'static> SdkHeadroom<S> {
    /// Installs the interceptor, the retry classifier, the HTTP client wrapper (around the
    /// builder's HTTP client) and the paired [`RetryConfig`](aws_smithy_types::retry::RetryConfig)
    /// on a Bedrock Runtime config builder.
    ///
    /// Replaces three of the builder's settings, and logs old and new values in a `debug`
    /// event (target `tower_headroom::smithy`): the retry config (standard mode with
    /// [`sdk_max_attempts`](Self::sdk_max_attempts) and [`sdk_max_backoff`](Self::sdk_max_backoff)),
    /// the retry partition ([`sdk_retry_partition`](Self::sdk_retry_partition)) and the
    /// stalled-stream protection (the builder's, upload check off); see [the module docs](super).
    ///
    /// Fails with a [`ConfigError`] naming `http_client` when the builder has none to wrap:
    /// build it from an `SdkConfig` (which carries one) or set one first.
    pub fn configure_bedrock(
        &self,
        builder: aws_sdk_bedrockruntime::config::Builder,
    ) -> Result<aws_sdk_bedrockruntime::config::Builder, ConfigError> {
        super::configure!(self, builder, Bedrock, "bedrock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_types::body::SdkBody;

    #[test]
    fn retarget_rewrites_only_the_model_segment() {
        let mut request = HttpRequest::new(SdkBody::empty());
        request
            .set_uri("https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-sonnet-20240229-v1%3A0/converse?x=1")
            .unwrap();
        Bedrock
            .retarget(&mut request, "us.anthropic.claude-3-haiku-20240307-v1:0")
            .unwrap();
        assert_eq!(
            request.uri(),
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/us.anthropic.claude-3-haiku-20240307-v1%3A0/converse?x=1"
        );
        let mut proxied = HttpRequest::new(SdkBody::empty());
        proxied
            .set_uri("https://proxy.example/model/gateway/model/a.b-v1%3A0/converse-stream")
            .unwrap();
        Bedrock.retarget(&mut proxied, "c.d-v2").unwrap();
        assert_eq!(
            proxied.uri(),
            "https://proxy.example/model/gateway/model/c.d-v2/converse-stream"
        );
        let mut other = HttpRequest::new(SdkBody::empty());
        other.set_uri("https://example.com/other").unwrap();
        assert!(Bedrock.retarget(&mut other, "m").is_err());
    }

    #[test]
    fn usage_reads_cache_counts_and_the_attempts_model() {
        use aws_smithy_runtime_api::http::StatusCode;
        let estimation = Estimation {
            chars_per_token: 4,
            models: crate::bedrock::ModelTable::builtin(),
        };
        let sonnet4 = "us.anthropic.claude-sonnet-4-20250514-v1:0";
        let haiku3 = "anthropic.claude-3-haiku-20240307-v1:0";
        let body = br#"{"content":[],"usage":{"input_tokens":10,"output_tokens":20,
            "cache_read_input_tokens":1000,"cache_creation_input_tokens":7}}"#;
        let output = Output::erase(
            InvokeModelOutput::builder()
                .body(aws_smithy_types::Blob::new(body.to_vec()))
                .content_type("application/json")
                .build()
                .unwrap(),
        );
        // No headers: the Anthropic body's usage.
        assert_eq!(
            Bedrock.usage(&output, None, &estimation, sonnet4),
            Some(10 + 7 + 20 * 5)
        );
        assert_eq!(
            Bedrock.usage(&output, None, &estimation, haiku3),
            Some(10 + 7 + 20)
        );
        // Headers first when both counts are there.
        let mut response = HttpResponse::new(StatusCode::try_from(200).unwrap(), SdkBody::empty());
        for (name, value) in [
            ("x-amzn-bedrock-input-token-count", "3"),
            ("x-amzn-bedrock-output-token-count", "4"),
            ("x-amzn-bedrock-cache-read-input-token-count", "500"),
            ("x-amzn-bedrock-cache-write-input-token-count", "2"),
        ] {
            response.headers_mut().insert(name, value);
        }
        assert_eq!(
            Bedrock.usage(&output, Some(&response), &estimation, sonnet4),
            Some(3 + 2 + 4 * 5)
        );
        assert_eq!(anthropic_counts(br#"{"usage":{"input_tokens":1}}"#), None);
        assert_eq!(
            anthropic_counts(
                br#"{"usage":{"input_tokens":1,"output_tokens":2,"cache_read_input_tokens":-1}}"#
            ),
            None
        );
    }

    #[test]
    fn invoke_bodies_count_text_and_the_output_cap() {
        let body = br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":300,
            "system":"abcd","messages":[{"role":"user","content":[{"type":"text","text":"12345678"}]}]}"#;
        let input = invoke_input(body);
        // "abcd" + "user" + "text" + "12345678": every string under messages and system.
        assert_eq!(input.input_chars, 20);
        assert_eq!(input.max_tokens, Some(300));
        let garbage = invoke_input(b"\xff\xfe");
        assert_eq!(garbage.max_tokens, None);
    }
}
