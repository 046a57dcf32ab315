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

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::StatusCode;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::{
    CallerStats, Callers, Episode, RandomEpisodes, Rejection, SimCounts, SimError, after, elapsed,
    lock, serde_time,
};
use crate::ConfigError;

/// The length of Bedrock's quota windows: RPM and TPM are counted per fixed 60-second window,
/// the first boundary falling the simulator's [window phase](BedrockSim::window_phase) after
/// its start.
pub const BEDROCK_WINDOW: Duration = Duration::from_secs(60);

/// The default time a rejection takes to arrive.
const DEFAULT_ERROR_LATENCY: Duration = Duration::from_millis(10);

/// How many output tokens a call produces, before clipping to `[1, max_tokens]`.
///
/// In configuration files: `output = { kind = "log_normal", median = 300, sigma = 0.8 }`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OutputLength {
    /// Always the same number of tokens.
    Fixed {
        /// Output tokens.
        tokens: u64,
    },
    /// Uniform over `[min, max]`.
    Uniform {
        /// Smallest output.
        min: u64,
        /// Largest output.
        max: u64,
    },
    /// Log-normal with the given median and shape (`sigma`, the standard deviation of the
    /// logarithm): most answers short, a long tail of long ones.
    LogNormal {
        /// The median output.
        median: u64,
        /// The standard deviation of `ln(output)`.
        sigma: f64,
    },
    /// Every call writes until `max_tokens`.
    MaxTokens,
}

impl Default for OutputLength {
    fn default() -> Self {
        OutputLength::Fixed { tokens: 256 }
    }
}

impl OutputLength {
    /// Draws one output length, clipped to `[1, max_tokens]` (`max_tokens` 0 is taken as 1).
    pub fn sample(&self, rng: &mut fastrand::Rng, max_tokens: u64) -> u64 {
        let max_tokens = max_tokens.max(1);
        let drawn = match *self {
            OutputLength::Fixed { tokens } => tokens,
            OutputLength::Uniform { min, max } => rng.u64(min.min(max)..=max.max(min)),
            OutputLength::LogNormal { median, sigma } => {
                // Box-Muller; 1 - f64() is in (0, 1], so the logarithm is finite.
                let u1 = 1.0 - rng.f64();
                let u2 = rng.f64();
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                // `as` saturates (NaN becomes 0), and the clamp below bounds the result.
                (median as f64 * (sigma * z).exp()).round() as u64
            }
            OutputLength::MaxTokens => max_tokens,
        };
        drawn.clamp(1, max_tokens)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        match *self {
            OutputLength::Uniform { min, max } if min > max => Err(ConfigError::new(
                "output",
                self,
                "uniform min must not be above max",
            )),
            OutputLength::LogNormal { median: 0, .. } => Err(ConfigError::new(
                "output",
                self,
                "log-normal median must be at least 1",
            )),
            OutputLength::LogNormal { sigma, .. } if !(sigma.is_finite() && sigma >= 0.0) => {
                Err(ConfigError::new(
                    "output",
                    self,
                    "log-normal sigma must be a finite number, zero or more",
                ))
            }
            _ => Ok(()),
        }
    }
}

fn default_burndown() -> u32 {
    1
}
fn default_max_output_tokens() -> u64 {
    4_096
}
fn default_ttft() -> Duration {
    Duration::from_millis(400)
}
fn default_per_output_token() -> Duration {
    Duration::from_millis(10)
}
fn default_error_latency() -> Duration {
    DEFAULT_ERROR_LATENCY
}

/// One model in one region: its quotas, latency and output models, and its bad days.
///
/// Build one with [`ModelConfig::builder`], or deserialize it (field names as below; durations
/// as `ttft_ms`, `per_output_token_ms`; episodes as `{ start_s, duration_s }`). Either way it is
/// validated when the simulator is built.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ModelConfig {
    /// The model id, e.g. `anthropic.claude-3-5-sonnet-20240620-v1:0` or an inference
    /// profile id.
    pub model_id: String,
    /// The region, e.g. `us-east-1`.
    pub region: String,
    /// Requests per minute.
    pub rpm: u64,
    /// Tokens per minute.
    pub tpm: u64,
    /// How many quota tokens one output token spends (e.g. 5 for newer Claude models).
    #[serde(default = "default_burndown")]
    pub burndown: u32,
    /// The largest `max_tokens` the model accepts (default 4096).
    #[serde(default = "default_max_output_tokens")]
    pub max_output_tokens: u64,
    /// Time to first token (default 400 ms).
    #[serde(
        rename = "ttft_ms",
        with = "serde_time::millis",
        default = "default_ttft"
    )]
    pub ttft: Duration,
    /// Time per output token (default 10 ms).
    #[serde(
        rename = "per_output_token_ms",
        with = "serde_time::millis",
        default = "default_per_output_token"
    )]
    pub per_output_token: Duration,
    /// The output length model (default: 256 tokens, fixed).
    #[serde(default)]
    pub output: OutputLength,
    /// At most this many calls in flight; more are answered "Too many connections".
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Scheduled overload episodes.
    #[serde(default)]
    pub overloads: Vec<Episode>,
    /// Random overload episodes, drawn from the simulator's seed.
    #[serde(default)]
    pub random_overloads: Option<RandomEpisodes>,
    /// Outage windows (503 "Service temporarily unavailable").
    #[serde(default)]
    pub outages: Vec<Episode>,
}

