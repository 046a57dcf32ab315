//! The sans-IO estimator: the learned limit, its settings, and the rules that move it, with
//! time passed in.

use std::time::Duration;

use tokio::time::Instant;

use crate::error::ConfigError;
use crate::{Outcome, OutcomeKind};

/// How much slower the limit grows within a slot of the level at which it was last cut: one
/// slot per this many round trips at full use, instead of one per round trip (see the
/// [module docs](super)).
pub const PROBE_ROUNDS: f64 = 4.0;

/// The shortest and longest retry hint a refusal carries (see
/// [`ConcurrencyFull::retry_in`](super::ConcurrencyFull::retry_in)).
const HINT_BOUNDS: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// The default latency gradient: `(tolerance, short window, long window)`.
const DEFAULT_LATENCY: (f64, u32, u32) = (2.0, 10, 100);

/// Validated settings of an [`AdaptiveLimit`](super::AdaptiveLimit); build with
/// [`ConcurrencyConfig::builder`].
///
/// Defaults, and why (Netflix concurrency-limits' defaults in the last column):
///
/// | setting | default | why | Netflix |
/// |---|---|---|---|
/// | `initial_limit` | 16 | a few LLM calls in flight per target is common; learning moves it within a minute | 20 |
/// | `min_limit` | 1 | one call keeps probing a backend that refuses everything else (Envoy: 3) | 20 |
/// | `max_limit` | 256 | far above any per-target cap seen in practice, low enough to stop a runaway | 200 (Vegas: 1000) |
/// | `backoff_ratio` | 0.9 | one refusal says "one too many", not "half too many" | 0.9 (AIMD) |
/// | `decrease_interval` | 1 s | a burst of refusals from one overload cuts once | none: every drop cuts |
/// | `latency_tolerance` | 2.0 | LLM latency follows the output length: only a doubling of the recent mean is queueing | 1.5 (Gradient2) |
/// | `latency_windows` | 10 / 100 calls | short-term and long-term mean latency, as exponential averages | last sample / 600 (Gradient2) |
///
/// ```
/// use std::time::Duration;
/// use tower_headroom::concurrency::ConcurrencyConfig;
///
/// let config = ConcurrencyConfig::builder()
///     .initial_limit(8)
///     .limits(2, 64)
///     .backoff_ratio(0.75)
///     .decrease_interval(Duration::from_secs(2))
///     .build()?;
/// assert_eq!(config.initial_limit(), 8);
/// let error = ConcurrencyConfig::builder().limits(10, 5).build().unwrap_err();
/// assert_eq!(error.field(), "max_limit");
/// # Ok::<(), tower_headroom::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConcurrencyConfig {
    initial_limit: u32,
    min_limit: u32,
    max_limit: u32,
    backoff_ratio: f64,
    decrease_interval: Duration,
    /// `(tolerance, short window, long window)`, or `None` when latency teaches nothing.
    latency: Option<(f64, u32, u32)>,
}

impl Default for ConcurrencyConfig {
    fn default() -> Self {
        ConcurrencyConfig {
            initial_limit: 16,
            min_limit: 1,
            max_limit: 256,
            backoff_ratio: 0.9,
            decrease_interval: Duration::from_secs(1),
            latency: Some(DEFAULT_LATENCY),
        }
    }
}

impl ConcurrencyConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> ConcurrencyConfigBuilder {
        ConcurrencyConfigBuilder {
            config: ConcurrencyConfig::default(),
        }
    }

    /// The limit before anything was learned.
    pub fn initial_limit(&self) -> u32 {
        self.initial_limit
    }

    /// The limit never falls below this.
    pub fn min_limit(&self) -> u32 {
        self.min_limit
    }

    /// The limit never rises above this.
    pub fn max_limit(&self) -> u32 {
        self.max_limit
    }

    /// A cut multiplies the limit by this.
    pub fn backoff_ratio(&self) -> f64 {
        self.backoff_ratio
    }

    /// The shortest time between two cuts.
    pub fn decrease_interval(&self) -> Duration {
        self.decrease_interval
    }

    /// `(tolerance, short window, long window)` of the latency gradient, or `None` when
    /// latency teaches nothing.
    pub fn latency(&self) -> Option<(f64, u32, u32)> {
        self.latency
    }
}

/// Builds a [`ConcurrencyConfig`]; [`build`](Self::build) validates.
#[derive(Clone, Debug)]
pub struct ConcurrencyConfigBuilder {
    config: ConcurrencyConfig,
}

impl ConcurrencyConfigBuilder {
    /// The limit before anything was learned (default 16); within the limits.
    pub fn initial_limit(mut self, limit: u32) -> Self {
        self.config.initial_limit = limit;
        self
    }

