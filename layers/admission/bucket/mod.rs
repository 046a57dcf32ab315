//! The token-bucket accounting ([`Accounting::TokenBucket`](super::Accounting::TokenBucket)) on
//! one key's state: pure functions of the state, the [`Limit`] and the time in nanoseconds
//! since the store's epoch. No locking, no clock, no I/O: the in-process store runs these
//! under a mutex; a remote store runs the same steps as one atomic script.
//!
//! Levels are kept in *unit-nanoseconds*: a cost of `n` units is `n * window_ns`, and a
//! bucket refills by `rate` (units per window) every nanosecond. All of it is exact integer
//! arithmetic in `i128`, so there is no rounding drift and no NaN. Products are of a `u64`
//! and a value the configuration bounds (limits at most 2^50 per window, windows and bursts at
//! most a day, under 2^47 ns), so they stay below 2^115 and cannot overflow; sums and
//! differences saturate. (Plain products also keep the hot path free of the slow checked
//! 128-bit multiplication routine.)

use super::cost::Cost;
use super::learn::Learner;
use super::limit::{Limit, Priority};
use super::long::LongTicket;
use super::quota::{Ask, RejectReason};
use super::ring::Ring;
use super::state::{Refusal, Ticket};

mod fast;
mod level;
mod settle;

pub(crate) use self::level::{Bucket, cap, child_cap, child_rate, initial, part, scaled};

/// Lanes: 0 interactive within share, 1 batch within share, 2 interactive borrowing,
/// 3 batch borrowing. Lane 0 books at once; the others confirm when they wake.
pub(crate) const LANES: usize = 4;
/// The lanes' names in metrics, by index (the sliding window's names for the same lanes).
pub(crate) const LANE_NAMES: [&str; LANES] = [
    "interactive",
    "batch",
    "interactive_borrowing",
    "batch_borrowing",
];
pub(crate) const REQ: usize = 0;
pub(crate) const UNITS: usize = 1;
const PPM: i128 = 1_000_000;
/// Slots per window of the spend ring kept for learning.
pub(crate) const SPEND_SLOTS: u64 = 16;

#[derive(Clone, Debug)]
struct Dim {
    bucket: Bucket,
    /// Effective (learned) limit per window: the refill rate, kept equal to the learner's.
    /// Learning moves the rate only; the capacity stays that of the configured limit, since a
    /// capacity shrunk by learning would let a call larger than it in with less in the bucket,
    /// and the window bound (`limit + max(burst, largest call)`) would no longer hold.
    rate: u64,
    learner: Learner,
    /// What this client spent over the trailing window (for learning).
    spent: Ring,
    /// Configured limit per window.
    max: u64,
    /// The capacity, at the configured limit.
    cap: i128,
    /// The part of the capacity batch and borrowing calls leave to interactive ones.
    reserve: i128,
    /// The largest cost a window plus burst can hold, in units.
    max_cost: u64,
    /// Credit (refunds, cancellations) given back while interactive calls are booked ahead. A
    /// booked call keeps its instant, so credit given back now is still in the bucket at that
    /// instant: the level each booked call will see is its level at booking plus the credit
    /// given since, and that must stay within the capacity.
    credit: i128,
    /// For bookings that did not fit the ring: the highest level at booking, less the credit
    /// then, until the queue drains.
    overflow_base: i128,
}

/// How many interactive bookings per key are tracked one by one for crediting refunds; beyond
/// that, the quota is conservative until the queue drains.
const BOOKINGS: usize = 16;

/// A booked interactive call: its instant and, per dimension, its level at booking less the
/// credit given until then.
#[derive(Clone, Copy, Debug, Default)]
struct Booking {
    at: u64,
    base: [i128; 2],
}

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Lane {
    pub(crate) waiting: u32,
    pub(crate) pending: [u64; 2],
    pub(crate) tail: u64,
    /// When the lane's oldest waiter began to wait, as far as the lane knows (for
    /// [`Lane::oldest_wait`]); kept on the waiting path only.
    pub(crate) since: u64,
}

impl Lane {
    /// A call begins to wait in the lane at `now`.
    #[inline]
    pub(crate) fn enter(&mut self, now: u64) {
        if self.waiting == 0 {
            self.since = now;
        }
        self.waiting += 1;
    }

    /// A call that began to wait at `began` leaves the lane at `now`. When it was the oldest
    /// and others still wait, the lane does not know when the next oldest began (it keeps no
    /// queue): it counts from `now` until [`Lane::still_waits`] tells it better.
    #[inline]
    pub(crate) fn leave(&mut self, began: u64, now: u64) {
        self.waiting = self.waiting.saturating_sub(1);
        if self.waiting > 0 && began <= self.since {
            self.since = self.since.max(now);
        }
    }