impl ModelConfig {
    /// A builder for `model_id` in `region`; `rpm` and `tpm` must be set.
    pub fn builder(model_id: impl Into<String>, region: impl Into<String>) -> ModelConfigBuilder {
        ModelConfigBuilder {
            config: ModelConfig {
                model_id: model_id.into(),
                region: region.into(),
                rpm: 0,
                tpm: 0,
                burndown: default_burndown(),
                max_output_tokens: default_max_output_tokens(),
                ttft: default_ttft(),
                per_output_token: default_per_output_token(),
                output: OutputLength::default(),
                max_concurrency: None,
                overloads: Vec::new(),
                random_overloads: None,
                outages: Vec::new(),
            },
        }
    }

    /// Checks every field; the error names the first bad one and its value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.model_id.trim().is_empty() {
            return Err(ConfigError::new(
                "model_id",
                &self.model_id,
                "must not be empty",
            ));
        }
        if self.region.trim().is_empty() {
            return Err(ConfigError::new(
                "region",
                &self.region,
                "must not be empty",
            ));
        }
        if self.rpm == 0 {
            return Err(ConfigError::new("rpm", self.rpm, "must be at least 1"));
        }
        if self.tpm == 0 {
            return Err(ConfigError::new("tpm", self.tpm, "must be at least 1"));
        }
        if self.burndown == 0 {
            return Err(ConfigError::new(
                "burndown",
                self.burndown,
                "must be at least 1",
            ));
        }
        if self.max_output_tokens == 0 {
            return Err(ConfigError::new(
                "max_output_tokens",
                self.max_output_tokens,
                "must be at least 1",
            ));
        }
        if self.tpm < self.max_output_tokens {
            return Err(ConfigError::new(
                "tpm",
                self.tpm,
                "is smaller than a single call at max_output_tokens, which could never be admitted",
            ));
        }
        if self.max_concurrency == Some(0) {
            return Err(ConfigError::new(
                "max_concurrency",
                self.max_concurrency,
                "must be at least 1 (or unset for no cap)",
            ));
        }
        self.output.validate()?;
        for episode in &self.overloads {
            episode.validate("overloads")?;
        }
        for episode in &self.outages {
            episode.validate("outages")?;
        }
        if let Some(random) = &self.random_overloads {
            random.validate("random_overloads")?;
        }
        Ok(())
    }
}

/// Builds a validated [`ModelConfig`].
#[derive(Clone, Debug)]
pub struct ModelConfigBuilder {
    config: ModelConfig,
}

