//! Amazon Bedrock model endpoints: RPM and TPM per (model id, region), token reservation and
//! settlement with burndown, latency and output-length models, overload episodes, outage
//! windows and a concurrency cap.
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
//! - A call is admitted when its window has served fewer than `rpm` requests and has room for
//!   `input_tokens + max_tokens` more tokens; that reservation is counted at once.
//! - At completion the reservation is settled to `input_tokens + output_tokens × burndown`,
//!   **in the window it was reserved in**: a call that produced little output refunds tokens
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
//! | RPM | 429 | `ThrottlingException` | "Too many requests, please wait before trying again." |
//! | TPM | 429 | `ThrottlingException` | "Too many tokens, please wait before trying again." |
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
pub use self::stats::{BedrockStats, ModelStats, WindowStats};

/// The length of Bedrock's quota windows: RPM and TPM are counted per fixed 60-second window,
/// the first boundary falling the simulator's [window phase](BedrockSim::window_phase) after
/// its start.
pub const BEDROCK_WINDOW: Duration = Duration::from_secs(60);

/// The length of the simulator's quota days: tokens per day are counted per fixed day of
/// 24 hours, each starting on a [window](BEDROCK_WINDOW) boundary (so day 0, like window 0,
/// is short by the window phase's complement).
pub const BEDROCK_DAY: Duration = Duration::from_secs(24 * 60 * 60);
