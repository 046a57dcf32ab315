//! A throttling simulator: in-process stand-ins for Amazon Bedrock model endpoints, DynamoDB
//! tables and a plain rate-limited HTTP endpoint, as [`tower::Service`]s (feature `sim`).
//!
//! Every claim a resilience layer makes — goodput, no early retries, no over-admission, fast
//! failover — has to be measured against something that throttles like the real service. The
//! simulators enforce the real quota semantics and answer with the real error codes and message
//! families, so the crate's classifiers see what production sees:
//!
//! - [`BedrockSim`]: TPM per (model id, region) on 60-second fixed windows and tokens per day
//!   (per model, and optionally per account and region), RPM only where configured (as
//!   bedrock-runtime enforces none today), token reservation at start (input, cache and
//!   `max_tokens`, the model's maximum when unset) and settlement with burndown at completion,
//!   the daily `ThrottlingException`, a latency model, a seedable output-length model,
//!   overload episodes, outage windows and a concurrency cap;
//! - [`DynamoSim`]: provisioned RCU/WCU per second with burst credit and adaptive capacity (or
//!   the even split of before), the 3,000 RCU / 1,000 WCU per-key ceiling, on-demand tables,
//!   `ThrottlingReasons`, consumed capacity;
//! - [`EndpointSim`]: a fixed-window or token-bucket limit answering `429` + `Retry-After`.
//!
//! Each simulator has a synchronous core that takes `now` (a [`tokio::time::Instant`]) and
//! never sleeps, and a `Service` impl that sleeps the latency model with
//! [`tokio::time::sleep`]. Under `#[tokio::test(start_paused = true)]` that sleep is virtual:
//! minutes of traffic run in milliseconds and, for a given seed, give identical numbers on every
//! run. No sockets, no threads; an HTTP front speaking the AWS wire protocols is built on these
//! types separately.
//!
//! ```
//! use tower::{Service, ServiceExt};
//! use tower_headroom::OutcomeKind;
//! use tower_headroom::sim::{BedrockSim, ModelCall, ModelConfig, OutputLength, SimClassifier};
//! use tower_headroom::classify::Classify;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let sim = BedrockSim::builder()
//!     .model(
//!         ModelConfig::builder("anthropic.claude-3-haiku", "us-east-1")
//!             .rpm(2)
//!             .tpm(10_000)
//!             .output(OutputLength::Fixed { tokens: 100 })
//!             .build()?,
//!     )
//!     .seed(7)
//!     .build()?;
//! let mut svc = sim.clone();
//! let call = || ModelCall::new("anthropic.claude-3-haiku", "us-east-1", 500, 1_000);
//!
//! let reply = svc.ready().await?.call(call()).await?;
//! assert_eq!(reply.output_tokens, 100);
//! svc.ready().await?.call(call()).await?;
//! // The third request in the same minute is over the 2 RPM quota.
//! let err = svc.ready().await?.call(call()).await.unwrap_err();
//! assert_eq!(err.code(), "ThrottlingException");
//! assert_eq!(err.status(), 429);
//! let outcome = SimClassifier.classify(Err::<&tower_headroom::sim::ModelReply, _>(&err));
//! assert!(matches!(outcome.kind, OutcomeKind::Throttled(_)));
//! assert_eq!(sim.stats().models[0].counts.throttled_requests, 1);
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true)
//! #     .build().unwrap().block_on(run()).unwrap();
//! ```
//!
//! Configuration structs derive `serde::Deserialize` (durations are written in milliseconds,
//! `*_ms`, or seconds, `*_s`) and are validated when a simulator is built: a bad value is a
//! [`ConfigError`] naming the field and the value, never a panic.
//!
//! Why hand-written: the quota semantics (fixed windows shared by all callers, reserve then
//! settle with burndown, DynamoDB's debt-allowing burst buckets and per-key ceilings) are the point of
//! the simulator, and no limiter crate takes a `tokio` `Instant` as an argument or settles a
//! reservation after the fact.

use std::borrow::Cow;
use std::collections::HashMap;
use std::error::Error;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::StatusCode;

use crate::classify::{Classify, aws, classify_error};
use crate::{ConfigError, Outcome};

mod bedrock;
mod dynamodb;
mod endpoint;
pub mod front;
pub mod llm;
mod serde_time;

