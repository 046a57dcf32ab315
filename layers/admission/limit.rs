//! Configuration: [`Limit`] (per key), [`Accounting`], [`Learning`], [`Priority`], [`Tenant`]
//! and the typed [`ConfigError`].

use std::sync::Arc;
use std::time::Duration;

use super::long::{self, Window};
use crate::nanos;

/// The largest limit per window accepted (requests or units); beyond it the arithmetic would
/// lose its guarantees, and no real quota is that large.
pub const MAX_LIMIT: u64 = 1 << 50;
/// The longest window accepted.
pub const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// The longest burst credit accepted.
pub const MAX_BURST: Duration = Duration::from_secs(24 * 3600);
/// The most tenants a [`Limit`] may share between.
pub const MAX_TENANTS: usize = 1024;

pub use crate::error::ConfigError;

/// How urgently a call wants its quota: interactive calls go before batch calls when both wait.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Priority {
    /// A user is waiting (the default): booked at once, in FIFO order.
    #[default]
    Interactive,
    /// Background work: admitted only when no interactive call of the same key is waiting for
    /// the capacity, and (with [`LimitBuilder::interactive_reserve`]) only while a cushion is
    /// left for interactive arrivals.
    Batch,
}

impl Priority {
    /// How long a call of this priority may wait for quota (and, in a stack, for its retries)
    /// when neither the call nor its stack sets a [`Deadline`](crate::deadline::Deadline):
    /// a minute for interactive calls (a user is waiting; a minute covers one full quota
    /// window), fifteen minutes for batch calls (they queue behind interactive ones).
    pub const fn default_wait(self) -> Duration {
        match self {
            Priority::Interactive => Duration::from_secs(60),
            Priority::Batch => Duration::from_secs(15 * 60),
        }
    }
}

/// An application (tenant) drawing on a shared quota; an index into the weights given to
/// [`LimitBuilder::shares`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tenant(pub u16);

/// How the quota learns the share of a shared quota that is really its own, from throttles
/// its own accounting did not predict (another caller on the same account, a quota lower than
/// configured). The rules, per dimension (requests, units) of a key:
///
/// - **One cut per run of throttles.** The first throttle of a run sets the effective limit to
///   a little under (95% of) what this client itself spent in the trailing window when the
///   throttle came — the provider's window was full, so the others spent the rest — never
///   below `max_cut` of the effective limit before it, nor below `floor` of the configured
///   limit. The throttles that follow in the same run (the same full provider window, seen
///   again; with a sliding window, until a probe gets through) change nothing. A new run
///   within two windows of the last cut cuts deeper (95% of 95%, …): the limit is still above
///   the share that fits. Cuts are at least a quarter window apart; with a token bucket, a
///   window.
/// - **Hold and probe** (sliding window). After the first throttle of a run, the key's calls
///   are held back a 32nd of a window, then one call probes; each throttled probe doubles the
///   hold (up to a window). So a full provider window costs a handful of throttles, not one
///   per call sent into it. A probe that gets through ends the run and releases the others.
/// - **Regain after a quiet window.** Once a whole window has passed without a throttle, the
///   gap to the configured limit shrinks by `regain` per further window (continuously, so a
///   queue of waiting calls is let through gradually): 70% by default, so the limit is within
///   10% of the configured one about three windows after the others stop (one quiet window,
///   then two of regain from a cut to half).
/// - A throttle that names a partition or a key ([`ThrottleScope::Partition`](crate::ThrottleScope::Partition))
///   never moves the limit: the key's budget was not the problem. A server `Retry-After` on a
///   throttle holds the key's calls back for that long.
/// - A daily throttle ([`ThrottleScope::Daily`](crate::ThrottleScope::Daily)) never moves it
///   either: the minute had room, the day did not. It spends the key's longest
///   [long window](super::Window), or holds a key without one for
///   [`DAILY_HOLD`](super::DAILY_HOLD) and then lets one call probe.
///
/// Measured on the showdown's shared account (scenario 6: a neighbour spends about 31% of a
/// 200,000 TPM quota for five minutes, then leaves): see the README.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Learning {
    max_cut: f64,
    regain: f64,
    floor: f64,
}

