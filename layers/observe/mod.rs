//! The event and metric vocabulary shared by every layer.
//!
//! One set of names, so that a dashboard built for one layer reads the others:
//!
//! | metric | kind | labels | meaning |
//! |---|---|---|---|
//! | `headroom_attempts_total` | counter | target, model, region, class | attempts finished, by outcome class (an SDK stream that fails after its `200` counts again under its error's class) |
//! | `headroom_retries_total` | counter | target, model, region, class | retries scheduled, by the class that caused them |
//! | `headroom_retry_wait_seconds` | histogram | target, model, region, class | wait before each retry |
//! | `headroom_attempt_duration_seconds` | histogram | target, model, region, class | an attempt's time from its start (admission wait included) to its end, by outcome class; the Tower `Stack` and the SDK adapter (a local refusal is no attempt) |
//! | `headroom_calls_total` | counter | target, model, region, result | calls ended, `result` = `success` or `failure` (the success rate's numerator and denominator, for an alarm such as "success under 95% over 10 minutes"; CloudWatch metric math needs two series, not one per class), under the last attempt's target; the Tower `Stack` and the SDK adapter |
//! | `headroom_call_duration_seconds` | histogram | target, model, region, class | a call's time from its start to its end (every attempt, wait and retry), by the class it ended with, under the last attempt's target; the Tower `Stack` and the SDK adapter |
//! | `headroom_tokens_total` | counter | target, model, region, type | tokens the model reported (`type` = `input`, `output`, `cache_read`, `cache_write`; `input` excludes the cached ones, as Bedrock counts), from the answer a call settles with: the Tower `Stack` (per target) and `AdmissionLayer` (under its labels) with a usage reader that reads tokens (`BedrockUsage`; `SseUsage` streams when their usage event arrives, through the `Settlement`) and the SDK adapter (Converse, InvokeModel, and ConverseStream and InvokeModelWithResponseStream from their usage event) |
//! | `headroom_retries_exhausted_total` | counter | target, model, region, reason | calls the retry layer gave up on |
//! | `headroom_admission_wait_seconds` | histogram | target, model, region | time a call waited for quota |
//! | `headroom_admission_rejected_total` | counter | target, model, region | calls shed by admission |
//! | `headroom_quota_limit` | gauge | target, model, region | the effective (learned) unit limit: set when learning moves it, and sampled with the utilisation (so a key that never learned shows its configured limit) |
//! | `headroom_quota_configured_limit` | gauge | target, model, region | the configured unit limit (the console's number), sampled with the utilisation |
//! | `headroom_quota_debt` | gauge | target, model, region | units spent over the trailing window beyond the effective limit (a settle above its estimate, or a learned cut, left the key owing them; later calls wait them out), sampled with the utilisation |
//! | `headroom_quota_utilization` | gauge | target, model, region | share (0–1, above 1 when a learned cut left the spend over it) of the effective limit spent over the trailing window, the larger of requests and units; sampled when an attempt ends, at most once a second per key, in-process quota store only |
//! | `headroom_admission_queue_depth` | gauge | target, model, region, lane | calls waiting for quota on the key, per lane (`interactive`, `interactive_pressing`, `batch`, `interactive_borrowing`, `batch_borrowing`: the admission lanes; the token bucket has no `interactive_pressing`); sampled with the utilisation |
//! | `headroom_admission_oldest_wait_seconds` | gauge | target, model, region, lane | how long the call that has waited longest in the lane has waited (0 when none waits; may read low for up to a 64th of the window after the oldest left, see [`LaneStats`](crate::admission::LaneStats)); sampled with the utilisation |
//! | `headroom_quota_lease_balance` | gauge | target, model, region | units (requests for a limit of requests only) leased from the Redis store and not yet spent, all the key's leases together; negative while calls that spent beyond their estimates leave debt; sampled with the utilisation, Redis store only |
//! | `headroom_breaker_state` | gauge | target, model, region | 0 closed, 1 half-open, 2 open |
//! | `headroom_breaker_transitions_total` | counter | target, model, region, to | state changes |
//! | `headroom_concurrency_limit` | gauge | target, model, region | the learned limit on calls in flight |
//! | `headroom_concurrency_rejected_total` | counter | target, model, region | calls shed by the concurrency limit |
//! | `headroom_fallback_total` | counter | target, model, region, degraded | which target served a call |
//! | `headroom_quota_store_mode` | gauge | target, model, region | shared quota store: 0 shared, 1 failing open, 2 failing closed |
//! | `headroom_quota_store_transitions_total` | counter | target, model, region, to | shared quota store mode changes |
//! | `headroom_hot_key_units_per_second` | gauge | name, rank | the capacity units the `rank`-th heaviest partition key of a [`HotKeys`](crate::hot_keys::HotKeys) stream asked for in its last finished second (ranks 1–5; never a key value) |
//! | `headroom_hot_key_share` | gauge | name, rank | the same as a share of the partition maximum |
//! | `headroom_hot_key_throttles_total` | counter | name | throttled attempts the stream recorded |
//!
//! The `class` label is [`OutcomeKind::as_str`](crate::OutcomeKind::as_str): a spent per-day
//! quota counts as `throttled_daily`, apart from the per-minute `throttled_tokens` and
//! `throttled_requests`, and a call stopped by one as `reason="quota_exhausted"`.
//!
//! **Cardinality.** Label sets are bounded per layer: the Tower layers' label sets are fixed
//! when they are built (one per layer, or one per route target), except a
//! [`BreakerRegistry`](crate::breaker::BreakerRegistry)'s, which makes one per key: it gives
//! series of their own to at most [`MAX_LABEL_SETS`] distinct sets
//! ([`max_label_sets`](crate::breaker::BreakerRegistryBuilder::max_label_sets)) and reports
//! the breakers of later keys under `target=`[`OVERFLOW_TARGET`]; an evicted breaker gives its
//! set's place back and its series are no longer updated (`tests/observe_cardinality.rs`).
//! The SDK adapter caps its label sets the same way (`tests/smithy_cardinality.rs`). An ARN
//! in a label shows only its resource name.
//!
//! The durations reuse the clock reads the adapters make anyway (no clock read is added): an
//! attempt the Tower `Stack` admits and gets an answer to in the same poll ends at its
//! admission instant, so its duration is `0` (the stack read the clock once for it; see
//! ARCHITECTURE.md, "Clock reads").
//!
//! **Spans.** A call through the Tower `Stack` or the SDK adapter is a `headroom.call` span
//! (target `tower_headroom::call`) with a `headroom.attempt` span (target
//! `tower_headroom::attempt`) per attempt under it, both at `INFO`, carrying OpenTelemetry's
//! GenAI attributes. In the SDK adapter the call span is a child of the SDK orchestrator's
//! `try_op` span, a sibling of the SDK's `try_attempt` spans, and our attempt spans are the
//! call span's children, not the `try_attempt`s' (the hooks that open and end them run in
//! `try_op`, outside each attempt's future); in the Tower `Stack` the call span is entered while the call's future is polled and
//! the attempt span while the client's future is, so the client's own spans nest under it.
//! They cost a disabled-callsite check when no subscriber wants them, and allocate nothing then.
//!
//! | field | span | value |
//! |---|---|---|
//! | `otel.kind` | call | `client` (read by `tracing-opentelemetry`) |
//! | `gen_ai.provider.name` | call | `aws.bedrock` for a Bedrock stack or the Bedrock SDK client |
//! | `gen_ai.operation.name` | call | `chat` (Converse, ConverseStream); unset for InvokeModel (its body is the model's own format) and in the Tower `Stack` |
//! | `gen_ai.request.model` | both | the model label (an ARN reduced to its resource name) |
//! | `target_name`, `model`, `region` | attempt | the target's labels |
//! | `attempt`, `hop` | attempt | the attempt's number in the call (1-based) and how many fallback moves preceded it |
//! | `wait_ms` | attempt | how long it waited for quota, when it did (Tower `Stack`) |
//! | `class` | both | the outcome class ([`OutcomeKind::as_str`](crate::OutcomeKind::as_str)) of the attempt, of the call's last attempt |
//! | `error.type` | both | the outcome class when it is not a success |
//! | `gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens` | both | the tokens the answer reported (input: all input tokens, cached ones included); for a streamed answer through the `Stack` (`llm_http::sse`), the call span, held by the stream's `Settlement` until the stream ends, gets them from its usage event |
//! | `attempts` | call | attempts made |
//!
//! `gen_ai.provider.name` replaced `gen_ai.system` in the GenAI semantic conventions (v1.37),
//! `aws.bedrock` is its Bedrock value, and `chat` is the conventions' operation name for a
//! chat API (source: <https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/>). The
//! Tower `Stack` does not know the operation and leaves `gen_ai.operation.name` empty.
//!
//! `tracing` events use the same field names (`target_name`, `model`, `region`, `class`,
//! `attempt`, `wait_ms`). Label values come only from [`Labels`] (names the user chose for a
//! target, model and region) and from fixed enumerations such as
//! [`OutcomeKind::as_str`](crate::OutcomeKind::as_str): never a request or response body, a
//! prompt, a completion, a header value or a credential.
//!
//! Metric handles are registered once per label set and reused on every call, so the hot
//! path neither allocates nor looks anything up. A layer registers them when it is built if a
//! `metrics` recorder is installed then, else on its first use after one is: a recorder
//! installed after the layers are built still receives every series (`tests/observe_late.rs`).
//! Until a recorder exists, a metric costs one read of `metrics`' recorder slot and registers
//! nothing; once registered, one atomic load.

