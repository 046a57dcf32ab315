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

    /// A bucket holding `level` at `now` (a key's bucket starts at its initial credit).
    pub(crate) fn at(level: i128, now: u64) -> Self {
        Bucket { level, last: now }
    }

    #[inline]
    pub(crate) fn advance(&mut self, now: u64, rate: u64, cap: i128) {
        if now > self.last {
            let refill = i128::from(now - self.last) * i128::from(rate);
            self.level = self.level.saturating_add(refill).min(cap);
            self.last = now;
        }
    }

    /// [`advance`](Self::advance) without saturating, for the fast paths: the level is at
    /// most a capacity and a refill is a `u64` of nanoseconds times a rate the configuration
    /// bounds (under 2^114), so the sum cannot overflow and is the same.
    #[inline]
    pub(crate) fn advance_unsaturated(&mut self, now: u64, rate: u64, cap: i128) {
        if now > self.last {
            let refill = i128::from(now - self.last) * i128::from(rate);
            self.level = (self.level + refill).min(cap);
            self.last = now;
        }
    }

    /// [`charge`](Self::charge) `amount` (at most 2^111: a `u64` of units times a window),
    /// then keep the level at or above `floor` (above -2^126): the same result, with no
    /// saturating arithmetic.
    #[inline]
    pub(crate) fn charge_floored(&mut self, amount: i128, floor: i128) {
        // `level - amount` saturates only far below `floor`, which wins then anyway.
        self.level = if self.level >= floor + amount {
            self.level - amount
        } else {
            floor
        };
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

/// The level a key's bucket starts at, at `rate`: its initial credit
/// ([`LimitBuilder::initial_credit`](crate::admission::LimitBuilder::initial_credit)).
pub(crate) fn initial(l: &Limit, rate: u64) -> i128 {
    i128::from(l.initial) * i128::from(rate)
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