impl Learning {
    /// The default: a cut keeps at least half of the effective limit, each window after a
    /// quiet one regains 70% of the gap, and the floor is 10% of the configured limit.
    pub const SHARED: Learning = Learning {
        max_cut: 0.5,
        regain: 0.7,
        floor: 0.1,
    };
    /// No learning: the configured limit is the limit.
    pub const OFF: Learning = Learning {
        max_cut: 1.0,
        regain: 0.0,
        floor: 1.0,
    };

    /// Learning with the given fractions, checked when the [`Limit`] is built: `max_cut` (in
    /// (0, 1]) is the least share of the effective limit one cut keeps, `regain` (in [0, 1])
    /// the share of the gap to the configured limit one quiet window gives back, `floor` (in
    /// (0, 1]) the least share of the configured limit ever kept.
    pub const fn new(max_cut: f64, regain: f64, floor: f64) -> Self {
        Learning {
            max_cut,
            regain,
            floor,
        }
    }
}

impl Default for Learning {
    fn default() -> Self {
        Learning::SHARED
    }
}

/// How a limit's provider counts what is spent against it, and so how the quota counts it.
///
/// | model | provider | guarantee (checked by the proptests) |
/// |---|---|---|
/// | [`SlidingWindow`](Accounting::SlidingWindow) (the default) | a quota per fixed window whose phase the client cannot know: Amazon Bedrock's tokens per minute | no interval of one window length ever holds more than the limit, so no provider window of *any* phase does |
/// | [`TokenBucket`](Accounting::TokenBucket) | a bucket refilled continuously, with burst credit: DynamoDB's per-second capacity (up to 300 s of burst), Anthropic's limits (documented as a token bucket), OpenAI's (their resets count down to a full limit) | what is admitted in any window is at most the limit plus the bucket's capacity |
///
/// The sources of these facts are in the [module docs](super#what-the-providers-count);
/// [`Profile::limit`](crate::Profile::limit) starts a limit with the right model per profile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Accounting {
    /// In-flight calls count at their estimate and settled calls at their real spend over the
    /// trailing window (kept in 256 time slots per window; a slot's spend leaves the window
    /// with the slot's end, up to one slot late, never early). A call is admitted when the
    /// window has room for it, so bursts within the limit pass at once; a settle gives the
    /// slack back at once.
    #[default]
    SlidingWindow,
    /// A token bucket that allows debt, refilled at `limit / window`, holding at most
    /// `burst` of it as credit (see the [module docs](super#the-token-bucket-model)).
    TokenBucket {
        /// The unused capacity kept as burst credit, as a duration of the limit.
        burst: Duration,
    },
}

/// The quota of one key: requests and/or units per window, how the provider counts them,
/// shares, queueing and learning; and [long windows](super::Window) beside the window
/// ([`LimitBuilder::also`]), e.g. tokens per day.
///
/// ```
/// use std::time::Duration;
/// use tower_headroom::admission::Limit;
///
/// // Bedrock: 200,000 tokens per minute per model and region, counted in windows whose phase
/// // the client does not know (the default sliding-window accounting).
/// let bedrock = Limit::per_minute().units(200_000).build()?;
/// // DynamoDB: 1,000 WCU per second, keeping up to 300 s of unused capacity.
/// let table = Limit::per_second().units(1_000).burst(Duration::from_secs(300)).build()?;
/// // Bedrock with its tokens per day too (by default TPM × 1,440; set the console's number):
/// // a call is admitted only when both the minute and the day have room.
/// let tpd = Limit::per_minute().units(200_000).units_per_day(288_000_000).build()?;
/// assert_eq!(tpd.long_windows()[0].duration(), Duration::from_secs(86_400));
/// # let _ = (bedrock, table);
/// # Ok::<(), tower_headroom::admission::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Limit {
    pub(crate) window: u64,
    pub(crate) requests: Option<u64>,
    pub(crate) units: Option<u64>,
    pub(crate) accounting: Accounting,
    /// Burst credit in nanoseconds of the limit (token bucket only; zero for windows).
    pub(crate) burst: u64,
    /// The credit a token bucket holds when its key is first used, in nanoseconds of the
    /// limit (at most `burst`; zero for windows): [`LimitBuilder::initial_credit`].
    pub(crate) initial: u64,
    /// The share of the capacity (bucket) or of the limit (window) that batch and borrowing
    /// calls leave to interactive ones; `None`: the window's automatic reserve.
    pub(crate) reserve_ppm: Option<u64>,
    pub(crate) shares: Option<Arc<[u64]>>,
    /// The sum of the share weights (0 without shares).
    pub(crate) share_total: u64,
    pub(crate) share_burst: u64,
    pub(crate) max_queue: u32,
    pub(crate) learning: LearningRules,
    /// Long windows, shortest first ([`LimitBuilder::also`]).
    pub(crate) long: Box<[Window]>,
}

