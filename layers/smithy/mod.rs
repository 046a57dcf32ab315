//! The same policy inside AWS SDK clients: a retry classifier, an interceptor and an HTTP client
//! wrapper for the Smithy orchestrator that every `aws-sdk-*` crate runs on.
//!
//! An SDK client owns its retry loop, and its generated config builders take only three
//! plug-ins: a retry classifier, interceptors and an HTTP client. [`SdkHeadroom`] holds the
//! shared cores — the [`RetryPolicy`] (with its budget), the fallback [`Route`], the circuit
//! breakers and the [`Quota`] — and installs one of each:
//!
//! - [`HeadroomInterceptor`] (synchronous hooks, per operation and per attempt): estimates the
//!   call's cost from the typed input, chooses the target for each attempt before its endpoint
//!   is resolved (Bedrock: a target in another region moves the endpoint parameters' region and
//!   the signing region there) and rewrites the request before signing (Bedrock: the model id
//!   in `/model/{modelId}/…`), reads the real
//!   usage after deserialization and settles the reservation, records the breaker outcome, and
//!   decides the retry with the retry policy (attempt count, budget, fallback moves).
//! - [`HeadroomHttpClient`] (asynchronous, once per attempt, around your client): waits for
//!   admission — bounded by the call's [`Deadline`](crate::Deadline) and by
//!   [`MAX_ADMISSION_WAIT`], well under SigV4's five-minute signature validity — and fails fast when no target can serve or its breaker is open,
//!   without a network call and without touching the signed request.
//! - [`HeadroomClassifier`]: runs after the SDK's own classifiers, so it has the last word, and
//!   hands the interceptor's decision to the SDK's retry loop as
//!   `RetryAction::retryable_error_with_explicit_delay` (our backoff: jitter, `Retry-After`,
//!   quota-window alignment) or `RetryAction::RetryForbidden` (Fatal, budget spent, deadline).
//!
//! The decision is the interceptor's because only interceptors see the operation's config
//! bag, where the attempt count and the call's plan live; a classifier sees only the
//! `InterceptorContext`. The interceptor registers each call under its context, the
//! orchestrator runs the `read_after_attempt` hooks and then the classifiers on that same
//! context, and the classifier takes the decision from the call it finds (see [How the
//! classifier finds its call](#how-the-classifier-finds-its-call)). An attempt the SDK timed
//! out skips `read_after_attempt` in aws-smithy-runtime 1.9 (1.16 runs it after the timeout);
//! the classifier ends such an attempt itself. Installed alone, the classifier decides from
//! the outcome by itself (first-retry backoff, no budget). The HTTP client finds the call
//! through a header the interceptor adds after signing and the client removes before sending.
//!
//! `configure_bedrock` / `configure_dynamodb` (features `bedrock`, `dynamodb`) install all
//! three with one call, and **replace** three settings of the builder to pair with them:
//!
//! - the [`RetryConfig`](aws_smithy_types::retry::RetryConfig) (whatever mode and attempts it
//!   had): standard mode, `max_attempts` = the policy's attempts × (the route's hops + 1), and
//!   `max_backoff` = the policy's longest delay (a quota window plus its spread, or the longest
//!   server delay), so the SDK never cuts a window-aligned delay short;
//! - the retry partition (the SDK's default is shared by every client of a service and region
//!   in the process): one named `tower-headroom` whose token bucket never runs out, so the
//!   policy's budget is the only one;
//! - the stalled-stream protection: the builder's, with the upload check off (it would take an
//!   attempt waiting for admission for a stalled upload); download check and grace period kept.
//!
//! They log what they replaced, old and new values, in one `debug` event of target
//! `tower_headroom::smithy` (no credentials: the settings above only). The same
//! [`Quota`], [`BreakerRegistry`] and [`RetryPolicy`] (clones share state) may back Tower
//! stacks and several SDK clients at once: one account quota, many clients.
//!
//! ```
//! # #[cfg(feature = "bedrock")] {
//! use std::sync::Arc;
//! use tower_headroom::admission::{Limit, Quota};
//! use tower_headroom::fallback::Target;
//! use tower_headroom::smithy::SdkHeadroom;
//! use tower_headroom::{BoxError, Profile};
//!
//! // `config` is e.g. `aws_sdk_bedrockruntime::config::Builder::from(&sdk_config)`.
//! fn bedrock_client(
//!     config: aws_sdk_bedrockruntime::config::Builder,
//! ) -> Result<aws_sdk_bedrockruntime::Client, BoxError> {
//!     let quota: Quota<Arc<str>> =
//!         Quota::new(Limit::per_minute().requests(50).units(200_000).build()?);
//!     let headroom = SdkHeadroom::builder(Profile::Bedrock)
//!         .target(Target::new("sonnet", Arc::from("anthropic.claude-3-5-sonnet-20240620-v1:0")))
//!         .target(Target::new("haiku", Arc::from("anthropic.claude-3-haiku-20240307-v1:0")))
//!         .quota(quota)
//!         .build()?;
//!     let config = headroom.configure_bedrock(config)?.build();
//!     Ok(aws_sdk_bedrockruntime::Client::from_conf(config))
//! }
//! # let _ = bedrock_client;
//! # }
//! ```
//!
//! # How the classifier finds its call
//!
//! A retry classifier is given the operation's `InterceptorContext` and nothing else
//! (`ClassifyRetry::classify_retry(&self, ctx)`; aws-smithy-runtime-api 1.22 adds
//! `classify_retry_v2(ctx, previous)`, still without the config bag, which only the retry
//! *strategy*, `RetryStrategy::should_attempt_retry(ctx, components, cfg)`, and the
//! interceptors are given). The context carries no identity either: its
//! fields are the input, the output or error, the request, the response, the phase and a
//! request checkpoint; the HTTP response's extensions are private, and an attempt that timed
//! out or could not connect has no response at all. So the classifier finds its call by the
//! context's address (`context_key`), which is sound because of how the
//! orchestrator holds the context (`aws_smithy_runtime::client::orchestrator::
//! invoke_with_stop_point`, read in 1.9.4 and 1.16.2, unchanged in this respect):
//!
//! 1. It makes one context per operation, `let mut ctx = InterceptorContext::new(input)`, a
//!    local of the operation's `async` block, and hands `&mut ctx` to every hook and, through
//!    the retry strategy and the connection-poisoning interceptor, to every classifier. It
//!    moves the context out (`Ok(ctx)`, then `finalize`) only after `read_after_execution`.
//!    `InterceptorContext` is not `Clone`.
//! 2. Hooks and classifiers run only while that future is polled, and a polled future is
//!    pinned: between `modify_before_serialization` (where the interceptor registers the call)
//!    and `read_after_execution` (where it unregisters it) the context does not move, so no
//!    other live context has its address.
//! 3. The registry holds weak handles. The call's strong handle and its `Registered` guard
//!    live in the operation's config bag, a sibling local of the context in the same future.
//!    When the operation ends without `read_after_execution` (1.9's operation timeout cuts
//!    the finalizers short; 1.16 runs them) or its future is dropped mid-flight (the caller
//!    cancelled), the bag drops with the context and the guard removes the call's entries,
//!    before that memory can hold another operation's context.
//!
//! Hence an entry under an address is always the call of the operation whose context is at
//! that address, and no entry outlives its operation. An orchestrator that copied the context,
//! or classified on another one than its hooks see, would break this; `tests/smithy_registry.rs`
//! (hundreds of concurrent calls with random failures, timeouts and dropped calls, each call's
//! fate checked in its result and attempt count, the registry empty at the end) would catch it,
//! and `scripts/sdk-newest` runs it against the newest published SDK crates.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::{
    ClassifyRetry, RetryAction, RetryClassifierPriority,
};
use tokio::time::Instant;

