//! Circuit breaker settings: [`BreakerConfig`], validated by [`BreakerConfigBuilder`], and the
//! [`Window`] rates are computed over.

use std::time::Duration;

pub use crate::error::ConfigError;

/// The sliding window over which failure and slow-call rates are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// The last `n` counted calls (Resilience4j `COUNT_BASED`).
    Count(u32),
    /// The calls counted in the last `d` (Resilience4j `TIME_BASED`, Polly `SamplingDuration`).
    /// The window is kept as [`TIME_BUCKETS`] buckets, so calls leave it in steps of `d / 10`.
    Time(Duration),
}

/// How many buckets a [`Window::Time`] is divided into.
pub const TIME_BUCKETS: usize = 10;

/// Validated circuit breaker settings; build with [`BreakerConfig::builder`].
///
/// Defaults, and why (Resilience4j and Polly defaults in brackets):
///
/// | setting | default | why |
/// |---|---|---|
/// | `consecutive_failures` | 5 | an outage is seen after 5 calls even at 1 call/minute [neither library; gobreaker, Polly v7 basic] |
/// | `failure_rate` | 0.5 | half the calls failing is not a blip [R4j 50 %, Polly 10 %] |
/// | `window` | `Time(30 s)` | LLM traffic is low-volume, so a count window of 100 would take minutes to fill [R4j count 100, Polly 30 s] |
/// | `minimum_calls` | 10 | a rate over fewer calls is noise [R4j 100, Polly 100] |
/// | `slow_call` | off | LLM latency depends on the output length, so "slow" is the caller's call [R4j 60 s at 100 %] |
/// | `open_for` | 30 s | overload episodes last minutes; probing every 30 s costs little [R4j 60 s, Polly 5 s] |
/// | `open_jitter` | 0.2 | breakers of many clients opened by one outage do not probe in lockstep |
/// | `open_backoff` | off | each failed probe period can lengthen the next (R4j `waitIntervalFunctionInOpenState`, Polly `BreakDurationGenerator`) |
/// | `half_open_probes` | 3 | LLM calls are expensive; 3 successes are enough evidence [R4j 10, Polly 1] |
///
/// ```
/// use std::time::Duration;
/// use tower_headroom::breaker::{BreakerConfig, Window};
///
/// let config = BreakerConfig::builder()
///     .failure_rate(0.25)
///     .window(Window::Count(50))
///     .minimum_calls(20)
///     .open_for(Duration::from_secs(10))
///     .build()?;
/// assert_eq!(config.window(), Window::Count(50));
/// assert!(BreakerConfig::builder().window(Window::Count(0)).build().is_err());
/// # Ok::<(), tower_headroom::breaker::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerConfig {
    pub(super) consecutive_failures: Option<u32>,
    pub(super) failure_rate: Option<f64>,
    pub(super) slow_call: Option<(Duration, f64)>,
    pub(super) window: Window,
    pub(super) minimum_calls: u32,
    pub(super) open_for: Duration,
    pub(super) open_jitter: f64,
    pub(super) open_backoff: Option<(f64, Duration)>,
    pub(super) half_open_probes: u32,
    pub(super) seed: Option<u64>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            consecutive_failures: Some(5),
            failure_rate: Some(0.5),
            slow_call: None,
            window: Window::Time(Duration::from_secs(30)),
            minimum_calls: 10,
            open_for: Duration::from_secs(30),
            open_jitter: 0.2,
            open_backoff: None,
            half_open_probes: 3,
            seed: None,
        }
    }
}

impl BreakerConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> BreakerConfigBuilder {
        BreakerConfigBuilder {
            config: BreakerConfig::default(),
        }
    }

    /// Trips after this many counted failures in a row, if set.
    pub fn consecutive_failures(&self) -> Option<u32> {
        self.consecutive_failures
    }

    /// Trips when the failure rate over the window reaches this fraction, if set.
    pub fn failure_rate(&self) -> Option<f64> {
        self.failure_rate
    }

    /// `(threshold, rate)`: trips when the fraction of calls slower than `threshold` reaches `rate`.
    pub fn slow_call(&self) -> Option<(Duration, f64)> {
        self.slow_call
    }

    /// The sliding window.
    pub fn window(&self) -> Window {
        self.window
    }

    /// Calls the window must hold before a rate can trip the breaker.
    pub fn minimum_calls(&self) -> u32 {
        self.minimum_calls
    }

    /// The base open duration.
    pub fn open_for(&self) -> Duration {
        self.open_for
    }

    /// The open duration is `open_for * (1 + open_jitter * u)`, `u` uniform in `[0, 1)`.
    pub fn open_jitter(&self) -> f64 {
        self.open_jitter
    }

    /// `(multiplier, max)`: after each failed half-open period the open duration is multiplied,
    /// up to `max` (before jitter); a close resets it.
    pub fn open_backoff(&self) -> Option<(f64, Duration)> {
        self.open_backoff
    }

    /// Probe calls admitted in half-open; this many successes close the breaker.
    pub fn half_open_probes(&self) -> u32 {
        self.half_open_probes
    }

    pub(crate) fn seed(&self) -> Option<u64> {
        self.seed
    }

    pub(crate) fn with_seed(&self, seed: u64) -> BreakerConfig {
        BreakerConfig {
            seed: Some(seed),
            ..self.clone()
        }
    }
}

