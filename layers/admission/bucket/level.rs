//! The integer primitives of the token-bucket accounting: one bucket's level in
//! unit-nanoseconds, and the scalings from a [`Limit`] (units to unit-nanoseconds, a tenant's
//! share of the rate, a capacity). Shared by the token bucket and the sliding window's
//! per-tenant buckets.

use super::REQ;
use crate::admission::cost::Cost;
use crate::admission::limit::Limit;

/// One bucket: its level in unit-nanoseconds and the instant it was last refilled.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket {
    pub(crate) level: i128,
    last: u64,
}

impl Bucket {
    #[inline]
    pub(crate) fn full(cap: i128, now: u64) -> Self {
        Bucket {
            level: cap,
            last: now,
        }
    }

    #[inline]
    pub(crate) fn advance(&mut self, now: u64, rate: u64, cap: i128) {
        if now > self.last {
            let refill = i128::from(now - self.last) * i128::from(rate);
            self.level = self.level.saturating_add(refill).min(cap);
            self.last = now;
        }
    }

    /// Nanoseconds until the level reaches `need`.
    #[inline]
    pub(crate) fn wait_for(&self, need: i128, rate: u64) -> u64 {
        if self.level >= need {
            return 0;
        }
        let rate = i128::from(rate.max(1));
        let deficit = need.saturating_sub(self.level);
        let ns = deficit / rate + i128::from(deficit % rate != 0);
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    #[inline]
    pub(crate) fn charge(&mut self, amount: i128) {
        self.level = self.level.saturating_sub(amount);
    }

    #[inline]
    pub(crate) fn refund(&mut self, amount: i128, cap: i128) {
        self.level = self.level.saturating_add(amount).min(cap);
    }
}

/// The part of `cost` in dimension `d`.
#[inline]
pub(crate) fn part(cost: Cost, d: usize) -> u64 {
    if d == REQ { cost.requests } else { cost.units }
}

/// `n` units in unit-nanoseconds.
#[inline]
pub(crate) fn scaled(n: u64, l: &Limit) -> i128 {
    i128::from(n) * i128::from(l.window)
}

/// A bucket's capacity at `rate`.
#[inline]
pub(crate) fn cap(l: &Limit, rate: u64) -> i128 {
    i128::from(l.burst) * i128::from(rate)
}

/// A tenant's share of `rate`.
#[inline]
pub(crate) fn child_rate(l: &Limit, rate: u64, tenant: usize) -> u64 {
    match &l.shares {
        Some(w) => {
            let r = u128::from(rate) * u128::from(w[tenant]) / u128::from(l.share_total.max(1));
            u64::try_from(r).unwrap_or(u64::MAX).max(1)
        }
        None => rate,
    }
}

/// A tenant bucket's capacity at `rate`.
#[inline]
pub(crate) fn child_cap(l: &Limit, rate: u64) -> i128 {
    i128::from(l.share_burst) * i128::from(rate)
}
