//! The in-process store: [`MemoryStore`], per-key [`MemorySlot`]s in a sharded map with
//! idle-key eviction.
//!
//! A reservation takes the key's lock once: the success path (see `KeyState::reserve_fast`)
//! in a short critical section, anything else in the general one; a settle at the estimate
//! with nothing to learn takes no lock at all.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use super::{Ask, Grant, MAX_WAIT, QuotaStore, Rejected, Slot, StoreSlot};
use crate::Outcome;
use crate::admission::cost::{Cost, Usage};
use crate::admission::limit::Limit;
use crate::admission::long::bound_window;
use crate::admission::state::{KeyState, Ticket};
use crate::deadline::Deadline;
use crate::nanos;

/// Nanoseconds from a store's epoch to `now` (zero before it, saturating).
#[inline]
fn since(epoch: Instant, now: Instant) -> u64 {
    nanos(now.saturating_duration_since(epoch))
}

/// In-process state of one key.
pub struct MemorySlot {
    state: Mutex<KeyState>,
    limit: Arc<Limit>,
    epoch: Instant,
    learning: AtomicBool,
}

impl fmt::Debug for MemorySlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySlot").finish_non_exhaustive()
    }
}

/// What a [`MemorySlot`] reports about its state, for tests and dashboards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotStats {
    /// Calls waiting, all lanes.
    pub waiting: u32,
    /// Effective (learned) requests per window.
    pub requests_limit: Option<u64>,
    /// Effective (learned) units per window.
    pub units_limit: Option<u64>,
    /// Configured units per window (the limit learning starts from and returns to).
    pub units_configured: Option<u64>,
    /// Requests this client spent over the trailing window (calls in flight at their
    /// estimate).
    pub requests_spent: Option<u64>,
    /// Units this client spent over the trailing window (calls in flight at their estimate,
    /// settled calls at their real usage).
    pub units_spent: Option<u64>,
    /// Whether the state is back at rest (nothing waiting, buckets full).
    pub at_rest: bool,
    /// Per lane, in the order the lanes are served (the sliding window has five, the token
    /// bucket four; `None` after the last).
    pub lanes: [Option<LaneStats>; 5],
    /// Units leased from a shared store and not yet spent (a
    /// [`RedisSlot`](crate::admission::redis::RedisSlot)'s; every other field is then empty):
    /// `None` for the in-process store.
    pub lease_balance: Option<i64>,
}

/// One lane of a [`MemorySlot`]: the calls waiting in it and how long the oldest has waited.
///
/// The lanes are those of the [admission docs](crate::admission#shares-and-priorities):
/// `interactive` (within share; every interactive call without shares),
/// `interactive_pressing` (within share, its tenant borrowed lately; sliding window only),
/// `batch` (within share), `interactive_borrowing` and `batch_borrowing`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaneStats {
    /// The lane's name (the `lane` label of the queue gauges).
    pub lane: &'static str,
    /// Calls waiting in the lane.
    pub waiting: u32,
    /// How long the call that has waited longest in the lane has waited (zero with nobody
    /// waiting). Exact while that call waits; once it leaves, the lane counts the next one's
    /// wait from then until that call looks again (the sliding window's waiters look at
    /// least every 64th of the window), so it may read low for that long.
    pub oldest_wait: Duration,
}

impl MemorySlot {
    #[inline]
    fn lock(&self) -> MutexGuard<'_, KeyState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[inline]
    fn ns(&self, now: Instant) -> u64 {
        since(self.epoch, now)
    }