use std::fmt;
use std::sync::Arc;

mod cap;
mod handles;
pub(crate) mod span;

pub(crate) use self::cap::{LabelBudget, LabelHold};
pub use self::cap::{MAX_LABEL_SETS, OVERFLOW_TARGET};

pub use self::handles::TokenCounters;

/// Whether what a call records now reaches a recorder: a group of its handles is registered
/// (`registered`, one atomic load: the usual case once a recorder is installed), or a recorder
/// is current on this thread. A call that records several metrics asks once and skips them
/// all when nothing would receive them, instead of each handle asking `metrics` for a
/// recorder (without one, the cost of every handle on the success path).
#[inline]
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn recording(registered: bool) -> bool {
    #[cfg(feature = "metrics")]
    return registered || self::handles::recorder_installed();
    #[cfg(not(feature = "metrics"))]
    false
}
pub(crate) use self::handles::{
    ClassCounters, ClassHistograms, Counter, CounterSet, Gauge, Histogram,
};

/// Metric names.
pub mod names {
    /// Counter: attempts finished, labelled by outcome class.
    pub const ATTEMPTS: &str = "headroom_attempts_total";
    /// Counter: retries scheduled, labelled by the class that caused them.
    pub const RETRIES: &str = "headroom_retries_total";
    /// Histogram: seconds waited before a retry.
    pub const RETRY_WAIT: &str = "headroom_retry_wait_seconds";
    /// Histogram: seconds from an attempt's start (admission wait included) to its end, by
    /// outcome class.
    pub const ATTEMPT_DURATION: &str = "headroom_attempt_duration_seconds";
    /// Histogram: seconds from a call's start to its end (every attempt, wait and retry), by
    /// the class of the outcome it ended with.
    pub const CALL_DURATION: &str = "headroom_call_duration_seconds";
    /// Counter: calls ended, by `result` (`success`, `failure`).
    pub const CALLS: &str = "headroom_calls_total";
    /// Counter: tokens an LLM reported, by `type` (`input`, `output`, `cache_read`,
    /// `cache_write`).
    pub const TOKENS: &str = "headroom_tokens_total";
    /// Counter: calls the retry layer gave up on, labelled by reason.
    pub const RETRIES_EXHAUSTED: &str = "headroom_retries_exhausted_total";
    /// Histogram: seconds a call waited for quota before it was admitted.
    pub const ADMISSION_WAIT: &str = "headroom_admission_wait_seconds";
    /// Counter: calls rejected by admission.
    pub const ADMISSION_REJECTED: &str = "headroom_admission_rejected_total";
    /// Gauge: the effective unit limit per window after learning.
    pub const QUOTA_LIMIT: &str = "headroom_quota_limit";
    /// Gauge: the configured unit limit per window (the one learning starts from).
    pub const QUOTA_CONFIGURED_LIMIT: &str = "headroom_quota_configured_limit";
    /// Gauge: units spent over the trailing window beyond the effective limit.
    pub const QUOTA_DEBT: &str = "headroom_quota_debt";
    /// Gauge: the share of the effective limit this client spent over the trailing window
    /// (the larger of the requests' and the units' shares), sampled at most once a second.
    pub const QUOTA_UTILIZATION: &str = "headroom_quota_utilization";
    /// Gauge: calls waiting for quota on a key, per lane, sampled at most once a second.
    pub const ADMISSION_QUEUE_DEPTH: &str = "headroom_admission_queue_depth";
    /// Gauge: units leased from the Redis store and not yet spent, per key.
    pub const QUOTA_LEASE_BALANCE: &str = "headroom_quota_lease_balance";
    /// Gauge: how long the oldest call waiting in a lane has waited, in seconds.
    pub const ADMISSION_OLDEST_WAIT: &str = "headroom_admission_oldest_wait_seconds";
    /// Gauge: circuit breaker state (0 closed, 1 half-open, 2 open).
    pub const BREAKER_STATE: &str = "headroom_breaker_state";
    /// Counter: circuit breaker transitions, labelled by the new state.
    pub const BREAKER_TRANSITIONS: &str = "headroom_breaker_transitions_total";
    /// Gauge: the learned limit on calls in flight to a target.
    pub const CONCURRENCY_LIMIT: &str = "headroom_concurrency_limit";
    /// Counter: calls shed because the concurrency limit was full.
    pub const CONCURRENCY_REJECTED: &str = "headroom_concurrency_rejected_total";
    /// Counter: calls served per fallback target, labelled `degraded` = `true`/`false`.
    pub const FALLBACK: &str = "headroom_fallback_total";
    /// Gauge: the mode of a shared quota store (0 shared, 1 failing open, 2 failing closed).
    pub const QUOTA_STORE_MODE: &str = "headroom_quota_store_mode";
    /// Counter: mode changes of a shared quota store, labelled by the new mode.
    pub const QUOTA_STORE_TRANSITIONS: &str = "headroom_quota_store_transitions_total";
}

