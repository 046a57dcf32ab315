//! The retry decision: attempts, deadline, budget and backoff, in one place.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::backoff::{Backoff, BackoffBuilder};
use super::budget::RetryBudget;
use super::error::RetryInfo;
use crate::deadline::Deadline;
use crate::error::ConfigError;
use crate::{Outcome, OutcomeKind, ThrottleScope};

/// Why the retry layer stopped retrying a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StopReason {
    /// The outcome is never retried ([`OutcomeKind::Fatal`], or a timeout when timeouts are not
    /// retried).
    NotRetryable,
    /// The call used all of its attempts.
    MaxAttempts,
    /// The next retry would start after the call's deadline.
    Deadline,
    /// The server asked for a longer wait than the policy honours; retrying earlier would only
    /// be throttled again.
    ServerDelayTooLong,
    /// The retry budget is spent: too many retries relative to recent requests.
    Budget,
    /// Every circuit breaker on the call's way is open: the call fails fast, as the breakers
    /// say (nothing was sent; waiting for one to half-open would defeat them).
    CircuitOpen,
    /// A per-day quota is spent ([`ThrottleScope::Daily`]) and the server did not say it
    /// returns within the call's deadline: retrying every minute would only spend the budget.
    QuotaExhausted,
}

impl StopReason {
    /// Every reason, in a fixed order.
    pub const ALL: [StopReason; 7] = [
        StopReason::NotRetryable,
        StopReason::MaxAttempts,
        StopReason::Deadline,
        StopReason::ServerDelayTooLong,
        StopReason::Budget,
        StopReason::CircuitOpen,
        StopReason::QuotaExhausted,
    ];

    /// A short, stable name, used as a metric label.
    pub const fn as_str(&self) -> &'static str {
        match self {
            StopReason::NotRetryable => "not_retryable",
            StopReason::MaxAttempts => "max_attempts",
            StopReason::Deadline => "deadline",
            StopReason::ServerDelayTooLong => "server_delay_too_long",
            StopReason::Budget => "budget",
            StopReason::CircuitOpen => "circuit_open",
            StopReason::QuotaExhausted => "quota_exhausted",
        }
    }

    pub(crate) const fn index(&self) -> usize {
        *self as usize
    }

    fn describe(&self) -> &'static str {
        match self {
            StopReason::NotRetryable => "the failure is not retryable",
            StopReason::MaxAttempts => "no attempts left",
            StopReason::Deadline => "the next retry would pass the deadline",
            StopReason::ServerDelayTooLong => {
                "the server asked for a longer wait than the policy allows"
            }
            StopReason::Budget => "the retry budget is spent",
            StopReason::CircuitOpen => "every circuit breaker on the way is open",
            StopReason::QuotaExhausted => {
                "a per-day quota is spent and does not return within the deadline"
            }
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// What to do after an attempt that did not succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Retry after this delay.
    Retry(Duration),
    /// Stop, for this reason.
    Stop(StopReason),
}

/// The progress of one call through its attempts, owned by the call.
#[derive(Clone, Debug)]
pub struct RetryState {
    attempts: u32,
    /// Refusals by this client before anything was sent (see [`Outcome::local`]).
    refusals: u32,
    started: Instant,
    deadline: Option<Deadline>,
    previous_delay: Duration,
    waited: Duration,
    rng: Option<fastrand::Rng>,
}

impl RetryState {
    /// Attempts finished so far (sent to the service: local refusals are not attempts).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// When the first attempt started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The call's deadline: no retry starts after it.
    pub fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }

    /// The total time spent waiting between attempts so far.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// Records that the latest attempt succeeded (failed attempts are recorded by
    /// [`RetryPolicy::decide`]).
    pub fn succeeded(&mut self) {
        self.attempts = self.attempts.saturating_add(1);
    }

    /// The attempts made and the time waited so far.
    pub fn info(&self) -> RetryInfo {
        RetryInfo {
            attempts: self.attempts,
            waited: self.waited,
        }
    }
}

