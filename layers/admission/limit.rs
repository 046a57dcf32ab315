//! Configuration: [`Limit`] (per key), [`Learning`], [`Priority`], [`Tenant`] and the typed
//! [`ConfigError`].

use std::sync::Arc;
use std::time::Duration;

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

/// An application (tenant) drawing on a shared quota; an index into the weights given to
/// [`LimitBuilder::shares`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tenant(pub u16);

/// How the quota learns its real size from throttles it did not predict (AIMD on both requests
/// and units).
///
/// A throttle multiplies the effective limit (the refill rate) of the dimension it names by
/// `decrease` (both dimensions when the throttle does not say), never below `floor` of the
/// configured limit; a server `Retry-After` also empties the bucket for that long. Every
/// successful call adds `increase` of the configured limit back, up to the configured limit.
/// The burst capacity stays that of the configured limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Learning {
    decrease: f64,
    increase: f64,
    floor: f64,
}

impl Learning {
    /// AIMD with a decrease to 70%, 1% of the limit back per success and a floor of 10%.
    pub const AIMD: Learning = Learning {
        decrease: 0.7,
        increase: 0.01,
        floor: 0.1,
    };
    /// No learning: the configured limit is the limit.
    pub const OFF: Learning = Learning {
        decrease: 1.0,
        increase: 0.0,
        floor: 1.0,
    };

    /// AIMD with the given factors; checked when the [`Limit`] is built.
    pub const fn aimd(decrease: f64, increase: f64, floor: f64) -> Self {
        Learning {
            decrease,
            increase,
            floor,
        }
    }
}

impl Default for Learning {
    fn default() -> Self {
        Learning::AIMD
    }
}

/// The quota of one key: requests and/or units per window, burst credit, shares, queueing.
///
/// ```
/// use std::time::Duration;
/// use tower_headroom::admission::Limit;
///
/// // Bedrock: 150 requests and 200,000 tokens per minute.
/// let bedrock = Limit::per_minute().requests(150).units(200_000).build()?;
/// // DynamoDB: 1,000 WCU per second, keeping up to 300 s of unused capacity.
/// let table = Limit::per_second().units(1_000).burst(Duration::from_secs(300)).build()?;
/// # let _ = (bedrock, table);
/// # Ok::<(), tower_headroom::admission::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Limit {
    pub(crate) window: u64,
    pub(crate) requests: Option<u64>,
    pub(crate) units: Option<u64>,
    pub(crate) burst: u64,
    pub(crate) reserve_ppm: u64,
    pub(crate) shares: Option<Arc<[u64]>>,
    /// The sum of the share weights (0 without shares).
    pub(crate) share_total: u64,
    pub(crate) share_burst: u64,
    pub(crate) max_queue: u32,
    pub(crate) max_wait: u64,
    pub(crate) learning: LearningRules,
}

/// [`Learning`] in the integer form the arithmetic uses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LearningRules {
    pub(crate) decrease_ppm: u64,
    pub(crate) increase_ppm: u64,
    pub(crate) floor_ppm: u64,
}

impl Limit {
    /// A builder for limits per `window`.
    pub fn per_window(window: Duration) -> LimitBuilder {
        LimitBuilder {
            window,
            requests: None,
            units: None,
            burst: Duration::ZERO,
            reserve: 0.0,
            shares: None,
            share_burst: None,
            max_queue: 1024,
            max_wait: Duration::from_secs(30),
            learning: Learning::AIMD,
        }
    }

    /// A builder for limits per minute (Bedrock RPM/TPM).
    pub fn per_minute() -> LimitBuilder {
        Limit::per_window(Duration::from_secs(60))
    }

    /// A builder for limits per second (DynamoDB capacity units).
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

    /// The default longest wait for a call of this key.
    pub fn max_wait(&self) -> Duration {
        Duration::from_nanos(self.max_wait)
    }
}

/// Builds a [`Limit`]; see [`Limit::per_window`].
#[derive(Clone, Debug)]
pub struct LimitBuilder {
    window: Duration,
    requests: Option<u64>,
    units: Option<u64>,
    burst: Duration,
    reserve: f64,
    shares: Option<Vec<u64>>,
    share_burst: Option<Duration>,
    max_queue: u32,
    max_wait: Duration,
    learning: Learning,
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

    /// Unused capacity kept as burst credit, as a duration of the limit (DynamoDB keeps
    /// 300 s). Default zero: calls are paced at the limit, so that no window of the server
    /// sees more than the limit plus one call.
    pub fn burst(mut self, credit: Duration) -> Self {
        self.burst = credit;
        self
    }

    /// The fraction (0..=1) of the burst credit that batch and borrowing calls leave for
    /// interactive ones. Default 0.
    pub fn interactive_reserve(mut self, fraction: f64) -> Self {
        self.reserve = fraction;
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

    /// The longest a call waits when it does not say (default 30 s).
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// How the limit learns from throttles (default [`Learning::AIMD`]).
    pub fn learning(mut self, learning: Learning) -> Self {
        self.learning = learning;
        self
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
        if self.burst > MAX_BURST {
            return Err(ConfigError::new(
                "burst",
                self.burst,
                "must be at most 24 h",
            ));
        }
        if !(0.0..=1.0).contains(&self.reserve) {
            return Err(ConfigError::new(
                "interactive_reserve",
                self.reserve,
                "must be a fraction between 0 and 1",
            ));
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
        if self.max_wait > super::quota::MAX_WAIT {
            return Err(ConfigError::new(
                "max_wait",
                self.max_wait,
                "must be at most 24 h",
            ));
        }
        let l = self.learning;
        let fraction = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
        if !fraction(l.decrease) || l.decrease == 0.0 {
            return Err(ConfigError::new(
                "learning.decrease",
                l.decrease,
                "must be a fraction in (0, 1]",
            ));
        }
        if !fraction(l.increase) {
            return Err(ConfigError::new(
                "learning.increase",
                l.increase,
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
        Ok(Limit {
            window: nanos(self.window),
            requests: self.requests,
            units: self.units,
            burst: nanos(self.burst),
            reserve_ppm: ppm(self.reserve),
            shares,
            share_total,
            share_burst: nanos(share_burst),
            max_queue: self.max_queue,
            max_wait: nanos(self.max_wait),
            learning: LearningRules {
                decrease_ppm: ppm(l.decrease).max(1),
                increase_ppm: ppm(l.increase),
                floor_ppm: ppm(l.floor).max(1),
            },
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
            .learning(Learning::aimd(0.5, 0.01, f64::INFINITY))
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
}
