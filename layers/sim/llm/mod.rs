//! LLM endpoints in the two common HTTP shapes, OpenAI-style (`/v1/chat/completions`) and
//! Anthropic-style (`/v1/messages`): token buckets for requests and tokens per minute, the
//! vendors' rate-limit headers on every answer, their 429 bodies, an optional billing cap
//! (OpenAI's `insufficient_quota`) and overload episodes (Anthropic's 529). The synchronous
//! core is [`LlmEndpointSim::admit`]; the HTTP front serves it (see [`front`](super::front)),
//! so a real HTTP client can be pointed at it.
//!
//! How the simulator counts, and the vendor facts it follows:
//! - **Two token buckets** per endpoint, requests and tokens, each holding one minute's limit
//!   and refilled continuously at the limit per minute, starting full. A call takes one
//!   request and its *charged* tokens: its input (one token per four characters of its
//!   messages' text, as the Bedrock front estimates) plus its `max_tokens` (or the configured
//!   default when it sets none), taken when it is admitted and not given back — OpenAI: "your
//!   rate limit is calculated as the maximum of `max_tokens` and the estimated number of
//!   tokens based on the character count of your request"; it documents the limits as
//!   replenishing continuously (OpenAI, "Rate limits",
//!   <https://platform.openai.com/docs/guides/rate-limits>). Anthropic documents its limits
//!   as token buckets continuously refilled up to the per-minute maximum (Anthropic, "Rate
//!   limits", <https://docs.anthropic.com/en/api/rate-limits>).
//! - **Headers on every answer**: OpenAI `x-ratelimit-limit-requests`,
//!   `x-ratelimit-remaining-requests`, `x-ratelimit-reset-requests` and the `-tokens` trio,
//!   the resets as Go-style durations (`1s`, `6m0s`, `1.5s`: the time until the bucket is
//!   full again) (OpenAI, "Rate limits", "Rate limits in headers"). Anthropic
//!   `anthropic-ratelimit-requests-limit/remaining/reset` and `anthropic-ratelimit-tokens-*`,
//!   the resets as RFC 3339 instants on the simulator's wall clock
//!   ([`LlmEndpointSimBuilder::wall_clock`]) (Anthropic, "Rate limits", "Response headers").
//! - **429**: OpenAI sends `retry-after-ms` (milliseconds, the exact wait) and `retry-after`
//!   (whole seconds, rounded up) with `{"error":{"message":…,"type":"rate_limit_exceeded",
//!   "param":null,"code":"rate_limit_exceeded"}}`; once the billing cap
//!   ([`LlmEndpointSimBuilder::billing_cap`]) is spent, every call gets 429 with type and code
//!   `insufficient_quota`, no retry delay (OpenAI, "Error codes",
//!   <https://platform.openai.com/docs/guides/error-codes>: "429 - You exceeded your current
//!   quota, please check your plan and billing details"). Anthropic sends `retry-after`
//!   (seconds) with `{"type":"error","error":{"type":"rate_limit_error","message":…}}`, and
//!   during an overload episode 529 `overloaded_error` (Anthropic, "Errors",
//!   <https://docs.anthropic.com/en/api/errors>).
//! - **Answers** carry `usage` (OpenAI `prompt_tokens`/`completion_tokens`/`total_tokens`;
//!   Anthropic `input_tokens`/`output_tokens`); streamed ones are server-sent events (the
//!   front's `llm` module writes them): OpenAI `chat.completion.chunk`s, with `stream_options.include_usage` a final
//!   chunk with `usage` and empty `choices`, then `data: [DONE]`; Anthropic `message_start`
//!   (input usage), `content_block_start`, `content_block_delta`s, `content_block_stop`,
//!   `message_delta` (output usage), `message_stop`.
//!
//! Output lengths are drawn from an [`OutputLength`] with the simulator's seed, clipped to the
//! call's `max_tokens`; an answer takes `latency` plus `per_output_token` per output token.
//! Messages are fixed text or numbers; nothing from a request is kept or logged.

