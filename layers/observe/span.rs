//! The spans of a call and of its attempts, with OpenTelemetry's GenAI attributes.
//!
//! A call is one `headroom.call` span (target `tower_headroom::call`), and each attempt one
//! `headroom.attempt` span (target `tower_headroom::attempt`) under it; both at `INFO`. The
//! fields are listed in the [`observe`](super) module docs.
//!
//! `gen_ai.provider.name` is the attribute that replaced `gen_ai.system` in the GenAI
//! semantic conventions (v1.37; `aws.bedrock` is its Bedrock value); the operation names are
//! the conventions' (source: <https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/>).
//! A field's value is only ever a label the user chose, a fixed enumeration or a number:
//! never a prompt, a completion, a body, a header value or a credential.
//!
//! With no subscriber interested, creating a span is `tracing`'s disabled-callsite check
//! (an atomic load) and yields `Span::none()`: nothing allocates, recording does nothing.

use tracing::Span;
use tracing::field::Empty;

use super::{Labels, arn_resource};
use crate::Outcome;
use crate::bedrock::TokenCounts;

/// `gen_ai.provider.name` of Amazon Bedrock.
pub(crate) const BEDROCK: &str = "aws.bedrock";

/// `gen_ai.operation.name` of a chat call (Converse, a messages API).
pub(crate) const CHAT: &str = "chat";

/// A call's span, a child of the current span.
#[inline]
pub(crate) fn call(provider: Option<&'static str>, operation: Option<&'static str>) -> Span {
    tracing::info_span!(
        target: "tower_headroom::call",
        "headroom.call",
        otel.kind = "client",
        gen_ai.provider.name = provider,
        gen_ai.operation.name = operation,
        gen_ai.request.model = Empty,
        attempts = Empty,
        class = Empty,
        error.type = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
    )
}

/// An attempt's span under `call`: the `attempt`-th (1-based), after `hop` fallback moves,
/// to the target of `labels`.
#[inline]
pub(crate) fn attempt(call: &Span, labels: &Labels, attempt: u32, hop: u32) -> Span {
    // The values are computed only when the callsite is enabled.
    let span = tracing::info_span!(
        target: "tower_headroom::attempt",
        parent: call,
        "headroom.attempt",
        target_name = labels.target_name().map(arn_resource),
        model = labels.model_name().map(arn_resource),
        region = labels.region_name(),
        gen_ai.request.model = labels.model_name().map(arn_resource),
        attempt,
        hop,
        wait_ms = Empty,
        class = Empty,
        error.type = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
    );
    if !call.is_none() {
        if let Some(model) = labels.model_name() {
            call.record("gen_ai.request.model", arn_resource(model));
        }
    }
    span
}

/// Records an attempt's wait for quota.
#[inline]
pub(crate) fn waited(span: &Span, wait: std::time::Duration) {
    if !span.is_none() {
        span.record("wait_ms", wait.as_millis() as u64);
    }
}

/// Records how an attempt (or, with `attempts`, a call) ended: its class, `error.type` when it
/// failed, and the tokens its answer reported.
#[inline]
pub(crate) fn ended(
    span: &Span,
    outcome: &Outcome,
    tokens: Option<&TokenCounts>,
    attempts: Option<u32>,
) {
    if !span.is_none() {
        record_end(span, outcome, tokens, attempts);
    }
}

#[cold]
fn record_end(span: &Span, outcome: &Outcome, tokens: Option<&TokenCounts>, attempts: Option<u32>) {
    let class = outcome.kind.as_str();
    span.record("class", class);
    if !outcome.is_success() {
        span.record("error.type", class);
    }
    if let Some(tokens) = tokens {
        record_usage(span, tokens);
    }
    if let Some(attempts) = attempts {
        span.record("attempts", attempts);
    }
}

/// Records the tokens a streamed answer reported at its end on its call's span, which the
/// stream's [`Settlement`](crate::admission::Settlement) kept open until then.
#[inline]
pub(crate) fn usage(span: &Span, tokens: &TokenCounts) {
    if !span.is_none() {
        record_usage(span, tokens);
    }
}

#[cold]
fn record_usage(span: &Span, tokens: &TokenCounts) {
    let input = tokens.input + tokens.cache_read + tokens.cache_write;
    span.record("gen_ai.usage.input_tokens", input);
    span.record("gen_ai.usage.output_tokens", tokens.output);
}