impl ModelConfigBuilder {
    /// Requests per minute.
    pub fn rpm(mut self, rpm: u64) -> Self {
        self.config.rpm = rpm;
        self
    }
    /// Tokens per minute.
    pub fn tpm(mut self, tpm: u64) -> Self {
        self.config.tpm = tpm;
        self
    }
    /// Quota tokens spent per output token.
    pub fn burndown(mut self, burndown: u32) -> Self {
        self.config.burndown = burndown;
        self
    }
    /// The largest `max_tokens` the model accepts.
    pub fn max_output_tokens(mut self, tokens: u64) -> Self {
        self.config.max_output_tokens = tokens;
        self
    }
    /// Time to first token.
    pub fn ttft(mut self, ttft: Duration) -> Self {
        self.config.ttft = ttft;
        self
    }
    /// Time per output token.
    pub fn per_output_token(mut self, d: Duration) -> Self {
        self.config.per_output_token = d;
        self
    }
    /// The output length model.
    pub fn output(mut self, output: OutputLength) -> Self {
        self.config.output = output;
        self
    }
    /// Caps the calls in flight.
    pub fn max_concurrency(mut self, max: u32) -> Self {
        self.config.max_concurrency = Some(max);
        self
    }
    /// Adds a scheduled overload episode.
    pub fn overload(mut self, episode: Episode) -> Self {
        self.config.overloads.push(episode);
        self
    }
    /// Adds random overload episodes.
    pub fn random_overloads(mut self, random: RandomEpisodes) -> Self {
        self.config.random_overloads = Some(random);
        self
    }
    /// Adds an outage window.
    pub fn outage(mut self, episode: Episode) -> Self {
        self.config.outages.push(episode);
        self
    }
    /// Validates the configuration.
    pub fn build(self) -> Result<ModelConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

/// A whole simulated Bedrock account, as a configuration file describes it.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_headroom::sim::{BedrockConfig, BedrockSim};
///
/// let config: BedrockConfig = serde_json::from_str(r#"{
///     "seed": 42,
///     "models": [{ "model_id": "m", "region": "us-east-1", "rpm": 50, "tpm": 100000,
///                  "burndown": 5, "ttft_ms": 300,
///                  "outages": [{ "start_s": 120, "duration_s": 60 }] }]
/// }"#)?;
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
/// # let _guard = rt.enter();
/// let sim = BedrockSim::from_config(config)?;
/// assert_eq!(sim.stats().models.len(), 1);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BedrockConfig {
    /// The seed of every random draw (output lengths, random episodes).
    #[serde(default)]
    pub seed: u64,
    /// How long a rejection takes to arrive (default 10 ms).
    #[serde(
        rename = "error_latency_ms",
        with = "serde_time::millis",
        default = "default_error_latency"
    )]
    pub error_latency: Duration,
    /// Where the first window boundary falls after the start, in `[0, 60 s)` (written
    /// `window_phase_s`); absent: drawn from `seed` (see the [simulator docs](crate::sim)).
    #[serde(rename = "window_phase_s", with = "serde_time::opt_secs", default)]
    pub window_phase: Option<Duration>,
    /// The models, one per (model id, region).
    pub models: Vec<ModelConfig>,
}

/// Builds a [`BedrockSim`].
#[derive(Clone, Debug)]
pub struct BedrockSimBuilder {
    config: BedrockConfig,
    start: Option<Instant>,
}

impl BedrockSimBuilder {
    /// Adds a model (in one region).
    pub fn model(mut self, model: ModelConfig) -> Self {
        self.config.models.push(model);
        self
    }
    /// Adds models.
    pub fn models(mut self, models: impl IntoIterator<Item = ModelConfig>) -> Self {
        self.config.models.extend(models);
        self
    }
    /// The seed of every random draw (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = seed;
        self
    }
    /// How long a rejection takes to arrive (default 10 ms).
    pub fn error_latency(mut self, latency: Duration) -> Self {
        self.config.error_latency = latency;
        self
    }
    /// Where the first quota window boundary falls after the start: window 0 is
    /// `[start, start + phase)` and the windows after it are whole 60-second windows (a phase
    /// of zero makes window 0 whole). Must be under 60 s. Default: drawn from the
    /// [`seed`](Self::seed), uniform in `[0, 60 s)`.
    pub fn window_phase(mut self, phase: Duration) -> Self {
        self.config.window_phase = Some(phase);
        self
    }
    /// The simulator's start, where windows and episodes are counted from (default: the
    /// moment [`build`](Self::build) runs).
    pub fn start(mut self, start: Instant) -> Self {
        self.start = Some(start);
        self
    }
    /// Validates every model and builds the simulator.
    pub fn build(self) -> Result<BedrockSim, ConfigError> {
        let BedrockConfig {
            seed,
            error_latency,
            window_phase,
            models,
        } = self.config;
        let window_phase = match window_phase {
            Some(phase) if phase >= BEDROCK_WINDOW => {
                return Err(ConfigError::new(
                    "window_phase",
                    phase,
                    "must be under the 60 s window",
                ));
            }
            Some(phase) => phase,
            None => default_window_phase(seed),
        };
        if models.is_empty() {
            return Err(ConfigError::new(
                "models",
                models.len(),
                "at least one model is needed",
            ));
        }
        for (i, model) in models.iter().enumerate() {
            model.validate()?;
            if models[..i]
                .iter()
                .any(|m| m.model_id == model.model_id && m.region == model.region)
            {
                return Err(ConfigError::new(
                    "models",
                    (&model.model_id, &model.region),
                    "the same model id and region appear twice",
                ));
            }
        }
        let states = models
            .iter()
            .enumerate()
            .map(|(i, m)| ModelState::new(m, seed, i as u64))
            .collect();
        let models = models
            .into_iter()
            .map(|config| Model {
                model_id: config.model_id.as_str().into(),
                region: config.region.as_str().into(),
                overloaded_message: format!(
                    "Model {} is currently overloaded. Please try again later.",
                    config.model_id
                ),
                config,
            })
            .collect();
        Ok(BedrockSim {
            inner: Arc::new(Inner {
                start: self.start.unwrap_or_else(Instant::now),
                window_offset: if window_phase.is_zero() {
                    Duration::ZERO
                } else {
                    BEDROCK_WINDOW - window_phase
                },
                window_phase,
                inspections: AtomicU64::new(0),
                error_latency,
                models,
                state: Mutex::new(State {
                    models: states,
                    callers: Callers::default(),
                }),
            }),
        })
    }
}