    /// A call that began to wait at `began` looked again and still waits.
    #[inline]
    pub(crate) fn still_waits(&mut self, began: u64) {
        self.since = self.since.min(began);
    }

    /// Nanoseconds the lane's oldest waiter has waited at `now` (zero with nobody waiting):
    /// exact while the oldest waits; after it leaves, at least the time since then, and the
    /// remaining waiters' time once they look again.
    pub(crate) fn oldest_wait(&self, now: u64) -> u64 {
        if self.waiting == 0 {
            0
        } else {
            now.saturating_sub(self.since)
        }
    }
}

/// One key's token-bucket state.
#[derive(Clone, Debug)]
pub(crate) struct BucketState {
    dims: [Option<Dim>; 2],
    lanes: [Lane; LANES],
    bookings: [Booking; BOOKINGS],
    booked: usize,
    overflow: bool,
    tenants: Box<[[Bucket; 2]]>,
    last_used: u64,
    /// The latest time seen: callers on several threads may pass slightly older instants,
    /// and time never runs backwards for the arithmetic.
    clock: u64,
}

impl Dim {
    /// The level a call of `n` (scaled) needs in `lane`, given the units waiting in lanes
    /// that go before it.
    fn need(&self, l: &Limit, n: i128, lane: usize, ahead: u64) -> i128 {
        let cap = self.cap;
        if lane == 0 {
            return n.min(cap);
        }
        let reserve = self.reserve;
        n.min(cap - reserve)
            .saturating_add(reserve)
            .saturating_add(scaled(ahead, l))
    }

    /// A cost no window plus burst could ever hold.
    #[inline]
    fn too_large(&self, n: u64) -> bool {
        n > self.max_cost
    }
}

impl BucketState {
    pub(crate) fn new(l: &Limit, now: u64) -> Self {
        let dim = |limit: Option<u64>| {
            limit.map(|max| Dim {
                // The provider's credit starts low and accrues from unused capacity.
                bucket: Bucket::at(initial(l, max), now),
                rate: max,
                learner: Learner::new(max, &l.learning, now),
                spent: Ring::new(l.window, SPEND_SLOTS, now),
                max,
                cap: cap(l, max),
                reserve: cap(l, max) * i128::from(l.reserve_ppm.unwrap_or(0)) / PPM,
                // n * W > max * W + burst * max  <=>  n > max + floor(burst * max / W)
                max_cost: u64::try_from(
                    u128::from(max) + u128::from(l.burst) * u128::from(max) / u128::from(l.window),
                )
                .unwrap_or(u64::MAX),
                credit: 0,
                overflow_base: i128::MIN,
            })
        };
        let dims = [dim(l.requests), dim(l.units)];
        let tenants = match &l.shares {
            None => Box::default(),
            Some(w) => (0..w.len())
                .map(|t| {
                    let mut b = [Bucket::full(0, now); 2];
                    for (d, bucket) in b.iter_mut().enumerate() {
                        if let Some(dim) = &dims[d] {
                            *bucket = Bucket::full(child_cap(l, child_rate(l, dim.rate, t)), now);
                        }
                    }
                    b
                })
                .collect(),
        };
        BucketState {
            dims,
            lanes: [Lane::default(); LANES],
            bookings: [Booking::default(); BOOKINGS],
            booked: 0,
            overflow: false,
            tenants,
            last_used: now,
            clock: now,
        }
    }

    fn tick(&mut self, now: u64) -> u64 {
        self.clock = self.clock.max(now);
        self.clock
    }

    /// Brings the state to `now` (slots that left, refill, regain) without a call: a call a
    /// long window refused still moves the key's time, as any call does.
    pub(crate) fn touch(&mut self, l: &Limit, now: u64) {
        let now = self.tick(now);
        self.advance(l, now);
    }

    fn advance(&mut self, l: &Limit, now: u64) {
        // Interactive calls booked ahead were given their instants at the rate then, and the
        // capacity they leave at those instants was charged from it: a rate that regained in
        // the meantime would refill the bucket past what the provider's holds once they go
        // out. So the learned rate only regains while nobody is booked ahead (a cut, which
        // only slows the refill, applies at once).
        let booked = self.lanes[0].waiting > 0;
        for dim in self.dims.iter_mut().flatten() {
            let cap = dim.cap;
            dim.bucket.advance(now, dim.rate, cap);
            dim.spent.advance(now);
            if !booked {
                dim.learner.regain(&l.learning, l.window, now);
            }
            let effective = dim.learner.effective();
            dim.rate = if booked {
                dim.rate.min(effective)
            } else {
                effective
            };
        }
    }

