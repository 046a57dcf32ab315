//! The simulator's shared state: per model its windows, counts, in-flight calls and random
//! draws, and how instants map to quota windows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::bedrock::ModelSpec;

use super::{BEDROCK_DAY, BEDROCK_WINDOW, ModelConfig, WindowStats};
use crate::sim::{Callers, RandomEpisodes, SimCounts};

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) start: Instant,
    /// Where the first window boundary falls after `start`.
    pub(super) window_phase: Duration,
    /// `(60 s − phase) mod 60 s`: added to the time since the start, it puts the window
    /// boundaries on whole multiples of 60 s.
    pub(super) window_offset: Duration,
    /// Calls to the methods that read the simulator's set-up or state (see
    /// [`BedrockSim::inspections`]).
    ///
    /// [`BedrockSim::inspections`]: super::BedrockSim::inspections
    pub(super) inspections: AtomicU64,
    pub(super) error_latency: Duration,
    pub(super) models: Vec<Model>,
    /// The account-wide tokens per day of each region, if any.
    pub(super) account_tpd: Option<u64>,
    /// The regions of the models, in order of first appearance: [`State::accounts`]' order.
    pub(super) regions: Vec<Arc<str>>,
    pub(super) state: Mutex<State>,
}

impl Inner {
    pub(super) fn inspected(&self) {
        self.inspections.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
pub(super) struct Model {
    pub(super) config: ModelConfig,
    pub(super) model_id: Arc<str>,
    pub(super) region: Arc<str>,
    /// Index of the region in [`State::accounts`].
    pub(super) region_index: usize,
    /// The tokens-per-day quota in force.
    pub(super) tpd: u64,
    /// Burndown and output maximum, for the reservation and settlement formulas (one place:
    /// [`ModelSpec`]).
    pub(super) spec: ModelSpec,
    pub(super) overloaded_message: String,
}

#[derive(Debug)]
pub(super) struct State {
    pub(super) models: Vec<ModelState>,
    /// Per region: the account-wide day, counted whether or not a quota is set.
    pub(super) accounts: Vec<DayWindow>,
    pub(super) callers: Callers,
}

/// One day's tokens: the current day only (bounded memory whatever the run's length).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct DayWindow {
    /// The day's index (see [`day_index`]).
    pub(super) day: u64,
    /// Tokens counted in it: reservations in flight plus the settlements of finished calls.
    pub(super) tokens: u64,
}

impl DayWindow {
    /// Makes `day` the current day, emptying the window when it changes.
    pub(super) fn roll(&mut self, day: u64) {
        if day != self.day {
            *self = DayWindow { day, tokens: 0 };
        }
    }

    /// Settles a reservation of `reserved` tokens made in `day` to `settled`: only while that
    /// day is current (a day that ended is gone, as on the service).
    pub(super) fn settle(&mut self, day: u64, reserved: u64, settled: u64) {
        if day == self.day {
            self.tokens = self.tokens.saturating_sub(reserved).saturating_add(settled);
        }
    }
}

#[derive(Debug)]
pub(super) struct ModelState {
    pub(super) windows: Vec<WindowStats>,
    pub(super) day: DayWindow,
    pub(super) cache_read_tokens: u64,
    pub(super) cache_write_tokens: u64,
    pub(super) counts: SimCounts,
    pub(super) tokens_reserved: u64,
    pub(super) tokens_settled: u64,
    pub(super) input_tokens: u64,
    pub(super) output_tokens: u64,
    pub(super) in_flight: u32,
    pub(super) peak_in_flight: u32,
    pub(super) output_rng: fastrand::Rng,
    pub(super) random: Option<RandomState>,
}

/// The current or next random overload episode, drawn lazily as time passes.
#[derive(Debug)]
pub(super) struct RandomState {
    pub(super) config: RandomEpisodes,
    pub(super) rng: fastrand::Rng,
    pub(super) start: Duration,
    pub(super) end: Duration,
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

    pub(super) fn contains(&mut self, elapsed: Duration) -> bool {
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
    pub(super) fn new(config: &ModelConfig, seed: u64, index: u64) -> Self {
        ModelState {
            windows: vec![WindowStats::default()],
            day: DayWindow::default(),
            cache_read_tokens: 0,
            cache_write_tokens: 0,
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
    pub(super) fn roll(&mut self, window: usize) {
        if self.windows.len() <= window {
            self.windows.resize(window + 1, WindowStats::default());
        }
    }
}

/// The default window phase for `seed`: uniform in `[0, 60 s)`, to the microsecond.
pub(super) fn default_window_phase(seed: u64) -> Duration {
    let micros = BEDROCK_WINDOW.as_micros() as u64;
    Duration::from_micros(derive_seed(seed, u64::MAX, 3) % micros)
}

/// The window holding the instant `elapsed` after the start, for a window offset of
/// `offset` (`(60 s − phase) mod 60 s`).
pub(super) fn window_index(elapsed: Duration, offset: Duration) -> usize {
    let shifted = elapsed.saturating_add(offset);
    usize::try_from(shifted.as_secs() / BEDROCK_WINDOW.as_secs()).unwrap_or(usize::MAX - 1)
}

/// The day holding the instant `elapsed` after the start: days are [`BEDROCK_DAY`] long and
/// begin on a window boundary (every 1,440th), so day 0 is short by the window phase's
/// complement, like window 0.
pub(super) fn day_index(elapsed: Duration, offset: Duration) -> u64 {
    elapsed.saturating_add(offset).as_secs() / BEDROCK_DAY.as_secs()
}
