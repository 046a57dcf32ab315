//! The sliding-window accounting ([`Accounting::SlidingWindow`](super::Accounting::SlidingWindow))
//! on one key's state: pure functions of the state, the [`Limit`] and the time in nanoseconds
//! since the store's epoch.
//!
//! What is counted mirrors how Amazon Bedrock counts tokens per minute: a call is counted at
//! its estimate when it is admitted (Bedrock reserves input + `max_tokens` at the start) and at
//! its real spend once settled (Bedrock charges input + output × burndown at the end), in the
//! slot it was admitted in. A call is admitted when the spend of the trailing window plus its
//! own estimate fits the (effective) limit. Then no interval of one window length ever holds
//! more than the limit, so no provider window of *any* phase does: the provider's phase need
//! not be known, and a burst within the limit passes at once. A settle below the estimate gives
//! the slack back at once; above it, the debt stays in the window until it slides out.
//!
//! Waiting calls queue in the four lanes of the [module docs](super#shares-and-priorities);
//! a call waits until enough of the window's spend has slid out to leave room for it and for
//! the units queued ahead of it.
//!
//! Interactive calls within their share (lane 0) need nothing but room in the window: their
//! bursts pass at once. The background lanes — batch calls, and calls borrowing beyond their
//! share — are also *paced*: a token bucket refilled at the effective limit per window and
//! holding a sixteenth of it, charged by every admitted call (lane 0 included) at its estimate
//! and given back the difference when the call settles. Why: under saturation a window admits
//! exactly what slides out of it, so a gap in admissions (the moment the first window filled)
//! would repeat every window, and within-share calls arriving in it would wait for seconds;
//! paced background traffic slides out evenly, and lane 0 finds room within a slot or two.
//! Pacing takes the rate a window allows and nothing more, so it costs no throughput.
//!
//! Batch calls also leave a reserve of the window to interactive ones: by default the
//! interactive spend of the trailing window over 128 (about half a second of it at a one-minute
//! window) and at least one mean interactive call, so that interactive arrivals find room while
//! batch calls queue, and a client without interactive traffic keeps nothing back.
//!
//! Memory is fixed per key: 257 counters per limited dimension (the [`Ring`]), 17 more for its
//! interactive spend, a pacing bucket, a child bucket per tenant, and 17 for the interactive
//! calls.

use super::bucket::{Bucket, Lane, REQ, UNITS, child_cap, child_rate, part, scaled};
use super::cost::Cost;
use super::learn::Learner;
use super::limit::{Limit, Priority};
use super::long::LongTicket;
use super::quota::{Ask, RejectReason};
use super::ring::Ring;
use super::state::{Refusal, Ticket};

mod fast;
mod settle;

/// Time slots per window of the spend ring: a slot's spend leaves up to 1/256 of a window late.
pub(crate) const SLOTS: u64 = 256;
/// Time slots per window of the interactive-spend ring (the automatic reserve).
const RESERVE_SLOTS: u64 = 16;
/// The automatic reserve is the interactive spend of the trailing window divided by this.
const RESERVE_DIVISOR: u128 = 128;
/// The pacing bucket holds one slot's worth of the effective limit.
const PACE_DIVISOR: u64 = 16;

/// How long a waiting call sleeps at most before it looks again: a wait is an estimate (the
/// calls ahead may leave, settles give room back, a hold ends), and the call waits no longer
/// than a 64th of a window past the moment its room appeared.
fn recheck(l: &Limit) -> u64 {
    (l.window / 64).max(1)
}

/// The lanes, in the order they are served; see [`WindowState::lane_for`].
const LANES: usize = 5;
/// Interactive, within share with room to spare in it (every interactive call, without shares).
const INTERACTIVE: usize = 0;
/// Interactive, within share but pressing on it (its tenant borrowed beyond its share lately).
const PRESSING: usize = 1;
/// Batch, within share (every batch call, without shares).
const BATCH: usize = 2;
/// Interactive, borrowing beyond its share (or no tenant).
const BORROWING: usize = 3;
/// Batch, borrowing.
const BATCH_BORROWING: usize = 4;
/// The lanes' names in metrics, by index.
pub(crate) const LANE_NAMES: [&str; LANES] = [
    "interactive",
    "interactive_pressing",
    "batch",
    "interactive_borrowing",
    "batch_borrowing",
];
const PPM: u128 = 1_000_000;

