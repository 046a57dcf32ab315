//! How long to wait before a retry: per-class exponential schedules with jitter, server delays
//! honoured, and quota-window alignment.
//!
//! [`Backoff::delay`] is a pure function of the retry number, the [`Outcome`] that caused it, the
//! previous delay, the current instant and a random number generator — no clock is read and
//! nothing sleeps, so every rule below is tested directly (see the proptests).
//!
//! The rules, in order:
//! 1. **The server knows best.** When the outcome carries a server-provided delay
//!    (`Retry-After` and relatives), the retry waits at least that long, plus up to
//!    [`server_jitter`](BackoffBuilder::server_jitter) of it so that clients told the same
//!    delay do not return in lock-step. A delay above
//!    [`max_server_delay`](BackoffBuilder::max_server_delay) is never shortened: the retry is
//!    abandoned instead ([`StopReason::ServerDelayTooLong`]), because retrying earlier than
//!    asked only earns another throttle.
//! 2. **Quota windows.** A `Throttled(Requests)` or `Throttled(Tokens)` outcome against a
//!    windowed quota (Bedrock's RPM and TPM are 60-second windows) waits for the next window
//!    boundary plus a random spread inside the new window, instead of retrying into the same
//!    exhausted minute.
//! 3. **Per-class schedules.** Everything else follows the exponential [`Schedule`] of its
//!    class: throttles on per-second capacity back off briefly, overload and unavailability
//!    slowly, transient faults quickly. Each schedule has its own base, cap and [`Jitter`].

use std::time::Duration;

use tokio::time::Instant;

use crate::error::ConfigError;
use crate::retry::StopReason;
use crate::{Outcome, OutcomeKind, ThrottleScope};

/// How randomness is mixed into an exponential delay (see the AWS Architecture Blog's
/// "Exponential Backoff And Jitter").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jitter {
    /// No randomness: `min(cap, base × 2ⁿ)`.
    None,
    /// Uniform in `[0, min(cap, base × 2ⁿ)]`. Spreads retries best; the default.
    Full,
    /// Half fixed, half random: `e/2 + uniform[0, e/2]` with `e = min(cap, base × 2ⁿ)`.
    Equal,
    /// `min(cap, uniform[base, 3 × previous delay])`: grows from the previous delay rather than
    /// the attempt number.
    Decorrelated,
}

/// An exponential schedule: `base × 2ⁿ` for the n-th retry (n from 0), capped, with jitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    base: Duration,
    cap: Duration,
    jitter: Jitter,
}

impl Schedule {
    /// A schedule starting at `base`, never above `cap`.
    ///
    /// Fails when `base` is zero or `cap` is below `base`.
    pub fn new(base: Duration, cap: Duration, jitter: Jitter) -> Result<Self, ConfigError> {
        if base.is_zero() {
            return Err(ConfigError::new(
                "schedule.base",
                base,
                "must be greater than zero",
            ));
        }
        if cap < base {
            return Err(ConfigError::new(
                "schedule.cap",
                cap,
                "must be at least the schedule's base",
            ));
        }
        Ok(Schedule { base, cap, jitter })
    }

    const fn fixed(base_ms: u64, cap_ms: u64) -> Self {
        Schedule {
            base: Duration::from_millis(base_ms),
            cap: Duration::from_millis(cap_ms),
            jitter: Jitter::Full,
        }
    }

    /// The first delay before jitter.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The largest delay this schedule ever gives.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// The jitter mode.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// The delay before retry number `retry` (0 for the first retry). `previous` is the delay
    /// before the previous retry (zero for the first); only [`Jitter::Decorrelated`] reads it.
    ///
    /// Always within `[0, cap]`.
    pub fn delay(&self, retry: u32, previous: Duration, rng: &mut fastrand::Rng) -> Duration {
        let exp = self
            .base
            .checked_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX))
            .map_or(self.cap, |d| d.min(self.cap));
        match self.jitter {
            Jitter::None => exp,
            Jitter::Full => uniform(rng, Duration::ZERO, exp),
            Jitter::Equal => {
                let half = exp / 2;
                half + uniform(rng, Duration::ZERO, exp - half)
            }
            Jitter::Decorrelated => {
                let upper = previous.saturating_mul(3).max(self.base);
                uniform(rng, self.base, upper).min(self.cap)
            }
        }
    }
}

/// A uniformly random duration in `[low, high]`, at nanosecond resolution.
fn uniform(rng: &mut fastrand::Rng, low: Duration, high: Duration) -> Duration {
    let low_ns = crate::nanos(low);
    let high_ns = crate::nanos(high);
    if high_ns <= low_ns {
        return low;
    }
    Duration::from_nanos(rng.u64(low_ns..=high_ns))
}

