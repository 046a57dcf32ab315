//! The quota core: [`Quota`], [`Reservation`], [`Rejected`], the storage seam ([`QuotaStore`],
//! [`Slot`]) and the in-process [`MemoryStore`].

mod ask;
mod memory;
mod reject;
mod reservation;
mod store;

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

pub use self::ask::{Ask, Grant, MAX_WAIT};
pub use self::memory::{LaneStats, MemorySlot, MemoryStore, MemoryTicket, SlotStats};
pub use self::reject::{RejectReason, Rejected};
pub use self::reservation::Reservation;
pub use self::store::{Headroom, QuotaStore, Slot, StoreSlot};
use super::cost::Cost;
use super::limit::Limit;

/// A token-budget quota shared by every clone: per-key limits on requests and units per window,
/// reserved before a call and settled after it.
///
/// ```
/// use std::time::Duration;
/// use tokio::time::Instant;
/// use tower_headroom::admission::{Cost, Grant, Limit, Quota, RejectReason, Usage};
///
/// let quota = Quota::new(Limit::per_minute().requests(60).units(6_000).build()?);
/// let now = Instant::now();
/// let first = quota.reserve(&"claude", Cost::units(3_000), now)?;
/// assert_eq!(first.grant(), Grant::Now);
/// // It spent 1,000 tokens: the other 2,000 go back to the window.
/// first.settle(Usage::units(1_000), now);
/// let second = quota.reserve(&"claude", Cost::units(5_000), now)?;
/// assert_eq!(second.grant(), Grant::Now);
/// // The window is full until the first call's tokens slide out of it, a minute on: longer
/// // than an interactive call waits by default, so the quota says when to come back.
/// let full = quota.reserve(&"claude", Cost::units(500), now).unwrap_err();
/// assert_eq!(full.reason, RejectReason::Deadline);
/// assert!(full.retry_in.unwrap() > Duration::from_secs(59));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Quota<K, S = MemoryStore<K>> {
    store: Arc<S>,
    _key: PhantomData<fn(&K)>,
}

impl<K, S> Clone for Quota<K, S> {
    fn clone(&self) -> Self {
        Quota {
            store: Arc::clone(&self.store),
            _key: PhantomData,
        }
    }
}

impl<K, S: fmt::Debug> fmt::Debug for Quota<K, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quota").field("store", &self.store).finish()
    }
}

/// Builds an in-process [`Quota`]; see [`Quota::builder`].
#[derive(Debug)]
pub struct QuotaBuilder<K> {
    default: Limit,
    per_key: Vec<(K, Limit)>,
    idle: Duration,
}

impl<K: Hash + Eq + Clone + Send + Sync> QuotaBuilder<K> {
    /// A different limit for `key` (e.g. another model's quota).
    pub fn key_limit(mut self, key: K, limit: Limit) -> Self {
        self.per_key.push((key, limit));
        self
    }

    /// How long a key's state must be idle (and at rest) before it may be evicted
    /// (default 10 minutes).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle = idle;
        self
    }

    /// The quota, with its clock starting now.
    pub fn build(self) -> Quota<K> {
        Quota::with_store(MemoryStore::new(self.default, self.per_key, self.idle))
    }
}

impl<K: Hash + Eq + Clone + Send + Sync> Quota<K> {
    /// An in-process quota giving every key `limit`.
    pub fn new(limit: Limit) -> Self {
        Quota::builder(limit).build()
    }

    /// A builder, with `limit` for every key not given its own.
    pub fn builder(limit: Limit) -> QuotaBuilder<K> {
        QuotaBuilder {
            default: limit,
            per_key: Vec::new(),
            idle: Duration::from_secs(600),
        }
    }

    /// The instant the quota's clock counts from: its time slots are whole multiples of a
    /// 256th of the window after it.
    pub fn epoch(&self) -> Instant {
        self.store.epoch
    }

    /// Evicts every key idle for the idle timeout and at rest; returns how many.
    pub fn evict_idle(&self, now: Instant) -> usize {
        (0..self.store.shards.len())
            .map(|s| self.store.sweep(s, now))
            .sum()
    }

    /// How many keys have state.
    pub fn keys(&self) -> usize {
        self.store.len()
    }

    /// The state of `key`, if it has any.
    pub fn stats(&self, key: &K, now: Instant) -> Option<SlotStats> {
        self.store.get(key).map(|s| s.stats(now))
    }
}

impl<K, S: QuotaStore<K>> Quota<K, S> {
    /// A quota over another store.
    pub fn with_store(store: S) -> Self {
        Quota {
            store: Arc::new(store),
            _key: PhantomData,
        }
    }

    /// The slot of `key`. Holding it pins the key's state (it is not evicted) and lets
    /// [`Reservation::reserve`] skip the map lookup.
    pub fn slot(&self, key: &K, now: Instant) -> S::Slot {
        self.store.slot(key, now)
    }

    /// Reserves `cost` for an interactive call on `key` at `now`.
    #[inline]
    pub fn reserve(
        &self,
        key: &K,
        cost: Cost,
        now: Instant,
    ) -> Result<Reservation<S::Slot>, Rejected> {
        self.reserve_ask(key, &Ask::new(cost), now)
    }

    /// Reserves `ask` on `key` at `now`: admitted now, admitted at an instant (the earliest the
    /// window has room, in FIFO order per priority), or rejected.
    #[inline]
    pub fn reserve_ask(
        &self,
        key: &K,
        ask: &Ask,
        now: Instant,
    ) -> Result<Reservation<S::Slot>, Rejected> {
        Reservation::reserve(self.store.slot(key, now), ask, now)
    }

    /// Reserves and waits until admitted: the in-process queue-and-drain mode. Calls queue per
    /// key and priority and leave at the rate the quota sustains; one whose wait would pass its
    /// deadline is rejected at once.
    pub async fn acquire(&self, key: &K, ask: Ask) -> Result<Reservation<S::Slot>, Rejected> {
        let mut reservation = self.reserve_ask(key, &ask, Instant::now())?;
        loop {
            match reservation.grant() {
                Grant::Now => return Ok(reservation),
                Grant::At(at) => {
                    let mut sleep = std::pin::pin!(tokio::time::sleep_until(at));
                    std::future::poll_fn(|cx| {
                        if sleep.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(());
                        }
                        reservation.poll_wake(cx)
                    })
                    .await;
                    reservation.confirm(Instant::now())?;
                }
            }
        }
    }
}

impl<K, S: QuotaStore<K>> Headroom<K> for Quota<K, S> {
    fn admit_wait(&self, key: &K, cost: Cost, now: Instant) -> Option<Duration> {
        self.store.admit_wait(key, cost, now)
    }
}