mod config;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{CallerStats, Callers, Episode, OutputLength, Rejection, SimCounts, elapsed, lock};
use crate::ConfigError;

pub use self::config::LlmConfig;

/// Which vendor's API the endpoint speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LlmShape {
    /// OpenAI-style: `POST /v1/chat/completions`.
    OpenAi,
    /// Anthropic-style: `POST /v1/messages`.
    Anthropic,
}

impl LlmShape {
    /// The path the front serves it on.
    pub fn path(self) -> &'static str {
        match self {
            LlmShape::OpenAi => "/v1/chat/completions",
            LlmShape::Anthropic => "/v1/messages",
        }
    }
}

/// One call to an [`LlmEndpointSim`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LlmCall {
    /// Input tokens (the front counts one per four characters of text).
    pub input_tokens: u64,
    /// The call's `max_tokens`, when it sets one.
    pub max_tokens: Option<u64>,
    /// The calling application's label, for per-caller statistics.
    pub caller: Option<Arc<str>>,
}

impl LlmCall {
    /// A call of `input_tokens` with `max_tokens`.
    pub fn new(input_tokens: u64, max_tokens: Option<u64>) -> Self {
        LlmCall {
            input_tokens,
            max_tokens,
            caller: None,
        }
    }

    /// Labels the call with its application.
    pub fn caller(mut self, caller: impl Into<Arc<str>>) -> Self {
        self.caller = Some(caller.into());
        self
    }
}

/// The state of both buckets after a call, for the rate-limit headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimitState {
    /// Requests per minute.
    pub requests_limit: u64,
    /// Whole requests left in the bucket.
    pub requests_remaining: u64,
    /// Until the requests bucket is full.
    pub requests_reset: Duration,
    /// Tokens per minute.
    pub tokens_limit: u64,
    /// Whole tokens left in the bucket.
    pub tokens_remaining: u64,
    /// Until the tokens bucket is full.
    pub tokens_reset: Duration,
    /// The simulator's wall clock at the call.
    pub wall: SystemTime,
}

/// An admitted call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LlmReply {
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens written.
    pub output_tokens: u64,
    /// Tokens taken from the bucket (input + `max_tokens`).
    pub charged_tokens: u64,
    /// Whether the output stopped at `max_tokens`.
    pub hit_max_tokens: bool,
    /// How long the answer takes.
    pub latency: Duration,
    /// The buckets after the call.
    pub limits: LimitState,
}

/// Why a call was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LlmRefusal {
    /// The requests bucket is empty; one request refills after `wait`.
    Requests {
        /// Until the call would fit.
        wait: Duration,
    },
    /// The tokens bucket holds too few tokens for the call.
    Tokens {
        /// Until the call would fit (the bucket's refill time when it can never fit).
        wait: Duration,
    },
    /// The billing cap is spent: every call is refused from now on.
    InsufficientQuota,
    /// An overload episode (Anthropic 529).
    Overloaded,
}

/// A refused call: why, and the buckets' state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LlmError {
    /// Why.
    pub refusal: LlmRefusal,
    /// The buckets at the refusal.
    pub limits: LimitState,
}

/// Builds an [`LlmEndpointSim`].
#[derive(Clone, Debug)]
pub struct LlmEndpointSimBuilder {
    shape: LlmShape,
    rpm: u64,
    tpm: u64,
    default_max_tokens: u64,
    output: OutputLength,
    latency: Duration,
    per_output_token: Duration,
    error_latency: Duration,
    billing_cap: Option<u64>,
    overloads: Vec<Episode>,
    seed: u64,
    start: Option<Instant>,
    wall: SystemTime,
}