/// A simulated Bedrock account: every configured (model id, region) with its quotas, shared
/// by all clones and all callers.
///
/// As a [`tower::Service`] it answers a [`ModelCall`] after the latency model with a
/// [`ModelReply`], or after `error_latency` with a [`SimError`]. [`BedrockSim::start_call`]
/// is the synchronous core under it, for fronts that do their own waiting.
#[derive(Clone, Debug)]
pub struct BedrockSim {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    start: Instant,
    /// Where the first window boundary falls after `start`.
    window_phase: Duration,
    /// `(60 s − phase) mod 60 s`: added to the time since the start, it puts the window
    /// boundaries on whole multiples of 60 s.
    window_offset: Duration,
    /// Calls to the methods that read the simulator's set-up or state (see
    /// [`BedrockSim::inspections`]).
    inspections: AtomicU64,
    error_latency: Duration,
    models: Vec<Model>,
    state: Mutex<State>,
}

impl Inner {
    fn inspected(&self) {
        self.inspections.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Model {
    config: ModelConfig,
    model_id: Arc<str>,
    region: Arc<str>,
    overloaded_message: String,
}

#[derive(Debug)]
struct State {
    models: Vec<ModelState>,
    callers: Callers,
}

#[derive(Debug)]
struct ModelState {
    windows: Vec<WindowStats>,
    counts: SimCounts,
    tokens_reserved: u64,
    tokens_settled: u64,
    input_tokens: u64,
    output_tokens: u64,
    in_flight: u32,
    peak_in_flight: u32,
    output_rng: fastrand::Rng,
    random: Option<RandomState>,
}

/// The current or next random overload episode, drawn lazily as time passes.
#[derive(Debug)]
struct RandomState {
    config: RandomEpisodes,
    rng: fastrand::Rng,
    start: Duration,
    end: Duration,
}

impl RandomState {
    fn new(config: RandomEpisodes, mut rng: fastrand::Rng) -> Self {
        let start = exponential(&mut rng, config.mean_gap);
        let end = start.saturating_add(config.duration);
        RandomState {
            config,
            rng,
            start,
            end,
        }
    }

    fn contains(&mut self, elapsed: Duration) -> bool {
        while elapsed >= self.end {
            self.start = self
                .end
                .saturating_add(exponential(&mut self.rng, self.config.mean_gap));
            self.end = self.start.saturating_add(self.config.duration);
            if self.end == Duration::MAX {
                break;
            }
        }
        self.start <= elapsed && elapsed < self.end
    }
}

/// An exponentially distributed duration with the given mean.
fn exponential(rng: &mut fastrand::Rng, mean: Duration) -> Duration {
    // 1 - f64() is in (0, 1]: the logarithm is finite and the draw at most ~37 means.
    let factor = -(1.0 - rng.f64()).ln();
    Duration::try_from_secs_f64(mean.as_secs_f64() * factor).unwrap_or(mean)
}

/// Seeds that differ per model and per purpose, from one simulator seed.
fn derive_seed(seed: u64, index: u64, purpose: u64) -> u64 {
    const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut x = seed ^ (index.wrapping_add(1)).wrapping_mul(GOLDEN) ^ purpose.rotate_left(32);
    // splitmix64 finaliser, so nearby seeds give unrelated streams.
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl ModelState {
    fn new(config: &ModelConfig, seed: u64, index: u64) -> Self {
        ModelState {
            windows: vec![WindowStats::default()],
            counts: SimCounts::default(),
            tokens_reserved: 0,
            tokens_settled: 0,
            input_tokens: 0,
            output_tokens: 0,
            in_flight: 0,
            peak_in_flight: 0,
            output_rng: fastrand::Rng::with_seed(derive_seed(seed, index, 1)),
            random: config.random_overloads.map(|r| {
                RandomState::new(r, fastrand::Rng::with_seed(derive_seed(seed, index, 2)))
            }),
        }
    }

    /// Makes `window` the current window, opening any windows in between.
    fn roll(&mut self, window: usize) {
        if self.windows.len() <= window {
            self.windows.resize(window + 1, WindowStats::default());
        }
    }
}

/// The default window phase for `seed`: uniform in `[0, 60 s)`, to the microsecond.
fn default_window_phase(seed: u64) -> Duration {
    let micros = BEDROCK_WINDOW.as_micros() as u64;
    Duration::from_micros(derive_seed(seed, u64::MAX, 3) % micros)
}

/// The window holding the instant `elapsed` after the start, for a window offset of
/// `offset` (`(60 s − phase) mod 60 s`).
fn window_index(elapsed: Duration, offset: Duration) -> usize {
    let shifted = elapsed.saturating_add(offset);
    usize::try_from(shifted.as_secs() / BEDROCK_WINDOW.as_secs()).unwrap_or(usize::MAX - 1)
}

/// One call to a model: what Bedrock's quota sees of a Converse or InvokeModel request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelCall {
    /// The model id (or inference profile id).
    pub model_id: Arc<str>,
    /// The region the call is sent to.
    pub region: Arc<str>,
    /// Input tokens.
    pub input_tokens: u64,
    /// The `maxTokens` the call asks for.
    pub max_tokens: u64,
    /// The calling application's label, for per-caller statistics.
    pub caller: Option<Arc<str>>,
}

impl ModelCall {
    /// A call with no caller label.
    pub fn new(
        model_id: impl Into<Arc<str>>,
        region: impl Into<Arc<str>>,
        input_tokens: u64,
        max_tokens: u64,
    ) -> Self {
        ModelCall {
            model_id: model_id.into(),
            region: region.into(),
            input_tokens,
            max_tokens,
            caller: None,
        }
    }

    /// Labels the call with the calling application.
    pub fn caller(mut self, caller: impl Into<Arc<str>>) -> Self {
        self.caller = Some(caller.into());
        self
    }
}

/// Why the model stopped writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// The model finished its answer (`end_turn`).
    EndTurn,
    /// The answer reached `max_tokens` (`max_tokens`).
    MaxTokens,
}

impl StopReason {
    /// The wire name (`end_turn`, `max_tokens`), as Converse and the Anthropic messages API
    /// send it.
    pub fn as_str(&self) -> &'static str {
        match self {
            StopReason::EndTurn => "end_turn",
            StopReason::MaxTokens => "max_tokens",
        }
    }
}