/// A windowed quota: fixed windows of `length` starting at `anchor`, so that window `k` is
/// `[anchor + k × length, anchor + (k + 1) × length)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaWindow {
    length: Duration,
    anchor: Instant,
    spread: Duration,
}

impl QuotaWindow {
    /// Windows of `length` starting at `anchor`; retries land uniformly within `spread` after a
    /// boundary.
    ///
    /// Fails when `length` is zero or `spread` is longer than the window.
    pub fn new(length: Duration, anchor: Instant, spread: Duration) -> Result<Self, ConfigError> {
        if length.is_zero() {
            return Err(ConfigError::new(
                "quota_window",
                length,
                "must be greater than zero",
            ));
        }
        if spread > length {
            return Err(ConfigError::new(
                "window_spread",
                spread,
                "must not exceed the quota window",
            ));
        }
        Ok(QuotaWindow {
            length,
            anchor,
            spread,
        })
    }

    /// Windows of `length` aligned to the wall clock (window boundaries on whole multiples of
    /// `length` since the Unix epoch, e.g. on the minute), as a service that counts per
    /// calendar minute does.
    pub fn aligned_to_clock(length: Duration, spread: Duration) -> Result<Self, ConfigError> {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let length_ns = crate::nanos(length).max(1);
        let phase = Duration::from_nanos(
            u64::try_from(since_epoch.as_nanos() % u128::from(length_ns)).unwrap_or(0),
        );
        let now = Instant::now();
        let anchor = now.checked_sub(phase).unwrap_or(now);
        QuotaWindow::new(length, anchor, spread)
    }

    /// The window length.
    pub fn length(&self) -> Duration {
        self.length
    }

    /// The instant some window starts at.
    pub fn anchor(&self) -> Instant {
        self.anchor
    }

    /// How far into the next window a retry may be spread.
    pub fn spread(&self) -> Duration {
        self.spread
    }

    /// The first window boundary strictly after `now`.
    pub fn next_boundary(&self, now: Instant) -> Instant {
        let length_ns = u128::from(crate::nanos(self.length).max(1));
        if now < self.anchor {
            // Whole windows that fit strictly between now and the anchor.
            let whole = ((self.anchor - now).as_nanos() - 1) / length_ns;
            let back = nanos_to_duration(whole * length_ns);
            return self.anchor - back;
        }
        let elapsed = (now - self.anchor).as_nanos();
        let next = (elapsed / length_ns + 1) * length_ns;
        self.anchor + nanos_to_duration(next)
    }
}

fn nanos_to_duration(nanos: u128) -> Duration {
    Duration::new(
        u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX),
        (nanos % 1_000_000_000) as u32,
    )
}

/// Which schedule an outcome class uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScheduleClass {
    /// `Throttled(Capacity)`, `Throttled(Unknown)`, and `Throttled(Requests/Tokens)` when no
    /// quota window is configured.
    Throttled,
    /// `Overloaded`.
    Overloaded,
    /// `Unavailable`.
    Unavailable,
    /// `Timeout`.
    Timeout,
    /// `Transient`.
    Transient,
}

impl ScheduleClass {
    fn of(kind: OutcomeKind) -> Option<Self> {
        match kind {
            OutcomeKind::Throttled(_) => Some(ScheduleClass::Throttled),
            OutcomeKind::Overloaded => Some(ScheduleClass::Overloaded),
            OutcomeKind::Unavailable => Some(ScheduleClass::Unavailable),
            OutcomeKind::Timeout => Some(ScheduleClass::Timeout),
            OutcomeKind::Transient => Some(ScheduleClass::Transient),
            OutcomeKind::Success | OutcomeKind::Fatal | OutcomeKind::TooLarge => None,
        }
    }
}

/// The delay rules for every outcome class. Build one with [`Backoff::builder`].
///
/// Defaults, and why:
///
/// | class | base | cap | why |
/// |---|---|---|---|
/// | throttled (capacity) | 50 ms | 5 s | per-second capacity refills within a second |
/// | overloaded | 500 ms | 20 s | the shared model needs minutes, not milliseconds; fallback is the better move |
/// | unavailable | 1 s | 30 s | 503s persist; back off slowly |
/// | timeout | 500 ms | 10 s | a timed-out backend is often busy |
/// | transient | 50 ms | 5 s | a reset connection usually works at once |
///
/// All use [`Jitter::Full`]. Quota window: 60 s (Bedrock's RPM/TPM) aligned to the wall clock,
/// retries spread over the first 5 s of the next window. Server delays are honoured up to 65 s
/// with up to 10% added jitter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Indexed by [`ScheduleClass`].
    schedules: [Schedule; 5],
    window: Option<QuotaWindow>,
    max_server_delay: Duration,
    server_jitter_percent: u32,
}