use crate::admission::{MemoryStore, Priority, Quota, QuotaStore, Tenant};
use crate::breaker::{BreakerHandle, BreakerRegistry};
use crate::concurrency::{AdaptiveLimit, ConcurrencyConfig};
use crate::fallback::Route;
use crate::observe::Labels;
use crate::retry::RetryPolicy;
use crate::stack::Profile;
use crate::timeout::AttemptTimeout;
use crate::{Outcome, OutcomeKind};

mod also;
#[cfg(feature = "dynamodb")]
pub mod batch;
#[cfg(feature = "bedrock")]
mod bedrock;
mod builder;
mod call;
mod classify;
#[cfg(feature = "dynamodb")]
mod dynamodb;
mod events;
mod http_client;
mod interceptor;
mod keys;
mod registry;
mod stream;

pub use self::builder::SdkHeadroomBuilder;
pub use self::classify::{classify_context, classify_response};
pub use self::http_client::HeadroomHttpClient;
pub use self::interceptor::HeadroomInterceptor;
pub(crate) use self::registry::Registry;
use self::stream::settle_stream;

/// The longest admission wait an SDK attempt may be given: the request is signed before it
/// waits, and SigV4 signatures are valid for five minutes.
pub const MAX_ADMISSION_WAIT: Duration = Duration::from_secs(240);