    fn advance_child(&mut self, l: &Limit, t: usize, now: u64) {
        for d in 0..2 {
            if let Some(dim) = &self.dims[d] {
                let rate = child_rate(l, dim.rate, t);
                self.tenants[t][d].advance(now, rate, child_cap(l, rate));
            }
        }
    }

    fn cost_too_large(&self, cost: Cost) -> bool {
        (0..2).any(|d| {
            self.dims[d]
                .as_ref()
                .is_some_and(|dim| dim.too_large(part(cost, d)))
        })
    }

    /// Within-share lane or borrowing lane, and the tenant whose share is charged.
    fn lane_for(&mut self, l: &Limit, ask: &Ask, now: u64) -> (usize, Option<u16>) {
        let base = match ask.priority {
            Priority::Interactive => 0,
            Priority::Batch => 1,
        };
        if l.shares.is_none() {
            return (base, None);
        }
        let Some(t) = ask.tenant.map(|t| usize::from(t.0)) else {
            return (base + 2, None);
        };
        if t >= self.tenants.len() {
            return (base + 2, None);
        }
        self.advance_child(l, t, now);
        let green = (0..2).all(|d| match &self.dims[d] {
            None => true,
            Some(dim) => {
                let rate = child_rate(l, dim.rate, t);
                let need = scaled(part(ask.cost, d), l).min(child_cap(l, rate));
                self.tenants[t][d].level >= need
            }
        });
        if green {
            (base, Some(t as u16))
        } else {
            (base + 2, None)
        }
    }

    /// Nanoseconds until a call of `cost` in `lane` could be admitted, from the levels alone.
    fn level_wait(&self, l: &Limit, cost: Cost, lane: usize) -> u64 {
        let mut wait = 0;
        for d in 0..2 {
            if let Some(dim) = &self.dims[d] {
                let ahead: u64 = self.lanes[1..lane.max(1)]
                    .iter()
                    .map(|ln| ln.pending[d])
                    .fold(0, u64::saturating_add);
                let need = dim.need(l, scaled(part(cost, d), l), lane, ahead);
                wait = wait.max(dim.bucket.wait_for(need, dim.rate));
            }
        }
        wait
    }

    fn charge(&mut self, l: &Limit, cost: Cost, green: Option<u16>) {
        for d in 0..2 {
            let Some(dim) = &mut self.dims[d] else {
                continue;
            };
            let n = scaled(part(cost, d), l);
            dim.bucket.charge(n);
            dim.spent.add(part(cost, d));
            if let Some(t) = green {
                self.tenants[usize::from(t)][d].charge(n);
            }
        }
    }

    /// Drops the bookings whose instant has passed: by the book they are admitted.
    fn prune_bookings(&mut self, now: u64) {
        let mut i = 0;
        while i < self.booked {
            if self.bookings[i].at <= now {
                self.booked -= 1;
                self.bookings[i] = self.bookings[self.booked];
            } else {
                i += 1;
            }
        }
    }

    /// How much credit dimension `d` can take now without any booked call seeing a level above
    /// the capacity at its instant.
    fn credit_room(&self, d: usize) -> i128 {
        let Some(dim) = &self.dims[d] else { return 0 };
        let mut base = if self.overflow {
            dim.overflow_base
        } else {
            i128::MIN
        };
        for b in &self.bookings[..self.booked] {
            base = base.max(b.base[d]);
        }
        if base == i128::MIN {
            return i128::MAX;
        }
        dim.cap
            .saturating_sub(base)
            .saturating_sub(dim.credit)
            .max(0)
    }

    /// Gives `amount` (per dimension, scaled) back, or takes more when negative. `tail` says
    /// the credit comes from the last booked call, which no other booked call counted on.
    fn adjust(&mut self, l: &Limit, d: usize, amount: i128, green: Option<u16>, tail: bool) {
        let booked = self.lanes[0].waiting > 0 && !tail;
        let room = if booked && amount > 0 {
            self.credit_room(d)
        } else {
            i128::MAX
        };
        if let Some(dim) = &mut self.dims[d] {
            let cap = dim.cap;
            if amount >= 0 {
                let credit = amount.min(room);
                if booked {
                    dim.credit = dim.credit.saturating_add(credit);
                }
                dim.bucket.refund(credit, cap);
            } else {
                dim.bucket.charge(amount.saturating_neg());
            }
            if let Some(t) = green.map(usize::from) {
                let cc = child_cap(l, child_rate(l, dim.rate, t));
                if amount >= 0 {
                    self.tenants[t][d].refund(amount, cc);
                } else {
                    self.tenants[t][d].charge(amount.saturating_neg());
                }
            }
        }
    }