    /// `now` and the ask's deadline (at most [`MAX_WAIT`] on), in nanoseconds since the epoch.
    #[inline]
    fn ns_and_deadline(&self, ask: &Ask, now: Instant) -> (u64, u64) {
        let now_ns = self.ns(now);
        let max = now_ns.saturating_add(nanos(MAX_WAIT));
        let deadline = match ask.deadline.or_else(Deadline::current) {
            Some(deadline) => self.ns(deadline.instant()).min(max),
            // The priority's default wait from `now`, as `Ask::deadline_at` has it, without
            // the instant arithmetic: for `now` after the epoch (`now_ns > 0`; `since` is
            // zero at or before it) nanoseconds add up. Capped at `max` as the others, by
            // capping the wait (a constant) instead of the sum: a saturating addition grows
            // with what is added, so the two are the same.
            None if now_ns > 0 => {
                now_ns.saturating_add(nanos(ask.priority.default_wait()).min(nanos(MAX_WAIT)))
            }
            None => self.ns(ask.deadline_at(now)).min(max),
        };
        (now_ns, deadline)
    }

    fn instant(&self, ns: u64) -> Instant {
        // Waits are bounded by MAX_WAIT, so this cannot overflow in practice; saturate anyway.
        self.epoch
            .checked_add(Duration::from_nanos(ns))
            .unwrap_or(self.epoch + MAX_WAIT)
    }

    /// [`Slot::settle`] beyond the success path: under the lock. The ticket and the usage come
    /// by value and the ticket goes back, so that the success path need not keep either in
    /// memory.
    #[inline(never)]
    fn settle_locked(
        &self,
        mut ticket: MemoryTicket,
        outcome: &Outcome,
        usage: Usage,
        now: Instant,
    ) -> (Option<u64>, MemoryTicket) {
        let now = self.ns(now);
        let mut state = self.lock();
        let moved = state.settle(&self.limit, &mut ticket.0, outcome, &usage, now);
        // A limit learned below the configured one at the last settle may have regained it
        // since: that is a move to report too.
        let moves = moved || self.learning.load(Ordering::Relaxed);
        self.learning.store(state.learning(), Ordering::Relaxed);
        if !moves {
            return (None, ticket);
        }
        let (requests, units) = state.effective();
        (units.or(requests), ticket)
    }

    /// The slot's state, at `now`.
    pub fn stats(&self, now: Instant) -> SlotStats {
        let state = self.lock();
        let (requests_limit, units_limit) = state.effective();
        let (requests_spent, units_spent) = state.spent(self.ns(now));
        SlotStats {
            waiting: state.waiting(),
            requests_limit,
            units_limit,
            units_configured: self.limit.units(),
            requests_spent,
            units_spent,
            at_rest: state.at_rest(&self.limit, self.ns(now), 0),
            lanes: state.lanes(self.ns(now)).map(|lane| {
                lane.map(|lane| LaneStats {
                    lane: lane.name,
                    waiting: lane.waiting,
                    oldest_wait: Duration::from_nanos(lane.oldest),
                })
            }),
            lease_balance: None,
        }
    }
}

impl Slot for MemorySlot {
    type Ticket = MemoryTicket;

    #[inline(always)]
    fn reserve(&self, ask: &Ask, now: Instant) -> Result<(MemoryTicket, Grant), Rejected> {
        let (now, deadline) = self.ns_and_deadline(ask, now);
        let mut state = self.lock();
        // The success path in one short critical section; anything else in the general one.
        if let Some(admitted) = state.reserve_fast(&self.limit, ask, now) {
            drop(state);
            return Ok((MemoryTicket(admitted.ticket(ask, deadline)), Grant::Now));
        }
        let ticket = state.reserve(&self.limit, ask, deadline, now);
        drop(state);
        let ticket = ticket.map_err(Rejected::from_refusal)?;
        let grant = if ticket.waiting {
            Grant::At(self.instant(ticket.admit_at))
        } else {
            Grant::Now
        };
        Ok((MemoryTicket(ticket), grant))
    }

    fn confirm(&self, ticket: &mut MemoryTicket, now: Instant) -> Result<Grant, Rejected> {
        let now = self.ns(now);
        let at = self
            .lock()
            .confirm(&self.limit, &mut ticket.0, now)
            .map_err(Rejected::from_refusal)?;
        Ok(at.map_or(Grant::Now, |at| Grant::At(self.instant(at))))
    }

