//! The errors the retry layer adds. They keep the inner error as their `source()`.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use super::{RetryState, StopReason};
use crate::{BoxError, Outcome, OutcomeKind, ThrottleScope};

/// The error a call gets when the retries stop after a failed attempt: [`Fatal`] for a
/// failure retrying cannot fix, [`QuotaExhausted`] when a per-day quota is spent
/// ([`ThrottleScope::Daily`]), [`RetriesExhausted`] otherwise. The one mapping the retry
/// layer and the stack share.
pub(crate) fn stopped_error(
    retry: &RetryState,
    outcome: Outcome,
    reason: StopReason,
    source: BoxError,
) -> BoxError {
    match outcome.kind {
        OutcomeKind::Fatal => Box::new(Fatal::new(retry.attempts(), source)),
        OutcomeKind::Throttled(ThrottleScope::Daily) => Box::new(QuotaExhausted::from_outcome(
            retry.attempts(),
            &outcome,
            Some(source),
        )),
        _ => Box::new(RetriesExhausted::new(
            retry.attempts(),
            outcome,
            reason,
            retry.waited(),
            source,
        )),
    }
}

/// The retry layer gave up on a call that kept failing with retryable outcomes.
///
/// `source()` is the last attempt's error. [`last`](Self::last) carries the last outcome,
/// including any delay the server asked for, so a caller can decide when to come back.
#[derive(Debug)]
pub struct RetriesExhausted {
    attempts: u32,
    last: Outcome,
    reason: StopReason,
    waited: Duration,
    source: BoxError,
}

impl RetriesExhausted {
    pub(crate) fn new(
        attempts: u32,
        last: Outcome,
        reason: StopReason,
        waited: Duration,
        source: BoxError,
    ) -> Self {
        RetriesExhausted {
            attempts,
            last,
            reason,
            waited,
            source,
        }
    }

    /// Attempts made, the first included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The outcome of the last attempt.
    pub fn last(&self) -> Outcome {
        self.last
    }

    /// Why no further attempt was made.
    pub fn reason(&self) -> StopReason {
        self.reason
    }

    /// Time spent waiting between attempts.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// The last attempt's error.
    pub fn into_source(self) -> BoxError {
        self.source
    }
}

impl fmt::Display for RetriesExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gave up after {} attempt{} ({} waited): {}; last outcome: {}",
            self.attempts,
            if self.attempts == 1 { "" } else { "s" },
            humanize(self.waited),
            self.reason,
            self.last
        )
    }
}

impl Error for RetriesExhausted {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

/// A call failed in a way retrying cannot fix ([`OutcomeKind::Fatal`](crate::OutcomeKind::Fatal):
/// a validation error, access denied, an exceeded service quota). Fix the request or the
/// configuration; do not retry it.
#[derive(Debug)]
pub struct Fatal {
    attempts: u32,
    source: BoxError,
}

impl Fatal {
    pub(crate) fn new(attempts: u32, source: BoxError) -> Self {
        Fatal { attempts, source }
    }

    /// Attempts made, the first included (more than one when earlier attempts failed
    /// retryably).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The fatal error.
    pub fn into_source(self) -> BoxError {
        self.source
    }
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "non-retryable failure on attempt {}; fix the request or configuration",
            self.attempts
        )
    }
}