    pub(crate) fn reserve(
        &mut self,
        l: &Limit,
        ask: &Ask,
        deadline: u64,
        now: u64,
    ) -> Result<Ticket, Refusal> {
        let now = self.tick(now);
        self.last_used = now;
        if self.cost_too_large(ask.cost) {
            return Err(Refusal {
                reason: RejectReason::CostTooLarge,
                retry_in: None,
            });
        }
        self.advance(l, now);
        let (lane, green) = self.lane_for(l, ask, now);
        let mut wait = self.level_wait(l, ask.cost, lane);
        if lane > 0 {
            wait = wait.max(self.lanes[lane].tail.saturating_sub(now));
        }
        let max_wait = deadline.saturating_sub(now);
        if wait > 0 {
            if self.lanes[lane].waiting >= l.max_queue {
                return Err(Refusal {
                    reason: RejectReason::QueueFull,
                    retry_in: Some(wait),
                });
            }
            if wait > max_wait {
                return Err(Refusal {
                    reason: RejectReason::Deadline,
                    retry_in: Some(wait),
                });
            }
        }
        let mut ticket = Ticket {
            cost: ask.cost,
            lane: lane as u8,
            green,
            charged: false,
            waiting: wait > 0,
            admit_at: now.saturating_add(wait),
            deadline,
            charged_at: now,
            probe: false,
            long: LongTicket::default(),
        };
        if lane == 0 && wait > 0 {
            self.prune_bookings(now);
            let ahead = i128::from(wait);
            let mut booking = Booking {
                at: now.saturating_add(wait),
                base: [i128::MIN; 2],
            };
            for (d, dim) in self.dims.iter_mut().enumerate() {
                let Some(dim) = dim else { continue };
                // Booked calls are charged now, but the bucket they are admitted from is the
                // one at the booked instant, which cannot have refilled past the capacity: in a
                // dimension that is not the one waited for, the refill beyond the capacity
                // until then is not theirs to spend.
                let cap = dim.cap;
                let at_instant = dim
                    .bucket
                    .level
                    .saturating_add(ahead * i128::from(dim.rate));
                if at_instant > cap {
                    dim.bucket.charge(at_instant - cap);
                }
                booking.base[d] = at_instant.min(cap).saturating_sub(dim.credit);
                if self.booked == BOOKINGS {
                    dim.overflow_base = dim.overflow_base.max(booking.base[d]);
                }
            }
            if self.booked < BOOKINGS {
                self.bookings[self.booked] = booking;
                self.booked += 1;
            } else {
                self.overflow = true;
            }
            let ln = &mut self.lanes[0];
            ln.tail = ln.tail.max(ticket.admit_at);
        }
        if lane == 0 || wait == 0 {
            self.charge(l, ask.cost, green);
            ticket.charged = true;
        }
        if wait > 0 {
            let ln = &mut self.lanes[lane];
            ln.enter(now);
            if lane > 0 {
                ln.pending[REQ] = ln.pending[REQ].saturating_add(ask.cost.requests);
                ln.pending[UNITS] = ln.pending[UNITS].saturating_add(ask.cost.units);
                let regen = self.regen(l, ask.cost);
                let ln = &mut self.lanes[lane];
                ln.tail = ticket.admit_at.saturating_add(regen);
            }
        }
        Ok(ticket)
    }

    /// Nanoseconds for the limit to regenerate `cost`.
    fn regen(&self, l: &Limit, cost: Cost) -> u64 {
        (0..2)
            .filter_map(|d| {
                let dim = self.dims[d].as_ref()?;
                Some(Bucket::full(0, 0).wait_for(scaled(part(cost, d), l), dim.rate))
            })
            .max()
            .unwrap_or(0)
    }

    /// A waiting call leaves its lane at `now`. (While a call waits, its `charged_at` is when
    /// it asked: lane 0 charges it then, the others when they admit it.)
    fn leave_lane(&mut self, t: &mut Ticket, now: u64) {
        let ln = &mut self.lanes[usize::from(t.lane)];
        ln.leave(t.charged_at, now);
        if !t.charged {
            ln.pending[REQ] = ln.pending[REQ].saturating_sub(t.cost.requests);
            ln.pending[UNITS] = ln.pending[UNITS].saturating_sub(t.cost.units);
        }
        if t.lane == 0 && ln.waiting == 0 {
            for dim in self.dims.iter_mut().flatten() {
                dim.credit = 0;
                dim.overflow_base = i128::MIN;
            }
            self.booked = 0;
            self.overflow = false;
        }
        t.waiting = false;
    }