/// Builds a [`BreakerConfig`]; [`build`](BreakerConfigBuilder::build) validates.
#[derive(Clone, Debug)]
pub struct BreakerConfigBuilder {
    config: BreakerConfig,
}

impl BreakerConfigBuilder {
    /// Trips after `n` counted failures in a row (default 5).
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.config.consecutive_failures = Some(n);
        self
    }

    /// Never trips on consecutive failures alone.
    pub fn no_consecutive_failures(mut self) -> Self {
        self.config.consecutive_failures = None;
        self
    }

    /// Trips when at least this fraction (in `(0, 1]`) of the calls in the window failed
    /// (default 0.5).
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.config.failure_rate = Some(rate);
        self
    }

    /// Never trips on the failure rate.
    pub fn no_failure_rate(mut self) -> Self {
        self.config.failure_rate = None;
        self
    }

    /// Counts calls that took at least `threshold` as slow, and trips when at least `rate` (in
    /// `(0, 1]`) of the calls in the window were slow (default: off). In half-open a slow probe
    /// counts as a failed probe.
    pub fn slow_call(mut self, threshold: Duration, rate: f64) -> Self {
        self.config.slow_call = Some((threshold, rate));
        self
    }

    /// The sliding window for the rates (default `Time(30 s)`).
    pub fn window(mut self, window: Window) -> Self {
        self.config.window = window;
        self
    }

    /// Calls the window must hold before a rate can trip (default 10).
    pub fn minimum_calls(mut self, n: u32) -> Self {
        self.config.minimum_calls = n;
        self
    }

    /// How long the breaker stays open before probing (default 30 s).
    pub fn open_for(mut self, duration: Duration) -> Self {
        self.config.open_for = duration;
        self
    }

    /// Fraction in `[0, 1]` of `open_for` added at random to each open period (default 0.2).
    pub fn open_jitter(mut self, fraction: f64) -> Self {
        self.config.open_jitter = fraction;
        self
    }

    /// Multiplies the open duration by `multiplier` (at least 1) after each failed half-open
    /// period, up to `max` (at least `open_for`); a close resets it (default: off).
    pub fn open_backoff(mut self, multiplier: f64, max: Duration) -> Self {
        self.config.open_backoff = Some((multiplier, max));
        self
    }

    /// Probes admitted in half-open (default 3).
    pub fn half_open_probes(mut self, n: u32) -> Self {
        self.config.half_open_probes = n;
        self
    }

    /// Seeds the jitter generator, for repeatable tests (default: a random seed).
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<BreakerConfig, ConfigError> {
        let c = self.config;
        let fraction = |field, v: f64| {
            if v.is_finite() && v > 0.0 && v <= 1.0 {
                Ok(())
            } else {
                Err(ConfigError::new(field, v, "must be in (0, 1]"))
            }
        };
        if c.consecutive_failures == Some(0) {
            return Err(ConfigError::new(
                "consecutive_failures",
                0,
                "must be at least 1",
            ));
        }
        if let Some(rate) = c.failure_rate {
            fraction("failure_rate", rate)?;
        }
        if let Some((threshold, rate)) = c.slow_call {
            if threshold.is_zero() {
                return Err(ConfigError::new(
                    "slow_call.threshold",
                    threshold,
                    "must be positive",
                ));
            }
            fraction("slow_call.rate", rate)?;
        }
        match c.window {
            Window::Count(0) => {
                return Err(ConfigError::new(
                    "window",
                    c.window,
                    "must hold at least 1 call",
                ));
            }
            Window::Time(d) if d.is_zero() => {
                return Err(ConfigError::new("window", c.window, "must be positive"));
            }
            _ => {}
        }
        if c.minimum_calls == 0 {
            return Err(ConfigError::new("minimum_calls", 0, "must be at least 1"));
        }
        if let Window::Count(n) = c.window {
            if c.minimum_calls > n {
                return Err(ConfigError::new(
                    "minimum_calls",
                    c.minimum_calls,
                    "exceeds the count window, so the rate could never trip",
                ));
            }
        }
        if c.open_for.is_zero() {
            return Err(ConfigError::new("open_for", c.open_for, "must be positive"));
        }
        if !(c.open_jitter.is_finite() && (0.0..=1.0).contains(&c.open_jitter)) {
            return Err(ConfigError::new(
                "open_jitter",
                c.open_jitter,
                "must be in [0, 1]",
            ));
        }
        if let Some((multiplier, max)) = c.open_backoff {
            if !(multiplier.is_finite() && multiplier >= 1.0) {
                return Err(ConfigError::new(
                    "open_backoff.multiplier",
                    multiplier,
                    "must be at least 1",
                ));
            }
            if max < c.open_for {
                return Err(ConfigError::new(
                    "open_backoff.max",
                    max,
                    "must be at least open_for",
                ));
            }
        }
        if c.half_open_probes == 0 {
            return Err(ConfigError::new(
                "half_open_probes",
                0,
                "must be at least 1",
            ));
        }
        if c.consecutive_failures.is_none() && c.failure_rate.is_none() && c.slow_call.is_none() {
            return Err(ConfigError::new(
                "consecutive_failures",
                None::<u32>,
                "with no failure rate and no slow-call rate the breaker could never trip",
            ));
        }
        Ok(c)
    }
}
