//! [`LlmConfig`]: an OpenAI- or Anthropic-style endpoint as a configuration file describes it.

use std::time::Duration;

use super::{LlmEndpointSim, LlmShape};
use crate::ConfigError;
use crate::sim::{Episode, OutputLength, serde_time};

fn default_max_tokens() -> u64 {
    4_096
}
fn default_latency() -> Duration {
    Duration::from_millis(300)
}
fn default_per_output_token() -> Duration {
    Duration::from_millis(10)
}
fn default_error_latency() -> Duration {
    Duration::from_millis(5)
}

/// An OpenAI- or Anthropic-style endpoint in a configuration file (`[openai]`,
/// `[anthropic]`): `rpm` and `tpm` (required), `default_max_tokens`, `output`, `latency_ms`,
/// `per_output_token_ms`, `error_latency_ms`, `billing_cap` (tokens), `overloads` (episodes)
/// and `seed`; the defaults are [`LlmEndpointSim::builder`]'s.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LlmConfig {
    /// Requests per minute.
    pub rpm: u64,
    /// Tokens per minute.
    pub tpm: u64,
    /// The `max_tokens` charged for a call that sets none.
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: u64,
    /// How long answers are.
    #[serde(default)]
    pub output: OutputLength,
    /// The time to the first token.
    #[serde(
        rename = "latency_ms",
        with = "serde_time::millis",
        default = "default_latency"
    )]
    pub latency: Duration,
    /// The time per output token.
    #[serde(
        rename = "per_output_token_ms",
        with = "serde_time::millis",
        default = "default_per_output_token"
    )]
    pub per_output_token: Duration,
    /// How long a refusal takes.
    #[serde(
        rename = "error_latency_ms",
        with = "serde_time::millis",
        default = "default_error_latency"
    )]
    pub error_latency: Duration,
    /// The tokens the account may spend in all, if capped.
    #[serde(default)]
    pub billing_cap: Option<u64>,
    /// Overload episodes.
    #[serde(default)]
    pub overloads: Vec<Episode>,
    /// The seed of the output lengths.
    #[serde(default)]
    pub seed: u64,
}

impl LlmEndpointSim {
    /// Builds an endpoint of `shape` from a deserialized configuration, starting now.
    ///
    /// ```
    /// use tower_headroom::sim::front::SimFile;
    /// use tower_headroom::sim::{LlmEndpointSim, LlmShape};
    ///
    /// let file = SimFile::from_toml(r#"
    ///     [openai]
    ///     rpm = 500
    ///     tpm = 200000
    ///     billing_cap = 5000000
    ///
    ///     [anthropic]
    ///     rpm = 50
    ///     tpm = 40000
    ///     overloads = [{ start_s = 60, duration_s = 30 }]
    /// "#).unwrap();
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let openai = LlmEndpointSim::from_config(LlmShape::OpenAi, file.openai.unwrap()).unwrap();
    /// assert_eq!(openai.shape(), LlmShape::OpenAi);
    /// # });
    /// assert!(SimFile::from_toml("[openai]\nrpm = 0\ntpm = 1\n").is_ok()); // parsed ...
    /// let zero = SimFile::from_toml("[openai]\nrpm = 0\ntpm = 1\n").unwrap().openai.unwrap();
    /// assert!(LlmEndpointSim::from_config(LlmShape::OpenAi, zero).is_err()); // ... refused
    /// ```
    pub fn from_config(shape: LlmShape, config: LlmConfig) -> Result<Self, ConfigError> {
        let mut builder = LlmEndpointSim::builder(shape)
            .rpm(config.rpm)
            .tpm(config.tpm)
            .default_max_tokens(config.default_max_tokens)
            .output(config.output)
            .latency(config.latency)
            .per_output_token(config.per_output_token)
            .error_latency(config.error_latency)
            .seed(config.seed);
        if let Some(cap) = config.billing_cap {
            builder = builder.billing_cap(cap);
        }
        for episode in config.overloads {
            builder = builder.overload(episode);
        }
        builder.build()
    }
}
