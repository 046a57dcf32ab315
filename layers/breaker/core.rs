//! The sans-IO circuit breaker: a state machine that takes the time as an argument.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::Outcome;

/// The state of a circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls flow; outcomes are counted.
    Closed,
    /// Calls fail fast until the open period ends.
    Open,
    /// A bounded number of probe calls test whether the backend recovered.
    HalfOpen,
}

impl State {
    /// A short, stable name: `closed`, `open`, `half_open`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }

    /// The value of the `headroom_breaker_state` gauge: 0 closed, 1 half-open, 2 open.
    pub const fn gauge_value(&self) -> f64 {
        self.index() as f64
    }

    /// 0 closed, 1 half-open, 2 open: the gauge value, and the index of the transition counters.
    pub(crate) const fn index(&self) -> usize {
        match self {
            State::Closed => 0,
            State::HalfOpen => 1,
            State::Open => 2,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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

pub use crate::error::ConfigError;

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
    consecutive_failures: Option<u32>,
    failure_rate: Option<f64>,
    slow_call: Option<(Duration, f64)>,
    window: Window,
    minimum_calls: u32,
    open_for: Duration,
    open_jitter: f64,
    open_backoff: Option<(f64, Duration)>,
    half_open_probes: u32,
    seed: Option<u64>,
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

/// Permission to make one call, handed out by [`BreakerCore::acquire`].
///
/// Give it back with [`BreakerCore::record`] once the outcome is known, or with
/// [`BreakerCore::release`] if the call was abandoned. A permit from an earlier state (the
/// breaker opened or closed while the call ran) is recognised and its outcome ignored.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a permit must be recorded or released"]
pub struct Permit {
    generation: u64,
    probe: bool,
}

impl Permit {
    /// Whether this permit is one of the half-open probes.
    pub fn is_probe(&self) -> bool {
        self.probe
    }
}

/// The breaker refused a call: it is open, or half-open with every probe slot taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Open {
    /// When the breaker may admit a call again. While half-open probes are in flight this is
    /// a hint: `min(open_for, 1 s)`.
    pub retry_in: Duration,
}

/// A state change, returned by the core so that the adapter can report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    /// Index of the time slot this bucket holds (`elapsed / width`); stale when too old.
    slot: u64,
    calls: u32,
    failures: u32,
    slow: u32,
}

/// A sliding window of counted calls, allocated once when the breaker is built.
#[derive(Clone, Debug)]
enum Ring {
    /// One byte per call: bit 0 failure, bit 1 slow.
    Count {
        marks: Box<[u8]>,
        next: usize,
        len: usize,
        failures: u32,
        slow: u32,
    },
    Time {
        buckets: Box<[Bucket; TIME_BUCKETS]>,
        width: Duration,
        epoch: Instant,
    },
}

impl Ring {
    fn new(window: Window, now: Instant) -> Self {
        match window {
            Window::Count(n) => Ring::Count {
                marks: vec![0; n as usize].into_boxed_slice(),
                next: 0,
                len: 0,
                failures: 0,
                slow: 0,
            },
            Window::Time(d) => Ring::Time {
                buckets: Box::new([Bucket::default(); TIME_BUCKETS]),
                width: (d / TIME_BUCKETS as u32).max(Duration::from_nanos(1)),
                epoch: now,
            },
        }
    }

    fn clear(&mut self, now: Instant) {
        match self {
            Ring::Count {
                marks,
                next,
                len,
                failures,
                slow,
            } => {
                marks.fill(0);
                *next = 0;
                *len = 0;
                *failures = 0;
                *slow = 0;
            }
            Ring::Time { buckets, epoch, .. } => {
                buckets.fill(Bucket::default());
                *epoch = now;
            }
        }
    }

    fn slot(epoch: Instant, width: Duration, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(epoch).as_nanos();
        (elapsed / width.as_nanos()) as u64
    }