/// When and how often to retry: the [`Backoff`] rules, a cap on attempts, an overall deadline
/// and a [`RetryBudget`].
///
/// Cloning is cheap and clones share the budget. The policy is a synchronous core: the
/// [`RetryLayer`](super::RetryLayer) calls [`start`](Self::start) when a call begins and
/// [`decide`](Self::decide) after every failed attempt, and the AWS SDK adapter drives the same
/// methods from the SDK's own retry loop.
///
/// Defaults: 4 attempts, a 2-minute deadline (well inside SigV4's 5-minute signature validity),
/// timeouts retried, the default [`Backoff`], and a budget of 10% retries per request over 10 s
/// with a floor of 10 retries per window.
///
/// ```
/// use std::time::Duration;
/// use tokio::time::Instant;
/// use tower_headroom::retry::{Decision, RetryPolicy, StopReason};
/// use tower_headroom::{Outcome, OutcomeKind};
///
/// let policy = RetryPolicy::builder().max_attempts(2).seed(1).build().unwrap();
/// let now = Instant::now();
/// let mut call = policy.start(now);
/// let unavailable = Outcome::new(OutcomeKind::Unavailable);
/// assert!(matches!(policy.decide(&mut call, &unavailable, now), Decision::Retry(_)));
/// assert_eq!(policy.decide(&mut call, &unavailable, now), Decision::Stop(StopReason::MaxAttempts));
/// assert_eq!(policy.decide(&mut call, &Outcome::FATAL, now), Decision::Stop(StopReason::NotRetryable));
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    inner: Arc<PolicyInner>,
}

struct PolicyInner {
    backoff: Backoff,
    max_attempts: u32,
    deadline: Option<Duration>,
    budget: Option<RetryBudget>,
    retry_timeouts: bool,
    seed: u64,
    calls: AtomicU64,
}

impl RetryPolicy {
    /// A builder with the defaults described above.
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder::default()
    }

    /// The backoff rules.
    pub fn backoff(&self) -> &Backoff {
        &self.inner.backoff
    }

    /// The most attempts a call may make, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.inner.max_attempts
    }

    /// The call's wait budget from its start when it carries no [`Deadline`], if any.
    pub fn deadline(&self) -> Option<Duration> {
        self.inner.deadline
    }

    /// Whether a timed-out attempt may be retried (it may have been executed).
    pub fn retries_timeouts(&self) -> bool {
        self.inner.retry_timeouts
    }

    /// The retry budget, if any.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.inner.budget.as_ref()
    }

    /// Begins a call at `now`: counts it in the budget and returns its state. The call's
    /// deadline is the [`Deadline`] in scope, else the policy's [`deadline`](Self::deadline)
    /// from `now`.
    pub fn start(&self, now: Instant) -> RetryState {
        let deadline = Deadline::current().or_else(|| {
            self.inner
                .deadline
                .map(|budget| Deadline::from_now(now, budget))
        });
        self.start_until(now, deadline)
    }

    /// Begins a call at `now` bound by `deadline` (`None`: bounded by attempts and budget only).
    pub fn start_until(&self, now: Instant, deadline: Option<Deadline>) -> RetryState {
        if let Some(budget) = &self.inner.budget {
            budget.deposit(now);
        }
        RetryState {
            attempts: 0,
            refusals: 0,
            started: now,
            deadline,
            previous_delay: Duration::ZERO,
            waited: Duration::ZERO,
            rng: None,
        }
    }

    /// Records that an attempt of the call ended with `outcome` at `now`, and decides whether to
    /// retry and after how long.
    ///
    /// The checks run cheapest first, and the budget is charged only when everything else
    /// allows the retry, so a stopped call never spends budget. An outcome this client
    /// produced before sending anything ([`Outcome::local`]) is not an attempt: it counts as a
    /// refusal (at most `max_attempts` of them per call) and never spends the budget, which
    /// bounds the load on the *server*. A local refusal by open breakers stops the call at
    /// once ([`StopReason::CircuitOpen`]: they fail it fast); one by admission is retried when
    /// its wait fits the call's deadline (an AWS SDK attempt may wait at most four minutes
    /// for admission, a call longer). A [daily throttle](ThrottleScope::Daily) is retried only
    /// when its `retry_after` ends within the deadline ([`spent_day`]); otherwise the call
    /// stops at once with [`StopReason::QuotaExhausted`], spending no budget.
    pub fn decide(&self, state: &mut RetryState, outcome: &Outcome, now: Instant) -> Decision {
        let inner = &*self.inner;
        let tries = if outcome.local {
            state.refusals = state.refusals.saturating_add(1);
            state.refusals
        } else {
            state.attempts = state.attempts.saturating_add(1);
            state.attempts
        };
        if !outcome.kind.is_retryable()
            || (outcome.kind == OutcomeKind::Timeout && !inner.retry_timeouts)
        {
            return Decision::Stop(StopReason::NotRetryable);
        }
        if outcome.local && outcome.kind == OutcomeKind::Unavailable {
            return Decision::Stop(StopReason::CircuitOpen);
        }
        if spent_day(outcome, state.deadline, now) {
            return Decision::Stop(StopReason::QuotaExhausted);
        }
        if tries >= inner.max_attempts {
            return Decision::Stop(StopReason::MaxAttempts);
        }
        let rng = state.rng.get_or_insert_with(|| {
            let call = inner.calls.fetch_add(1, Ordering::Relaxed);
            fastrand::Rng::with_seed(inner.seed ^ call.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        });
        let delay = match inner
            .backoff
            .delay(tries - 1, outcome, state.previous_delay, now, rng)
        {
            Ok(delay) => delay,
            Err(reason) => return Decision::Stop(reason),
        };
        if let Some(deadline) = state.deadline {
            match now.checked_add(delay) {
                Some(retry_at) if retry_at <= deadline.instant() => {}
                _ => return Decision::Stop(StopReason::Deadline),
            }
        }
        if let Some(budget) = inner.budget.as_ref().filter(|_| !outcome.local) {
            if !budget.withdraw(now) {
                return Decision::Stop(StopReason::Budget);
            }
        }
        state.previous_delay = delay;
        state.waited = state.waited.saturating_add(delay);
        Decision::Retry(delay)
    }
}