#[derive(Clone, Debug)]
struct Dim {
    spent: Ring,
    interactive: Ring,
    /// Paces the background lanes (levels in unit-nanoseconds, as the token bucket's).
    pace: Bucket,
    learner: Learner,
    max: u64,
    /// The pacing bucket's capacity at the configured limit (`pace_cap(l, max)`).
    pace_cap_max: i128,
    /// The pacing bucket's floor at the configured limit (`-2 * pace_cap_max`, as
    /// `charge_admitted` has it), kept so that the fast path need not compute it.
    pace_floor_max: i128,
}

impl Dim {
    /// The automatic reserve at `now`: a 128th of the trailing window's interactive spend, and
    /// at least the mean interactive call, so that the next interactive arrival finds room.
    fn reserve_at(&self, interactive_calls: &Ring, now: u64) -> u128 {
        let spend = self.interactive.sum_at(now);
        let calls = interactive_calls.sum_at(now);
        if calls == 0 {
            return 0;
        }
        (spend / RESERVE_DIVISOR).max(spend.div_ceil(calls))
    }

    /// The pacing bucket's capacity at the effective limit `rate`.
    fn pace_cap(l: &Limit, rate: u64) -> i128 {
        i128::from(l.window / PACE_DIVISOR) * i128::from(rate)
    }
}

/// One key's sliding-window state.
#[derive(Clone, Debug)]
pub(crate) struct WindowState {
    dims: [Option<Dim>; 2],
    lanes: [Lane; LANES],
    /// The interactive calls of the trailing window (their mean cost is the least reserve of
    /// each dimension): one count for both dimensions, which would keep the same one.
    interactive_calls: Ring,
    tenants: Box<[[Bucket; 2]]>,
    /// When each tenant last asked beyond its share (`u64::MAX`: never).
    borrowed_at: Box<[u64]>,
    /// No call is admitted before this (a server's `Retry-After` on a throttle, or the hold
    /// after an unpredicted throttle).
    blocked_until: u64,
    /// Unpredicted throttles in a row (of calls admitted since the last hold began), with no
    /// success between them.
    streak: u32,
    /// When the last hold began.
    held_at: u64,
    /// A probe is in flight: the other calls wait for its answer.
    probing: bool,
    last_used: u64,
    /// The latest time seen: time never runs backwards for the arithmetic.
    clock: u64,
    /// No ring starts a new slot before this instant (the earliest end of their newest
    /// slots, as of the last [`advance`](Self::advance); 0 before the first): until then
    /// advancing them changes nothing, which [`reserve_fast`](Self::reserve_fast) relies on.
    fast_until: u64,
}