    #[inline]
    fn settle(
        &self,
        ticket: &mut MemoryTicket,
        outcome: &Outcome,
        usage: &Usage,
        now: impl FnOnce() -> Instant,
    ) -> Option<u64> {
        // The success path of a call settled at its estimate, with nothing to learn, needs no lock.
        let t = &ticket.0;
        if !t.waiting
            && !t.probes()
            && outcome.is_success()
            && usage.units.is_none_or(|u| u == t.cost.units)
            && usage.remaining.requests.is_none()
            && usage.remaining.units.is_none()
            && !self.learning.load(Ordering::Relaxed)
        {
            return None;
        }
        let (moved, settled) = self.settle_locked(*ticket, outcome, *usage, now());
        *ticket = settled;
        moved
    }

    fn release_unsent(&self, ticket: &mut MemoryTicket, now: Instant) {
        let now = self.ns(now);
        self.lock().release_unsent(&self.limit, &mut ticket.0, now);
    }

    fn cancel(&self, ticket: &mut MemoryTicket, now: Instant) {
        if !ticket.0.waiting && !ticket.0.probes() {
            return;
        }
        let now = self.ns(now);
        self.lock().cancel(&self.limit, &mut ticket.0, now);
    }

    fn admitted_at(&self, ticket: &MemoryTicket) -> Instant {
        self.instant(ticket.0.admit_at)
    }

    fn bound_by(&self, ticket: &MemoryTicket) -> Option<Duration> {
        bound_window(&self.limit, ticket.0.long.bound)
    }

    fn admit_wait(&self, cost: Cost, now: Instant) -> Option<Duration> {
        let now = self.ns(now);
        self.lock()
            .peek(&self.limit, cost, now)
            .map(Duration::from_nanos)
    }
}

/// The ticket of a [`MemorySlot`] reservation.
#[derive(Clone, Copy, Debug)]
pub struct MemoryTicket(Ticket);

/// The in-process [`QuotaStore`]: per-key state in a sharded map (`RwLock<HashMap>` per shard,
/// `foldhash` hashing), each key behind its own mutex that is held only for the arithmetic.
///
/// Keys whose state has been idle for the idle timeout and is back at rest (buckets full,
/// nobody waiting, no reservation alive) are evicted: a shard is swept every 64 new keys, and
/// [`Quota::evict_idle`] sweeps all of them.
///
/// [`Quota::evict_idle`]: super::Quota::evict_idle
pub struct MemoryStore<K> {
    pub(super) shards: Box<[Shard<K>]>,
    hasher: foldhash::fast::RandomState,
    default: Arc<Limit>,
    per_key: HashMap<K, Arc<Limit>, foldhash::fast::RandomState>,
    pub(super) epoch: Instant,
    idle: u64,
    inserts: AtomicUsize,
}

impl<K> fmt::Debug for MemoryStore<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

/// One shard of the key map.
type Shard<K> = RwLock<HashMap<K, Arc<MemorySlot>, foldhash::fast::RandomState>>;

const SHARDS: usize = 32;
const SWEEP_EVERY: usize = 64;

impl<K: Hash + Eq + Clone + Send + Sync> MemoryStore<K> {
    /// A store giving every key `default`, and `per_key` their own, with its clock starting
    /// now.
    pub(super) fn new(default: Limit, per_key: Vec<(K, Limit)>, idle: Duration) -> Self {
        MemoryStore {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: foldhash::fast::RandomState::default(),
            default: Arc::new(default),
            per_key: per_key.into_iter().map(|(k, l)| (k, Arc::new(l))).collect(),
            epoch: Instant::now(),
            idle: nanos(idle),
            inserts: AtomicUsize::new(0),
        }
    }

    fn shard(&self, key: &K) -> &Shard<K> {
        let h = self.hasher.hash_one(key) as usize;
        &self.shards[h % self.shards.len()]
    }