/// Label keys.
pub mod keys {
    /// The user's name for the target (a host, a model × region, a table).
    pub const TARGET: &str = "target";
    /// The model id.
    pub const MODEL: &str = "model";
    /// The region.
    pub const REGION: &str = "region";
    /// The outcome class ([`OutcomeKind::as_str`](crate::OutcomeKind::as_str)).
    pub const CLASS: &str = "class";
    /// Why the retry layer stopped ([`StopReason::as_str`](crate::retry::StopReason::as_str)).
    pub const REASON: &str = "reason";
    /// How a call ended: `success` or `failure`.
    pub const RESULT: &str = "result";
    /// The state a circuit breaker moved to (`closed`, `half_open`, `open`), or a shared
    /// quota store to (`shared`, `fail_open`, `fail_closed`).
    pub const TO: &str = "to";
    /// Whether a fallback router served a call from a target other than the first (`true`/`false`).
    pub const DEGRADED: &str = "degraded";
    /// Which tokens a count is of: `input` (neither read from nor written to the prompt
    /// cache), `output`, `cache_read`, `cache_write`.
    pub const TYPE: &str = "type";
    /// The admission lane a queue gauge is of: `interactive`, `interactive_pressing`,
    /// `batch`, `interactive_borrowing`, `batch_borrowing`.
    pub const LANE: &str = "lane";
}

