//! The quota's gauges: how much of each key's effective limit this client used over the
//! trailing window (`headroom_quota_utilization`), how many calls wait for it in each lane
//! (`headroom_admission_queue_depth{lane}`) and how long the oldest of them has waited
//! (`headroom_admission_oldest_wait_seconds{lane}`), and the effective limit itself (`headroom_quota_limit`,
//! which learning also sets when it moves the limit) beside the configured one
//! (`headroom_quota_configured_limit`), and the units spent beyond it (`headroom_quota_debt`).
//!
//! They are sampled, never computed by the quota's own `reserve`/`settle`: the adapter that
//! ends an attempt asks [`QuotaGauges::due`] (a relaxed atomic load), and at most once per
//! [`SAMPLE_EVERY`] per key reads the key's [`SlotStats`] (one lock of its state) and sets
//! the gauges. Only the in-process store ([`MemorySlot`]) says these numbers; a key on
//! the Redis store says only its lease balance (`headroom_quota_lease_balance`: units taken
//! from the server and not yet spent), and a key on another store has no such series.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::state::MAX_LANES;
use super::{MemorySlot, SlotStats};
use crate::observe::{Gauge, Labels, keys, names};

/// The `lane` label of each lane (the names [`LaneStats`](super::LaneStats) gives).
const LANE_LABELS: [&[(&str, &str)]; MAX_LANES] = [
    &[(keys::LANE, "interactive")],
    &[(keys::LANE, "interactive_pressing")],
    &[(keys::LANE, "batch")],
    &[(keys::LANE, "interactive_borrowing")],
    &[(keys::LANE, "batch_borrowing")],
];

/// One lane's gauges: calls waiting, and the oldest one's wait.
#[derive(Clone)]
struct LaneGauges {
    depth: Gauge,
    oldest: Gauge,
}

/// How often at most a key's gauges are sampled.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// The statistics of `slot` at `now`, when its store keeps them: the in-process one's, or a
/// Redis slot's lease balance.
pub(crate) fn slot_stats<P: 'static>(slot: &P, now: Instant) -> Option<SlotStats> {
    let any: &dyn Any = slot;
    #[cfg(feature = "redis")]
    if let Some(slot) = any.downcast_ref::<super::redis::RedisSlot>() {
        return Some(SlotStats {
            waiting: 0,
            requests_limit: None,
            units_limit: None,
            units_configured: None,
            requests_spent: None,
            units_spent: None,
            at_rest: false,
            lanes: [None; MAX_LANES],
            lease_balance: Some(slot.leased()),
        });
    }
    any.downcast_ref::<Arc<MemorySlot>>()
        .map(|slot| slot.stats(now))
}

/// The share of the effective limit spent over the trailing window: the larger of the
/// requests' and the units' shares (the one that throttles first); `None` without a limit.
pub(crate) fn utilization(stats: &SlotStats) -> Option<f64> {
    let share = |spent: Option<u64>, limit: Option<u64>| match (spent, limit) {
        (Some(spent), Some(limit)) if limit > 0 => Some(spent as f64 / limit as f64),
        _ => None,
    };
    let requests = share(stats.requests_spent, stats.requests_limit);
    let units = share(stats.units_spent, stats.units_limit);
    match (requests, units) {
        (Some(r), Some(u)) => Some(r.max(u)),
        (r, u) => r.or(u),
    }
}

/// The units spent over the trailing window beyond the effective limit: what a settle above
/// its estimate (or a learned cut) left the key owing, which later calls wait out; zero
/// without a unit limit.
pub(crate) fn debt(stats: &SlotStats) -> u64 {
    match (stats.units_spent, stats.units_limit) {
        (Some(spent), Some(limit)) => spent.saturating_sub(limit),
        _ => 0,
    }
}