impl Backoff {
    /// A builder with the defaults above.
    pub fn builder() -> BackoffBuilder {
        BackoffBuilder::default()
    }

    /// The schedule used for `class`.
    pub fn schedule(&self, class: ScheduleClass) -> &Schedule {
        &self.schedules[class as usize]
    }

    /// The quota window, if retries of request/token throttles align to one.
    pub fn quota_window(&self) -> Option<&QuotaWindow> {
        self.window.as_ref()
    }

    /// The longest server-provided delay that is honoured; longer ones end the retries.
    pub fn max_server_delay(&self) -> Duration {
        self.max_server_delay
    }

    /// The delay before retry number `retry` (0 for the first retry) after `outcome`.
    ///
    /// `previous` is the delay before the previous retry (zero for the first). Returns
    /// [`StopReason::NotRetryable`] for outcomes that are never retried and
    /// [`StopReason::ServerDelayTooLong`] when the server asked for more than
    /// [`max_server_delay`](Self::max_server_delay).
    pub fn delay(
        &self,
        retry: u32,
        outcome: &Outcome,
        previous: Duration,
        now: Instant,
        rng: &mut fastrand::Rng,
    ) -> Result<Duration, StopReason> {
        let class = ScheduleClass::of(outcome.kind).ok_or(StopReason::NotRetryable)?;
        if let Some(asked) = outcome.retry_after {
            // A delay this client's own quota gave (a local refusal) is bounded by the call's
            // deadline, not by what the policy trusts a server to ask.
            if asked > self.max_server_delay && !outcome.local {
                return Err(StopReason::ServerDelayTooLong);
            }
            let extra = asked.saturating_mul(self.server_jitter_percent) / 100;
            return Ok(asked + uniform(rng, Duration::ZERO, extra));
        }
        if let (
            Some(window),
            OutcomeKind::Throttled(ThrottleScope::Requests | ThrottleScope::Tokens),
        ) = (&self.window, outcome.kind)
        {
            let boundary = window.next_boundary(now);
            return Ok((boundary - now) + uniform(rng, Duration::ZERO, window.spread));
        }
        Ok(self.schedule(class).delay(retry, previous, rng))
    }
}

impl Default for Backoff {
    fn default() -> Self {
        BackoffBuilder::default()
            .build()
            .expect("the default backoff is valid")
    }
}

/// Builds a [`Backoff`]; see [`Backoff`] for the defaults.
#[derive(Clone, Debug)]
pub struct BackoffBuilder {
    /// Indexed by [`ScheduleClass`].
    schedules: [Schedule; 5],
    window: WindowSetting,
    max_server_delay: Duration,
    server_jitter_percent: u32,
}

#[derive(Clone, Copy, Debug)]
enum WindowSetting {
    Off,
    Clock { length: Duration, spread: Duration },
    Anchored(QuotaWindow),
}

impl Default for BackoffBuilder {
    fn default() -> Self {
        BackoffBuilder {
            // In `ScheduleClass` order: throttled, overloaded, unavailable, timeout, transient.
            schedules: [
                Schedule::fixed(50, 5_000),
                Schedule::fixed(500, 20_000),
                Schedule::fixed(1_000, 30_000),
                Schedule::fixed(500, 10_000),
                Schedule::fixed(50, 5_000),
            ],
            window: WindowSetting::Clock {
                length: Duration::from_secs(60),
                spread: Duration::from_secs(5),
            },
            max_server_delay: Duration::from_secs(65),
            server_jitter_percent: 10,
        }
    }
}

impl BackoffBuilder {
    /// Sets the schedule for one class of outcome.
    pub fn schedule(mut self, class: ScheduleClass, schedule: Schedule) -> Self {
        self.schedules[class as usize] = schedule;
        self
    }

