//! A simulated account's configuration: each model's quotas, latency and output models and
//! bad days ([`ModelConfig`], [`ModelConfigBuilder`], [`OutputLength`]), and the whole account
//! as a file describes it ([`BedrockConfig`]).
//!
//! A model's `burndown` and `max_output_tokens` default to the [model table]'s numbers for its
//! id (the same numbers the estimators and the SDK adapter use); a model id the table does not
//! know gets the simulator's own defaults, burndown 1 and 4,096 output tokens (a made-up model
//! in a test, not a real one to be careful about). `rpm` is off unless set: bedrock-runtime
//! enforces tokens per minute and per day, not requests ("Quotas for the bedrock-runtime
//! endpoint", <https://docs.aws.amazon.com/bedrock/latest/userguide/quotas-runtime.html>).
//! `tpd` defaults to `tpm × 24 × 60`, the default the same page and "How tokens are counted in
//! Amazon Bedrock" (<https://docs.aws.amazon.com/bedrock/latest/userguide/quotas-token-burndown.html>)
//! give for established accounts (new accounts may get less: set `tpd`).
//!
//! [model table]: crate::bedrock::ModelTable

use std::time::Duration;

use crate::ConfigError;
use crate::bedrock::{ModelSpec, ModelTable};
use crate::sim::{Episode, RandomEpisodes, serde_time};

/// Minutes in a day: the default tokens per day is `tpm × MINUTES_PER_DAY`.
pub const MINUTES_PER_DAY: u64 = 24 * 60;

/// The default time a rejection takes to arrive.
pub(super) const DEFAULT_ERROR_LATENCY: Duration = Duration::from_millis(10);

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

/// The simulator's burndown and output maximum for a model the [`ModelTable`] does not know.
const UNKNOWN_MODEL: ModelSpec = ModelSpec::new(1, 4_096);

/// `model_id`'s burndown and output maximum: the built-in model table's, or
/// [`UNKNOWN_MODEL`] (no warning: a made-up id is normal in a simulation).
fn table_spec(model_id: &str) -> ModelSpec {
    ModelTable::builtin()
        .lookup(model_id)
        .unwrap_or(UNKNOWN_MODEL)
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
///
/// Defaults: `burndown` and `max_output_tokens` take the [model table]'s numbers for
/// `model_id` (the same numbers the estimators and the SDK adapter use); a model id the table
/// does not know gets burndown 1 and 4,096 output tokens (a made-up model in a test, not a
/// real one to be careful about). `rpm` is off: bedrock-runtime enforces tokens, not requests
/// ("Quotas for the bedrock-runtime endpoint",
/// <https://docs.aws.amazon.com/bedrock/latest/userguide/quotas-runtime.html>). `tpd` is
/// `tpm × 24 × 60`, the default that page and "How tokens are counted in Amazon Bedrock"
/// (<https://docs.aws.amazon.com/bedrock/latest/userguide/quotas-token-burndown.html>) give
/// (new accounts may get less: set `tpd`).
///
/// [model table]: crate::bedrock::ModelTable
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(from = "ModelConfigFile")]
#[non_exhaustive]
pub struct ModelConfig {
    /// The model id, e.g. `anthropic.claude-3-5-sonnet-20240620-v1:0` or an inference
    /// profile id.
    pub model_id: String,
    /// The region, e.g. `us-east-1`.
    pub region: String,
    /// Requests per minute, or `None` (the default) for no request quota, as bedrock-runtime
    /// enforces none today; set it to model an account or endpoint that still counts requests.
    pub rpm: Option<u64>,
    /// Tokens per minute (input + cache + output × burndown, see the [Bedrock simulator
    /// docs](crate::sim::BedrockSim)).
    pub tpm: u64,
    /// Tokens per day, or `None` for the default `tpm × 1440`
    /// ([`tokens_per_day`](Self::tokens_per_day) gives the value in force).
    pub tpd: Option<u64>,
    /// How many quota tokens one output token spends (5 on Claude 3.7 Sonnet and the Claude 4
    /// family, 1 elsewhere). Default: the model table's.
    pub burndown: u32,
    /// The largest `max_tokens` the model accepts, and what a call without `max_tokens`
    /// reserves. Default: the model table's (64,000 for Claude Sonnet 4).
    pub max_output_tokens: u64,
    /// Time to first token (default 400 ms).
    pub ttft: Duration,
    /// Time per output token (default 10 ms).
    pub per_output_token: Duration,
    /// The output length model (default: 256 tokens, fixed).
    pub output: OutputLength,
    /// At most this many calls in flight; more are answered "Too many connections".
    pub max_concurrency: Option<u32>,
    /// Scheduled overload episodes.
    pub overloads: Vec<Episode>,
    /// Random overload episodes, drawn from the simulator's seed.
    pub random_overloads: Option<RandomEpisodes>,
    /// Outage windows (503 "Service temporarily unavailable").
    pub outages: Vec<Episode>,
}