pub use self::bedrock::{
    BEDROCK_DAY, BEDROCK_WINDOW, BedrockConfig, BedrockFuture, BedrockSim, BedrockSimBuilder,
    BedrockStats, DAILY_MESSAGE, InFlight, MINUTES_PER_DAY, ModelCall, ModelConfig,
    ModelConfigBuilder, ModelReply, ModelStats, OutputLength, RegionStats, StopReason, WindowStats,
};
pub use self::dynamodb::{
    BillingMode, CapacityModel, DEFAULT_ACCOUNT_ID, DEFAULT_REGION, DynamoCall, DynamoConfig,
    DynamoFuture, DynamoReply, DynamoSim, DynamoSimBuilder, DynamoStats, KeyStats,
    MAX_BURST_SECONDS, MAX_CAPACITY, MAX_PARTITIONS, NEW_ON_DEMAND_PEAK_RCU,
    NEW_ON_DEMAND_PEAK_WCU, Op, PARTITION_MAX_RCU, PARTITION_MAX_WCU, PartitionStats, TableConfig,
    TableConfigBuilder, TableStats, ThrottlingReason,
};
pub use self::endpoint::{
    EndpointConfig, EndpointFuture, EndpointLimit, EndpointSim, EndpointSimBuilder, EndpointStats,
    SimCaller,
};
pub use self::llm::{LlmConfig, LlmEndpointSim, LlmShape};

/// A rejection from a simulator, shaped as the real service sends it: HTTP status, the exact
/// AWS error type and the service's message text.
///
/// The message is always server text chosen by the simulator (model ids and table names from
/// the configuration at most), never anything from a request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimError {
    status: StatusCode,
    code: &'static str,
    message: Cow<'static, str>,
    retry_after: Option<Duration>,
    /// DynamoDB's `ThrottlingReasons` entry: the reason and the throttled resource's ARN.
    throttling: Option<(ThrottlingReason, Arc<str>)>,
}

impl SimError {
    /// A rejection with the given status, AWS error type and message.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        SimError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            throttling: None,
        }
    }

    /// Attaches DynamoDB's throttling reason and the ARN of the throttled table (sent in the
    /// error body as `ThrottlingReasons: [{ "reason", "resource" }]`).
    pub fn with_throttling_reason(
        mut self,
        reason: ThrottlingReason,
        resource: impl Into<Arc<str>>,
    ) -> Self {
        self.throttling = Some((reason, resource.into()));
        self
    }

    /// Why DynamoDB throttled the call (`None` for every other rejection).
    pub fn throttling_reason(&self) -> Option<ThrottlingReason> {
        self.throttling.as_ref().map(|(reason, _)| *reason)
    }

    /// The ARN of the throttled table, with [`throttling_reason`](Self::throttling_reason).
    pub fn throttled_resource(&self) -> Option<&str> {
        self.throttling.as_ref().map(|(_, arn)| &**arn)
    }

    /// Attaches a `Retry-After` delay.
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// The HTTP status the service answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The exact AWS error type, e.g. `ThrottlingException` (sent as `x-amzn-errortype` and
    /// `__type`).
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The service's message, e.g. "Too many requests, please wait before trying again.".
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The `Retry-After` delay, if the service sends one (Bedrock and DynamoDB never do).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// This rejection as the crate's classifiers see it:
    /// [`aws::classify_with_status`] on the code, message and status, plus the delay.
    /// A DynamoDB throttle's [`throttling_reason`](Self::throttling_reason) refines the class
    /// and rides along as [`Outcome::reason`](Outcome#structfield.reason), as the crate's AWS
    /// classifiers do with an error body's `ThrottlingReasons`: a key-range throttle is
    /// `Throttled(Partition)`, which never lowers the table's budget.
    pub fn outcome(&self) -> Outcome {
        let reason = self
            .throttling_reason()
            .and_then(|r| aws::throttle_reason(r.as_str()));
        let kind = aws::classify_with_status(self.code, Some(&self.message), self.status.as_u16());
        Outcome::new(aws::with_reason(kind, reason))
            .with_reason(reason)
            .with_retry_after_opt(self.retry_after)
    }
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl Error for SimError {}