impl LlmEndpointSimBuilder {
    /// Requests per minute (required, at least 1).
    pub fn rpm(mut self, rpm: u64) -> Self {
        self.rpm = rpm;
        self
    }
    /// Tokens per minute (required, at least 1).
    pub fn tpm(mut self, tpm: u64) -> Self {
        self.tpm = tpm;
        self
    }
    /// The `max_tokens` charged for a call that sets none (default 4,096).
    pub fn default_max_tokens(mut self, tokens: u64) -> Self {
        self.default_max_tokens = tokens;
        self
    }
    /// How long answers are (default 256 tokens), clipped to the call's `max_tokens`.
    pub fn output(mut self, output: OutputLength) -> Self {
        self.output = output;
        self
    }
    /// The time to the first token (default 300 ms).
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }
    /// The time per output token (default 10 ms).
    pub fn per_output_token(mut self, per_token: Duration) -> Self {
        self.per_output_token = per_token;
        self
    }
    /// How long a refusal takes (default 5 ms).
    pub fn error_latency(mut self, latency: Duration) -> Self {
        self.error_latency = latency;
        self
    }
    /// The tokens the account may spend in all (charged tokens); past it every call is
    /// refused with `insufficient_quota` (default: no cap).
    pub fn billing_cap(mut self, tokens: u64) -> Self {
        self.billing_cap = Some(tokens);
        self
    }
    /// An overload episode: every call in it is refused with 529 `overloaded_error`
    /// (Anthropic shape; OpenAI answers 503).
    pub fn overload(mut self, episode: Episode) -> Self {
        self.overloads.push(episode);
        self
    }
    /// The seed of the output lengths (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// The simulator's start (default: when [`build`](Self::build) runs).
    pub fn start(mut self, start: Instant) -> Self {
        self.start = Some(start);
        self
    }
    /// The wall-clock time at the simulator's start, for Anthropic's RFC 3339 reset headers
    /// (default: the system clock at build time).
    pub fn wall_clock(mut self, at_start: SystemTime) -> Self {
        self.wall = at_start;
        self
    }

    /// Validates the settings and builds the simulator.
    pub fn build(self) -> Result<LlmEndpointSim, ConfigError> {
        if self.rpm == 0 {
            return Err(ConfigError::new("rpm", self.rpm, "must be at least 1"));
        }
        if self.tpm == 0 {
            return Err(ConfigError::new("tpm", self.tpm, "must be at least 1"));
        }
        if self.default_max_tokens == 0 {
            return Err(ConfigError::new(
                "default_max_tokens",
                0,
                "must be at least 1",
            ));
        }
        for episode in &self.overloads {
            episode.validate("overload")?;
        }
        let start = self.start.unwrap_or_else(Instant::now);
        Ok(LlmEndpointSim {
            inner: Arc::new(Inner {
                shape: self.shape,
                start,
                wall: self.wall,
                rpm: self.rpm,
                tpm: self.tpm,
                default_max_tokens: self.default_max_tokens,
                output: self.output,
                latency: self.latency,
                per_output_token: self.per_output_token,
                error_latency: self.error_latency,
                billing_cap: self.billing_cap,
                overloads: self.overloads,
                inspections: AtomicU64::new(0),
                state: Mutex::new(State {
                    requests: Bucket::full(self.rpm, start),
                    tokens: Bucket::full(self.tpm, start),
                    rng: fastrand::Rng::with_seed(self.seed),
                    counts: SimCounts::default(),
                    callers: Callers::default(),
                    insufficient_quota: 0,
                    billing_spent: false,
                    billing_spent_at: None,
                    charged_tokens: 0,
                    output_tokens: 0,
                    minutes: Vec::new(),
                }),
            }),
        })
    }
}

/// A bucket of `limit` per minute, in units × nanoseconds-per-minute so that the refill is
/// exact integer arithmetic: a unit is worth [`MINUTE_NS`] and the bucket refills `limit`
/// per nanosecond.
#[derive(Debug)]
struct Bucket {
    limit: u128,
    level: u128,
    last: Instant,
}