    /// The range the limit stays in (default `1..=256`): `min` at least 1, `max` at least `min`.
    pub fn limits(mut self, min: u32, max: u32) -> Self {
        self.config.min_limit = min;
        self.config.max_limit = max;
        self
    }

    /// What a cut multiplies the limit by, in `[0.5, 1)` (default 0.9).
    pub fn backoff_ratio(mut self, ratio: f64) -> Self {
        self.config.backoff_ratio = ratio;
        self
    }

    /// The shortest time between two cuts (default 1 s). Zero leaves only the other guard: an
    /// answer to a call sent before the last cut never cuts again.
    pub fn decrease_interval(mut self, interval: Duration) -> Self {
        self.config.decrease_interval = interval;
        self
    }

    /// Cuts when the short-term mean latency exceeds `tolerance` (more than 1) times the
    /// long-term mean (default 2.0).
    pub fn latency_tolerance(mut self, tolerance: f64) -> Self {
        let (_, short, long) = self.config.latency.unwrap_or(DEFAULT_LATENCY);
        self.config.latency = Some((tolerance, short, long));
        self
    }

    /// The short-term and long-term mean latencies are exponential averages over about
    /// `short` and `long` successful calls (default 10 and 100; `short` at least 1, `long`
    /// more than `short`).
    pub fn latency_windows(mut self, short: u32, long: u32) -> Self {
        let (tolerance, _, _) = self.config.latency.unwrap_or(DEFAULT_LATENCY);
        self.config.latency = Some((tolerance, short, long));
        self
    }

    /// Learns from refusals only, never from latency: for calls whose latency says nothing
    /// about queueing (a whole LLM answer whose length varies a hundredfold, with no time to
    /// first token to record instead).
    pub fn no_latency(mut self) -> Self {
        self.config.latency = None;
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<ConcurrencyConfig, ConfigError> {
        let c = self.config;
        if c.min_limit == 0 {
            return Err(ConfigError::new("min_limit", 0, "must be at least 1"));
        }
        if c.max_limit < c.min_limit {
            return Err(ConfigError::new(
                "max_limit",
                c.max_limit,
                "must be at least min_limit",
            ));
        }
        if !(c.min_limit..=c.max_limit).contains(&c.initial_limit) {
            return Err(ConfigError::new(
                "initial_limit",
                c.initial_limit,
                "must be within min_limit..=max_limit",
            ));
        }
        if !(c.backoff_ratio.is_finite() && (0.5..1.0).contains(&c.backoff_ratio)) {
            return Err(ConfigError::new(
                "backoff_ratio",
                c.backoff_ratio,
                "must be in [0.5, 1): a cut deeper than half collapses the limit",
            ));
        }
        if let Some((tolerance, short, long)) = c.latency {
            if !(tolerance.is_finite() && tolerance > 1.0) {
                return Err(ConfigError::new(
                    "latency_tolerance",
                    tolerance,
                    "must be more than 1 (the long-term mean itself)",
                ));
            }
            if short == 0 {
                return Err(ConfigError::new(
                    "latency_windows.short",
                    short,
                    "must be at least 1",
                ));
            }
            if long <= short {
                return Err(ConfigError::new(
                    "latency_windows.long",
                    long,
                    "must be more than the short window",
                ));
            }
        }
        Ok(c)
    }
}

/// What the estimator remembers of one call between its start and its outcome.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket {
    /// The number of cuts before the call started: an answer to a call sent before the last
    /// cut says nothing about the limit after it.
    cuts: u64,
    /// At least half the limit was in use when the call started.
    used: bool,
}

/// Why the limit moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    Refusal,
    Latency,
    Growth,
}

impl Cause {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Cause::Refusal => "refusal",
            Cause::Latency => "latency",
            Cause::Growth => "growth",
        }
    }
}

/// A change of the whole-call limit, for the handle to report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) from: u32,
    pub(crate) to: u32,
    pub(crate) cause: Cause,
}

/// The adaptive limit of one target, with time passed in: additive increase while the limit
/// is used and latency holds, multiplicative decrease on refusals and on a latency gradient.
#[derive(Clone, Debug)]
pub(crate) struct Estimator {
    config: ConcurrencyConfig,
    /// The learned limit, fractional: whole calls are `floor(limit)`.
    limit: f64,
    in_flight: u32,
    /// Exponential averages of successful calls' latencies, in seconds.
    short_rtt: f64,
    long_rtt: f64,
    samples: u32,
    cuts: u64,
    last_cut: Option<Instant>,
    /// The limit just before the last cut, until the limit has grown a slot past it.
    ceiling: Option<f64>,
}

impl Estimator {
    pub(crate) fn new(config: ConcurrencyConfig) -> Self {
        Estimator {
            limit: f64::from(config.initial_limit),
            config,
            in_flight: 0,
            short_rtt: 0.0,
            long_rtt: 0.0,
            samples: 0,
            cuts: 0,
            last_cut: None,
            ceiling: None,
        }
    }