/// Classifies simulator results: a [`SimError`] anywhere in the error chain through
/// [`SimError::outcome`], any other error through [`classify_error`], every reply a success.
///
/// For [`EndpointSim`], whose rejections are `http::Response`s, use
/// [`HttpClassifier`](crate::HttpClassifier).
#[derive(Clone, Copy, Debug, Default)]
pub struct SimClassifier;

impl SimClassifier {
    fn classify_err(error: &(dyn Error + 'static)) -> Outcome {
        // Bounded like classify_error, in case of a cyclic source chain.
        let mut next = Some(error);
        for _ in 0..32 {
            let Some(current) = next else { break };
            if let Some(sim) = current.downcast_ref::<SimError>() {
                return sim.outcome();
            }
            next = current.source();
        }
        classify_error(error)
    }
}

impl Classify<ModelReply> for SimClassifier {
    fn classify(&self, result: Result<&ModelReply, &(dyn Error + 'static)>) -> Outcome {
        match result {
            Ok(_) => Outcome::SUCCESS,
            Err(e) => Self::classify_err(e),
        }
    }
}

impl Classify<DynamoReply> for SimClassifier {
    fn classify(&self, result: Result<&DynamoReply, &(dyn Error + 'static)>) -> Outcome {
        match result {
            Ok(_) => Outcome::SUCCESS,
            Err(e) => Self::classify_err(e),
        }
    }
}

/// What happened to the calls of one model, table or caller.
///
/// `admitted` calls passed every check; the other counters are rejections by kind. Every call
/// is counted exactly once: `admitted + rejected() == calls`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SimCounts {
    /// Calls admitted.
    pub admitted: u64,
    /// Admitted calls that completed (their reply was produced).
    pub completed: u64,
    /// Rejected by a requests-per-window quota (Bedrock RPM, endpoint limit).
    pub throttled_requests: u64,
    /// Rejected by a tokens-per-window quota (Bedrock TPM).
    pub throttled_tokens: u64,
    /// Rejected by a tokens-per-day quota (Bedrock's model or account-wide TPD: "Too many
    /// tokens per day").
    pub throttled_daily: u64,
    /// Rejected by DynamoDB capacity (table, key or partition, on-demand peak or maximum; the
    /// reason is on the [`SimError`] and in [`TableStats::throttled`]).
    pub throttled_capacity: u64,
    /// Rejected by an overload episode ("Model ... is currently overloaded").
    pub overloaded: u64,
    /// Rejected by an outage window (503 "Service temporarily unavailable").
    pub unavailable: u64,
    /// Rejected by the concurrency cap (503 "Too many connections").
    pub too_many_connections: u64,
    /// Rejected as invalid (unknown model or table, `max_tokens` out of range).
    pub invalid: u64,
}

impl SimCounts {
    /// All calls seen.
    pub fn calls(&self) -> u64 {
        self.admitted + self.rejected()
    }

    /// All rejections.
    pub fn rejected(&self) -> u64 {
        self.throttled()
            + self.overloaded
            + self.unavailable
            + self.too_many_connections
            + self.invalid
    }

    /// All quota throttles (requests, tokens per minute and per day, capacity).
    pub fn throttled(&self) -> u64 {
        self.throttled_requests
            + self.throttled_tokens
            + self.throttled_daily
            + self.throttled_capacity
    }

    pub(crate) fn count(&mut self, rejection: Rejection) {
        let slot = match rejection {
            Rejection::Requests => &mut self.throttled_requests,
            Rejection::Tokens => &mut self.throttled_tokens,
            Rejection::Daily => &mut self.throttled_daily,
            Rejection::Capacity => &mut self.throttled_capacity,
            Rejection::Overloaded => &mut self.overloaded,
            Rejection::Unavailable => &mut self.unavailable,
            Rejection::Connections => &mut self.too_many_connections,
            Rejection::Invalid => &mut self.invalid,
        };
        *slot += 1;
    }
}

/// What one caller (an application label passed with its calls) did against a simulator.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct CallerStats {
    /// The caller's label.
    pub caller: Arc<str>,
    /// Its calls, by what happened to them.
    pub counts: SimCounts,
    /// Units its admitted calls spent: tokens settled (Bedrock: `input + output × burndown`),
    /// capacity units consumed (DynamoDB), requests (endpoint).
    pub units: f64,
}

/// Per-caller statistics, kept in a map keyed by the caller's label.
#[derive(Debug, Default)]
pub(crate) struct Callers(HashMap<Arc<str>, (SimCounts, f64), foldhash::fast::FixedState>);

impl Callers {
    pub(crate) fn entry(&mut self, caller: &Option<Arc<str>>) -> Option<&mut (SimCounts, f64)> {
        let caller = caller.as_ref()?;
        if !self.0.contains_key(&**caller) {
            self.0.insert(caller.clone(), Default::default());
        }
        self.0.get_mut(&**caller)
    }

