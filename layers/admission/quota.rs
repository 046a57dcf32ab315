//! The quota core: [`Quota`], [`Reservation`], [`Rejected`], the storage seam ([`QuotaStore`],
//! [`Slot`]) and the in-process [`MemoryStore`].

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use super::cost::{Cost, Usage};
use super::limit::{Limit, Priority, Tenant};
use super::state::{KeyState, Refusal, Ticket};
use crate::Outcome;
use crate::deadline::Deadline;
use crate::nanos;

/// The longest any call may be told to wait; longer waits are rejected.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// One call's request for quota: its cost, priority, tenant and deadline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ask {
    /// What the call will spend.
    pub cost: Cost,
    /// Interactive or batch.
    pub priority: Priority,
    /// The application the call is for, when the key's limit has [shares](super::LimitBuilder::shares).
    pub tenant: Option<Tenant>,
    /// The latest the call may be admitted: the call's [`Deadline`]. `None`: the one in scope
    /// ([`Deadline::current`]), else the priority's [default wait](Priority::default_wait)
    /// from the reservation.
    pub deadline: Option<Deadline>,
}

impl Ask {
    /// An interactive call of `cost` with no tenant and the deadline in scope.
    pub const fn new(cost: Cost) -> Self {
        Ask {
            cost,
            priority: Priority::Interactive,
            tenant: None,
            deadline: None,
        }
    }

    /// Sets the priority.
    pub const fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the tenant.
    pub const fn tenant(mut self, tenant: Tenant) -> Self {
        self.tenant = Some(tenant);
        self
    }

    /// Sets the deadline.
    pub const fn deadline(mut self, deadline: Deadline) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The instant this call may be admitted by at the latest, reserving at `now`.
    pub fn deadline_at(&self, now: Instant) -> Instant {
        match self.deadline.or_else(Deadline::current) {
            Some(deadline) => deadline.instant(),
            None => now.checked_add(self.priority.default_wait()).unwrap_or(now),
        }
    }
}

/// Why a call was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
}

impl RejectReason {
    /// A short, stable name.
    pub const fn as_str(&self) -> &'static str {
        match self {
            RejectReason::Deadline => "deadline",
            RejectReason::QueueFull => "queue_full",
            RejectReason::CostTooLarge => "cost_too_large",
            RejectReason::StoreUnavailable => "store_unavailable",
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
            (reason, None) => write!(f, "admission rejected: {}", reason.as_str()),
        }
    }
}

impl std::error::Error for Rejected {}

/// When a reserved call may start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// Now.
    Now,
    /// Not before this instant; call [`Reservation::confirm`] then.
    At(Instant),
}

/// One key's quota state, as held by a store: the storage seam.
///
/// The policy (what to admit, shares, priorities, learning) is arithmetic on the key's state;
/// a `Slot` runs it atomically. [`MemoryStore`] keeps the state in process behind a mutex and
/// answers synchronously. A store whose state lives elsewhere (Redis: one Lua script per
/// operation, the server's clock) keeps this interface by answering from a local lease of the
/// shared quota, refilled in the background: a call the lease cannot cover yet is granted
/// [`Grant::At`] an estimate, and [`poll_wake`](Slot::poll_wake) wakes it as soon as the
/// server's answer arrives, so a store that asks the server per call costs one round trip, not
/// a polling interval. Nothing here holds a lock across an await.
pub trait Slot: Send + Sync {
    /// What a reservation carries between operations.
    type Ticket: Send + Sync + Unpin;

    /// Reserves `ask`: granted now, granted at an instant, or rejected.
    fn reserve(&self, ask: &Ask, now: Instant) -> Result<(Self::Ticket, Grant), Rejected>;
    /// Re-checks a waiting reservation when its instant has come.
    fn confirm(&self, ticket: &mut Self::Ticket, now: Instant) -> Result<Grant, Rejected>;
    /// Settles an admitted reservation with what the call spent and how it ended. `now` is
    /// called only when the settling needs the time (not for a success at its estimate with
    /// nothing to learn).
    ///
    /// Returns the key's effective limit per window (units when limited, else requests) when
    /// the settling may have moved it (a throttle, or a call while the limit is learned below
    /// the configured one), `None` otherwise.
    fn settle(
        &self,
        ticket: &mut Self::Ticket,
        outcome: &Outcome,
        usage: &Usage,
        now: impl FnOnce() -> Instant,
    ) -> Option<u64>;
    /// Settles an admitted reservation whose call was never sent (the service failed before
    /// it): its units go back, its request stays counted, nothing is learned.
    fn release_unsent(&self, ticket: &mut Self::Ticket, now: Instant);
    /// Gives a reservation up: refunded when the call never started, kept at the estimate
    /// when it was in flight.
    fn cancel(&self, ticket: &mut Self::Ticket, now: Instant);
    /// The wait an interactive, within-share call of `cost` would get now, without reserving;
    /// `None` when it can never be admitted.
    fn admit_wait(&self, cost: Cost, now: Instant) -> Option<Duration>;
    /// The instant the reservation was (or is to be) admitted, by the store's clock.
    fn admitted_at(&self, ticket: &Self::Ticket) -> Instant;
    /// While a reservation waits for its [`Grant::At`] instant: `Ready` when the slot may
    /// admit it earlier (a store whose budget is refilled from a server got its answer),
    /// after which the waiter calls [`confirm`](Slot::confirm); otherwise `Pending`, with
    /// `cx` woken when that changes. The default never wakes early: stores that compute the
    /// instant exactly (the in-process one) need nothing else.
    fn poll_wake(&self, ticket: &mut Self::Ticket, cx: &mut Context<'_>) -> Poll<()> {
        let _ = (ticket, cx);
        Poll::Pending
    }
}

