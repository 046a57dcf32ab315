//! [`RedisStore`]: the [`QuotaStore`] whose budgets live in Redis, its keys' slots created
//! and evicted.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::conn::Common;
use super::lease::{Leases, Sizes};
use super::mode::StoreMode;
use super::script::{Answer, Args, Op};
use super::slot::{RedisSlot, SlotInner, refill};
use super::{StoreError, lock, redis_key, sat};
use crate::admission::{Cost, Limit, Quota, QuotaStore, Slot, StoreSlot, Tenant};

/// What a key of a [`RedisStore`] must be: printable (it names the Redis key) and usable as a
/// map key.
pub trait Key: fmt::Display + Hash + Eq + Clone + Send + Sync {}
impl<K: fmt::Display + Hash + Eq + Clone + Send + Sync> Key for K {}

/// A [`QuotaStore`] whose budgets live in Redis, shared by every process that uses the same
/// quota name and key. Cheap to clone; see the [module docs](super).
pub struct RedisStore<K> {
    pub(super) inner: Arc<Inner<K>>,
}

impl<K> Clone for RedisStore<K> {
    fn clone(&self) -> Self {
        RedisStore {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K> fmt::Debug for RedisStore<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("name", &self.inner.name)
            .field("mode", &self.inner.common.mode())
            .finish_non_exhaustive()
    }
}

pub(super) struct Inner<K> {
    pub(super) common: Arc<Common>,
    pub(super) name: String,
    pub(super) default: Arc<Limit>,
    pub(super) per_key: HashMap<K, Arc<Limit>>,
    pub(super) lease: f64,
    pub(super) lease_ttl: Option<Duration>,
    pub(super) slots: Mutex<HashMap<K, RedisSlot>>,
    pub(super) fallback: Option<Quota<K>>,
    pub(super) inserts: AtomicUsize,
}

impl<K: Key> RedisStore<K> {
    /// Where the store stands.
    pub fn mode(&self) -> StoreMode {
        self.inner.common.mode()
    }

    /// The last error a Redis call returned, if any (kept after recovery, for the operator).
    pub fn last_error(&self) -> Option<StoreError> {
        lock(&self.inner.common.last_error).clone()
    }

    /// Script calls made so far (each one round trip), for measuring leasing.
    pub fn round_trips(&self) -> u64 {
        self.inner.common.round_trips.load(Ordering::Relaxed)
    }

    /// The Redis key holding `key`'s shared state.
    pub fn redis_key(&self, key: &K) -> String {
        redis_key(&self.inner.name, key)
    }

    /// Takes `cost` from `key`'s shared budget now, in one round trip and without leasing:
    /// `Ok(None)` when taken, `Ok(Some(wait))` when the budget will hold it only after `wait`
    /// (nothing taken). For async callers that want the server's answer per call.
    pub async fn take_now(
        &self,
        key: &K,
        cost: Cost,
        tenant: Option<Tenant>,
    ) -> Result<Option<Duration>, StoreError> {
        let slot = self.slot(key, Instant::now());
        let s = &*slot.0;
        let amount = [sat(cost.requests), sat(cost.units)];
        let op = Op::take(amount, tenant.map(|t| t.0));
        match s.common.call(&s.key, &s.args, &op).await? {
            Answer::Granted { .. } => Ok(None),
            Answer::Wait { us, .. } => Ok(Some(Duration::from_micros(us))),
        }
    }

    /// Gives every unused lease back to Redis and waits for it (each call within the
    /// operation timeout). Call it when the process stops; calls admitted afterwards take new
    /// leases.
    pub async fn shutdown(&self) {
        let slots: Vec<RedisSlot> = lock(&self.inner.slots).values().cloned().collect();
        for slot in slots {
            slot.0.give_back().await;
        }
    }

    /// Forgets keys that nothing holds, waits for or uses (their leases go back).
    pub fn evict_idle(&self) -> usize {
        let mut slots = lock(&self.inner.slots);
        let before = slots.len();
        slots.retain(|_, s| Arc::strong_count(&s.0) > 1 || lock(&s.0.leases).busy());
        before - slots.len()
    }