/// One key's sampled gauges.
#[derive(Clone)]
pub(crate) struct QuotaGauges {
    utilization: Gauge,
    /// Per lane name (the five of the sliding window; the token bucket uses four), registered
    /// on first use.
    lanes: [(&'static str, LaneGauges); MAX_LANES],
    /// The effective unit limit, also set when learning moves it: sampled so that a key
    /// that never learned shows its limit too.
    limit: Gauge,
    /// The configured unit limit, beside the effective one.
    configured: Gauge,
    /// Units spent beyond the effective limit.
    debt: Gauge,
    /// Units leased from a shared store, not yet spent (Redis keys only, so registered on
    /// first use).
    lease: Gauge,
    /// When the next sample is due, in nanoseconds since `epoch`.
    next: Arc<AtomicU64>,
    epoch: Instant,
}

impl QuotaGauges {
    pub(crate) fn register(labels: &Labels) -> Self {
        QuotaGauges {
            utilization: Gauge::register(names::QUOTA_UTILIZATION, labels),
            lanes: LANE_LABELS.map(|lane| {
                let gauges = LaneGauges {
                    depth: Gauge::on_first_use(names::ADMISSION_QUEUE_DEPTH, labels, lane),
                    oldest: Gauge::on_first_use(names::ADMISSION_OLDEST_WAIT, labels, lane),
                };
                (lane[0].1, gauges)
            }),
            limit: Gauge::register(names::QUOTA_LIMIT, labels),
            configured: Gauge::register(names::QUOTA_CONFIGURED_LIMIT, labels),
            debt: Gauge::register(names::QUOTA_DEBT, labels),
            lease: Gauge::on_first_use(names::QUOTA_LEASE_BALANCE, labels, &[]),
            next: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
        }
    }

    fn nanos(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether a sample is due at `now` (and a recorder listens): a relaxed load and a clock
    /// subtraction on the attempt's path, only the recorder check without a recorder.
    #[inline]
    pub(crate) fn due(&self, now: Instant) -> bool {
        self.utilization.live() && self.nanos(now) >= self.next.load(Ordering::Relaxed)
    }

    /// Samples `stats` (asked only when this caller won the sample due at `now`).
    pub(crate) fn sample(&self, now: Instant, stats: impl FnOnce() -> Option<SlotStats>) {
        let at = self.nanos(now);
        let next = self.next.load(Ordering::Relaxed);
        if at < next {
            return;
        }
        let then = at.saturating_add(u64::try_from(SAMPLE_EVERY.as_nanos()).unwrap_or(u64::MAX));
        if self
            .next
            .compare_exchange(next, then, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let Some(stats) = stats() else {
            return;
        };
        if let Some(leased) = stats.lease_balance {
            self.lease.set(leased as f64);
            return;
        }
        if let Some(share) = utilization(&stats) {
            self.utilization.set(share);
        }
        for lane in stats.lanes.iter().flatten() {
            if let Some((_, gauges)) = self.lanes.iter().find(|(name, _)| *name == lane.lane) {
                gauges.depth.set(f64::from(lane.waiting));
                gauges.oldest.set(lane.oldest_wait.as_secs_f64());
            }
        }
        if let Some(units) = stats.units_limit {
            self.limit.set(units as f64);
        }
        if let Some(units) = stats.units_configured {
            self.configured.set(units as f64);
        }
        self.debt.set(debt(&stats) as f64);
    }
}

impl std::fmt::Debug for QuotaGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QuotaGauges")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(requests: (u64, u64), units: Option<(u64, u64)>) -> SlotStats {
        SlotStats {
            waiting: 0,
            requests_limit: Some(requests.1),
            units_limit: units.map(|u| u.1),
            units_configured: units.map(|u| u.1),
            requests_spent: Some(requests.0),
            units_spent: units.map(|u| u.0),
            at_rest: false,
            lanes: [None; MAX_LANES],
            lease_balance: None,
        }
    }

    #[test]
    fn debt_is_the_spend_beyond_the_effective_limit() {
        assert_eq!(debt(&stats((10, 100), Some((1_200, 1_000)))), 200);
        assert_eq!(debt(&stats((10, 100), Some((900, 1_000)))), 0);
        assert_eq!(debt(&stats((500, 100), None)), 0);
    }

    #[test]
    fn utilization_is_the_dimension_nearest_its_limit() {
        assert_eq!(utilization(&stats((10, 100), Some((900, 1000)))), Some(0.9));
        assert_eq!(utilization(&stats((50, 100), Some((100, 1000)))), Some(0.5));
        assert_eq!(utilization(&stats((25, 100), None)), Some(0.25));
        assert_eq!(utilization(&stats((0, 0), None)), None);
    }
}
