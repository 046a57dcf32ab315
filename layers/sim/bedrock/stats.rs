//! What a snapshot of the simulator reports: per window ([`WindowStats`]), per model
//! ([`ModelStats`]) and for the account ([`BedrockStats`]).

use std::sync::Arc;

use crate::sim::{CallerStats, SimCounts};

/// Requests admitted and tokens counted in one quota window: 60 seconds, except window 0,
/// which lasts the [window phase](super::BedrockSim::window_phase) when that is not zero.
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
    /// The configured requests per minute (`None`: no request quota).
    pub rpm: Option<u64>,
    /// The configured tokens per minute.
    pub tpm: u64,
    /// The tokens-per-day quota in force.
    pub tpd: u64,
    /// The current day's index (see [`BEDROCK_DAY`](super::BEDROCK_DAY)).
    pub day: u64,
    /// Tokens counted against the current day: reservations in flight plus settlements.
    pub day_tokens: u64,
    /// Cache-read input tokens of settled calls.
    pub cache_read_tokens: u64,
    /// Cache-write input tokens of settled calls.
    pub cache_write_tokens: u64,
    /// Calls by what happened to them.
    pub counts: SimCounts,
    /// Tokens reserved by admitted calls (`input + max_tokens` each).
    pub tokens_reserved: u64,
    /// Tokens settled by finished calls (`input + cache write + output × burndown` each).
    pub tokens_settled: u64,
    /// Input tokens of settled calls (cache tokens apart).
    pub input_tokens: u64,
    /// Output tokens of settled calls.
    pub output_tokens: u64,
    /// Calls in flight at the snapshot.
    pub in_flight: u32,
    /// The most calls in flight at once.
    pub peak_in_flight: u32,
    /// Every window from the start to the snapshot's, in order; index `k` is window `k` of
    /// [`BedrockSim::window_bounds`] (window 0 partial unless the phase is zero).
    ///
    /// [`BedrockSim::window_bounds`]: super::BedrockSim::window_bounds
    pub windows: Vec<WindowStats>,
}

impl ModelStats {
    /// Tokens counted in all windows so far over `tpm × windows`: how much of the token quota
    /// the traffic used. The current, unfinished window and a partial window 0 count whole;
    /// to count whole windows only, take them from [`windows`](Self::windows) with
    /// [`BedrockSim::window_bounds`].
    ///
    /// [`BedrockSim::window_bounds`]: super::BedrockSim::window_bounds
    pub fn token_utilization(&self) -> f64 {
        let used: u64 = self.windows.iter().map(|w| w.tokens).sum();
        used as f64 / (self.tpm as f64 * self.windows.len().max(1) as f64)
    }

    /// Requests admitted over `rpm × windows`, if the model has a request quota.
    pub fn request_utilization(&self) -> Option<f64> {
        let rpm = self.rpm?;
        let used: u64 = self.windows.iter().map(|w| w.requests).sum();
        Some(used as f64 / (rpm as f64 * self.windows.len().max(1) as f64))
    }
}

/// One region's account-wide day: every model of the region counts in it, whether or not an
/// account-wide quota is set.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegionStats {
    /// The region.
    pub region: Arc<str>,
    /// The account-wide tokens per day, if set.
    pub account_tpd: Option<u64>,
    /// The current day's index.
    pub day: u64,
    /// Tokens of every model of the region counted against the current day.
    pub day_tokens: u64,
}

/// A snapshot of a [`BedrockSim`]: every model (in configuration order), every region's
/// account-wide day, and every caller (by label).
///
/// [`BedrockSim`]: super::BedrockSim
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BedrockStats {
    /// Per model and region.
    pub models: Vec<ModelStats>,
    /// Per region, in order of first appearance among the models.
    pub regions: Vec<RegionStats>,
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

    /// The account-wide day of one region.
    pub fn region(&self, region: &str) -> Option<&RegionStats> {
        self.regions.iter().find(|r| &*r.region == region)
    }

    /// The statistics of one caller.
    pub fn caller(&self, caller: &str) -> Option<&CallerStats> {
        self.callers.iter().find(|c| &*c.caller == caller)
    }
}