/// The shared cores and settings behind the three SDK plug-ins; see the [module docs](self).
///
/// Cheap to clone (one `Arc`); clones share everything.
pub struct SdkHeadroom<S: crate::admission::StoreSlot = MemoryStore<Arc<str>>> {
    pub(crate) shared: Arc<Shared<S>>,
}

impl<S: crate::admission::StoreSlot> Clone for SdkHeadroom<S> {
    fn clone(&self) -> Self {
        SdkHeadroom {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: crate::admission::StoreSlot> fmt::Debug for SdkHeadroom<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SdkHeadroom")
            .field("retry", &self.shared.retry)
            .field(
                "targets",
                &self.shared.route.as_ref().map(|r| r.targets().len()),
            )
            .field("quota", &self.shared.quota.is_some())
            .finish_non_exhaustive()
    }
}

/// Estimation settings for LLM calls (tokens) read from typed inputs.
#[derive(Clone, Debug)]
pub(crate) struct Estimation {
    pub(crate) chars_per_token: u64,
    /// Each model's burndown and maximum output (the reservation without `maxTokens`).
    pub(crate) models: crate::bedrock::ModelTable,
}

pub(crate) struct Shared<S: crate::admission::StoreSlot> {
    pub(crate) retry: RetryPolicy,
    pub(crate) route: Option<Route<Arc<str>>>,
    /// The model id (or table) each route target's requests carry, in target order: its key,
    /// unless it was given another (`SdkHeadroomBuilder::target_model`).
    pub(crate) target_models: Box<[Arc<str>]>,
    /// One breaker per route target, in target order.
    pub(crate) target_breakers: Box<[Option<BreakerHandle>]>,
    /// Breakers for keys that are not on the route (calls to other models or tables).
    pub(crate) other_breakers: Option<BreakerRegistry<Arc<str>>>,
    /// The adaptive concurrency limits, when configured: one per route target, and one per
    /// other key, made on first use.
    pub(crate) limits: Option<Limits>,
    pub(crate) quota: Option<Quota<Arc<str>, S>>,
    pub(crate) priority: Priority,
    pub(crate) tenant: Option<Tenant>,
    /// A call's wait budget when it carries no [`Deadline`](crate::Deadline).
    pub(crate) deadline: Duration,
    pub(crate) estimation: Estimation,
    /// How long one attempt may take once admitted (see [`crate::timeout`]).
    pub(crate) attempt_timeout: Option<AttemptTimeout>,
    /// The calls in flight, by their orchestrator context (for the classifier) and by their
    /// id (for the HTTP client, which finds it in a request header).
    pub(crate) calls: Mutex<Registry<S>>,
    /// Numbers calls and interceptors.
    pub(crate) ids: AtomicU64,
    /// Where attempts report, registered once per labels.
    pub(crate) events: Mutex<EventsByLabels>,
}

/// The adaptive concurrency limits of an [`SdkHeadroom`]: per route target, and per other key.
pub(crate) struct Limits {
    pub(crate) config: ConcurrencyConfig,
    pub(crate) targets: Box<[AdaptiveLimit]>,
    pub(crate) others: Mutex<HashMap<Arc<str>, AdaptiveLimit>>,
}

impl Limits {
    /// The limit of route target `index`, or of `key` (labelled `labels`) off the route.
    pub(crate) fn get(
        &self,
        target: Option<usize>,
        key: &Arc<str>,
        labels: &Labels,
    ) -> AdaptiveLimit {
        if let Some(limit) = target.and_then(|t| self.targets.get(t)) {
            return limit.clone();
        }
        let mut others = self.others.lock().unwrap_or_else(|e| e.into_inner());
        others
            .entry(Arc::clone(key))
            .or_insert_with(|| AdaptiveLimit::new(self.config, labels.clone()))
            .clone()
    }
}

/// Metric handles per route target (`Some(index)`) or key, and labels.
pub(crate) type EventsByLabels = HashMap<(Option<usize>, Labels), Arc<events::Events>>;

/// What the interceptor decided after an attempt, for the classifier to hand to the SDK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The attempt succeeded: nothing to retry.
    Done,
    /// Retry after this delay (zero for a fallback move).
    Retry(OutcomeKind, Duration),
    /// Do not retry.
    Stop,
}