/// The [`Slot`] type of a store, apart from its key type, so that a service's future names the
/// slot without the key (a type that named the key there would trip the compiler's check that
/// a spawned future is `Send` when the key is a reference, as in `&'static str`).
pub trait StoreSlot {
    /// A handle to one key's state, held by reservations.
    type Slot: Slot + Clone;
}

/// Where the per-key state lives: finds (or creates) a key's [`Slot`].
pub trait QuotaStore<K>: StoreSlot + Send + Sync {
    /// The key's slot, created from its limit when missing.
    fn slot(&self, key: &K, now: Instant) -> Self::Slot;
    /// [`Slot::admit_wait`] for a key, without creating its state.
    fn admit_wait(&self, key: &K, cost: Cost, now: Instant) -> Option<Duration>;
}

/// Read-only headroom, for routers that skip targets which cannot admit a call in time.
pub trait Headroom<K> {
    /// The earliest wait before a call of `cost` could be admitted for `key` at `now`, without
    /// reserving anything; `None` when it can never be admitted (the cost exceeds the whole
    /// window plus burst). Answers for an interactive call within its share.
    fn admit_wait(&self, key: &K, cost: Cost, now: Instant) -> Option<Duration>;
}

/// Nanoseconds from a store's epoch to `now` (zero before it, saturating).
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
    /// Requests this client spent over the trailing window (calls in flight at their
    /// estimate).
    pub requests_spent: Option<u64>,
    /// Units this client spent over the trailing window (calls in flight at their estimate,
    /// settled calls at their real usage).
    pub units_spent: Option<u64>,
    /// Whether the state is back at rest (nothing waiting, buckets full).
    pub at_rest: bool,
}

impl MemorySlot {
    fn lock(&self) -> MutexGuard<'_, KeyState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn ns(&self, now: Instant) -> u64 {
        since(self.epoch, now)
    }

    fn instant(&self, ns: u64) -> Instant {
        // Waits are bounded by MAX_WAIT, so this cannot overflow in practice; saturate anyway.
        self.epoch
            .checked_add(Duration::from_nanos(ns))
            .unwrap_or(self.epoch + MAX_WAIT)
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
            requests_spent,
            units_spent,
            at_rest: state.at_rest(&self.limit, self.ns(now), 0),
        }
    }
}

impl Slot for Arc<MemorySlot> {
    type Ticket = MemoryTicket;

    #[inline]
    fn reserve(&self, ask: &Ask, now: Instant) -> Result<(MemoryTicket, Grant), Rejected> {
        let deadline = self.ns(ask.deadline_at(now));
        let now = self.ns(now);
        let deadline = deadline.min(now.saturating_add(nanos(MAX_WAIT)));
        let ticket = self
            .lock()
            .reserve(&self.limit, ask, deadline, now)
            .map_err(Rejected::from_refusal)?;
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
            && !t.probe
            && outcome.is_success()
            && usage.units.is_none_or(|u| u == t.cost.units)
            && usage.remaining.requests.is_none()
            && usage.remaining.units.is_none()
            && !self.learning.load(Ordering::Relaxed)
        {
            return None;
        }
        let now = self.ns(now());
        let mut state = self.lock();
        let moved = state.settle(&self.limit, &mut ticket.0, outcome, usage, now);
        // A limit learned below the configured one at the last settle may have regained it
        // since: that is a move to report too.
        let moves = moved || self.learning.load(Ordering::Relaxed);
        self.learning.store(state.learning(), Ordering::Relaxed);
        if !moves {
            return None;
        }
        let (requests, units) = state.effective();
        units.or(requests)
    }

    fn release_unsent(&self, ticket: &mut MemoryTicket, now: Instant) {
        let now = self.ns(now);
        self.lock().release_unsent(&self.limit, &mut ticket.0, now);
    }

    fn cancel(&self, ticket: &mut MemoryTicket, now: Instant) {
        if !ticket.0.waiting && !ticket.0.probe {
            return;
        }
        let now = self.ns(now);
        self.lock().cancel(&self.limit, &mut ticket.0, now);
    }

