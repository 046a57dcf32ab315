//! Amazon Bedrock model endpoints as bedrock-runtime enforces its quotas today: tokens per
//! minute and tokens per day per (model id, region), an optional account-wide tokens per day
//! per region, requests per minute only where configured, token reservation at the start and
//! settlement with burndown, prompt-cache tokens, latency and output-length models, overload
//! episodes, outage windows and a concurrency cap.
//!
//! # Sources
//!
//! - "Quotas for the bedrock-runtime endpoint"
//!   (<https://docs.aws.amazon.com/bedrock/latest/userguide/quotas-runtime.html>): the
//!   endpoint's quotas are per-model tokens per minute (on-demand and cross-Region, input and
//!   output combined), "Model invocation max tokens per day" per model and region ("by default
//!   … the per-minute quota multiplied by 24 × 60. New AWS accounts might receive reduced
//!   quotas") and "Cross-Model Max Tokens Per Day" per account and region; no requests-per-
//!   minute quota. Hence `rpm` is off unless set, `tpd` defaults to `tpm × 1440`, and
//!   [`BedrockConfig::account_tpd`] is optional.
//! - "How tokens are counted in Amazon Bedrock"
//!   (<https://docs.aws.amazon.com/bedrock/latest/userguide/quotas-token-burndown.html>) and
//!   AWS's own quota guidance ("TPM/RPM quota monitoring dashboard for Amazon Bedrock",
//!   <https://repost.aws/articles/ARfUsSkaWeSLiWZbv0OVSG1Q>; the Bedrock skill of
//!   `aws/agent-toolkit-for-aws`, `references/quota-health.md`): at the start a call reserves
//!   `InputTokens + CacheWriteInputTokens + CacheReadInputTokens + max_tokens`, where an unset
//!   `max_tokens` is the model's maximum (64,000 for Claude Sonnet 4); at the end the quota is
//!   charged `InputTokenCount + CacheWriteInputTokens + OutputTokenCount × burndown`, so cache
//!   reads are released. Burndown and maximum output per model come from
//!   [`crate::bedrock::ModelTable`] (see [`ModelConfig`]).
//! - The daily message, "Too many tokens per day, please wait before trying again." with a
//!   `ThrottlingException` (HTTP 429), as users report it from Bedrock (e.g. GitHub
//!   `minorun365/agent-book#29`, a botocore trace, and `Ivy-Interactive/Ivy-Tendril#1756`).
//!
//! # Quota semantics
//!
//! - Windows are **fixed 60-second windows** ([`BEDROCK_WINDOW`]) whose boundaries fall at
//!   `start + phase + k × 60 s`, where `phase` is the simulator's **window phase**
//!   ([`BedrockSimBuilder::window_phase`], in `[0, 60 s)`). Window 0 is the one holding the
//!   start: `[start, start + phase)`, a partial window, then window `k ≥ 1` is
//!   `[start + phase + (k − 1) × 60 s, start + phase + k × 60 s)`. With a phase of zero,
//!   window 0 is whole, `[start, start + 60 s)`, and window `k` is
//!   `[start + k × 60 s, start + (k + 1) × 60 s)`.
//! - The phase defaults to a draw from the simulator's seed, uniform in `[0, 60 s)` (the same
//!   for the same seed): the provider's windows are not aligned to any client's clock, nor to
//!   the instant the client's traffic starts, and a client cannot read them. Tests that need
//!   windows at known instants set `.window_phase(Duration::ZERO)`; configuration files write
//!   `window_phase_s = 0` under `[bedrock]`. [`BedrockSim::window_phase`] and
//!   [`BedrockSim::window_bounds`] tell a test harness where the windows are.
//! - Bedrock does not document its window alignment; fixed windows are the harsher case for
//!   clients (a burst at the end of one window and the start of the next gets twice the quota
//!   through in a short span, and a retry inside the same window is always wasted), which is
//!   what the simulator is for.
//! - A call reserves `input + cache read + cache write + max_tokens` (the model's
//!   `max_output_tokens` when the call sets none). It is admitted when its day has room for
//!   the reservation (the model's `tpd` and, if set, the region's `account_tpd`), its window
//!   has served fewer than `rpm` requests (when an `rpm` is set) and its window has room for
//!   the reservation under `tpm`; the reservation is counted at once in the window and the
//!   day(s).
//! - Days are fixed [`BEDROCK_DAY`]s starting on a window boundary (day 0 is short by the
//!   window phase's complement, like window 0); Bedrock does not document where its day
//!   starts. Only the current day is kept (bounded memory): a settlement after its day ended
//!   changes nothing, the day being gone.
//! - At completion the reservation is settled to `input + cache write + output × burndown`,
//!   in the day it was reserved in and **in the window it was reserved in**: a call that produced little output refunds tokens
//!   to that window (the next call fits if the window is still current); burndown above 1 can
//!   leave the window in debt (above `tpm`), which blocks it until it ends. A settlement after
//!   the window closed changes only that window's statistics.
//! - Throttled calls spend nothing. A reservation larger than `tpm` is throttled like any
//!   other ("Too many tokens"), as the service does: it can never succeed.
//!
//! # Checks, in order, and their answers
//!
//! | check | status | code | message |
//! |---|---|---|---|
//! | unknown model id or region | 400 | `ValidationException` | "The provided model identifier is invalid." |
//! | `max_tokens` 0 or above the model's maximum | 400 | `ValidationException` | "The maximum tokens you requested exceeds the model limit of N. …" |
//! | outage window | 503 | `ServiceUnavailableException` | "Service temporarily unavailable" |
//! | overload episode | 503 | `ServiceUnavailableException` | "Model {id} is currently overloaded. Please try again later." |
//! | concurrency cap | 503 | `ServiceUnavailableException` | "Too many connections" |
//! | tokens per day (the model's or the account's) | 429 | `ThrottlingException` | "Too many tokens per day, please wait before trying again." ([`DAILY_MESSAGE`]) |
//! | RPM (when set) | 429 | `ThrottlingException` | "Too many requests, please wait before trying again." |
//! | TPM | 429 | `ThrottlingException` | "Too many tokens, please wait before trying again." |
//!
//! The day is checked before the minute: a call the day cannot hold gets the daily message
//! whatever the minute holds, the answer a client needs to stop retrying. The statistics count
//! daily throttles apart ([`SimCounts::throttled_daily`](crate::sim::SimCounts)).
//!
//! Bedrock sends no `Retry-After`, and neither does the simulator.
//!
//! # Latency and output
//!
//! An admitted call takes `ttft + per_output_token × output_tokens`; a rejection takes the
//! simulator's `error_latency`. The output length is drawn from [`OutputLength`] with a
//! per-model generator seeded from the simulator's seed, clipped to `[1, max_tokens]`.
//! Random overload episodes are drawn from a second per-model generator that depends on time
//! only, so they fall at the same instants whatever the traffic.

mod builder;
mod call;
mod config;
mod core;
mod service;
mod state;
mod stats;

use std::time::Duration;

pub use self::builder::BedrockSimBuilder;
pub use self::call::{InFlight, ModelCall, ModelReply, StopReason};
pub use self::config::{
    BedrockConfig, MINUTES_PER_DAY, ModelConfig, ModelConfigBuilder, OutputLength,
};
pub use self::core::{BedrockSim, DAILY_MESSAGE};
pub use self::service::BedrockFuture;
pub use self::stats::{BedrockStats, ModelStats, RegionStats, WindowStats};

/// The length of Bedrock's quota windows: RPM and TPM are counted per fixed 60-second window,
/// the first boundary falling the simulator's [window phase](BedrockSim::window_phase) after
/// its start.
pub const BEDROCK_WINDOW: Duration = Duration::from_secs(60);

/// The length of the simulator's quota days: tokens per day are counted per fixed day of
/// 24 hours, each starting on a [window](BEDROCK_WINDOW) boundary (so day 0, like window 0,
/// is short by the window phase's complement).
pub const BEDROCK_DAY: Duration = Duration::from_secs(24 * 60 * 60);