impl SdkHeadroom {
    /// A builder with the `profile`'s retry policy and breaker defaults (see [`Profile`]).
    pub fn builder(profile: Profile) -> SdkHeadroomBuilder {
        SdkHeadroomBuilder::new(profile)
    }
}

impl<S: QuotaStore<Arc<str>> + 'static> SdkHeadroom<S> {
    /// The retry classifier (install with the config builder's `retry_classifier`).
    pub fn retry_classifier(&self) -> HeadroomClassifier<S> {
        HeadroomClassifier {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The retry policy every plug-in of this headroom shares.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.shared.retry
    }

    /// The SDK `max_attempts` that pairs with this headroom: the policy's attempts × (the
    /// route's hops + 1), since every fallback move is an SDK attempt; the policy stops first.
    pub fn sdk_max_attempts(&self) -> u32 {
        let hops = self.shared.route.as_ref().map_or(0, |r| r.max_hops());
        self.shared
            .retry
            .max_attempts()
            .saturating_mul(hops.saturating_add(1))
    }

    /// The SDK `max_backoff` that pairs with this headroom: long enough for the longest delay
    /// the policy can choose (a local admission wait may take the call's whole budget), so the
    /// SDK does not cut it short.
    pub fn sdk_max_backoff(&self) -> Duration {
        let backoff = self.shared.retry.backoff();
        let window = backoff
            .quota_window()
            .map_or(Duration::ZERO, |w| w.length() + w.spread());
        let schedules = [
            crate::retry::ScheduleClass::Throttled,
            crate::retry::ScheduleClass::Timeout,
            crate::retry::ScheduleClass::Overloaded,
            crate::retry::ScheduleClass::Unavailable,
            crate::retry::ScheduleClass::Transient,
        ]
        .into_iter()
        .map(|class| backoff.schedule(class).cap())
        .max()
        .unwrap_or(Duration::ZERO);
        let server = backoff.max_server_delay().min(Duration::from_secs(300));
        window.max(schedules).max(server).max(self.shared.deadline)
    }

    /// The SDK retry partition to pair with this headroom (what `configure_bedrock` and
    /// `configure_dynamodb` install): one whose retry token bucket never runs out, so the
    /// policy's own budget is the only limit on retries (the SDK's default bucket is shared by
    /// every client of a service and region in the process, and a burst of throttles empties it).
    pub fn sdk_retry_partition(&self) -> aws_smithy_runtime::client::retries::RetryPartition {
        use aws_smithy_runtime::client::retries::{RetryPartition, TokenBucket};
        RetryPartition::custom("tower-headroom")
            .token_bucket(TokenBucket::unlimited())
            .build()
    }

    /// The SDK [`RetryConfig`](aws_smithy_types::retry::RetryConfig) to pair with this
    /// headroom (what `configure_bedrock` and `configure_dynamodb` install).
    pub fn sdk_retry_config(&self) -> aws_smithy_types::retry::RetryConfig {
        aws_smithy_types::retry::RetryConfig::standard()
            .with_max_attempts(self.sdk_max_attempts())
            .with_max_backoff(self.sdk_max_backoff())
    }
}

/// The SDK retry classifier of an [`SdkHeadroom`]: hands the interceptor's decision to the
/// SDK's retry loop, or decides from the outcome alone when no interceptor decided.
///
/// Runs after the SDK's built-in classifiers (`HttpStatusCodeClassifier`,
/// `ModeledAsRetryableClassifier`, `AwsErrorCodeClassifier`, `TransientErrorClassifier`), so its
/// answer is the one the SDK acts on.
pub struct HeadroomClassifier<S: crate::admission::StoreSlot = MemoryStore<Arc<str>>> {
    shared: Arc<Shared<S>>,
}