impl WindowState {
    pub(crate) fn new(l: &Limit, now: u64) -> Self {
        let dim = |limit: Option<u64>| {
            limit.map(|max| Dim {
                spent: Ring::new(l.window, SLOTS, now),
                interactive: Ring::new(l.window, RESERVE_SLOTS, now),
                pace: Bucket::full(Dim::pace_cap(l, max), now),
                learner: Learner::new(max, &l.learning, now),
                max,
                pace_cap_max: Dim::pace_cap(l, max),
                pace_floor_max: -2 * Dim::pace_cap(l, max),
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
                            *bucket = Bucket::full(child_cap(l, child_rate(l, dim.max, t)), now);
                        }
                    }
                    b
                })
                .collect(),
        };
        let borrowed_at = vec![u64::MAX; tenants.len()].into_boxed_slice();
        WindowState {
            dims,
            lanes: [Lane::default(); LANES],
            interactive_calls: Ring::new(l.window, RESERVE_SLOTS, now),
            tenants,
            borrowed_at,
            blocked_until: 0,
            streak: 0,
            held_at: 0,
            probing: false,
            last_used: now,
            clock: now,
            fast_until: 0,
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
        self.interactive_calls.advance(now);
        for dim in self.dims.iter_mut().flatten() {
            dim.spent.advance(now);
            dim.interactive.advance(now);
            let rate = dim.learner.effective();
            dim.pace.advance(now, rate, Dim::pace_cap(l, rate));
            dim.learner.regain(&l.learning, l.window, now);
        }
        self.fast_until = self
            .dims
            .iter()
            .flatten()
            .map(|dim| (dim.spent.head_end()).min(dim.interactive.head_end()))
            .fold(self.interactive_calls.head_end(), u64::min);
    }

    fn advance_child(&mut self, l: &Limit, t: usize, now: u64) {
        for d in 0..2 {
            if let Some(dim) = &self.dims[d] {
                let rate = child_rate(l, dim.learner.effective(), t);
                self.tenants[t][d].advance(now, rate, child_cap(l, rate));
            }
        }
    }

    /// A cost no window could ever hold: more than the configured limit.
    fn cost_too_large(&self, cost: Cost) -> bool {
        (0..2).any(|d| {
            self.dims[d]
                .as_ref()
                .is_some_and(|dim| part(cost, d) > dim.max)
        })
    }

    /// The lane of a call, and the tenant whose share it is charged to.
    ///
    /// Lanes are served in order: interactive calls within their share, first those of tenants
    /// that keep to their share, then those of tenants that press on it (they asked beyond it
    /// within the last share burst, a quarter window by default); batch calls within their
    /// share; then calls borrowing beyond their share (or without a tenant), interactive before
    /// batch. So when the window is tight the tenant asking for more than its share waits, not
    /// the tenants that keep to theirs.
    fn lane_for(&mut self, l: &Limit, ask: &Ask, now: u64) -> (usize, Option<u16>) {
        let batch = ask.priority == Priority::Batch;
        let borrowing = if batch { BATCH_BORROWING } else { BORROWING };
        if l.shares.is_none() {
            return (if batch { BATCH } else { INTERACTIVE }, None);
        }
        let Some(t) = ask.tenant.map(|t| usize::from(t.0)) else {
            return (borrowing, None);
        };
        if t >= self.tenants.len() {
            return (borrowing, None);
        }
        self.advance_child(l, t, now);
        let green = (0..2).all(|d| match &self.dims[d] {
            None => true,
            Some(dim) => {
                let rate = child_rate(l, dim.learner.effective(), t);
                let need = scaled(part(ask.cost, d), l).min(child_cap(l, rate));
                self.tenants[t][d].level >= need
            }
        });
        if !green {
            self.borrowed_at[t] = now;
            return (borrowing, None);
        }
        let pressing = self.borrowed_at[t] != u64::MAX
            && now.saturating_sub(self.borrowed_at[t]) < l.share_burst;
        let lane = match (batch, pressing) {
            (true, _) => BATCH,
            (false, false) => INTERACTIVE,
            (false, true) => PRESSING,
        };
        (lane, Some(t as u16))
    }

    /// Nanoseconds until a call of `cost` in `lane` could be admitted at `now`, given the units
    /// queued in the lanes before it (and in its own lane when `behind_own_lane`: a new arrival
    /// queues behind every waiter of its lane). Reads the state as of `now` without moving it.
    fn wait_at(&self, l: &Limit, cost: Cost, lane: usize, behind_own_lane: bool, now: u64) -> u64 {
        let mut wait = self.blocked_until.saturating_sub(now);
        if self.probing {
            // Look again in a slot: the probe's answer may have come by then.
            wait = wait.max(l.window / SLOTS).max(1);
        }
        let lanes_ahead = if behind_own_lane { lane + 1 } else { lane };
        for d in 0..2 {
            let Some(dim) = &self.dims[d] else { continue };
            let rate = dim.learner.effective_at(&l.learning, l.window, now);
            let limit = u128::from(rate);
            let n = u128::from(part(cost, d));
            // The lanes after the first leave it a reserve of the window.
            let reserve = if lane > INTERACTIVE {
                match l.reserve_ppm {
                    Some(ppm) => limit * u128::from(ppm) / PPM,
                    None => dim.reserve_at(&self.interactive_calls, now),
                }
                .min(limit)
            } else {
                0
            };
            let need = n.min(limit - reserve) + reserve;
            if lane >= PRESSING {
                // Every lane but interactive calls of tenants within their share is paced.
                let mut pace = dim.pace;
                pace.advance(now, rate, Dim::pace_cap(l, rate));
                // Half the bucket at most, so that a large call is not kept waiting for a
                // bucket that small calls keep from ever being full.
                let pace_need = scaled(part(cost, d), l).min(Dim::pace_cap(l, rate) / 2);
                wait = wait.max(pace.wait_for(pace_need, rate));
            }
            let ahead: u128 = self.lanes[..lanes_ahead]
                .iter()
                .map(|ln| u128::from(ln.pending[d]))
                .sum();
            let spent = dim.spent.sum_at(now);
            let total = spent + need + ahead;
            if total <= limit {
                continue;
            }
            let free = total - limit;
            let w = match dim.spent.wait_to_free(free, now) {
                Some(w) => w,
                // More than the window holds: everything in it must leave, and the rest comes
                // at the limit's pace after that (an estimate; the waiter checks again).
                None => {
                    let beyond = free - spent;
                    let pace = beyond * u128::from(l.window) / limit.max(1);
                    dim.spent
                        .empties_at()
                        .saturating_sub(now)
                        .saturating_add(u64::try_from(pace).unwrap_or(u64::MAX))
                }
            };
            wait = wait.max(w.max(1));
        }
        wait
    }

    /// Records an admitted call's estimate at `now`.
    fn admit(&mut self, l: &Limit, t: &mut Ticket, now: u64) {
        if self.charge_admitted(l, t.cost, usize::from(t.lane)) {
            t.probe = true;
        }
        t.charged = true;
        t.charged_at = now;
        t.admit_at = now;
    }

    /// Charges an admitted call's estimate to the window (and its lane's records); returns
    /// whether the call probes (the first call after a hold probes the provider's window for
    /// the others).
    #[inline]
    fn charge_admitted(&mut self, l: &Limit, cost: Cost, lane: usize) -> bool {
        for d in 0..2 {
            let Some(dim) = &mut self.dims[d] else {
                continue;
            };
            let n = part(cost, d);
            dim.spent.add(n);
            // The pace remembers at most two buckets of debt: it smooths the background lanes
            // (the window guarantees the limit), and a deficit run up by interactive calls must
            // not starve the background for minutes once the interactive calls leave room.
            let floor = -2 * Dim::pace_cap(l, dim.learner.effective());
            dim.pace.charge(scaled(n, l));
            dim.pace.level = dim.pace.level.max(floor);
            if lane == INTERACTIVE {
                dim.interactive.add(n);
            }
        }
        if lane == INTERACTIVE {
            self.interactive_calls.add(1);
        }
        if self.streak > 0 {
            self.probing = true;
            return true;
        }
        false
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
        // Behind every waiter of its lane: their units come first (FIFO).
        let wait = self.wait_at(l, ask.cost, lane, true, now);
        let ln = self.lanes[lane];
        if wait > 0 {
            if ln.waiting >= l.max_queue {
                return Err(Refusal {
                    reason: RejectReason::QueueFull,
                    retry_in: Some(wait),
                });
            }
            if wait > deadline.saturating_sub(now) {
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
            admit_at: now.saturating_add(wait.min(recheck(l))),
            deadline,
            charged_at: now,
            probe: false,
            long: LongTicket::default(),
        };
        // A call within its share spends its share when it asks, waiting or not, so that the
        // share measures the tenant's demand.
        if let Some(c) = green {
            self.charge_child(l, usize::from(c), ask.cost, 1);
        }
        if wait == 0 {
            self.admit(l, &mut ticket, now);
        } else {
            let ln = &mut self.lanes[lane];
            ln.enter(now);
            ln.pending[REQ] = ln.pending[REQ].saturating_add(ask.cost.requests);
            ln.pending[UNITS] = ln.pending[UNITS].saturating_add(ask.cost.units);
        }
        Ok(ticket)
    }

    /// Charges (`sign` 1) or gives back (`sign` -1) `cost` to tenant `c`'s share.
    fn charge_child(&mut self, l: &Limit, c: usize, cost: Cost, sign: i128) {
        for d in 0..2 {
            let Some(dim) = &self.dims[d] else { continue };
            let n = scaled(part(cost, d), l) * sign;
            let rate = child_rate(l, dim.learner.effective(), c);
            let child = &mut self.tenants[c][d];
            if n >= 0 {
                child.charge(n);
            } else {
                child.refund(-n, child_cap(l, rate));
            }
        }
    }

    /// A waiting call that will not be admitted: out of its lane, its share given back.
    fn give_up(&mut self, l: &Limit, t: &mut Ticket, now: u64) {
        self.leave_lane(t, now);
        if let Some(c) = t.green {
            self.charge_child(l, usize::from(c), t.cost, -1);
        }
    }

    /// A waiting call leaves its lane at `now`. (While a call waits, its `charged_at` is when
    /// it asked; `admit` sets it after the call left.)
    fn leave_lane(&mut self, t: &mut Ticket, now: u64) {
        let ln = &mut self.lanes[usize::from(t.lane)];
        ln.leave(t.charged_at, now);
        ln.pending[REQ] = ln.pending[REQ].saturating_sub(t.cost.requests);
        ln.pending[UNITS] = ln.pending[UNITS].saturating_sub(t.cost.units);
        t.waiting = false;
    }

    pub(crate) fn confirm(
        &mut self,
        l: &Limit,
        t: &mut Ticket,
        now: u64,
    ) -> Result<Option<u64>, Refusal> {
        if !t.waiting {
            return Ok(None);
        }
        let now = self.tick(now);
        self.last_used = now;
        self.advance(l, now);
        if let Some(c) = t.green {
            self.advance_child(l, usize::from(c), now);
        }
        // This call's own units are in its lane's pending; the lanes before it go first.
        let wait = self.wait_at(l, t.cost, usize::from(t.lane), false, now);
        if wait == 0 {
            self.leave_lane(t, now);
            self.admit(l, t, now);
            return Ok(None);
        }
        if now.saturating_add(wait) > t.deadline {
            self.give_up(l, t, now);
            return Err(Refusal {
                reason: RejectReason::Deadline,
                retry_in: Some(wait),
            });
        }
        let at = now.saturating_add(wait.min(recheck(l)));
        self.lanes[usize::from(t.lane)].still_waits(t.charged_at);
        t.admit_at = at;
        Ok(Some(at))
    }

    pub(crate) fn peek(&self, l: &Limit, cost: Cost, now: u64) -> Option<u64> {
        if self.cost_too_large(cost) {
            return None;
        }
        let now = now.max(self.clock);
        Some(self.wait_at(l, cost, 0, true, now))
    }

    pub(crate) fn at_rest(&self, l: &Limit, now: u64, idle: u64) -> bool {
        if now.saturating_sub(self.last_used) < idle
            || self.lanes.iter().any(|ln| ln.waiting > 0)
            || now < self.blocked_until
        {
            return false;
        }
        (0..2).all(|d| match &self.dims[d] {
            None => true,
            Some(dim) => {
                let mut pace = dim.pace;
                let cap = Dim::pace_cap(l, dim.max);
                pace.advance(now, dim.max, cap);
                dim.spent.sum_at(now) == 0
                    && pace.level >= cap
                    && dim.learner.effective_at(&l.learning, l.window, now) >= dim.max
                    && self.tenants.iter().enumerate().all(|(t, c)| {
                        let rate = child_rate(l, dim.max, t);
                        let cc = child_cap(l, rate);
                        let mut b = c[d];
                        b.advance(now, rate, cc);
                        b.level >= cc
                    })
            }
        })
    }

    pub(crate) fn waiting(&self) -> u32 {
        self.lanes.iter().map(|ln| ln.waiting).sum()
    }

    /// Per lane, in [`LANE_NAMES`]' order: the calls waiting and the nanoseconds the oldest
    /// has waited at `now`.
    pub(crate) fn lanes(&self, now: u64) -> [(u32, u64); LANES] {
        self.lanes.map(|ln| (ln.waiting, ln.oldest_wait(now)))
    }

    pub(crate) fn learning(&self) -> bool {
        self.dims.iter().flatten().any(|d| !d.learner.at_max())
    }

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
            self.dims[REQ].as_ref().map(|d| d.learner.effective()),
            self.dims[UNITS].as_ref().map(|d| d.learner.effective()),
        )
    }
}