    /// Sets the same jitter mode on every schedule.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        for schedule in &mut self.schedules {
            schedule.jitter = jitter;
        }
        self
    }

    /// Aligns retries of request/token throttles to windows of `length` on the wall clock,
    /// spread over the first `spread` of the next window.
    pub fn quota_window(mut self, length: Duration, spread: Duration) -> Self {
        self.window = WindowSetting::Clock { length, spread };
        self
    }

    /// Aligns retries of request/token throttles to the given windows.
    pub fn quota_window_at(mut self, window: QuotaWindow) -> Self {
        self.window = WindowSetting::Anchored(window);
        self
    }

    /// Retries request/token throttles on the throttled schedule instead of aligning them to a
    /// window (for token-bucket quotas that refill continuously).
    pub fn no_quota_window(mut self) -> Self {
        self.window = WindowSetting::Off;
        self
    }

    /// The longest server-provided delay that is honoured; a longer one ends the retries rather
    /// than retrying early.
    pub fn max_server_delay(mut self, max: Duration) -> Self {
        self.max_server_delay = max;
        self
    }

    /// Up to this percentage of a server-provided delay is added at random (0 to 100).
    pub fn server_jitter(mut self, percent: u32) -> Self {
        self.server_jitter_percent = percent;
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<Backoff, ConfigError> {
        if self.server_jitter_percent > 100 {
            return Err(ConfigError::new(
                "server_jitter",
                self.server_jitter_percent,
                "must be a percentage between 0 and 100",
            ));
        }
        let window = match self.window {
            WindowSetting::Off => None,
            WindowSetting::Clock { length, spread } => {
                Some(QuotaWindow::aligned_to_clock(length, spread)?)
            }
            WindowSetting::Anchored(window) => Some(window),
        };
        Ok(Backoff {
            schedules: self.schedules,
            window,
            max_server_delay: self.max_server_delay,
            server_jitter_percent: self.server_jitter_percent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng() -> fastrand::Rng {
        fastrand::Rng::with_seed(7)
    }

    #[test]
    fn schedule_rejects_bad_input() {
        let err = Schedule::new(Duration::ZERO, Duration::from_secs(1), Jitter::Full).unwrap_err();
        assert_eq!(err.field(), "schedule.base");
        let err = Schedule::new(Duration::from_secs(2), Duration::from_secs(1), Jitter::Full)
            .unwrap_err();
        assert_eq!(err.field(), "schedule.cap");
    }

    #[test]
    fn no_jitter_doubles_until_cap() {
        let s = Schedule::new(
            Duration::from_millis(100),
            Duration::from_secs(1),
            Jitter::None,
        )
        .unwrap();
        let delays: Vec<_> = (0..6)
            .map(|n| s.delay(n, Duration::ZERO, &mut rng()).as_millis())
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(
            s.delay(u32::MAX, Duration::ZERO, &mut rng()),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn equal_jitter_keeps_half() {
        let s = Schedule::new(
            Duration::from_millis(100),
            Duration::from_secs(10),
            Jitter::Equal,
        )
        .unwrap();
        let mut r = rng();
        for _ in 0..1000 {
            let d = s.delay(3, Duration::ZERO, &mut r);
            assert!(
                d >= Duration::from_millis(400) && d <= Duration::from_millis(800),
                "{d:?}"
            );
        }
    }

    #[test]
    fn window_boundary_before_and_after_anchor() {
        let anchor = Instant::now();
        let w = QuotaWindow::new(Duration::from_secs(60), anchor, Duration::ZERO).unwrap();
        assert_eq!(w.next_boundary(anchor), anchor + Duration::from_secs(60));
        assert_eq!(
            w.next_boundary(anchor + Duration::from_secs(61)),
            anchor + Duration::from_secs(120)
        );
        let before = anchor - Duration::from_secs(90);
        assert_eq!(w.next_boundary(before), anchor - Duration::from_secs(60));
        let just_before = anchor - Duration::from_secs(60);
        assert_eq!(w.next_boundary(just_before), anchor);
    }

    #[test]
    fn window_rejects_bad_input() {
        let now = Instant::now();
        assert_eq!(
            QuotaWindow::new(Duration::ZERO, now, Duration::ZERO)
                .unwrap_err()
                .field(),
            "quota_window"
        );
        assert_eq!(
            QuotaWindow::new(Duration::from_secs(1), now, Duration::from_secs(2))
                .unwrap_err()
                .field(),
            "window_spread"
        );
        assert_eq!(
            Backoff::builder()
                .server_jitter(101)
                .build()
                .unwrap_err()
                .field(),
            "server_jitter"
        );
    }

    #[test]
    fn fatal_and_success_are_not_retried() {
        let b = Backoff::default();
        for o in [Outcome::SUCCESS, Outcome::FATAL] {
            assert_eq!(
                b.delay(0, &o, Duration::ZERO, Instant::now(), &mut rng()),
                Err(StopReason::NotRetryable)
            );
        }
    }

    #[test]
    fn server_delay_above_max_stops() {
        let b = Backoff::builder()
            .max_server_delay(Duration::from_secs(10))
            .build()
            .unwrap();
        let o = Outcome::new(OutcomeKind::Unavailable).with_retry_after(Duration::from_secs(11));
        assert_eq!(
            b.delay(0, &o, Duration::ZERO, Instant::now(), &mut rng()),
            Err(StopReason::ServerDelayTooLong)
        );
    }
}