/// [`ModelConfig`] as a file writes it: the defaults that depend on the model id are filled in
/// by `From`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelConfigFile {
    model_id: String,
    region: String,
    #[serde(default)]
    rpm: Option<u64>,
    tpm: u64,
    #[serde(default)]
    tpd: Option<u64>,
    #[serde(default)]
    burndown: Option<u32>,
    #[serde(default)]
    max_output_tokens: Option<u64>,
    #[serde(
        rename = "ttft_ms",
        with = "serde_time::millis",
        default = "default_ttft"
    )]
    ttft: Duration,
    #[serde(
        rename = "per_output_token_ms",
        with = "serde_time::millis",
        default = "default_per_output_token"
    )]
    per_output_token: Duration,
    #[serde(default)]
    output: OutputLength,
    #[serde(default)]
    max_concurrency: Option<u32>,
    #[serde(default)]
    overloads: Vec<Episode>,
    #[serde(default)]
    random_overloads: Option<RandomEpisodes>,
    #[serde(default)]
    outages: Vec<Episode>,
}

impl From<ModelConfigFile> for ModelConfig {
    fn from(file: ModelConfigFile) -> Self {
        let spec = table_spec(&file.model_id);
        ModelConfig {
            rpm: file.rpm,
            tpm: file.tpm,
            tpd: file.tpd,
            burndown: file.burndown.unwrap_or(spec.burndown),
            max_output_tokens: file.max_output_tokens.unwrap_or(spec.max_output_tokens),
            ttft: file.ttft,
            per_output_token: file.per_output_token,
            output: file.output,
            max_concurrency: file.max_concurrency,
            overloads: file.overloads,
            random_overloads: file.random_overloads,
            outages: file.outages,
            model_id: file.model_id,
            region: file.region,
        }
    }
}

impl ModelConfig {
    /// A builder for `model_id` in `region`; `tpm` must be set. `burndown` and
    /// `max_output_tokens` start at the model table's numbers for `model_id`.
    pub fn builder(model_id: impl Into<String>, region: impl Into<String>) -> ModelConfigBuilder {
        let model_id = model_id.into();
        let spec = table_spec(&model_id);
        ModelConfigBuilder {
            config: ModelConfig {
                model_id,
                region: region.into(),
                rpm: None,
                tpm: 0,
                tpd: None,
                burndown: spec.burndown,
                max_output_tokens: spec.max_output_tokens,
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

    /// The tokens-per-day quota in force: `tpd`, or `tpm × 1440` when it is not set.
    pub fn tokens_per_day(&self) -> u64 {
        self.tpd
            .unwrap_or_else(|| self.tpm.saturating_mul(MINUTES_PER_DAY))
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
        if self.rpm == Some(0) {
            return Err(ConfigError::new(
                "rpm",
                self.rpm,
                "must be at least 1 (or unset for no request quota)",
            ));
        }
        if self.tpm == 0 {
            return Err(ConfigError::new("tpm", self.tpm, "must be at least 1"));
        }
        if let Some(tpd) = self.tpd {
            if tpd < self.tpm {
                return Err(ConfigError::new(
                    "tpd",
                    tpd,
                    "must be at least tpm (a day holds at least one minute)",
                ));
            }
        }
        crate::bedrock::ModelSpec::new(self.burndown, self.max_output_tokens).validate()?;
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
    /// Enforces a requests-per-minute quota (off by default, as on bedrock-runtime).
    pub fn rpm(mut self, rpm: u64) -> Self {
        self.config.rpm = Some(rpm);
        self
    }
    /// Tokens per minute.
    pub fn tpm(mut self, tpm: u64) -> Self {
        self.config.tpm = tpm;
        self
    }
    /// Tokens per day (default `tpm × 1440`); at least `tpm`.
    pub fn tpd(mut self, tpd: u64) -> Self {
        self.config.tpd = Some(tpd);
        self
    }
    /// Quota tokens spent per output token (default: the model table's).
    pub fn burndown(mut self, burndown: u32) -> Self {
        self.config.burndown = burndown;
        self
    }
    /// The largest `max_tokens` the model accepts, reserved by calls without one (default:
    /// the model table's).
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
///     "models": [{ "model_id": "m", "region": "us-east-1", "tpm": 100000, "tpd": 2000000,
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
    /// The account-wide, cross-model tokens-per-day quota of each region ("Cross-Model Max
    /// Tokens Per Day", per account and region), written `account_tpd`; absent: none.
    #[serde(default)]
    pub account_tpd: Option<u64>,
    /// The models, one per (model id, region).
    pub models: Vec<ModelConfig>,
}

impl BedrockConfig {
    /// Checks the account and every model: the window phase under 60 s, `account_tpd` at
    /// least 1, at least one model, each valid, no (model id, region) twice. The error names
    /// the first bad field and its value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(phase) = self.window_phase {
            if phase >= super::BEDROCK_WINDOW {
                return Err(ConfigError::new(
                    "window_phase",
                    phase,
                    "must be under the 60 s window",
                ));
            }
        }
        if self.account_tpd == Some(0) {
            return Err(ConfigError::new(
                "account_tpd",
                self.account_tpd,
                "must be at least 1 (or unset for no account-wide quota)",
            ));
        }
        if self.models.is_empty() {
            return Err(ConfigError::new(
                "models",
                self.models.len(),
                "at least one model is needed",
            ));
        }
        for (i, model) in self.models.iter().enumerate() {
            model.validate()?;
            if self.models[..i]
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
        Ok(())
    }
}
