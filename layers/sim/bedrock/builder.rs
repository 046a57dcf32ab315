//! [`BedrockSimBuilder`]: validates every model and builds the simulator.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::config::DEFAULT_ERROR_LATENCY;
use super::state::{DayWindow, Inner, Model, ModelState, State, default_window_phase};
use super::{BEDROCK_WINDOW, BedrockConfig, BedrockSim, ModelConfig};
use crate::ConfigError;
use crate::bedrock::ModelSpec;
use crate::sim::Callers;

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
    /// An account-wide, cross-model tokens-per-day quota per region (Bedrock's "Cross-Model
    /// Max Tokens Per Day"): every model of a region counts against it. Default: none.
    pub fn account_tpd(mut self, tpd: u64) -> Self {
        self.config.account_tpd = Some(tpd);
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
        self.config.validate()?;
        let BedrockConfig {
            seed,
            error_latency,
            window_phase,
            account_tpd,
            models,
        } = self.config;
        let window_phase = window_phase.unwrap_or_else(|| default_window_phase(seed));
        let mut regions: Vec<Arc<str>> = Vec::new();
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
                region_index: match regions.iter().position(|r| **r == *config.region) {
                    Some(i) => i,
                    None => {
                        regions.push(config.region.as_str().into());
                        regions.len() - 1
                    }
                },
                tpd: config.tokens_per_day(),
                spec: ModelSpec::new(config.burndown, config.max_output_tokens),
                overloaded_message: format!(
                    "Model {} is currently overloaded. Please try again later.",
                    config.model_id
                ),
                config,
            })
            .collect();
        let accounts = vec![DayWindow::default(); regions.len()];
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
                account_tpd,
                regions,
                state: Mutex::new(State {
                    accounts,
                    models: states,
                    callers: Callers::default(),
                }),
            }),
        })
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
                account_tpd: None,
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
}
