//! Per-attempt timeouts: how long one attempt may take before it is abandoned and classified
//! [`Timeout`](crate::OutcomeKind::Timeout), for the retry policy to decide on like any other
//! outcome.
//!
//! An LLM call's duration grows with what it may generate, so an [`AttemptTimeout`] is a base
//! plus an allowance per estimated unit (token), capped: a call with a large `max_tokens` gets
//! longer than a short one. The timer runs from the moment the attempt is handed to the client
//! until the client's future answers: for a client that answers once the response head arrives
//! (a streaming call, most HTTP clients) that is the time to first byte; for one that answers
//! with the whole body, the whole attempt. The Tower [stack](crate::stack) and the AWS SDK
//! adapter (`smithy`) apply the same [`AttemptTimeout::for_cost`]; the
//! [profiles](crate::Profile::attempt_timeout) give the defaults.
//!
//! ```
//! use std::time::Duration;
//! use tower_headroom::Cost;
//! use tower_headroom::timeout::AttemptTimeout;
//!
//! // A minute, plus 25 ms per estimated token, at most ten minutes.
//! let timeout = AttemptTimeout::scaled(
//!     Duration::from_secs(60),
//!     Duration::from_millis(25),
//!     Duration::from_secs(600),
//! )?;
//! assert_eq!(timeout.for_cost(Some(Cost::units(4_000))), Duration::from_secs(160));
//! assert_eq!(timeout.for_cost(Some(Cost::units(100_000))), Duration::from_secs(600));
//! assert_eq!(timeout.for_cost(None), Duration::from_secs(60));
//! # Ok::<(), tower_headroom::ConfigError>(())
//! ```

use std::error::Error;
use std::fmt;
use std::time::Duration;

use crate::admission::Cost;
use crate::error::ConfigError;

/// The longest attempt timeout accepted: a day.
const MAX: Duration = Duration::from_secs(24 * 3600);

/// How long one attempt may take: `base` plus `per_unit` for each estimated unit of the call's
/// cost, at most `max`. See the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptTimeout {
    base: Duration,
    per_unit: Duration,
    max: Duration,
}

impl AttemptTimeout {
    /// The same timeout for every attempt. Zero or more than a day is a [`ConfigError`].
    pub fn fixed(timeout: Duration) -> Result<Self, ConfigError> {
        AttemptTimeout::scaled(timeout, Duration::ZERO, timeout)
    }

    /// `base` plus `per_unit` per estimated unit, at most `max`. A zero `base`, or a `max`
    /// below `base` or above a day, is a [`ConfigError`] naming the field.
    pub fn scaled(base: Duration, per_unit: Duration, max: Duration) -> Result<Self, ConfigError> {
        if base.is_zero() {
            return Err(ConfigError::new("base", base, "must be more than zero"));
        }
        if max < base || max > MAX {
            return Err(ConfigError::new(
                "max",
                max,
                "must be at least the base and at most 24 h",
            ));
        }
        Ok(AttemptTimeout {
            base,
            per_unit,
            max,
        })
    }

    /// The timeout of an attempt whose call is estimated at `cost` (`None`: unknown, the base).
    pub fn for_cost(&self, cost: Option<Cost>) -> Duration {
        let units = cost.map_or(0, |c| c.units);
        let allowance = self
            .per_unit
            .checked_mul(u32::try_from(units).unwrap_or(u32::MAX))
            .unwrap_or(Duration::MAX);
        self.base.saturating_add(allowance).min(self.max)
    }

    /// The timeout with no allowance per unit.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The allowance per estimated unit.
    pub fn per_unit(&self) -> Duration {
        self.per_unit
    }

    /// The most any attempt gets.
    pub fn max(&self) -> Duration {
        self.max
    }
}

/// The error of an attempt abandoned after its [`AttemptTimeout`]: classified
/// [`Timeout`](crate::OutcomeKind::Timeout) (it was sent, so the backend's breaker counts it,
/// and the retry policy decides whether to try again).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptTimedOut {
    /// How long the attempt was given.
    pub after: Duration,
}

impl fmt::Display for AttemptTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attempt timed out after {:?}", self.after)
    }
}

impl Error for AttemptTimedOut {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_typed_errors() {
        let s = Duration::from_secs;
        assert!(AttemptTimeout::fixed(Duration::ZERO).is_err());
        assert!(AttemptTimeout::fixed(s(2 * 24 * 3600)).is_err());
        let below = AttemptTimeout::scaled(s(10), Duration::ZERO, s(5)).unwrap_err();
        assert!(below.to_string().contains("max"), "{below}");
    }

    #[test]
    fn huge_costs_saturate_at_the_cap() {
        let t = AttemptTimeout::scaled(
            Duration::from_secs(1),
            Duration::from_secs(3600),
            Duration::from_secs(7200),
        )
        .unwrap();
        assert_eq!(
            t.for_cost(Some(Cost::units(u64::MAX))),
            Duration::from_secs(7200)
        );
    }
}