const MINUTE_NS: u128 = 60_000_000_000;

impl Bucket {
    fn full(limit: u64, now: Instant) -> Self {
        Bucket {
            limit: u128::from(limit),
            level: u128::from(limit) * MINUTE_NS,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        if now > self.last {
            let dt = (now - self.last).as_nanos();
            self.level = self
                .level
                .saturating_add(dt.saturating_mul(self.limit))
                .min(self.limit * MINUTE_NS);
            self.last = now;
        }
    }

    /// The wait until `units` fit (refilled), or `None` when they fit now.
    fn wait_for(&self, units: u64) -> Option<Duration> {
        let need = u128::from(units).saturating_mul(MINUTE_NS);
        if self.level >= need {
            return None;
        }
        // More than the bucket holds: never; say the time to refill the whole bucket.
        let need = need.min(self.limit * MINUTE_NS);
        let ns = (need.saturating_sub(self.level)).div_ceil(self.limit);
        Some(
            Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
                .max(Duration::from_nanos(1)),
        )
    }

    fn take(&mut self, units: u64) {
        self.level = self
            .level
            .saturating_sub(u128::from(units).saturating_mul(MINUTE_NS));
    }

    fn remaining(&self) -> u64 {
        u64::try_from(self.level / MINUTE_NS).unwrap_or(u64::MAX)
    }

    fn until_full(&self) -> Duration {
        let missing = (self.limit * MINUTE_NS).saturating_sub(self.level);
        Duration::from_nanos(u64::try_from(missing.div_ceil(self.limit)).unwrap_or(u64::MAX))
    }
}

/// A simulated OpenAI- or Anthropic-style endpoint, shared by all clones and callers; see the
/// [module docs](self).
#[derive(Clone, Debug)]
pub struct LlmEndpointSim {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shape: LlmShape,
    start: Instant,
    wall: SystemTime,
    rpm: u64,
    tpm: u64,
    default_max_tokens: u64,
    output: OutputLength,
    latency: Duration,
    per_output_token: Duration,
    error_latency: Duration,
    billing_cap: Option<u64>,
    overloads: Vec<Episode>,
    /// Reads of the statistics (see [`LlmEndpointSim::inspections`]).
    inspections: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    requests: Bucket,
    tokens: Bucket,
    rng: fastrand::Rng,
    counts: SimCounts,
    callers: Callers,
    insufficient_quota: u64,
    /// The billing cap was reached: every call is refused from then on.
    billing_spent: bool,
    /// When (since the start) the billing cap was reached.
    billing_spent_at: Option<Duration>,
    charged_tokens: u64,
    output_tokens: u64,
    /// Charged tokens per minute since the start.
    minutes: Vec<u64>,
}

/// A snapshot of an [`LlmEndpointSim`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct LlmStats {
    /// Time from the simulator's start to the snapshot.
    pub elapsed: Duration,
    /// Calls by what happened to them: throttles as `throttled_requests` or
    /// `throttled_tokens`, overloads as `overloaded` (billing refusals are apart).
    pub counts: SimCounts,
    /// Calls refused with `insufficient_quota`.
    pub insufficient_quota: u64,
    /// Tokens charged to admitted calls (input + `max_tokens`).
    pub charged_tokens: u64,
    /// Output tokens written.
    pub output_tokens: u64,
    /// Tokens charged in each minute since the start.
    pub charged_per_minute: Vec<u64>,
    /// When the billing cap was reached, since the start.
    pub billing_spent_at: Option<Duration>,
    /// Per caller label (units: charged tokens).
    pub callers: Vec<CallerStats>,
}

impl LlmStats {
    /// Every call seen, billing refusals included.
    pub fn calls(&self) -> u64 {
        self.counts.calls() + self.insufficient_quota
    }
}