/// [`Learning`] in the integer form the arithmetic uses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LearningRules {
    pub(crate) max_cut_ppm: u64,
    pub(crate) regain_ppm: u64,
    pub(crate) floor_ppm: u64,
}

impl LearningRules {
    pub(crate) fn off(&self) -> bool {
        self.floor_ppm >= 1_000_000 && self.max_cut_ppm >= 1_000_000
    }
}

impl Limit {
    /// A builder for limits per `window`, counted as a [sliding window](Accounting::SlidingWindow)
    /// unless told otherwise.
    pub fn per_window(window: Duration) -> LimitBuilder {
        LimitBuilder {
            window,
            requests: None,
            units: None,
            accounting: Accounting::SlidingWindow,
            initial: None,
            reserve: None,
            shares: None,
            share_burst: None,
            max_queue: 1024,
            learning: Learning::SHARED,
            long: Vec::new(),
        }
    }

    /// A builder for limits per minute (Bedrock's tokens per minute).
    pub fn per_minute() -> LimitBuilder {
        Limit::per_window(Duration::from_secs(60))
    }

    /// A builder for limits per second (DynamoDB capacity units; add DynamoDB's
    /// [burst](LimitBuilder::burst) of 300 s).
    pub fn per_second() -> LimitBuilder {
        Limit::per_window(Duration::from_secs(1))
    }

    /// The window.
    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.window)
    }

    /// Requests per window, if limited.
    pub fn requests(&self) -> Option<u64> {
        self.requests
    }

    /// Units per window, if limited.
    pub fn units(&self) -> Option<u64> {
        self.units
    }

    /// How the provider counts, and so how the quota counts.
    pub fn accounting(&self) -> Accounting {
        self.accounting
    }

    /// The credit a token bucket starts with ([`LimitBuilder::initial_credit`]); zero for a
    /// sliding window.
    pub fn initial_credit(&self) -> Duration {
        Duration::from_nanos(self.initial)
    }

    /// The long windows ([`LimitBuilder::also`]), shortest first.
    pub fn long_windows(&self) -> &[Window] {
        &self.long
    }
}

/// Builds a [`Limit`]; see [`Limit::per_window`].
#[derive(Clone, Debug)]
pub struct LimitBuilder {
    window: Duration,
    requests: Option<u64>,
    units: Option<u64>,
    accounting: Accounting,
    initial: Option<Duration>,
    reserve: Option<f64>,
    shares: Option<Vec<u64>>,
    share_burst: Option<Duration>,
    max_queue: u32,
    learning: Learning,
    long: Vec<Window>,
}

impl LimitBuilder {
    /// Requests per window (RPM for a one-minute window).
    pub fn requests(mut self, limit: u64) -> Self {
        self.requests = Some(limit);
        self
    }

    /// Units per window (TPM for a one-minute window, capacity units per second).
    pub fn units(mut self, limit: u64) -> Self {
        self.units = Some(limit);
        self
    }