impl Error for Fatal {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

/// One day: the window of a [`ThrottleScope::Daily`] quota.
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// The call cannot be served because a quota over a long window (Bedrock's tokens per day) is
/// spent, on every target the call could use, and it does not return within the call's
/// deadline. Retrying sooner than [`retry_in`](Self::retry_in) only spends attempts; another
/// model or region (a fallback target) is the cure.
///
/// The message names the quota's window and when it returns, never anything of the request or
/// of the server's message. `source()` is the last attempt's error, when an attempt was made.
/// [`stack::error_response`](crate::stack::error_response) answers it with `429` and
/// `Retry-After` when the return is known.
///
/// ```
/// use std::time::Duration;
/// use tower_headroom::retry::QuotaExhausted;
///
/// let spent = QuotaExhausted::per_day(Some(Duration::from_secs(5_400)));
/// assert_eq!(spent.window(), Some(Duration::from_secs(86_400)));
/// assert_eq!(spent.retry_in(), Some(Duration::from_secs(5_400)));
/// assert_eq!(
///     spent.to_string(),
///     "the quota per day is exhausted on every target the call may use; it has room again in 1h 30m"
/// );
/// let response = tower_headroom::stack::error_response::<String>(&spent);
/// assert_eq!(response.status(), 429);
/// assert_eq!(response.headers()["retry-after"], "5400");
/// ```
#[derive(Debug)]
pub struct QuotaExhausted {
    window: Option<Duration>,
    retry_in: Option<Duration>,
    attempts: u32,
    source: Option<BoxError>,
}

impl QuotaExhausted {
    /// A spent per-day quota that has room again after `retry_in`, if known.
    pub fn per_day(retry_in: Option<Duration>) -> Self {
        QuotaExhausted {
            window: Some(DAY),
            retry_in,
            attempts: 0,
            source: None,
        }
    }

    /// The retries stopped on a [daily throttle](ThrottleScope::Daily) after `attempts`
    /// attempts: the server's `retry_after` (or admission's `retry_in`) is when the quota
    /// returns; admission's own refusal names its window, a server's is a day.
    pub(crate) fn from_outcome(attempts: u32, outcome: &Outcome, source: Option<BoxError>) -> Self {
        let rejected = source
            .as_deref()
            .and_then(|error| error.downcast_ref::<crate::admission::Rejected>());
        QuotaExhausted {
            window: rejected.and_then(|r| r.window()).or(Some(DAY)),
            retry_in: outcome.retry_after,
            attempts,
            source,
        }
    }

    /// The window of the spent quota (a day for Bedrock's tokens per day), when known.
    pub fn window(&self) -> Option<Duration> {
        self.window
    }

    /// When the quota has room again, if the server or the quota said so.
    pub fn retry_in(&self) -> Option<Duration> {
        self.retry_in
    }

    /// Attempts sent before the call stopped (0 when no attempt was sent).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The outcome this error stands for: a [daily throttle](ThrottleScope::Daily) with
    /// [`retry_in`](Self::retry_in) as its server delay, refused locally when nothing was
    /// sent.
    pub fn outcome(&self) -> Outcome {
        let outcome = Outcome::throttled(ThrottleScope::Daily).with_retry_after_opt(self.retry_in);
        if self.attempts == 0 {
            outcome.refused_locally()
        } else {
            outcome
        }
    }
}

impl fmt::Display for QuotaExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.window {
            Some(window) => write!(f, "the quota per {} is exhausted", per(window))?,
            None => f.write_str("a long-window quota is exhausted")?,
        }
        f.write_str(" on every target the call may use")?;
        match self.retry_in {
            Some(wait) => write!(f, "; it has room again in {}", clock(wait)),
            None => f.write_str("; when it has room again is not known"),
        }
    }
}

impl Error for QuotaExhausted {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// A quota's window for messages: "day" for a day, else as [`clock`] writes it.
pub(crate) fn per(window: Duration) -> String {
    if window == DAY {
        String::from("day")
    } else {
        clock(window)
    }
}

/// A duration as hours, minutes and seconds, for messages ("1h 30m", "45s").
pub(crate) fn clock(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (value, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if value > 0 {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&format!("{value}{unit}"));
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// How many attempts a call took and how long it waited between them.
///
/// The retry layer hands it to [`Classify::record_retries`](crate::Classify::record_retries)
/// when a call needed more than one attempt; [`HttpClassifier`](crate::HttpClassifier) puts it
/// in the `http::Response` extensions. A response without it succeeded on its first attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryInfo {
    /// Attempts made, the first included.
    pub attempts: u32,
    /// Time spent waiting between attempts.
    pub waited: Duration,
}

fn humanize(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}