impl LlmEndpointSim {
    /// A builder for an endpoint of `shape`; set its RPM and TPM.
    pub fn builder(shape: LlmShape) -> LlmEndpointSimBuilder {
        LlmEndpointSimBuilder {
            shape,
            rpm: 0,
            tpm: 0,
            default_max_tokens: 4_096,
            output: OutputLength::default(),
            latency: Duration::from_millis(300),
            per_output_token: Duration::from_millis(10),
            error_latency: Duration::from_millis(5),
            billing_cap: None,
            overloads: Vec::new(),
            seed: 0,
            start: None,
            wall: SystemTime::now(),
        }
    }

    /// The API shape.
    pub fn shape(&self) -> LlmShape {
        self.inner.shape
    }

    /// How long a refusal takes.
    pub fn error_latency(&self) -> Duration {
        self.inner.error_latency
    }

    fn limits(&self, state: &State, now: Instant) -> LimitState {
        let inner = &self.inner;
        LimitState {
            requests_limit: inner.rpm,
            requests_remaining: state.requests.remaining(),
            requests_reset: state.requests.until_full(),
            tokens_limit: inner.tpm,
            tokens_remaining: state.tokens.remaining(),
            tokens_reset: state.tokens.until_full(),
            wall: inner.wall + elapsed(inner.start, now),
        }
    }

    /// The synchronous core: admits `call` at `now`, or refuses it.
    pub fn admit(&self, call: &LlmCall, now: Instant) -> Result<LlmReply, LlmError> {
        let inner = &self.inner;
        let mut guard = lock(&inner.state);
        let state = &mut *guard;
        state.requests.refill(now);
        state.tokens.refill(now);
        let since = elapsed(inner.start, now);
        let max_tokens = call.max_tokens.unwrap_or(inner.default_max_tokens).max(1);
        let charged = call.input_tokens.saturating_add(max_tokens);
        if inner
            .billing_cap
            .is_some_and(|cap| state.charged_tokens.saturating_add(charged) > cap)
        {
            if !state.billing_spent {
                state.billing_spent_at = Some(since);
            }
            state.billing_spent = true;
        }
        let refusal = if state.billing_spent {
            Some(LlmRefusal::InsufficientQuota)
        } else if inner.overloads.iter().any(|e| e.contains(since)) {
            Some(LlmRefusal::Overloaded)
        } else if let Some(wait) = state.requests.wait_for(1) {
            Some(LlmRefusal::Requests { wait })
        } else {
            state
                .tokens
                .wait_for(charged)
                .map(|wait| LlmRefusal::Tokens { wait })
        };
        if let Some(refusal) = refusal {
            let rejection = match refusal {
                LlmRefusal::Requests { .. } => Some(Rejection::Requests),
                LlmRefusal::Tokens { .. } => Some(Rejection::Tokens),
                LlmRefusal::Overloaded => Some(Rejection::Overloaded),
                LlmRefusal::InsufficientQuota => None,
            };
            match rejection {
                Some(rejection) => {
                    state.counts.count(rejection);
                    state.callers.count(&call.caller, rejection);
                }
                None => state.insufficient_quota += 1,
            }
            let limits = self.limits(state, now);
            return Err(LlmError { refusal, limits });
        }
        state.requests.take(1);
        state.tokens.take(charged);
        let output = inner.output.sample(&mut state.rng, max_tokens);
        state.counts.admitted += 1;
        state.counts.completed += 1;
        state.charged_tokens = state.charged_tokens.saturating_add(charged);
        state.output_tokens = state.output_tokens.saturating_add(output);
        let minute = usize::try_from(since.as_secs() / 60).unwrap_or(usize::MAX);
        if minute < 1 << 20 {
            if state.minutes.len() <= minute {
                state.minutes.resize(minute + 1, 0);
            }
            state.minutes[minute] += charged;
        }
        if let Some((counts, units)) = state.callers.entry(&call.caller) {
            counts.admitted += 1;
            counts.completed += 1;
            *units += charged as f64;
        }
        let per_token = u32::try_from(output).unwrap_or(u32::MAX);
        Ok(LlmReply {
            input_tokens: call.input_tokens,
            output_tokens: output,
            charged_tokens: charged,
            hit_max_tokens: output >= max_tokens,
            latency: inner
                .latency
                .saturating_add(inner.per_output_token.saturating_mul(per_token)),
            limits: self.limits(state, now),
        })
    }

