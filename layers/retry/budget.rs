//! A retry budget: retries may be at most a fraction of recent requests.
//!
//! Retrying every failure multiplies load exactly when a backend is least able to take it. A
//! budget (Finagle's `RetryBudget`, Envoy's `retry_budget`, the SRE book's "per-client retry
//! budget") caps retries to `ratio × requests` over a sliding window, with a small floor so
//! that a client sending a handful of requests can still retry them:
//!
//! ```text
//! retries in window ≤ max(ratio × requests in window, min_retries)
//! ```
//!
//! Under a total outage every request fails and asks to retry, and the budget holds attempts
//! per request to `1 + ratio` (plus `min_retries` per window, which matters only at low
//! traffic).
//!
//! Why not `tower::retry::budget::TpsBudget`: it reads `std::time::Instant` itself, so it cannot
//! follow tokio's paused clock or take time as an argument, and its floor is additive. This one
//! takes `now` like every other core in the crate and is lock-free: each slot of the window is
//! one `AtomicU64` holding its epoch and count, updated by compare-and-swap.
//!
//! ```
//! use std::time::Duration;
//! use tokio::time::Instant;
//! use tower_headroom::retry::RetryBudget;
//!
//! let budget = RetryBudget::new(Duration::from_secs(10), 0.1, 0).unwrap();
//! let now = Instant::now();
//! for _ in 0..100 {
//!     budget.deposit(now);
//! }
//! let retries = (0..100).filter(|_| budget.withdraw(now)).count();
//! assert_eq!(retries, 10);
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::ConfigError;

const SLOTS: usize = 10;
const COUNT_BITS: u32 = 32;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// A sliding-window retry budget shared by every clone of a retry layer.
pub struct RetryBudget {
    ratio_millis: u64,
    min_retries: u64,
    slot_nanos: u64,
    window: Duration,
    origin: Instant,
    requests: [AtomicU64; SLOTS],
    retries: [AtomicU64; SLOTS],
}

impl RetryBudget {
    /// A budget allowing `ratio` retries per request (0.0 to 10.0, at 0.001 resolution) over a
    /// sliding `window`, and at least `min_retries` retries per window whatever the traffic.
    pub fn new(window: Duration, ratio: f64, min_retries: u32) -> Result<Self, ConfigError> {
        if !(ratio.is_finite() && (0.0..=10.0).contains(&ratio)) {
            return Err(ConfigError::new(
                "budget.ratio",
                ratio,
                "must be a number between 0.0 and 10.0",
            ));
        }
        if window < Duration::from_millis(SLOTS as u64) {
            return Err(ConfigError::new(
                "budget.window",
                window,
                "must be at least 10ms",
            ));
        }
        let slot_nanos = crate::nanos(window / SLOTS as u32);
        Ok(RetryBudget {
            ratio_millis: (ratio * 1000.0).round() as u64,
            min_retries: u64::from(min_retries),
            slot_nanos,
            window,
            origin: Instant::now(),
            requests: Default::default(),
            retries: Default::default(),
        })
    }

    /// The ratio of retries to requests.
    pub fn ratio(&self) -> f64 {
        self.ratio_millis as f64 / 1000.0
    }

    /// The sliding window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Records a request (a first attempt).
    pub fn deposit(&self, now: Instant) {
        add(&self.requests, self.epoch(now));
    }

    /// Asks for one retry; `true` (and the retry is counted) when the budget allows it.
    pub fn withdraw(&self, now: Instant) -> bool {
        let epoch = self.epoch(now);
        let (requests, _) = sum(&self.requests, epoch);
        let allowed = (requests.saturating_mul(self.ratio_millis) / 1000).max(self.min_retries);
        loop {
            let (retries, seen) = sum(&self.retries, epoch);
            if retries >= allowed {
                return false;
            }
            if try_add(&self.retries, epoch, seen) {
                return true;
            }
        }
    }

    fn epoch(&self, now: Instant) -> u64 {
        // In u64 nanoseconds (585 years): a 128-bit division is a library call per request.
        let since = crate::nanos(now.saturating_duration_since(self.origin));
        // Epochs wrap at 2³²; a wrapped epoch only makes an old slot look older.
        (since / self.slot_nanos.max(1)) & COUNT_MASK
    }
}