    fn admitted_at(&self, ticket: &MemoryTicket) -> Instant {
        self.instant(ticket.0.admit_at)
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
pub struct MemoryStore<K> {
    shards: Box<[Shard<K>]>,
    hasher: foldhash::fast::RandomState,
    default: Arc<Limit>,
    per_key: HashMap<K, Arc<Limit>, foldhash::fast::RandomState>,
    epoch: Instant,
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
    fn shard(&self, key: &K) -> &Shard<K> {
        let h = self.hasher.hash_one(key) as usize;
        &self.shards[h % self.shards.len()]
    }

    /// The key's slot, if it has state.
    fn get(&self, key: &K) -> Option<Arc<MemorySlot>> {
        self.shard(key)
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    fn sweep(&self, shard: usize, now: Instant) -> usize {
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

    fn len(&self) -> usize {
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
        Quota::with_store(MemoryStore {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: foldhash::fast::RandomState::default(),
            default: Arc::new(self.default),
            per_key: self
                .per_key
                .into_iter()
                .map(|(k, l)| (k, Arc::new(l)))
                .collect(),
            epoch: Instant::now(),
            idle: nanos(self.idle),
            inserts: AtomicUsize::new(0),
        })
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
            match reservation.grant {
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

/// Quota reserved for one call. Settle it with what the call spent
/// ([`settle`](Reservation::settle), [`finish`](Reservation::finish)); dropped unsettled, it
/// settles itself: refunded when the call never started, kept at the estimate when the call
/// was cancelled in flight.
#[must_use = "a reservation settles at its estimate when dropped; settle it with the real usage"]
pub struct Reservation<T: Slot = Arc<MemorySlot>> {
    slot: T,
    ticket: T::Ticket,
    grant: Grant,
    done: bool,
}

impl<T: Slot> fmt::Debug for Reservation<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("grant", &self.grant)
            .finish_non_exhaustive()
    }
}

impl<T: Slot> Reservation<T> {
    /// Reserves `ask` on a slot (see [`Quota::slot`]).
    #[inline]
    pub fn reserve(slot: T, ask: &Ask, now: Instant) -> Result<Self, Rejected> {
        let (ticket, grant) = slot.reserve(ask, now)?;
        Ok(Reservation {
            slot,
            ticket,
            grant,
            done: false,
        })
    }

    /// When the call may start: now, or at an instant (then [`confirm`](Reservation::confirm)).
    pub fn grant(&self) -> Grant {
        self.grant
    }

    /// The slot the reservation was made on.
    pub fn slot(&self) -> &T {
        &self.slot
    }

    /// The instant the call was (or is to be) admitted, by the store's clock: for
    /// [`Grant::Now`], the latest time the key had seen, which a caller on another thread may
    /// have moved a little past this caller's `now`.
    pub fn admitted_at(&self) -> Instant {
        self.slot.admitted_at(&self.ticket)
    }

    /// At (or after) the granted instant: admitted ([`Grant::Now`]), or wait again (a
    /// higher-priority call took the room), or rejected (the deadline cannot be met; the
    /// reservation is then spent and holds nothing).
    pub fn confirm(&mut self, now: Instant) -> Result<Grant, Rejected> {
        match self.slot.confirm(&mut self.ticket, now) {
            Ok(grant) => {
                self.grant = grant;
                Ok(grant)
            }
            Err(rejected) => {
                self.done = true;
                Err(rejected)
            }
        }
    }

    /// While waiting for a [`Grant::At`] instant: `Ready` when the store may admit the call
    /// earlier, so [`confirm`](Reservation::confirm) now (see [`Slot::poll_wake`]).
    #[inline]
    pub fn poll_wake(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.slot.poll_wake(&mut self.ticket, cx)
    }

    /// Settles a successful call with what it really spent (refund when less, debt when more).
    #[inline]
    pub fn settle(self, usage: Usage, now: Instant) {
        let _ = self.finish(&Outcome::SUCCESS, usage, now);
    }

    /// Settles a call with its outcome: a throttle the budget did not predict shrinks the
    /// learned limit; successes grow it back. Returns the effective limit when settling may
    /// have moved it (see [`Slot::settle`]).
    #[inline]
    pub fn finish(self, outcome: &Outcome, usage: Usage, now: Instant) -> Option<u64> {
        self.finish_with(outcome, usage, || now)
    }

    /// [`finish`](Reservation::finish), reading the time from `now` only when settling needs
    /// it (a success at its estimate, with nothing to learn, does not).
    #[inline]
    pub fn finish_with(
        mut self,
        outcome: &Outcome,
        usage: Usage,
        now: impl FnOnce() -> Instant,
    ) -> Option<u64> {
        self.done = true;
        self.slot.settle(&mut self.ticket, outcome, &usage, now)
    }

    /// The call was admitted but never sent (the service failed before it): its units go
    /// back, its request stays counted, nothing is learned.
    pub fn release_unsent(mut self, now: Instant) {
        self.done = true;
        self.slot.release_unsent(&mut self.ticket, now);
    }

    /// Gives the reservation up (as dropping it does, at `now`).
    pub fn cancel(mut self, now: Instant) {
        self.done = true;
        self.slot.cancel(&mut self.ticket, now);
    }
}

impl<T: Slot> Drop for Reservation<T> {
    fn drop(&mut self) {
        if !self.done {
            self.slot.cancel(&mut self.ticket, Instant::now());
        }
    }
}