    /// Adds a call and returns `(calls, failures, slow)` in the window.
    fn push(&mut self, failure: bool, slow: bool, now: Instant) -> (u32, u32, u32) {
        match self {
            Ring::Count {
                marks,
                next,
                len,
                failures,
                slow: slow_count,
            } => {
                let cap = marks.len();
                if *len == cap {
                    let old = marks[*next];
                    *failures -= u32::from(old & 1);
                    *slow_count -= u32::from((old >> 1) & 1);
                } else {
                    *len += 1;
                }
                marks[*next] = u8::from(failure) | (u8::from(slow) << 1);
                *failures += u32::from(failure);
                *slow_count += u32::from(slow);
                *next = (*next + 1) % cap;
                (*len as u32, *failures, *slow_count)
            }
            Ring::Time {
                buckets,
                width,
                epoch,
            } => {
                let slot = Ring::slot(*epoch, *width, now);
                let bucket = &mut buckets[(slot % TIME_BUCKETS as u64) as usize];
                if bucket.slot != slot {
                    *bucket = Bucket {
                        slot,
                        ..Bucket::default()
                    };
                }
                bucket.calls += 1;
                bucket.failures += u32::from(failure);
                bucket.slow += u32::from(slow);
                let oldest = slot.saturating_sub(TIME_BUCKETS as u64 - 1);
                buckets
                    .iter()
                    .filter(|b| b.calls > 0 && b.slot >= oldest && b.slot <= slot)
                    .fold((0, 0, 0), |(c, f, s), b| {
                        (c + b.calls, f + b.failures, s + b.slow)
                    })
            }
        }
    }
}

/// The circuit breaker state machine, with time passed in.
///
/// Closed → Open when a trip condition holds after a counted outcome; Open → HalfOpen on the
/// first [`acquire`](Self::acquire) after the open period; HalfOpen → Closed after
/// `half_open_probes` successful probes; HalfOpen → Open on the first failed (or slow) probe.
///
/// Only outcomes for which [`OutcomeKind::counts_for_breaker`](crate::OutcomeKind::counts_for_breaker)
/// holds are failures; [`Outcome::SUCCESS`] is a success; everything else (quota throttles,
/// fatal client errors) is ignored, as if the call had not been made.
///
/// ```
/// use std::time::Duration;
/// use tokio::time::Instant;
/// use tower_headroom::breaker::{BreakerConfig, BreakerCore, State};
/// use tower_headroom::{Outcome, OutcomeKind};
///
/// let config = BreakerConfig::builder().consecutive_failures(2).open_jitter(0.0).build()?;
/// let now = Instant::now();
/// let mut breaker = BreakerCore::new(config, now);
/// for _ in 0..2 {
///     let permit = breaker.acquire(now).unwrap();
///     breaker.record(permit, Outcome::new(OutcomeKind::Unavailable), Duration::ZERO, now);
/// }
/// assert_eq!(breaker.state(), State::Open);
/// assert_eq!(breaker.acquire(now).unwrap_err().retry_in, Duration::from_secs(30));
/// # Ok::<(), tower_headroom::breaker::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct BreakerCore {
    config: BreakerConfig,
    state: State,
    /// Bumped on every transition, so permits from an earlier state are recognised.
    generation: u64,
    consecutive: u32,
    ring: Ring,
    open_until: Instant,
    /// Failed half-open periods since the last close, for `open_backoff`.
    reopenings: u32,
    probes_in_flight: u32,
    probe_successes: u32,
    rng: fastrand::Rng,
}