/// Adds one to the slot of `epoch`, resetting it if it held an older epoch.
fn add(slots: &[AtomicU64; SLOTS], epoch: u64) {
    let slot = &slots[(epoch % SLOTS as u64) as usize];
    let _ = slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
        Some(bump(word, epoch))
    });
}

/// Like [`add`], but fails if the slot no longer holds `seen`, the word the caller summed, so
/// that a concurrent withdrawal makes this one re-check the budget.
fn try_add(slots: &[AtomicU64; SLOTS], epoch: u64, seen: u64) -> bool {
    let slot = &slots[(epoch % SLOTS as u64) as usize];
    slot.compare_exchange(seen, bump(seen, epoch), Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

fn bump(word: u64, epoch: u64) -> u64 {
    if word >> COUNT_BITS == epoch {
        (epoch << COUNT_BITS) | ((word & COUNT_MASK) + 1).min(COUNT_MASK)
    } else {
        (epoch << COUNT_BITS) | 1
    }
}

/// The sum of the counts of slots whose epoch lies in the window ending at `epoch`, and the word
/// read from `epoch`'s own slot.
fn sum(slots: &[AtomicU64; SLOTS], epoch: u64) -> (u64, u64) {
    let current = (epoch % SLOTS as u64) as usize;
    let mut seen = 0;
    let mut total = 0;
    for (i, slot) in slots.iter().enumerate() {
        let word = slot.load(Ordering::Acquire);
        if i == current {
            seen = word;
        }
        let age = epoch.wrapping_sub(word >> COUNT_BITS) & COUNT_MASK;
        if age < SLOTS as u64 {
            total += word & COUNT_MASK;
        }
    }
    (total, seen)
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("ratio", &self.ratio())
            .field("min_retries", &self.min_retries)
            .field("window", &self.window)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_allows_retries_without_traffic() {
        let b = RetryBudget::new(Duration::from_secs(10), 0.1, 3).unwrap();
        let now = Instant::now();
        assert_eq!((0..10).filter(|_| b.withdraw(now)).count(), 3);
    }

    #[test]
    fn window_slides() {
        let b = RetryBudget::new(Duration::from_secs(10), 0.5, 0).unwrap();
        let t0 = Instant::now();
        for _ in 0..10 {
            b.deposit(t0);
        }
        assert_eq!((0..10).filter(|_| b.withdraw(t0)).count(), 5);
        // Still inside the window: the same requests and retries count.
        let t1 = t0 + Duration::from_secs(9);
        assert!(!b.withdraw(t1));
        // The window has moved past both the requests and the retries.
        let t2 = t0 + Duration::from_secs(11);
        assert!(!b.withdraw(t2));
        b.deposit(t2);
        b.deposit(t2);
        assert!(b.withdraw(t2));
        assert!(!b.withdraw(t2));
    }

    #[test]
    fn rejects_bad_config() {
        for ratio in [f64::NAN, -0.1, 11.0, f64::INFINITY] {
            assert_eq!(
                RetryBudget::new(Duration::from_secs(1), ratio, 0)
                    .unwrap_err()
                    .field(),
                "budget.ratio"
            );
        }
        assert_eq!(
            RetryBudget::new(Duration::ZERO, 0.1, 0)
                .unwrap_err()
                .field(),
            "budget.window"
        );
    }

    #[test]
    fn bound_holds_across_threads() {
        let b = std::sync::Arc::new(RetryBudget::new(Duration::from_secs(10), 0.1, 0).unwrap());
        let now = Instant::now();
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    let mut granted = 0;
                    for _ in 0..10_000 {
                        b.deposit(now);
                        granted += usize::from(b.withdraw(now));
                    }
                    granted
                })
            })
            .collect();
        let granted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert!(
            granted <= 2_000,
            "granted {granted} retries for 20000 requests"
        );
        assert!(granted >= 1_990, "granted only {granted}");
    }

    #[test]
    fn contended_withdrawals_never_take_more_than_allowed() {
        let b = std::sync::Arc::new(RetryBudget::new(Duration::from_secs(10), 0.1, 0).unwrap());
        let now = Instant::now();
        for _ in 0..10_000 {
            b.deposit(now);
        }
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || (0..1_000).filter(|_| b.withdraw(now)).count())
            })
            .collect();
        let granted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(granted, 1_000);
    }
}
