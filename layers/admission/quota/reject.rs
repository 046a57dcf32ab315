//! Why a call was not admitted: [`RejectReason`], and [`Rejected`], the error a shed call
//! gets.

use std::fmt;
use std::time::Duration;

use crate::admission::state::Refusal;

/// Why a call was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectReason {
    /// The wait for quota is longer than the call may wait.
    Deadline,
    /// Too many calls are already waiting for this key and lane.
    QueueFull,
    /// The cost is more than a whole window plus burst credit could ever hold.
    CostTooLarge,
    /// The store holding the shared quota (Redis) cannot be reached and the store is
    /// configured to fail closed.
    StoreUnavailable,
    /// A long window's budget ([`LimitBuilder::also`]: tokens per day) has no room before the
    /// call's deadline, or the provider said a daily quota is spent
    /// ([`ThrottleScope::Daily`](crate::ThrottleScope::Daily)). `retry_in` says when it has
    /// room again; a fallback to another model or region is the cure, not a retry.
    ///
    /// [`LimitBuilder::also`]: crate::admission::LimitBuilder::also
    QuotaExhausted {
        /// The window that binds; `None` for a daily throttle on a key without a long window
        /// (the key is held for [`DAILY_HOLD`](crate::admission::DAILY_HOLD)).
        window: Option<Duration>,
    },
}

impl RejectReason {
    /// A short, stable name.
    pub const fn as_str(&self) -> &'static str {
        match self {
            RejectReason::Deadline => "deadline",
            RejectReason::QueueFull => "queue_full",
            RejectReason::CostTooLarge => "cost_too_large",
            RejectReason::StoreUnavailable => "store_unavailable",
            RejectReason::QuotaExhausted { .. } => "quota_exhausted",
        }
    }
}

/// A call shed by admission. Turn it into `429 Too Many Requests` with `Retry-After`
/// ([`Rejected::to_response`]) when serving; retry after `retry_in` when calling.
///
/// The message names the reason and the wait, never anything from the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// When a call of the same cost could be admitted, if it ever can.
    pub retry_in: Option<Duration>,
    /// Why.
    pub reason: RejectReason,
}

impl Rejected {
    /// The window whose budget is spent, for [`RejectReason::QuotaExhausted`] (e.g. a day);
    /// `None` otherwise.
    pub fn window(&self) -> Option<Duration> {
        match self.reason {
            RejectReason::QuotaExhausted { window } => window,
            _ => None,
        }
    }

    pub(crate) fn from_refusal(r: Refusal) -> Self {
        Rejected {
            retry_in: r.retry_in.map(Duration::from_nanos),
            reason: r.reason,
        }
    }

    /// A `429 Too Many Requests` response with `Retry-After` in whole seconds (rounded up), or
    /// `413 Payload Too Large` for a cost no quota window can hold.
    pub fn to_response<B: Default>(&self) -> http::Response<B> {
        let mut res = http::Response::new(B::default());
        if self.reason == RejectReason::CostTooLarge {
            *res.status_mut() = http::StatusCode::PAYLOAD_TOO_LARGE;
            return res;
        }
        *res.status_mut() = http::StatusCode::TOO_MANY_REQUESTS;
        if let Some(wait) = self.retry_in {
            crate::classify::retry_after::insert(res.headers_mut(), wait);
        }
        res
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.reason, self.retry_in) {
            (RejectReason::CostTooLarge, _) => f.write_str(
                "admission rejected: the call costs more than the quota window plus burst can ever hold",
            ),
            (RejectReason::Deadline, Some(w)) => write!(
                f,
                "admission rejected: quota wait of {w:?} exceeds the call's deadline; retry in {w:?}"
            ),
            (RejectReason::QueueFull, Some(w)) => write!(
                f,
                "admission rejected: the quota wait queue is full; retry in {w:?}"
            ),
            (RejectReason::StoreUnavailable, Some(w)) => write!(
                f,
                "admission rejected: the shared quota store is unavailable (failing closed); retry in {w:?}"
            ),
            (RejectReason::QuotaExhausted { window: Some(window) }, Some(w)) => write!(
                f,
                "admission rejected: the quota per {} is exhausted; it has room again in {}",
                crate::retry::error::per(window),
                crate::retry::error::clock(w),
            ),
            (RejectReason::QuotaExhausted { window: None }, Some(w)) => write!(
                f,
                "admission rejected: the provider's daily quota is exhausted; retry in {w:?}"
            ),
            (reason, None) => write!(f, "admission rejected: {}", reason.as_str()),
        }
    }
}

impl std::error::Error for Rejected {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spent_window_says_which_and_when_in_words() {
        let day = Rejected {
            retry_in: Some(Duration::from_secs(5_400)),
            reason: RejectReason::QuotaExhausted {
                window: Some(Duration::from_secs(86_400)),
            },
        };
        assert_eq!(
            day.to_string(),
            "admission rejected: the quota per day is exhausted; it has room again in 1h 30m"
        );
        let hours = Rejected {
            reason: RejectReason::QuotaExhausted {
                window: Some(Duration::from_secs(6 * 3_600)),
            },
            ..day
        };
        assert!(hours.to_string().contains("the quota per 6h is exhausted"));
    }
}