    /// How the provider counts (default [`Accounting::SlidingWindow`]).
    pub fn accounting(mut self, accounting: Accounting) -> Self {
        self.accounting = accounting;
        self
    }

    /// Counts as a [token bucket](Accounting::TokenBucket) keeping up to `credit` of unused
    /// capacity (DynamoDB keeps 300 s; OpenAI's and Anthropic's buckets hold one window).
    /// Zero paces calls at the limit. A key's bucket starts with one window of credit (or the
    /// whole burst, when that is shorter) and saves more only from capacity it leaves unused,
    /// as DynamoDB's does; [`initial_credit`](Self::initial_credit) changes the start.
    pub fn burst(mut self, credit: Duration) -> Self {
        self.accounting = Accounting::TokenBucket { burst: credit };
        self
    }

    /// The credit a token bucket holds when its key is first used, as a duration of the limit
    /// (default: one window, or the burst when that is shorter). A provider's bucket starts
    /// where the provider starts it and fills only with capacity left unused: a new DynamoDB
    /// table starts with about one second of capacity, not with its 300 s of burst, so a
    /// freshly started process must not believe in five minutes of saved capacity it may not
    /// have. Set it to the burst for a bucket known to be full (a test, a table idle for
    /// longer than its burst). At most the burst ([`ConfigError`] naming `initial_credit`
    /// otherwise, or when the limit is not a token bucket).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio::time::Instant;
    /// use tower_headroom::admission::{Cost, Grant, Limit, Quota};
    ///
    /// // 100 WCU with 300 s of burst: the first second's 100 units pass at once, the next
    /// // call waits for the refill.
    /// let quota = Quota::new(Limit::per_second().units(100).burst(Duration::from_secs(300)).build()?);
    /// let now = Instant::now();
    /// let first = quota.reserve(&"orders", Cost::units(100), now)?;
    /// assert_eq!(first.grant(), Grant::Now);
    /// let second = quota.reserve(&"orders", Cost::units(50), now)?;
    /// assert_eq!(second.grant(), Grant::At(now + Duration::from_millis(500)));
    /// // A bucket known to be full starts full.
    /// let full = Limit::per_second().units(100).burst(Duration::from_secs(300))
    ///     .initial_credit(Duration::from_secs(300)).build()?;
    /// let quota = Quota::new(full);
    /// assert_eq!(quota.reserve(&"orders", Cost::units(20_000), now)?.grant(), Grant::Now);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn initial_credit(mut self, credit: Duration) -> Self {
        self.initial = Some(credit);
        self
    }

    /// The fraction (0..=1) that batch and borrowing calls leave for interactive ones: of the
    /// burst credit for a token bucket (default 0), of the limit for a sliding window (default:
    /// automatic, a 128th of the trailing window's interactive spend and at least one mean
    /// interactive call, so that interactive arrivals find room while batch calls queue).
    pub fn interactive_reserve(mut self, fraction: f64) -> Self {
        self.reserve = Some(fraction);
        self
    }

    /// Guaranteed shares for tenants: tenant `i` ([`Tenant`]`(i)`) is guaranteed
    /// `weights[i] / sum(weights)` of the limit and may borrow capacity the others leave idle.
    /// Calls without a tenant only borrow.
    pub fn shares(mut self, weights: &[u64]) -> Self {
        self.shares = Some(weights.to_vec());
        self
    }

    /// How much unused guaranteed share a tenant keeps, as a duration (default a quarter of
    /// the window), so that a tenant whose calls arrive in clumps keeps its share.
    pub fn share_burst(mut self, credit: Duration) -> Self {
        self.share_burst = Some(credit);
        self
    }

    /// The most calls that may wait per key and lane (priority × within-share/borrowing);
    /// further calls are rejected at once. Default 1024.
    pub fn max_queue(mut self, waiters: u32) -> Self {
        self.max_queue = waiters;
        self
    }

    /// How the limit learns from throttles (default [`Learning::SHARED`]).
    pub fn learning(mut self, learning: Learning) -> Self {
        self.learning = learning;
        self
    }

    /// A budget over a longer window as well (Bedrock's tokens per day): a call is admitted
    /// only when this window has room too. A long window is a plain budget beside the limit's
    /// own window, which keeps its lanes, shares and learning; see [`Window`] and the
    /// [module docs](super::Window). At most 3 long windows, each longer than the limit's
    /// window and at most a day, each limit at least the limit's own per-window limit of the
    /// same dimension ([`ConfigError`] otherwise).
    pub fn also(mut self, window: Window) -> Self {
        self.long.push(window);
        self
    }

    /// Units per day as well: `also(Window::days(1).units(limit))`. Bedrock's tokens per day
    /// are TPM × 1,440 by default; set the number the console shows.
    pub fn units_per_day(self, limit: u64) -> Self {
        self.also(Window::days(1).units(limit))
    }

    /// Requests per day as well: `also(Window::days(1).requests(limit))`.
    pub fn requests_per_day(self, limit: u64) -> Self {
        self.also(Window::days(1).requests(limit))
    }

    /// Checks the configuration.
    pub fn build(self) -> Result<Limit, ConfigError> {
        if self.window.is_zero() || self.window > MAX_WINDOW {
            return Err(ConfigError::new(
                "window",
                self.window,
                "must be more than zero and at most 24 h",
            ));
        }
        for (field, value) in [("requests", self.requests), ("units", self.units)] {
            if let Some(v) = value {
                if v == 0 || v > MAX_LIMIT {
                    return Err(ConfigError::new(
                        field,
                        v,
                        "must be at least 1 and at most 2^50 per window",
                    ));
                }
            }
        }
        if self.requests.is_none() && self.units.is_none() {
            return Err(ConfigError::new(
                "requests",
                None::<u64>,
                "set a requests or a units limit (or both)",
            ));
        }
        let burst = match self.accounting {
            Accounting::SlidingWindow => Duration::ZERO,
            Accounting::TokenBucket { burst } => burst,
        };
        if burst > MAX_BURST {
            return Err(ConfigError::new("burst", burst, "must be at most 24 h"));
        }
        let initial = match (self.accounting, self.initial) {
            (Accounting::SlidingWindow, None) => Duration::ZERO,
            (Accounting::SlidingWindow, Some(credit)) => {
                return Err(ConfigError::new(
                    "initial_credit",
                    credit,
                    "applies to a token bucket only (set `burst`)",
                ));
            }
            (Accounting::TokenBucket { .. }, None) => self.window.min(burst),
            (Accounting::TokenBucket { .. }, Some(credit)) if credit > burst => {
                return Err(ConfigError::new(
                    "initial_credit",
                    credit,
                    "must be at most the burst credit",
                ));
            }
            (Accounting::TokenBucket { .. }, Some(credit)) => credit,
        };
        if let Some(reserve) = self.reserve {
            if !(0.0..=1.0).contains(&reserve) {
                return Err(ConfigError::new(
                    "interactive_reserve",
                    reserve,
                    "must be a fraction between 0 and 1",
                ));
            }
        }
        let (shares, share_total) = match self.shares {
            None => (None, 0),
            Some(weights) => {
                if weights.is_empty() || weights.len() > MAX_TENANTS {
                    return Err(ConfigError::new(
                        "shares",
                        weights.len(),
                        "give between 1 and 1024 tenant weights",
                    ));
                }
                let total = weights.iter().try_fold(0u64, |a, w| a.checked_add(*w));
                let total = match total {
                    Some(t) if t > 0 && t <= MAX_LIMIT => t,
                    _ => {
                        return Err(ConfigError::new(
                            "shares",
                            weights,
                            "weights must add up to between 1 and 2^50",
                        ));
                    }
                };
                (Some(Arc::from(weights)), total)
            }
        };
        let share_burst = self.share_burst.unwrap_or(self.window / 4);
        if share_burst > MAX_BURST {
            return Err(ConfigError::new(
                "share_burst",
                share_burst,
                "must be at most 24 h",
            ));
        }
        if self.max_queue == 0 {
            return Err(ConfigError::new("max_queue", 0, "must be at least 1"));
        }
        let l = self.learning;
        let fraction = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
        if !fraction(l.max_cut) || l.max_cut == 0.0 {
            return Err(ConfigError::new(
                "learning.max_cut",
                l.max_cut,
                "must be a fraction in (0, 1]",
            ));
        }
        if !fraction(l.regain) {
            return Err(ConfigError::new(
                "learning.regain",
                l.regain,
                "must be a fraction in [0, 1]",
            ));
        }
        if !fraction(l.floor) || l.floor == 0.0 {
            return Err(ConfigError::new(
                "learning.floor",
                l.floor,
                "must be a fraction in (0, 1]",
            ));
        }
        let ppm = |v: f64| (v * 1e6).round() as u64;
        let long = long::check(self.window, [self.requests, self.units], self.long)?;
        Ok(Limit {
            window: nanos(self.window),
            requests: self.requests,
            units: self.units,
            accounting: self.accounting,
            burst: nanos(burst),
            initial: nanos(initial),
            reserve_ppm: self.reserve.map(ppm),
            shares,
            share_total,
            share_burst: nanos(share_burst),
            max_queue: self.max_queue,
            learning: LearningRules {
                max_cut_ppm: ppm(l.max_cut).max(1),
                regain_ppm: ppm(l.regain),
                floor_ppm: ppm(l.floor).max(1),
            },
            long,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_field_and_value() {
        let e = Limit::per_minute().requests(0).build().unwrap_err();
        assert_eq!(e.field(), "requests");
        assert!(e.to_string().contains("`requests` = 0"), "{e}");
        let e = Limit::per_window(Duration::ZERO)
            .units(5)
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "window");
        let e = Limit::per_minute().units(u64::MAX).build().unwrap_err();
        assert!(e.to_string().contains("18446744073709551615"), "{e}");
        assert_eq!(Limit::per_minute().build().unwrap_err().field(), "requests");
        let e = Limit::per_minute()
            .units(5)
            .interactive_reserve(f64::NAN)
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "interactive_reserve");
        let e = Limit::per_minute()
            .units(5)
            .shares(&[u64::MAX, 1])
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "shares");
        let e = Limit::per_minute()
            .units(5)
            .learning(Learning::new(0.5, 0.01, f64::INFINITY))
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "learning.floor");
        assert_eq!(
            Limit::per_minute()
                .units(5)
                .max_queue(0)
                .build()
                .unwrap_err()
                .field(),
            "max_queue"
        );
    }

    #[test]
    fn a_bucket_starts_with_one_window_of_credit_unless_told() {
        let bucket = |b: LimitBuilder| b.units(100).burst(Duration::from_secs(300));
        let l = bucket(Limit::per_second()).build().unwrap();
        assert_eq!(l.initial_credit(), Duration::from_secs(1));
        // A burst shorter than the window: the bucket starts full.
        let l = Limit::per_minute()
            .units(100)
            .burst(Duration::from_secs(10))
            .build()
            .unwrap();
        assert_eq!(l.initial_credit(), Duration::from_secs(10));
        let l = bucket(Limit::per_second())
            .initial_credit(Duration::from_secs(300))
            .build()
            .unwrap();
        assert_eq!(l.initial_credit(), Duration::from_secs(300));
        let e = bucket(Limit::per_second())
            .initial_credit(Duration::from_secs(301))
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "initial_credit");
        assert!(e.to_string().contains("301s"), "{e}");
        let e = Limit::per_minute()
            .units(5)
            .initial_credit(Duration::from_secs(1))
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "initial_credit");
        assert_eq!(
            Limit::per_minute()
                .units(5)
                .build()
                .unwrap()
                .initial_credit(),
            Duration::ZERO
        );
    }
}