/// A successful call's answer: its usage, as Converse's `usage` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelReply {
    /// The model id that answered.
    pub model_id: Arc<str>,
    /// The region that answered.
    pub region: Arc<str>,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens written (never above the call's `max_tokens`).
    pub output_tokens: u64,
    /// Why the model stopped.
    pub stop_reason: StopReason,
    /// How long the call took in the simulator (the latency model).
    pub latency: Duration,
    /// Quota tokens the call spent at settlement: `input + output × burndown`.
    pub quota_tokens: u64,
}

/// An admitted call in flight: it holds its reservation and its concurrency slot until
/// [`finish`](Self::finish)ed or dropped (a dropped call settles as if completed, as the
/// service keeps generating after a client goes away, but is not counted as completed).
#[derive(Debug)]
pub struct InFlight {
    inner: Arc<Inner>,
    model: usize,
    window: usize,
    reserved: u64,
    input_tokens: u64,
    output_tokens: u64,
    max_tokens: u64,
    latency: Duration,
    completes_at: Instant,
    caller: Option<Arc<str>>,
    finished: bool,
}

impl InFlight {
    /// When the call's answer is complete, by the latency model.
    pub fn completes_at(&self) -> Instant {
        self.completes_at
    }

    /// The output tokens the call will produce.
    pub fn output_tokens(&self) -> u64 {
        self.output_tokens
    }