/// The names a layer reports under: target, model and region.
///
/// All three are optional and chosen by the user; they are the only free-form label values this
/// crate ever emits.
///
/// ```
/// use tower_headroom::observe::Labels;
///
/// let labels = Labels::target("bedrock").model("anthropic.claude-3-haiku").region("us-east-1");
/// assert_eq!(labels.to_string(), "target=bedrock model=anthropic.claude-3-haiku region=us-east-1");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Labels {
    target: Option<Arc<str>>,
    model: Option<Arc<str>>,
    region: Option<Arc<str>>,
}

impl Labels {
    /// No labels.
    pub fn none() -> Self {
        Labels::default()
    }

    /// Labels with a target name.
    pub fn target(name: impl Into<Arc<str>>) -> Self {
        Labels {
            target: Some(name.into()),
            ..Labels::default()
        }
    }

    /// Sets the model label.
    pub fn model(mut self, model: impl Into<Arc<str>>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Sets the region label.
    pub fn region(mut self, region: impl Into<Arc<str>>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Sets the target label.
    pub fn with_target(mut self, target: impl Into<Arc<str>>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// The target name, if set.
    pub fn target_name(&self) -> Option<&str> {
        self.target.as_deref()
    }

    /// The model, if set.
    pub fn model_name(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// The region, if set.
    pub fn region_name(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// The region label, shared.
    #[cfg(feature = "smithy")]
    pub(crate) fn region_label(&self) -> Option<&Arc<str>> {
        self.region.as_ref()
    }

    /// The labels as `metrics` labels, plus `extra` fixed ones. Empty names are reported as `""`
    /// so that every series of a metric has the same label keys.
    #[cfg(feature = "metrics")]
    pub(crate) fn metric_labels(
        &self,
        extra: &[(&'static str, &'static str)],
    ) -> Vec<metrics::Label> {
        let value = |v: &Option<Arc<str>>| -> metrics::SharedString {
            match v {
                Some(s) if is_arn(s) => metrics::SharedString::from(arn_resource(s).to_owned()),
                Some(s) => metrics::SharedString::from(Arc::clone(s)),
                None => metrics::SharedString::const_str(""),
            }
        };
        let mut labels = vec![
            metrics::Label::new(keys::TARGET, value(&self.target)),
            metrics::Label::new(keys::MODEL, value(&self.model)),
            metrics::Label::new(keys::REGION, value(&self.region)),
        ];
        labels.extend(
            extra
                .iter()
                .map(|(k, v)| metrics::Label::new(*k, metrics::SharedString::const_str(v))),
        );
        labels
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for (key, value) in [
            ("target", &self.target),
            ("model", &self.model),
            ("region", &self.region),
        ] {
            if let Some(value) = value {
                write!(f, "{sep}{key}={}", arn_resource(value))?;
                sep = " ";
            }
        }
        Ok(())
    }
}

fn is_arn(value: &str) -> bool {
    value.starts_with("arn:")
}

/// What a label shows of `value`: an ARN (a Bedrock inference profile, a DynamoDB table) is
/// reduced to its resource name — the part after the last `/` (or `:`) — so that no account id
/// reaches a metric label or a log line; anything else as it is. Only emitting reduces: the
/// label keeps the whole ARN, which a target may need as its model id.
pub(crate) fn arn_resource(value: &str) -> &str {
    if !is_arn(value) {
        return value;
    }
    match value.rfind('/') {
        Some(slash) => &value[slash + 1..],
        None => value.rsplit(':').next().unwrap_or(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_display_skips_missing() {
        assert_eq!(Labels::none().to_string(), "");
        assert_eq!(
            Labels::none().region("eu-west-1").to_string(),
            "region=eu-west-1"
        );
    }

    #[test]
    fn arns_show_their_resource_name_only() {
        let profile = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3";
        let table = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders";
        let labels = Labels::target(table).model(profile).region("us-east-1");
        assert_eq!(
            labels.to_string(),
            "target=orders model=a1b2c3 region=us-east-1"
        );
        // The label keeps the whole ARN (a target's model id may be one).
        assert_eq!(labels.model_name(), Some(profile));
        assert_eq!(
            arn_resource("arn:aws:sns:us-east-1:123456789012:topic"),
            "topic"
        );
        assert_eq!(
            arn_resource("anthropic.claude-3-haiku"),
            "anthropic.claude-3-haiku"
        );
        #[cfg(feature = "metrics")]
        for label in labels.metric_labels(&[]) {
            assert!(!label.value().contains("123456789012"), "{label:?}");
        }
    }
}