    pub(crate) fn config(&self) -> &ConcurrencyConfig {
        &self.config
    }

    /// Whole calls allowed in flight.
    pub(crate) fn limit(&self) -> u32 {
        // `limit` stays within [min, max], both u32, so the cast is exact after `floor`.
        self.limit.floor() as u32
    }

    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Takes a slot, or says how full the limit is and when a slot may free.
    pub(crate) fn try_acquire(&mut self) -> Result<Ticket, (u32, u32, Duration)> {
        let limit = self.limit();
        if self.in_flight >= limit {
            return Err((limit, self.in_flight, self.retry_hint()));
        }
        self.in_flight += 1;
        Ok(Ticket {
            cuts: self.cuts,
            used: u64::from(self.in_flight) * 2 >= u64::from(limit),
        })
    }

    /// Gives a slot back without learning: the call was dropped or never sent.
    pub(crate) fn release(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Gives a slot back and learns from the call's outcome, `latency` after it started.
    pub(crate) fn record(
        &mut self,
        ticket: Ticket,
        outcome: &Outcome,
        latency: Duration,
        now: Instant,
    ) -> Option<Change> {
        self.release();
        if outcome.local {
            // Refused by this client before anything was sent: nothing about the backend.
            return None;
        }
        let from = self.limit();
        let cause = match outcome.kind {
            OutcomeKind::Unavailable | OutcomeKind::Overloaded | OutcomeKind::Timeout => {
                self.cut(ticket, now).then_some(Cause::Refusal)
            }
            OutcomeKind::Success if self.sample(latency) => {
                let cut = self.cut(ticket, now);
                if cut {
                    // The next latency cut needs fresh evidence, not the same average.
                    self.short_rtt = self.long_rtt;
                }
                cut.then_some(Cause::Latency)
            }
            OutcomeKind::Success if ticket.used => {
                self.grow();
                Some(Cause::Growth)
            }
            // Quota throttles, client errors and transient faults say nothing about how many
            // calls the backend can hold at once.
            _ => None,
        };
        let to = self.limit();
        cause
            .filter(|_| from != to)
            .map(|cause| Change { from, to, cause })
    }

    /// Adds a latency sample; returns whether the short-term mean is above the tolerance over
    /// the long-term one (once `short` samples were seen). Without latency learning the means
    /// are kept all the same, over the default windows, for the retry hint.
    fn sample(&mut self, latency: Duration) -> bool {
        let (_, short, long) = DEFAULT_LATENCY;
        let (tolerance, short, long) = self.config.latency.unwrap_or((f64::INFINITY, short, long));
        let rtt = latency.as_secs_f64();
        if self.samples == 0 {
            (self.short_rtt, self.long_rtt) = (rtt, rtt);
        } else {
            self.short_rtt += (rtt - self.short_rtt) / f64::from(short);
            self.long_rtt += (rtt - self.long_rtt) / f64::from(long);
        }
        self.samples = self.samples.saturating_add(1);
        self.samples >= short && self.short_rtt > tolerance * self.long_rtt
    }

    /// Multiplies the limit by the backoff ratio, unless the call started before the last cut
    /// or the last cut is more recent than the decrease interval. Returns whether it cut.
    fn cut(&mut self, ticket: Ticket, now: Instant) -> bool {
        let interval_over = self.last_cut.is_none_or(|last| {
            now.saturating_duration_since(last) >= self.config.decrease_interval
        });
        if ticket.cuts != self.cuts || !interval_over {
            return false;
        }
        self.ceiling = Some(self.limit);
        self.limit = (self.limit * self.config.backoff_ratio).max(f64::from(self.config.min_limit));
        self.cuts += 1;
        self.last_cut = Some(now);
        true
    }

    /// One slot per limit's worth of successes (about one per round trip at full use); within
    /// a slot of the level of the last cut, [`PROBE_ROUNDS`] times slower.
    fn grow(&mut self) {
        let mut step = 1.0 / self.limit;
        if self
            .ceiling
            .is_some_and(|ceiling| self.limit + 1.0 > ceiling)
        {
            step /= PROBE_ROUNDS;
        }
        self.limit = (self.limit + step).min(f64::from(self.config.max_limit));
        if self
            .ceiling
            .is_some_and(|ceiling| self.limit >= ceiling + 1.0)
        {
            self.ceiling = None;
        }
    }

    /// The mean time between completions at the current latency: when a slot may free.
    fn retry_hint(&self) -> Duration {
        let (low, high) = HINT_BOUNDS;
        if self.samples == 0 {
            return high;
        }
        let per_slot = self.short_rtt / f64::from(self.in_flight.max(1));
        Duration::try_from_secs_f64(per_slot).map_or(high, |hint| hint.clamp(low, high))
    }
}