    /// Settles the reservation and returns the reply. Call it at (or after)
    /// [`completes_at`](Self::completes_at); the simulator does not check.
    pub fn finish(mut self) -> ModelReply {
        self.finished = true;
        let model = &self.inner.models[self.model];
        ModelReply {
            model_id: model.model_id.clone(),
            region: model.region.clone(),
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            stop_reason: if self.output_tokens >= self.max_tokens {
                StopReason::MaxTokens
            } else {
                StopReason::EndTurn
            },
            latency: self.latency,
            quota_tokens: self.settled_tokens(),
        }
        // Drop settles.
    }

    fn settled_tokens(&self) -> u64 {
        let burndown = u64::from(self.inner.models[self.model].config.burndown);
        self.input_tokens
            .saturating_add(self.output_tokens.saturating_mul(burndown))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let settled = self.settled_tokens();
        let mut state = lock(&self.inner.state);
        let state = &mut *state;
        let model = &mut state.models[self.model];
        model.in_flight = model.in_flight.saturating_sub(1);
        let window = &mut model.windows[self.window];
        window.tokens = window
            .tokens
            .saturating_sub(self.reserved)
            .saturating_add(settled);
        model.tokens_settled = model.tokens_settled.saturating_add(settled);
        model.input_tokens = model.input_tokens.saturating_add(self.input_tokens);
        model.output_tokens = model.output_tokens.saturating_add(self.output_tokens);
        if self.finished {
            model.counts.completed += 1;
        }
        if let Some((counts, units)) = state.callers.entry(&self.caller) {
            *units += settled as f64;
            if self.finished {
                counts.completed += 1;
            }
        }
    }
}

impl BedrockSim {
    /// A builder; add at least one model.
    pub fn builder() -> BedrockSimBuilder {
        BedrockSimBuilder {
            config: BedrockConfig {
                seed: 0,
                error_latency: DEFAULT_ERROR_LATENCY,
                window_phase: None,
                models: Vec::new(),
            },
            start: None,
        }
    }

    /// Builds a simulator from a deserialized configuration, starting now.
    pub fn from_config(config: BedrockConfig) -> Result<Self, ConfigError> {
        BedrockSimBuilder {
            config,
            start: None,
        }
        .build()
    }

    /// The instant windows and episodes are counted from.
    pub fn started_at(&self) -> Instant {
        self.inner.inspected();
        self.inner.start
    }

    /// Where the first quota window boundary falls after [`started_at`](Self::started_at),
    /// in `[0, 60 s)` (see the [simulator docs](crate::sim)).
    pub fn window_phase(&self) -> Duration {
        self.inner.inspected();
        self.inner.window_phase
    }

    /// The span of quota window `index`, `[from, to)`: window 0 starts at the start and ends
    /// at the first boundary (60 s later when the phase is zero); every later window lasts
    /// 60 s. The indices are those of [`ModelStats::windows`].
    pub fn window_bounds(&self, index: usize) -> (Instant, Instant) {
        self.inner.inspected();
        let inner = &self.inner;
        let edge = |k: usize| -> Instant {
            // Boundary k (k ≥ 1) is at k × 60 s − offset after the start.
            let k = u32::try_from(k).unwrap_or(u32::MAX);
            after(
                inner.start,
                BEDROCK_WINDOW
                    .saturating_mul(k)
                    .saturating_sub(inner.window_offset),
            )
        };
        let from = if index == 0 { inner.start } else { edge(index) };
        (from, edge(index.saturating_add(1)))
    }

    /// How many times the set-up or state of this simulator was read, by any clone, through
    /// [`started_at`](Self::started_at), [`window_phase`](Self::window_phase),
    /// [`window_bounds`](Self::window_bounds), [`error_latency`](Self::error_latency),
    /// [`stats`](Self::stats) or [`stats_at`](Self::stats_at). Calls themselves are not
    /// counted. For harnesses that must show a client was configured without looking.
    pub fn inspections(&self) -> u64 {
        self.inner.inspections.load(Ordering::Relaxed)
    }

    /// How long a rejection takes to arrive.
    pub fn error_latency(&self) -> Duration {
        self.inner.inspected();
        self.inner.error_latency
    }