    /// After waking at `t.admit_at`: admitted (`Ok(None)`), wait more (`Ok(Some(later))`) or
    /// refused (the deadline cannot be met; the ticket is then spent).
    pub(crate) fn confirm(
        &mut self,
        l: &Limit,
        t: &mut Ticket,
        now: u64,
    ) -> Result<Option<u64>, Refusal> {
        if !t.waiting {
            return Ok(None);
        }
        if t.charged {
            if now < t.admit_at {
                self.lanes[usize::from(t.lane)].still_waits(t.charged_at);
                return Ok(Some(t.admit_at));
            }
            self.leave_lane(t, now);
            return Ok(None);
        }
        let now = self.tick(now);
        self.last_used = now;
        self.advance(l, now);
        if let Some(c) = t.green {
            self.advance_child(l, usize::from(c), now);
        }
        let wait = self.level_wait(l, t.cost, usize::from(t.lane));
        if wait == 0 {
            self.leave_lane(t, now);
            self.charge(l, t.cost, t.green);
            t.charged_at = now;
            t.charged = true;
            t.admit_at = now;
            return Ok(None);
        }
        let at = now.saturating_add(wait);
        if at > t.deadline {
            self.leave_lane(t, now);
            return Err(Refusal {
                reason: RejectReason::Deadline,
                retry_in: Some(wait),
            });
        }
        self.lanes[usize::from(t.lane)].still_waits(t.charged_at);
        t.admit_at = at;
        Ok(Some(at))
    }

    /// The wait an interactive, within-share call of `cost` would get now; `None` when it can
    /// never be admitted. Does not change the state.
    pub(crate) fn peek(&self, l: &Limit, cost: Cost, now: u64) -> Option<u64> {
        if self.cost_too_large(cost) {
            return None;
        }
        let now = now.max(self.clock);
        let mut wait = 0;
        for d in 0..2 {
            if let Some(dim) = &self.dims[d] {
                let mut b = dim.bucket;
                b.advance(now, dim.rate, dim.cap);
                let need = dim.need(l, scaled(part(cost, d), l), 0, 0);
                wait = wait.max(b.wait_for(need, dim.rate));
            }
        }
        Some(wait)
    }

    /// Whether forgetting this state changes nothing: idle long enough, nobody waiting, every
    /// bucket full again.
    pub(crate) fn at_rest(&self, l: &Limit, now: u64, idle: u64) -> bool {
        if now.saturating_sub(self.last_used) < idle || self.lanes.iter().any(|ln| ln.waiting > 0) {
            return false;
        }
        (0..2).all(|d| match &self.dims[d] {
            None => true,
            Some(dim) => {
                let mut b = dim.bucket;
                let cap = dim.cap;
                b.advance(now, dim.rate, cap);
                b.level >= cap
                    && dim.learner.effective_at(&l.learning, l.window, now) >= dim.max
                    && self.tenants.iter().enumerate().all(|(t, c)| {
                        let rate = child_rate(l, dim.rate, t);
                        let cc = child_cap(l, rate);
                        let mut b = c[d];
                        b.advance(now, rate, cc);
                        b.level >= cc
                    })
            }
        })
    }

    /// Calls waiting, all lanes.
    pub(crate) fn waiting(&self) -> u32 {
        self.lanes.iter().map(|ln| ln.waiting).sum()
    }

    /// Per lane, in [`LANE_NAMES`]' order: the calls waiting and the nanoseconds the oldest
    /// has waited at `now`.
    pub(crate) fn lanes(&self, now: u64) -> [(u32, u64); LANES] {
        self.lanes.map(|ln| (ln.waiting, ln.oldest_wait(now)))
    }

    /// Whether a learned limit is below the configured one.
    pub(crate) fn learning(&self) -> bool {
        self.dims.iter().flatten().any(|d| !d.learner.at_max())
    }

    /// The effective (learned) limits per window: (requests, units).
    pub(crate) fn spent(&self, now: u64) -> (Option<u64>, Option<u64>) {
        let at = |d: usize| {
            self.dims[d]
                .as_ref()
                .map(|dim| u64::try_from(dim.spent.sum_at(now)).unwrap_or(u64::MAX))
        };
        (at(REQ), at(UNITS))
    }

    pub(crate) fn effective(&self) -> (Option<u64>, Option<u64>) {
        (
            self.dims[REQ].as_ref().map(|d| d.rate),
            self.dims[UNITS].as_ref().map(|d| d.rate),
        )
    }
}