impl<S: crate::admission::StoreSlot> fmt::Debug for HeadroomClassifier<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HeadroomClassifier")
    }
}

impl<S: QuotaStore<Arc<str>> + 'static> ClassifyRetry for HeadroomClassifier<S> {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let Some(handle) = self.shared.by_context(ctx) else {
            return match classify_context(ctx) {
                Some(outcome) => action(stateless(&self.shared.retry, &outcome)),
                None => RetryAction::NoActionIndicated,
            };
        };
        let mut call = handle.lock();
        // Read, not taken: a client configured twice asks two classifiers, which must agree.
        if let Some(decision) = call.decision {
            return action(decision);
        }
        let Some(outcome) = classify_context(ctx) else {
            return RetryAction::NoActionIndicated;
        };
        let timed_out = ctx
            .output_or_error()
            .is_some_and(|r| r.is_err_and(|e| e.is_timeout_error()));
        if timed_out && call.attempt_open() {
            // The SDK's attempt timeout dropped the attempt before the interceptor's
            // after-attempt hook (aws-smithy-runtime 1.9; 1.16 runs the hook after the
            // timeout, which decides as for any failure): the attempt ends, and the policy
            // decides, here.
            return action(self.shared.end_attempt(
                &mut call,
                &outcome,
                (None, None),
                Instant::now(),
            ));
        }
        // Asked before the attempt ended (the SDK's connection-poisoning interceptor asks after
        // deserialization): an answer without side effects and without a delay, so that
        // `RetryAction::transient_error()` still marks a transient failure's connection.
        match stateless(&self.shared.retry, &outcome) {
            Decision::Retry(kind, _) => RetryAction::retryable_error(classify::error_kind(kind)),
            other => action(other),
        }
    }

    fn name(&self) -> &'static str {
        "tower-headroom"
    }

    fn priority(&self) -> RetryClassifierPriority {
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

/// The stalled-stream protection to pair with the HTTP client wrapper: the caller's, with the
/// upload check off. The SDK watches the request body's upload from the moment the connector
/// is called, and an attempt that waits for admission there reads none of it, which the check
/// would report as a stalled upload (a timeout) after its grace period.
#[cfg(any(feature = "bedrock", feature = "dynamodb"))]
pub(crate) fn upload_stalls_off(
    current: Option<
        &aws_smithy_runtime_api::client::stalled_stream_protection::StalledStreamProtectionConfig,
    >,
) -> aws_smithy_runtime_api::client::stalled_stream_protection::StalledStreamProtectionConfig {
    use aws_smithy_runtime_api::client::stalled_stream_protection::StalledStreamProtectionConfig as Stalls;
    match current {
        Some(current) if !current.is_enabled() => current.clone(),
        Some(current) => Stalls::enabled()
            .upload_enabled(false)
            .download_enabled(current.download_enabled())
            .grace_period(current.grace_period())
            .build(),
        None => Stalls::enabled().upload_enabled(false).build(),
    }
}

/// What `configure_bedrock` / `configure_dynamodb` replace on a config builder: each setting
/// as the builder had it (`None`: unset, the SDK's default) and as installed.
#[cfg(any(feature = "bedrock", feature = "dynamodb"))]
pub(crate) struct Replaced<'a> {
    pub(crate) retry: (
        Option<&'a aws_smithy_types::retry::RetryConfig>,
        &'a aws_smithy_types::retry::RetryConfig,
    ),
    pub(crate) partition: (
        Option<&'a aws_smithy_runtime::client::retries::RetryPartition>,
        &'a aws_smithy_runtime::client::retries::RetryPartition,
    ),
    pub(crate) stalls: (
        Option<&'a aws_smithy_runtime_api::client::stalled_stream_protection::StalledStreamProtectionConfig>,
        &'a aws_smithy_runtime_api::client::stalled_stream_protection::StalledStreamProtectionConfig,
    ),
}