    fn create(&self, key: &K, now: Instant) -> RedisSlot {
        let inner = &*self.inner;
        let limit = inner.per_key.get(key).unwrap_or(&inner.default).clone();
        let window_us = (limit.window / 1_000).max(1);
        let limits = [limit.requests.unwrap_or(0), limit.units.unwrap_or(0)];
        let lease = limits.map(|v| (v as f64 * inner.lease).ceil() as u64);
        let burst = |v: u64| {
            u64::try_from(u128::from(v) * u128::from(limit.burst) / u128::from(limit.window))
                .unwrap_or(u64::MAX)
        };
        // The server's bucket holds a lease plus 20 ms of refill, so that a client whose timer
        // fires a tick late (or whose ask is a round trip behind another's) loses nothing.
        let slack = |v: u64| {
            u64::try_from((u128::from(v) * u128::from(LAG_NS)).div_ceil(u128::from(limit.window)))
                .unwrap_or(u64::MAX)
        };
        let caps = [0, 1].map(|d| burst(limits[d]).max(lease[d].saturating_add(slack(limits[d]))));
        // A bucket starts at the limit's initial credit, as the in-process one does, and holds
        // at least one lease, so that a process can take its first slice at once.
        let initial = [0, 1].map(|d| {
            let credit = u64::try_from(
                u128::from(limits[d]) * u128::from(limit.initial) / u128::from(limit.window),
            )
            .unwrap_or(u64::MAX);
            credit
                .max(lease[d].saturating_add(slack(limits[d])))
                .min(caps[d])
        });
        let max_cost = [0, 1].map(|d| limits[d].saturating_add(burst(limits[d])));
        let reserve = [0, 1].map(|d| {
            sat(u64::try_from(
                u128::from(lease[d]) * u128::from(limit.reserve_ppm.unwrap_or(0)) / 1_000_000,
            )
            .unwrap_or(0))
        });
        let ms = |ns: u64| ns / 1_000_000;
        let window = matches!(
            limit.accounting,
            crate::admission::Accounting::SlidingWindow
        );
        let ppm = |v: u64| v as f64 / 1e6;
        let rules = &limit.learning;
        let mut args = Args {
            window_us,
            limits,
            caps,
            initial,
            shares: limit.shares.clone().map(|w| (w, limit.share_total)),
            child_caps_us: limit.share_burst / 1_000,
            ttl_ms: ms(limit.window)
                .saturating_mul(3)
                .saturating_add(ms(limit.burst))
                .saturating_add(ms(limit.share_burst))
                .saturating_add(1_000),
            model: if window { "w" } else { "b" },
            slots: if window {
                crate::admission::window::SLOTS
            } else {
                crate::admission::bucket::SPEND_SLOTS
            },
            learning: [
                ppm(rules.max_cut_ppm),
                ppm(rules.regain_ppm),
                ppm(rules.floor_ppm),
            ],
            long: limit
                .long
                .iter()
                .map(|w| {
                    [
                        u64::try_from(w.duration().as_micros()).unwrap_or(u64::MAX),
                        crate::admission::LONG_SLOTS,
                        w.requests_limit().unwrap_or(0),
                        w.units_limit().unwrap_or(0),
                    ]
                })
                .collect(),
        };
        // A long window's state must outlive its window (and its slot's rounding).
        if let Some(w) = limit.long.last() {
            let keep = w.duration() + w.duration() / 96 + Duration::from_secs(1);
            let keep = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX);
            args.ttl_ms = args.ttl_ms.max(keep);
        }
        let sizes = Sizes {
            limited: [limit.requests.is_some(), limit.units.is_some()],
            lease: lease.map(sat),
            reserve,
            ttl: inner
                .lease_ttl
                .unwrap_or(Duration::from_nanos(limit.window)),
            max_queue: limit.max_queue,
        };
        let tenants = limit.shares.as_ref().map_or(0, |w| w.len());
        let kick = Arc::new(Notify::new());
        let slot = Arc::new(SlotInner {
            common: Arc::clone(&inner.common),
            key: redis_key(&inner.name, key),
            args,
            max_cost,
            tenants,
            leases: Mutex::new(Leases::new(sizes, 1 + tenants)),
            kick: Arc::clone(&kick),
            fallback: inner.fallback.as_ref().map(|q| q.slot(key, now)),
        });
        lock(&inner.common.live).push(Arc::downgrade(&slot));
        inner
            .common
            .handle
            .spawn(refill(Arc::downgrade(&slot), kick));
        RedisSlot(slot)
    }
}

impl<K> StoreSlot for RedisStore<K> {
    type Slot = RedisSlot;
}

impl<K: Key> QuotaStore<K> for RedisStore<K> {
    fn slot(&self, key: &K, now: Instant) -> RedisSlot {
        if let Some(s) = lock(&self.inner.slots).get(key) {
            return s.clone();
        }
        let slot = {
            let mut slots = lock(&self.inner.slots);
            match slots.get(key) {
                Some(s) => return s.clone(),
                None => {
                    let slot = self.create(key, now);
                    slots.insert(key.clone(), slot.clone());
                    slot
                }
            }
        };
        if self.inner.inserts.fetch_add(1, Ordering::Relaxed) % 64 == 63 {
            self.evict_idle();
        }
        slot
    }

    fn admit_wait(&self, key: &K, cost: Cost, now: Instant) -> Option<Duration> {
        self.slot(key, now).admit_wait(cost, now)
    }
}

/// The refill the server's bucket keeps beyond a lease, as a duration.
const LAG_NS: u64 = 20_000_000;