    /// The synchronous core: checks the call against its model's state at `now` and either
    /// admits it (reserving `input_tokens + max_tokens` and a concurrency slot) or rejects it.
    /// Never sleeps.
    pub fn start_call(&self, call: &ModelCall, now: Instant) -> Result<InFlight, SimError> {
        let inner = &self.inner;
        let mut state = lock(&inner.state);
        let state = &mut *state;
        let Some(index) = inner
            .models
            .iter()
            .position(|m| *m.model_id == *call.model_id && *m.region == *call.region)
        else {
            state.callers.count(&call.caller, Rejection::Invalid);
            return Err(SimError::new(
                StatusCode::BAD_REQUEST,
                "ValidationException",
                "The provided model identifier is invalid.",
            ));
        };
        let model = &inner.models[index];
        let config = &model.config;
        let st = &mut state.models[index];
        let since_start = elapsed(inner.start, now);
        let window = window_index(since_start, inner.window_offset);
        st.roll(window);

        let rejection = if call.max_tokens == 0 || call.max_tokens > config.max_output_tokens {
            Some((
                Rejection::Invalid,
                SimError::new(
                    StatusCode::BAD_REQUEST,
                    "ValidationException",
                    format!(
                        "The maximum tokens you requested exceeds the model limit of {max}. \
                         Try again with a maximum tokens value that is between 1 and {max}.",
                        max = config.max_output_tokens
                    ),
                ),
            ))
        } else if config.outages.iter().any(|e| e.contains(since_start)) {
            Some((
                Rejection::Unavailable,
                SimError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailableException",
                    "Service temporarily unavailable",
                ),
            ))
        } else if config.overloads.iter().any(|e| e.contains(since_start))
            || st.random.as_mut().is_some_and(|r| r.contains(since_start))
        {
            Some((
                Rejection::Overloaded,
                SimError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailableException",
                    model.overloaded_message.clone(),
                ),
            ))
        } else if config
            .max_concurrency
            .is_some_and(|max| st.in_flight >= max)
        {
            Some((
                Rejection::Connections,
                SimError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailableException",
                    "Too many connections",
                ),
            ))
        } else if st.windows[window].requests >= config.rpm {
            Some((
                Rejection::Requests,
                SimError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "ThrottlingException",
                    "Too many requests, please wait before trying again.",
                ),
            ))
        } else if st.windows[window]
            .tokens
            .saturating_add(call.input_tokens.saturating_add(call.max_tokens))
            > config.tpm
        {
            Some((
                Rejection::Tokens,
                SimError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "ThrottlingException",
                    "Too many tokens, please wait before trying again.",
                ),
            ))
        } else {
            None
        };
        if let Some((rejection, error)) = rejection {
            st.counts.count(rejection);
            state.callers.count(&call.caller, rejection);
            return Err(error);
        }

        let reserved = call.input_tokens.saturating_add(call.max_tokens);
        let w = &mut st.windows[window];
        w.requests += 1;
        w.tokens = w.tokens.saturating_add(reserved);
        st.counts.admitted += 1;
        st.tokens_reserved = st.tokens_reserved.saturating_add(reserved);
        st.in_flight += 1;
        st.peak_in_flight = st.peak_in_flight.max(st.in_flight);
        if let Some((counts, _)) = state.callers.entry(&call.caller) {
            counts.admitted += 1;
        }
        let output_tokens = config.output.sample(&mut st.output_rng, call.max_tokens);
        let latency = config.ttft.saturating_add(Duration::from_nanos(
            crate::nanos(config.per_output_token).saturating_mul(output_tokens),
        ));
        Ok(InFlight {
            inner: inner.clone(),
            model: index,
            window,
            reserved,
            input_tokens: call.input_tokens,
            output_tokens,
            max_tokens: call.max_tokens,
            latency,
            completes_at: after(now, latency),
            caller: call.caller.clone(),
            finished: false,
        })
    }

    /// A snapshot of every model's and caller's statistics, with windows up to now.
    pub fn stats(&self) -> BedrockStats {
        self.stats_at(Instant::now())
    }

    /// A snapshot with windows up to `now`.
    pub fn stats_at(&self, now: Instant) -> BedrockStats {
        let inner = &self.inner;
        inner.inspected();
        let mut state = lock(&inner.state);
        let window = window_index(elapsed(inner.start, now), inner.window_offset);
        let models = inner
            .models
            .iter()
            .zip(state.models.iter_mut())
            .map(|(model, st)| {
                st.roll(window);
                ModelStats {
                    model_id: model.model_id.clone(),
                    region: model.region.clone(),
                    rpm: model.config.rpm,
                    tpm: model.config.tpm,
                    counts: st.counts,
                    tokens_reserved: st.tokens_reserved,
                    tokens_settled: st.tokens_settled,
                    input_tokens: st.input_tokens,
                    output_tokens: st.output_tokens,
                    in_flight: st.in_flight,
                    peak_in_flight: st.peak_in_flight,
                    windows: st.windows.clone(),
                }
            })
            .collect();
        BedrockStats {
            models,
            callers: state.callers.snapshot(),
        }
    }
}