/// The `debug` event (target `tower_headroom::smithy`) saying what `configure` replaced, old
/// and new values: settings only, nothing of the credentials or the endpoint.
#[cfg(any(feature = "bedrock", feature = "dynamodb"))]
pub(crate) fn log_replaced(configure: &'static str, replaced: Replaced<'_>) {
    use aws_smithy_runtime_api::client::stalled_stream_protection::StalledStreamProtectionConfig as Stalls;
    use aws_smithy_types::retry::RetryConfig;
    const UNSET: &str = "unset (the SDK's default)";
    fn retry(config: &RetryConfig) -> String {
        format!(
            "{} mode, max_attempts {}, initial_backoff {:?}, max_backoff {:?}",
            format!("{:?}", config.mode()).to_lowercase(),
            config.max_attempts(),
            config.initial_backoff(),
            config.max_backoff()
        )
    }
    fn stalls(config: &Stalls) -> String {
        if !config.is_enabled() {
            return "off".to_owned();
        }
        let on = |enabled: bool| if enabled { "on" } else { "off" };
        format!(
            "upload check {}, download check {}, grace_period {:?}",
            on(config.upload_enabled()),
            on(config.download_enabled()),
            config.grace_period()
        )
    }
    let (old_retry, new_retry) = replaced.retry;
    let (old_partition, new_partition) = replaced.partition;
    let (old_stalls, new_stalls) = replaced.stalls;
    tracing::debug!(
        target: "tower_headroom::smithy",
        old_retry_config = %old_retry.map_or_else(|| UNSET.to_owned(), retry),
        new_retry_config = %retry(new_retry),
        old_retry_partition = %old_partition.map_or_else(|| UNSET.to_owned(), |p| p.to_string()),
        new_retry_partition = %format_args!("{new_partition} (token bucket unlimited)"),
        old_stalled_stream_protection = %old_stalls.map_or_else(|| UNSET.to_owned(), stalls),
        new_stalled_stream_protection = %stalls(new_stalls),
        "{configure} replaced the retry config, the retry partition and the stalled-stream protection",
    );
}

/// The body of `configure_bedrock` / `configure_dynamodb`: the generated config builders of
/// the two SDKs have the same methods but no common trait. The builder is built once to read
/// its HTTP client (builders have no getter), then turned back into a builder.
#[cfg(any(feature = "bedrock", feature = "dynamodb"))]
macro_rules! configure {
    ($headroom:expr, $builder:expr, $shape:expr, $service:literal) => {{
        let config = $builder.build();
        let inner = config.http_client().ok_or_else(|| {
            ConfigError::new(
                "http_client",
                "unset",
                "the config builder has no HTTP client to wrap: build it from an SdkConfig or set one",
            )
        })?;
        let stalls = $crate::smithy::upload_stalls_off(config.stalled_stream_protection());
        let (retry, partition) = ($headroom.sdk_retry_config(), $headroom.sdk_retry_partition());
        $crate::smithy::log_replaced(
            concat!("configure_", $service),
            $crate::smithy::Replaced {
                retry: (config.retry_config(), &retry),
                partition: (config.retry_partition(), &partition),
                stalls: (config.stalled_stream_protection(), &stalls),
            },
        );
        Ok(config
            .to_builder()
            .http_client($headroom.http_client(inner))
            .interceptor($headroom.interceptor_with(Arc::new($shape)))
            .retry_classifier($headroom.retry_classifier())
            .retry_config(retry)
            .retry_partition(partition)
            .stalled_stream_protection(stalls))
    }};
}
#[cfg(any(feature = "bedrock", feature = "dynamodb"))]
use configure;

/// The SDK's answer for a decision.
fn action(decision: Decision) -> RetryAction {
    match decision {
        Decision::Done => RetryAction::NoActionIndicated,
        Decision::Retry(kind, delay) => {
            RetryAction::retryable_error_with_explicit_delay(classify::error_kind(kind), delay)
        }
        Decision::Stop => RetryAction::RetryForbidden,
    }
}

/// A decision from the outcome alone: the policy's first-retry backoff, no attempt count.
fn stateless(policy: &RetryPolicy, outcome: &Outcome) -> Decision {
    if outcome.is_success() {
        return Decision::Done;
    }
    if !outcome.kind.is_retryable()
        || (outcome.kind == OutcomeKind::Timeout && !policy.retries_timeouts())
        || crate::retry::spent_day(outcome, None, Instant::now())
    {
        return Decision::Stop;
    }
    let mut rng = fastrand::Rng::new();
    match policy
        .backoff()
        .delay(0, outcome, Duration::ZERO, Instant::now(), &mut rng)
    {
        Ok(delay) => Decision::Retry(outcome.kind, delay),
        Err(_) => Decision::Stop,
    }
}