    pub(crate) fn count(&mut self, caller: &Option<Arc<str>>, rejection: Rejection) {
        if let Some((counts, _)) = self.entry(caller) {
            counts.count(rejection);
        }
    }

    /// A snapshot, sorted by label so that it prints the same on every run.
    pub(crate) fn snapshot(&self) -> Vec<CallerStats> {
        let mut out: Vec<CallerStats> = self
            .0
            .iter()
            .map(|(caller, (counts, units))| CallerStats {
                caller: caller.clone(),
                counts: *counts,
                units: *units,
            })
            .collect();
        out.sort_by(|a, b| a.caller.cmp(&b.caller));
        out
    }
}

/// Which counter a rejection goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rejection {
    Requests,
    Tokens,
    Daily,
    Capacity,
    Overloaded,
    Unavailable,
    Connections,
    Invalid,
}

/// A time span, as offsets from the simulator's start: an overload episode or an outage window.
///
/// In configuration files: `{ start_s = 120, duration_s = 60 }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Episode {
    /// When the episode begins, after the simulator's start.
    #[serde(rename = "start_s", with = "serde_time::secs")]
    pub start: Duration,
    /// How long it lasts; the episode covers `[start, start + duration)`.
    #[serde(rename = "duration_s", with = "serde_time::secs")]
    pub duration: Duration,
}

impl Episode {
    /// An episode from `start` for `duration`.
    pub const fn new(start: Duration, duration: Duration) -> Self {
        Episode { start, duration }
    }

    /// The end of the episode (exclusive), saturating.
    pub fn end(&self) -> Duration {
        self.start.saturating_add(self.duration)
    }

    /// Whether `elapsed` (time since the simulator's start) falls inside the episode.
    pub fn contains(&self, elapsed: Duration) -> bool {
        self.start <= elapsed && elapsed < self.end()
    }

    pub(crate) fn validate(&self, field: &'static str) -> Result<(), ConfigError> {
        if self.duration.is_zero() {
            return Err(ConfigError::new(
                field,
                self,
                "an episode must last longer than zero",
            ));
        }
        Ok(())
    }
}

/// Episodes at random times: gaps drawn from an exponential distribution with the given mean,
/// each episode lasting `duration`. Drawn from the simulator's seed, and from time alone (not
/// from the calls), so the same seed gives the same episodes whatever the traffic.
///
/// In configuration files: `{ mean_gap_s = 300, duration_s = 30 }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomEpisodes {
    /// The mean time between the end of one episode and the start of the next.
    #[serde(rename = "mean_gap_s", with = "serde_time::secs")]
    pub mean_gap: Duration,
    /// How long each episode lasts.
    #[serde(rename = "duration_s", with = "serde_time::secs")]
    pub duration: Duration,
}

impl RandomEpisodes {
    pub(crate) fn validate(&self, field: &'static str) -> Result<(), ConfigError> {
        if self.mean_gap.is_zero() {
            return Err(ConfigError::new(
                field,
                self,
                "mean_gap must be longer than zero",
            ));
        }
        if self.duration.is_zero() {
            return Err(ConfigError::new(
                field,
                self,
                "an episode must last longer than zero",
            ));
        }
        Ok(())
    }
}

/// Time since `start`, zero if `now` is earlier.
pub(crate) fn elapsed(start: tokio::time::Instant, now: tokio::time::Instant) -> Duration {
    now.saturating_duration_since(start)
}

/// Locks a simulator's state. A panic while the lock was held (there is no user code inside it)
/// leaves counters that are still consistent enough to report, so poisoning is ignored.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `now + d`, with `d` clamped so that the addition cannot overflow.
pub(crate) fn after(now: tokio::time::Instant, d: Duration) -> tokio::time::Instant {
    const MAX: Duration = Duration::from_secs(86_400);
    now + d.min(MAX)
}