/// Whether `outcome` says a per-day quota is spent beyond `deadline`: a
/// [daily throttle](ThrottleScope::Daily) with no `retry_after`, or one that ends after the
/// deadline (without a deadline, any known `retry_after` counts as within it, and the backoff's
/// [`max_server_delay`](super::Backoff::max_server_delay) decides). The one rule the retry
/// policy and the AWS SDK adapter's stateless decision share.
///
/// ```
/// use std::time::Duration;
/// use tokio::time::Instant;
/// use tower_headroom::deadline::Deadline;
/// use tower_headroom::retry::spent_day;
/// use tower_headroom::{Outcome, ThrottleScope};
///
/// let now = Instant::now();
/// let deadline = Some(Deadline::from_now(now, Duration::from_secs(150)));
/// let daily = Outcome::throttled(ThrottleScope::Daily);
/// assert!(spent_day(&daily, deadline, now));
/// assert!(spent_day(&daily.with_retry_after(Duration::from_secs(3_600)), deadline, now));
/// assert!(!spent_day(&daily.with_retry_after(Duration::from_secs(30)), deadline, now));
/// assert!(!spent_day(&Outcome::throttled(ThrottleScope::Tokens), deadline, now));
/// ```
pub fn spent_day(outcome: &Outcome, deadline: Option<Deadline>, now: Instant) -> bool {
    if outcome.kind != OutcomeKind::Throttled(ThrottleScope::Daily) {
        return false;
    }
    match (outcome.retry_after, deadline) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(wait), Some(deadline)) => now
            .checked_add(wait)
            .is_none_or(|back| back > deadline.instant()),
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::builder()
            .build()
            .expect("the default retry policy is valid")
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("backoff", &self.inner.backoff)
            .field("max_attempts", &self.inner.max_attempts)
            .field("deadline", &self.inner.deadline)
            .field("budget", &self.inner.budget)
            .field("retry_timeouts", &self.inner.retry_timeouts)
            .finish()
    }
}