impl BreakerCore {
    /// A closed breaker. The window is allocated here, once.
    pub fn new(config: BreakerConfig, now: Instant) -> Self {
        let rng = match config.seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        };
        BreakerCore {
            ring: Ring::new(config.window, now),
            config,
            state: State::Closed,
            generation: 0,
            consecutive: 0,
            open_until: now,
            reopenings: 0,
            probes_in_flight: 0,
            probe_successes: 0,
            rng,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The current state. An open breaker whose period has ended still reports `Open` until
    /// the next [`acquire`](Self::acquire) moves it to half-open.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether [`acquire`](Self::acquire) would admit a call now, without changing anything.
    pub fn would_admit(&self, now: Instant) -> Result<(), Open> {
        match self.state {
            State::Closed => Ok(()),
            State::Open if now >= self.open_until => Ok(()),
            State::Open => Err(Open {
                retry_in: self.open_until - now,
            }),
            State::HalfOpen if self.probe_slots_left() > 0 => Ok(()),
            State::HalfOpen => Err(self.probe_busy()),
        }
    }

    /// Asks to make a call. An open breaker whose period has ended moves to half-open here;
    /// use [`acquire_reporting`](Self::acquire_reporting) to learn of that transition.
    pub fn acquire(&mut self, now: Instant) -> Result<Permit, Open> {
        self.acquire_reporting(now).0
    }

    /// [`acquire`](Self::acquire), also returning the transition it caused.
    pub fn acquire_reporting(
        &mut self,
        now: Instant,
    ) -> (Result<Permit, Open>, Option<Transition>) {
        if let Err(open) = self.would_admit(now) {
            return (Err(open), None);
        }
        // Admitted while open: the period has ended, so this call is the first probe. Entering
        // half-open frees every probe slot, and `half_open_probes` is at least 1.
        let transition = if self.state == State::Open {
            self.enter(State::HalfOpen, now)
        } else {
            None
        };
        let probe = self.state == State::HalfOpen;
        if probe {
            debug_assert!(self.probe_slots_left() > 0);
            self.probes_in_flight += 1;
        }
        let permit = Permit {
            generation: self.generation,
            probe,
        };
        (Ok(permit), transition)
    }

    /// Records the outcome of a call made under `permit`, `latency` after it started.
    /// Returns the transition it caused, if any.
    pub fn record(
        &mut self,
        permit: Permit,
        outcome: Outcome,
        latency: Duration,
        now: Instant,
    ) -> Option<Transition> {
        if permit.generation != self.generation {
            return None;
        }
        let failure = outcome.kind.counts_for_breaker();
        if !failure && !outcome.is_success() {
            // A quota throttle or a client error: no evidence about the backend either way.
            self.release(permit);
            return None;
        }
        let slow = self
            .config
            .slow_call
            .is_some_and(|(threshold, _)| latency >= threshold);
        match self.state {
            State::Closed => {
                self.consecutive = if failure { self.consecutive + 1 } else { 0 };
                let (calls, failures, slow_calls) = self.ring.push(failure, slow, now);
                if self.should_trip(calls, failures, slow_calls) {
                    return self.enter(State::Open, now);
                }
                None
            }
            State::HalfOpen => {
                self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
                if failure || slow {
                    return self.enter(State::Open, now);
                }
                self.probe_successes += 1;
                if self.probe_successes >= self.config.half_open_probes {
                    return self.enter(State::Closed, now);
                }
                None
            }
            State::Open => None,
        }
    }

    /// Gives back a permit whose call was abandoned (its future dropped) before an outcome was
    /// known. The call counts as neither success nor failure; a half-open probe slot is freed.
    pub fn release(&mut self, permit: Permit) {
        if permit.generation == self.generation && permit.probe && self.state == State::HalfOpen {
            self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
        }
    }

    /// Opens the breaker now (an operator's override); it half-opens after the usual period.
    pub fn trip(&mut self, now: Instant) -> Option<Transition> {
        self.enter(State::Open, now)
    }

    /// Closes the breaker now and clears its window.
    pub fn reset(&mut self, now: Instant) -> Option<Transition> {
        self.enter(State::Closed, now)
    }

    fn probe_slots_left(&self) -> u32 {
        self.config
            .half_open_probes
            .saturating_sub(self.probes_in_flight + self.probe_successes)
    }

    fn probe_busy(&self) -> Open {
        Open {
            retry_in: self.config.open_for.min(Duration::from_secs(1)),
        }
    }

    fn should_trip(&self, calls: u32, failures: u32, slow: u32) -> bool {
        let c = &self.config;
        if c.consecutive_failures
            .is_some_and(|n| self.consecutive >= n)
        {
            return true;
        }
        if calls < c.minimum_calls {
            return false;
        }
        let reached = |count: u32, rate: f64| f64::from(count) >= rate * f64::from(calls);
        c.failure_rate.is_some_and(|rate| reached(failures, rate))
            || c.slow_call.is_some_and(|(_, rate)| reached(slow, rate))
    }

    fn enter(&mut self, to: State, now: Instant) -> Option<Transition> {
        let from = self.state;
        self.generation += 1;
        self.state = to;
        self.probes_in_flight = 0;
        self.probe_successes = 0;
        match to {
            State::Open => {
                if from == State::HalfOpen {
                    self.reopenings = self.reopenings.saturating_add(1);
                }
                let base = match self.config.open_backoff {
                    Some((multiplier, max)) => {
                        let factor = multiplier.powi(self.reopenings.min(64) as i32);
                        Duration::try_from_secs_f64(self.config.open_for.as_secs_f64() * factor)
                            .map_or(max, |d| d.min(max))
                    }
                    None => self.config.open_for,
                };
                let extra = base.mul_f64(self.config.open_jitter * self.rng.f64());
                self.open_until = now + base + extra;
            }
            State::Closed => {
                self.reopenings = 0;
                self.consecutive = 0;
                self.ring.clear(now);
            }
            State::HalfOpen => {}
        }
        (from != to).then_some(Transition { from, to })
    }
}
