//! The sans-IO circuit breaker: a state machine that takes the time as an argument.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use super::config::BreakerConfig;
use super::ring::Ring;
use crate::Outcome;

/// The state of a circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
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
    /// The run of failures the last success ended, restored when that success turns out to
    /// have failed ([`record_late`](Self::record_late)) before anything else was counted.
    ended_run: u32,
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
            ended_run: 0,
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
                if failure {
                    self.consecutive += 1;
                } else {
                    self.ended_run = self.consecutive;
                    self.consecutive = 0;
                }
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

    /// Records that a call already [recorded](Self::record) as a success failed after all, at
    /// `now`: a streamed response whose `200` was counted, and whose stream then carried an
    /// error (see the SDK adapter's stream docs). Returns the transition it caused, if any.
    ///
    /// Only an outcome that [counts for the breaker](crate::OutcomeKind::counts_for_breaker)
    /// changes anything, and it counts in the breaker's current state, by the same rules as a
    /// failure: closed — one success in the window becomes a failure (a failure is added when
    /// the window holds no success any more), the failure joins the run of consecutive failures
    /// (when nothing failed since the last success, the run that success ended is taken up
    /// again: that success may be this very call) and the trip conditions are checked;
    /// half-open — the breaker opens again, as on a failed probe; open — ignored. The call
    /// stays one call: a closed window's call count does not grow when a success is turned.
    /// The window's counts are exact; the run is an approximation for overlapping streams
    /// (two `200`s in a row, then both failures, count a run of two even after earlier
    /// failures: the second success ended an empty run).
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
    ///     breaker.record(permit, Outcome::SUCCESS, Duration::ZERO, now);
    ///     breaker.record_late(Outcome::new(OutcomeKind::Unavailable), now);
    /// }
    /// assert_eq!(breaker.state(), State::Open);
    /// # Ok::<(), tower_headroom::breaker::ConfigError>(())
    /// ```
    pub fn record_late(&mut self, outcome: Outcome, now: Instant) -> Option<Transition> {
        if !outcome.kind.counts_for_breaker() {
            return None;
        }
        match self.state {
            State::Closed => {
                // No failure since the last success: that success may be this very call, so
                // the run it ended goes on.
                if self.consecutive == 0 {
                    self.consecutive = self.ended_run;
                }
                self.consecutive += 1;
                let (calls, failures, slow_calls) = self.ring.amend_to_failure(now);
                if self.should_trip(calls, failures, slow_calls) {
                    return self.enter(State::Open, now);
                }
                None
            }
            State::HalfOpen => self.enter(State::Open, now),
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
                self.ended_run = 0;
                self.ring.clear(now);
            }
            State::HalfOpen => {}
        }
        (from != to).then_some(Transition { from, to })
    }
}