/// Builds a [`RetryPolicy`].
#[derive(Clone, Debug)]
pub struct RetryPolicyBuilder {
    backoff: BackoffBuilder,
    max_attempts: u32,
    deadline: Option<Duration>,
    budget: Option<BudgetSetting>,
    retry_timeouts: bool,
    seed: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
struct BudgetSetting {
    window: Duration,
    ratio: f64,
    min_retries: u32,
}

impl Default for RetryPolicyBuilder {
    fn default() -> Self {
        RetryPolicyBuilder {
            backoff: BackoffBuilder::default(),
            max_attempts: 4,
            deadline: Some(Duration::from_secs(120)),
            budget: Some(BudgetSetting {
                window: Duration::from_secs(10),
                ratio: 0.1,
                min_retries: 10,
            }),
            retry_timeouts: true,
            seed: None,
        }
    }
}

impl RetryPolicyBuilder {
    /// The most attempts per call, the first included (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// The call's wait budget when it carries no [`Deadline`]: no retry starts later than
    /// `deadline` after the first attempt started, and the layers inside (the fallback router,
    /// admission) wait no longer either. Bound each attempt's own duration with a timeout
    /// layer inside the retry layer.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Retries are bounded by attempts and budget only.
    pub fn no_deadline(mut self) -> Self {
        self.deadline = None;
        self
    }

    /// Replaces the backoff rules.
    pub fn backoff(mut self, backoff: BackoffBuilder) -> Self {
        self.backoff = backoff;
        self
    }

    /// Retries may be at most `ratio` of requests over a sliding `window`, with at least
    /// `min_retries` per window (see [`RetryBudget`]).
    pub fn budget(mut self, window: Duration, ratio: f64, min_retries: u32) -> Self {
        self.budget = Some(BudgetSetting {
            window,
            ratio,
            min_retries,
        });
        self
    }

    /// No retry budget: only attempts and the deadline bound retries.
    pub fn no_budget(mut self) -> Self {
        self.budget = None;
        self
    }

    /// Whether timed-out attempts are retried (default `true`). A timed-out call may have run
    /// on the server; turn this off for calls that must not run twice.
    pub fn retry_timeouts(mut self, retry: bool) -> Self {
        self.retry_timeouts = retry;
        self
    }