/// Requests admitted and tokens counted in one quota window: 60 seconds, except window 0,
/// which lasts the [window phase](BedrockSim::window_phase) when that is not zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WindowStats {
    /// Requests admitted in the window.
    pub requests: u64,
    /// Tokens counted against the window: reservations of calls still in flight plus the
    /// settled tokens of finished calls reserved in it (can exceed `tpm` through burndown).
    pub tokens: u64,
}

/// Statistics of one model in one region.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ModelStats {
    /// The model id.
    pub model_id: Arc<str>,
    /// The region.
    pub region: Arc<str>,
    /// The configured requests per minute.
    pub rpm: u64,
    /// The configured tokens per minute.
    pub tpm: u64,
    /// Calls by what happened to them.
    pub counts: SimCounts,
    /// Tokens reserved by admitted calls (`input + max_tokens` each).
    pub tokens_reserved: u64,
    /// Tokens settled by finished calls (`input + output × burndown` each).
    pub tokens_settled: u64,
    /// Input tokens of settled calls.
    pub input_tokens: u64,
    /// Output tokens of settled calls.
    pub output_tokens: u64,
    /// Calls in flight at the snapshot.
    pub in_flight: u32,
    /// The most calls in flight at once.
    pub peak_in_flight: u32,
    /// Every window from the start to the snapshot's, in order; index `k` is window `k` of
    /// [`BedrockSim::window_bounds`] (window 0 partial unless the phase is zero).
    pub windows: Vec<WindowStats>,
}

impl ModelStats {
    /// Tokens counted in all windows so far over `tpm × windows`: how much of the token quota
    /// the traffic used. The current, unfinished window and a partial window 0 count whole;
    /// to count whole windows only, take them from [`windows`](Self::windows) with
    /// [`BedrockSim::window_bounds`].
    pub fn token_utilization(&self) -> f64 {
        let used: u64 = self.windows.iter().map(|w| w.tokens).sum();
        used as f64 / (self.tpm as f64 * self.windows.len().max(1) as f64)
    }

    /// Requests admitted over `rpm × windows`.
    pub fn request_utilization(&self) -> f64 {
        let used: u64 = self.windows.iter().map(|w| w.requests).sum();
        used as f64 / (self.rpm as f64 * self.windows.len().max(1) as f64)
    }
}

/// A snapshot of a [`BedrockSim`]: every model (in configuration order) and every caller (by
/// label).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BedrockStats {
    /// Per model and region.
    pub models: Vec<ModelStats>,
    /// Per caller label.
    pub callers: Vec<CallerStats>,
}

impl BedrockStats {
    /// The statistics of one model in one region.
    pub fn model(&self, model_id: &str, region: &str) -> Option<&ModelStats> {
        self.models
            .iter()
            .find(|m| &*m.model_id == model_id && &*m.region == region)
    }

    /// The statistics of one caller.
    pub fn caller(&self, caller: &str) -> Option<&CallerStats> {
        self.callers.iter().find(|c| &*c.caller == caller)
    }
}

impl tower_service::Service<ModelCall> for BedrockSim {
    type Response = ModelReply;
    type Error = SimError;
    type Future = BedrockFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), SimError>> {
        // The simulator never pushes back through readiness: Bedrock answers every request,
        // rejections included.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: ModelCall) -> BedrockFuture {
        let now = Instant::now();
        let (deadline, result) = match self.start_call(&call, now) {
            Ok(in_flight) => (in_flight.completes_at, Ok(in_flight)),
            Err(error) => (after(now, self.inner.error_latency), Err(error)),
        };
        BedrockFuture {
            sleep: tokio::time::sleep_until(deadline),
            result: Some(result),
        }
    }
}

pin_project! {
    /// The future of a [`BedrockSim`] call: waits out the latency model, then settles.
    pub struct BedrockFuture {
        #[pin]
        sleep: Sleep,
        result: Option<Result<InFlight, SimError>>,
    }
}

impl Future for BedrockFuture {
    type Output = Result<ModelReply, SimError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        ready!(this.sleep.poll(cx));
        match this.result.take() {
            Some(result) => Poll::Ready(result.map(InFlight::finish)),
            None => panic!("BedrockFuture polled after completion"),
        }
    }
}

impl std::fmt::Debug for BedrockFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BedrockFuture")
            .field("result", &self.result)
            .finish_non_exhaustive()
    }
}