    /// A snapshot of the statistics at `now`.
    pub fn stats_at(&self, now: Instant) -> LlmStats {
        self.inner.inspections.fetch_add(1, Ordering::Relaxed);
        let state = lock(&self.inner.state);
        LlmStats {
            elapsed: elapsed(self.inner.start, now),
            counts: state.counts,
            insufficient_quota: state.insufficient_quota,
            charged_tokens: state.charged_tokens,
            output_tokens: state.output_tokens,
            charged_per_minute: state.minutes.clone(),
            billing_spent_at: state.billing_spent_at,
            callers: state.callers.snapshot(),
        }
    }

    /// A snapshot now.
    pub fn stats(&self) -> LlmStats {
        self.stats_at(Instant::now())
    }

    /// How many times the statistics were read ([`stats`](Self::stats),
    /// [`stats_at`](Self::stats_at)), by any clone; calls are not counted. For harnesses that
    /// must show a client was configured without looking.
    pub fn inspections(&self) -> u64 {
        self.inner.inspections.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_continuously_and_refuse_what_does_not_fit() {
        let start = Instant::now();
        let sim = LlmEndpointSim::builder(LlmShape::OpenAi)
            .rpm(60)
            .tpm(6_000)
            .start(start)
            .build()
            .unwrap();
        let call = LlmCall::new(1_000, Some(2_000));
        let first = sim.admit(&call, start).unwrap();
        assert_eq!(first.charged_tokens, 3_000);
        assert_eq!(first.limits.tokens_remaining, 3_000);
        assert_eq!(first.limits.requests_remaining, 59);
        // 3,000 tokens refill in 30 s.
        assert_eq!(first.limits.tokens_reset, Duration::from_secs(30));
        sim.admit(&call, start).unwrap();
        let refused = sim.admit(&call, start).unwrap_err();
        assert_eq!(
            refused.refusal,
            LlmRefusal::Tokens {
                wait: Duration::from_secs(30)
            }
        );
        assert!(sim.admit(&call, start + Duration::from_secs(30)).is_ok());
        // A call larger than the bucket never fits.
        let huge = LlmCall::new(10_000, Some(1));
        assert!(matches!(
            sim.admit(&huge, start + Duration::from_secs(600))
                .unwrap_err()
                .refusal,
            LlmRefusal::Tokens { .. }
        ));
        assert!(
            LlmEndpointSim::builder(LlmShape::OpenAi)
                .tpm(1)
                .build()
                .is_err()
        );
    }

    #[test]
    fn the_billing_cap_refuses_every_later_call() {
        let start = Instant::now();
        let sim = LlmEndpointSim::builder(LlmShape::OpenAi)
            .rpm(1_000)
            .tpm(1_000_000)
            .billing_cap(2_500)
            .start(start)
            .build()
            .unwrap();
        let call = LlmCall::new(100, Some(900));
        assert!(sim.admit(&call, start).is_ok());
        assert!(sim.admit(&call, start).is_ok());
        // 2,000 spent of 2,500: this call would pass the cap, and so would any later one,
        // however small.
        assert!(sim.admit(&call, start).is_err());
        let small = LlmCall::new(1, Some(1));
        for _ in 0..2 {
            assert_eq!(
                sim.admit(&small, start).unwrap_err().refusal,
                LlmRefusal::InsufficientQuota
            );
        }
        let stats = sim.stats_at(start);
        assert_eq!(
            (
                stats.insufficient_quota,
                stats.charged_tokens,
                stats.calls()
            ),
            (3, 2_000, 5)
        );
    }
}