    /// Seeds the jitter, making delays repeatable (for tests and simulations).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<RetryPolicy, ConfigError> {
        if self.max_attempts == 0 {
            return Err(ConfigError::new(
                "max_attempts",
                self.max_attempts,
                "must be at least 1",
            ));
        }
        if self.deadline.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new(
                "deadline",
                Duration::ZERO,
                "must be greater than zero",
            ));
        }
        let budget = self
            .budget
            .map(|b| RetryBudget::new(b.window, b.ratio, b.min_retries))
            .transpose()?;
        Ok(RetryPolicy {
            inner: Arc::new(PolicyInner {
                backoff: self.backoff.build()?,
                max_attempts: self.max_attempts,
                deadline: self.deadline,
                budget,
                retry_timeouts: self.retry_timeouts,
                seed: self.seed.unwrap_or_else(|| fastrand::u64(..)),
                calls: AtomicU64::new(0),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicyBuilder {
        RetryPolicy::builder().seed(3).no_budget()
    }

    #[test]
    fn timeouts_follow_the_setting() {
        let now = Instant::now();
        let timeout = Outcome::new(OutcomeKind::Timeout);
        let p = policy().retry_timeouts(false).build().unwrap();
        let mut s = p.start(now);
        assert_eq!(
            p.decide(&mut s, &timeout, now),
            Decision::Stop(StopReason::NotRetryable)
        );
        let p = policy().build().unwrap();
        let mut s = p.start(now);
        assert!(matches!(
            p.decide(&mut s, &timeout, now),
            Decision::Retry(_)
        ));
    }

    #[test]
    fn deadline_stops_a_retry_that_would_start_late() {
        let now = Instant::now();
        let p = policy()
            .deadline(Duration::from_secs(10))
            .backoff(
                Backoff::builder().quota_window_at(
                    super::super::QuotaWindow::new(Duration::from_secs(60), now, Duration::ZERO)
                        .unwrap(),
                ),
            )
            .build()
            .unwrap();
        let mut s = p.start(now);
        let throttled = Outcome::throttled(ThrottleScope::Requests);
        assert_eq!(
            p.decide(&mut s, &throttled, now + Duration::from_secs(1)),
            Decision::Stop(StopReason::Deadline)
        );
    }

    #[test]
    fn a_spent_day_is_not_retried_into() {
        let now = Instant::now();
        let p = RetryPolicy::builder()
            .seed(3)
            .budget(Duration::from_secs(10), 0.0, 1)
            .deadline(Duration::from_secs(150))
            .build()
            .unwrap();
        let daily = Outcome::throttled(ThrottleScope::Daily);
        // No word on when the day returns: stop at once, the first attempt being the only one.
        let mut s = p.start(now);
        assert_eq!(
            p.decide(&mut s, &daily, now),
            Decision::Stop(StopReason::QuotaExhausted)
        );
        assert_eq!(s.attempts(), 1);
        // The day returns after the deadline: no retry either.
        let mut s = p.start(now);
        let later = daily.with_retry_after(Duration::from_secs(151));
        assert_eq!(
            p.decide(&mut s, &later, now),
            Decision::Stop(StopReason::QuotaExhausted)
        );
        // Neither stop spent the single retry the budget's floor allows: a per-minute throttle
        // still gets it.
        let mut s = p.start(now);
        assert!(matches!(
            p.decide(&mut s, &Outcome::new(OutcomeKind::Transient), now),
            Decision::Retry(_)
        ));
    }

    #[test]
    fn a_day_that_returns_within_the_deadline_is_waited_for() {
        let now = Instant::now();
        let p = policy().deadline(Duration::from_secs(150)).build().unwrap();
        let mut s = p.start(now);
        let soon =
            Outcome::throttled(ThrottleScope::Daily).with_retry_after(Duration::from_secs(40));
        match p.decide(&mut s, &soon, now) {
            // The server's delay, never shortened (plus at most its 10% jitter).
            Decision::Retry(delay) => {
                assert!(delay >= Duration::from_secs(40) && delay <= Duration::from_secs(44))
            }
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[test]
    fn budget_is_charged_only_for_retries() {
        let now = Instant::now();
        let p = RetryPolicy::builder()
            .seed(3)
            .budget(Duration::from_secs(10), 0.0, 1)
            .build()
            .unwrap();
        let mut s = p.start(now);
        // A fatal outcome does not spend the single retry the floor allows.
        p.decide(&mut s, &Outcome::FATAL, now);
        let mut s = p.start(now);
        let transient = Outcome::new(OutcomeKind::Transient);
        assert!(matches!(
            p.decide(&mut s, &transient, now),
            Decision::Retry(_)
        ));
        let mut s = p.start(now);
        assert_eq!(
            p.decide(&mut s, &transient, now),
            Decision::Stop(StopReason::Budget)
        );
    }

    #[test]
    fn bad_config_names_the_field() {
        let err = RetryPolicy::builder()
            .deadline(Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "deadline");
        let err = RetryPolicy::builder()
            .budget(Duration::from_secs(1), -1.0, 0)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "budget.ratio");
    }

    #[test]
    fn seeded_policies_repeat() {
        let delays = |seed| {
            let p = RetryPolicy::builder()
                .seed(seed)
                .no_budget()
                .max_attempts(10)
                .build()
                .unwrap();
            let now = Instant::now();
            let mut s = p.start(now);
            (0..8)
                .map(|_| p.decide(&mut s, &Outcome::new(OutcomeKind::Unavailable), now))
                .collect::<Vec<_>>()
        };
        assert_eq!(delays(9), delays(9));
        assert_ne!(delays(9), delays(10));
    }
}