    /// The key's slot, if it has state.
    pub(super) fn get(&self, key: &K) -> Option<Arc<MemorySlot>> {
        self.shard(key)
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    pub(super) fn sweep(&self, shard: usize, now: Instant) -> usize {
        let now_ns = since(self.epoch, now);
        let mut map = self.shards[shard]
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let before = map.len();
        // Under the shard's write lock nobody can clone a slot out of the map, so a strong
        // count of one means no reservation holds it.
        map.retain(|_, slot| {
            Arc::strong_count(slot) > 1
                || !slot
                    .state
                    .try_lock()
                    .map(|s| s.at_rest(&slot.limit, now_ns, self.idle))
                    .unwrap_or(false)
        });
        before - map.len()
    }

    pub(super) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

impl<K> StoreSlot for MemoryStore<K> {
    type Slot = Arc<MemorySlot>;
}

impl<K: Hash + Eq + Clone + Send + Sync> QuotaStore<K> for MemoryStore<K> {
    #[inline]
    fn slot(&self, key: &K, now: Instant) -> Arc<MemorySlot> {
        if let Some(slot) = self.get(key) {
            return slot;
        }
        let shard = self.shard(key);
        let limit = self.per_key.get(key).unwrap_or(&self.default).clone();
        let now_ns = since(self.epoch, now);
        let slot = shard
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(MemorySlot {
                    state: Mutex::new(KeyState::new(&limit, now_ns)),
                    limit,
                    epoch: self.epoch,
                    learning: AtomicBool::new(false),
                })
            })
            .clone();
        let n = self.inserts.fetch_add(1, Ordering::Relaxed);
        if n % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep((n / SWEEP_EVERY) % self.shards.len(), now);
        }
        slot
    }

    fn admit_wait(&self, key: &K, cost: Cost, now: Instant) -> Option<Duration> {
        match self.get(key) {
            Some(slot) => slot.admit_wait(cost, now),
            None => {
                let limit = self.per_key.get(key).unwrap_or(&self.default);
                KeyState::new(limit, 0)
                    .peek(limit, cost, 0)
                    .map(Duration::from_nanos)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::limit::Priority;

    /// `ns_and_deadline`'s shortcut for the default wait gives what the general formula gives
    /// (the ask's deadline in the store's nanoseconds, capped at `MAX_WAIT` from `now`):
    /// before, at and after the epoch, for both priorities and for explicit deadlines.
    #[test]
    fn the_default_deadline_shortcut_is_the_general_formula() {
        let epoch = Instant::now();
        let limit = Arc::new(Limit::per_second().units(100).build().unwrap());
        let slot = MemorySlot {
            state: Mutex::new(KeyState::new(&limit, 0)),
            limit,
            epoch,
            learning: AtomicBool::new(false),
        };
        let general = |ask: &Ask, now: Instant| {
            let now_ns = since(epoch, now);
            let cap = now_ns.saturating_add(nanos(MAX_WAIT));
            (now_ns, since(epoch, ask.deadline_at(now)).min(cap))
        };
        let nows = [
            epoch.checked_sub(Duration::from_secs(1)),
            Some(epoch),
            Some(epoch + Duration::from_nanos(1)),
            Some(epoch + Duration::from_secs(3600)),
        ];
        for now in nows.into_iter().flatten() {
            let interactive = Ask::new(Cost::units(1));
            for ask in [
                interactive,
                interactive.priority(Priority::Batch),
                interactive.deadline(Deadline::at(now + Duration::from_secs(5))),
                interactive.deadline(Deadline::at(now + 2 * MAX_WAIT)),
            ] {
                assert_eq!(
                    slot.ns_and_deadline(&ask, now),
                    general(&ask, now),
                    "{ask:?} at {now:?}"
                );
            }
        }
        // The shortcut's constants: the default waits from a `now` after the epoch.
        let now = epoch + Duration::from_secs(3600);
        let (now_ns, deadline) = slot.ns_and_deadline(&Ask::new(Cost::units(1)), now);
        assert_eq!(
            deadline - now_ns,
            nanos(Priority::Interactive.default_wait())
        );
    }
}
