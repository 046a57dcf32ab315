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
//! interactive spend of the trailing window over 32 (about two seconds of it at a one-minute
//! window), so that interactive arrivals find room while batch calls queue, and a client
//! without interactive traffic keeps nothing back.
//!
//! Memory is fixed per key: 257 counters per limited dimension (the [`Ring`]), 17 more for the
//! interactive spend, a pacing bucket, a child bucket per tenant.

use super::bucket::{Bucket, LANES, Lane, REQ, UNITS, child_cap, child_rate, part, scaled};
use super::cost::{Cost, Usage};
use super::learn::Learner;
use super::limit::{Limit, Priority};
use super::quota::{Ask, RejectReason};
use super::ring::Ring;
use super::state::{Refusal, Ticket, named_dims};
use crate::Outcome;

/// Time slots per window of the spend ring: a slot's spend leaves up to 1/256 of a window late.
const SLOTS: u64 = 256;
/// Time slots per window of the interactive-spend ring (the automatic reserve).
const RESERVE_SLOTS: u64 = 16;
/// The automatic reserve is the interactive spend of the trailing window divided by this.
const RESERVE_DIVISOR: u128 = 32;
/// The pacing bucket holds this fraction of a window of the effective limit.
const PACE_DIVISOR: u64 = 16;
const PPM: u128 = 1_000_000;

#[derive(Clone, Debug)]
struct Dim {
    spent: Ring,
    interactive: Ring,
    /// Paces the background lanes (levels in unit-nanoseconds, as the token bucket's).
    pace: Bucket,
    learner: Learner,
    max: u64,
}

impl Dim {
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
    tenants: Box<[[Bucket; 2]]>,
    /// No call is admitted before this (a server's `Retry-After` on a throttle).
    blocked_until: u64,
    last_used: u64,
    /// The latest time seen: time never runs backwards for the arithmetic.
    clock: u64,
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
        WindowState {
            dims,
            lanes: [Lane::default(); LANES],
            tenants,
            blocked_until: 0,
            last_used: now,
            clock: now,
        }
    }

    fn tick(&mut self, now: u64) -> u64 {
        self.clock = self.clock.max(now);
        self.clock
    }

    fn advance(&mut self, l: &Limit, now: u64) {
        for dim in self.dims.iter_mut().flatten() {
            dim.spent.advance(now);
            dim.interactive.advance(now);
            let rate = dim.learner.effective();
            dim.pace.advance(now, rate, Dim::pace_cap(l, rate));
            dim.learner.regain(&l.learning, l.window, now);
        }
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
                let rate = child_rate(l, dim.learner.effective(), t);
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

    /// Nanoseconds until a call of `cost` in `lane` could be admitted at `now`, given the units
    /// queued in the lanes before it (and in its own lane when `behind_own_lane`: a new arrival
    /// queues behind every waiter of its lane). Reads the state as of `now` without moving it.
    fn wait_at(&self, l: &Limit, cost: Cost, lane: usize, behind_own_lane: bool, now: u64) -> u64 {
        let mut wait = self.blocked_until.saturating_sub(now);
        let lanes_ahead = if behind_own_lane { lane + 1 } else { lane };
        for d in 0..2 {
            let Some(dim) = &self.dims[d] else { continue };
            let rate = dim.learner.effective_at(&l.learning, l.window, now);
            let limit = u128::from(rate);
            let n = u128::from(part(cost, d));
            // Batch lanes (1 and 3) leave a reserve of the window to interactive calls.
            let reserve = if lane % 2 == 1 {
                match l.reserve_ppm {
                    Some(ppm) => limit * u128::from(ppm) / PPM,
                    None => dim.interactive.sum_at(now) / RESERVE_DIVISOR,
                }
                .min(limit)
            } else {
                0
            };
            let need = n.min(limit - reserve) + reserve;
            if lane > 0 {
                // The background lanes are paced.
                let mut pace = dim.pace;
                pace.advance(now, rate, Dim::pace_cap(l, rate));
                let pace_need = scaled(part(cost, d), l).min(Dim::pace_cap(l, rate));
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
        for d in 0..2 {
            let Some(dim) = &mut self.dims[d] else {
                continue;
            };
            let n = part(t.cost, d);
            dim.spent.add(n);
            dim.pace.charge(scaled(n, l));
            if t.interactive {
                dim.interactive.add(n);
            }
            if let Some(c) = t.green {
                self.tenants[usize::from(c)][d].charge(scaled(n, l));
            }
        }
        t.charged = true;
        t.charged_at = now;
        t.admit_at = now;
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
            admit_at: now.saturating_add(wait),
            deadline,
            charged_at: now,
            interactive: ask.priority == Priority::Interactive,
        };
        if wait == 0 {
            self.admit(l, &mut ticket, now);
        } else {
            let ln = &mut self.lanes[lane];
            ln.waiting += 1;
            ln.pending[REQ] = ln.pending[REQ].saturating_add(ask.cost.requests);
            ln.pending[UNITS] = ln.pending[UNITS].saturating_add(ask.cost.units);
        }
        Ok(ticket)
    }

    fn leave_lane(&mut self, t: &mut Ticket) {
        let ln = &mut self.lanes[usize::from(t.lane)];
        ln.waiting = ln.waiting.saturating_sub(1);
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
            self.leave_lane(t);
            self.admit(l, t, now);
            return Ok(None);
        }
        let at = now.saturating_add(wait);
        if at > t.deadline {
            self.leave_lane(t);
            return Err(Refusal {
                reason: RejectReason::Deadline,
                retry_in: Some(wait),
            });
        }
        t.admit_at = at;
        Ok(Some(at))
    }

    pub(crate) fn cancel(&mut self, _l: &Limit, t: &mut Ticket, now: u64) {
        if !t.waiting {
            // In flight: the call may have spent its estimate; it stays counted.
            return;
        }
        self.tick(now);
        self.leave_lane(t);
    }

    pub(crate) fn settle(
        &mut self,
        l: &Limit,
        t: &mut Ticket,
        outcome: &Outcome,
        usage: &Usage,
        now: u64,
    ) -> bool {
        if !self.settle_usage(l, t, usage, now) {
            return false;
        }
        let limited = [self.dims[REQ].is_some(), self.dims[UNITS].is_some()];
        let Some(named) = named_dims(outcome, limited) else {
            return self.learning();
        };
        for (d, hit) in named.into_iter().enumerate() {
            let Some(dim) = &mut self.dims[d] else {
                continue;
            };
            if hit {
                let ours = dim.spent.sum();
                dim.learner
                    .throttled(&l.learning, l.window, ours, self.clock);
            }
        }
        if let Some(ra) = outcome.retry_after {
            self.blocked_until = self
                .blocked_until
                .max(self.clock.saturating_add(crate::nanos(ra)));
        }
        true
    }

    pub(crate) fn release_unsent(&mut self, l: &Limit, t: &mut Ticket, now: u64) {
        self.settle_usage(l, t, &Usage::units(0), now);
    }

    /// Settles real usage and the server's remaining budget; `false` when the call was never
    /// admitted (then it is cancelled) and there is nothing to learn from.
    fn settle_usage(&mut self, l: &Limit, t: &mut Ticket, usage: &Usage, now: u64) -> bool {
        if t.waiting {
            self.cancel(l, t, now);
            return false;
        }
        if !t.charged {
            return false;
        }
        let now = self.tick(now);
        self.last_used = now;
        self.advance(l, now);
        if let Some(c) = t.green {
            self.advance_child(l, usize::from(c), now);
        }
        if let (Some(actual), Some(dim)) = (usage.units, &mut self.dims[UNITS]) {
            let delta = i128::from(actual) - i128::from(t.cost.units);
            dim.spent.adjust(dim.spent.slot_of(t.charged_at), delta);
            let back = scaled(t.cost.units, l) - scaled(actual, l);
            if back > 0 {
                let rate = dim.learner.effective();
                dim.pace.refund(back, Dim::pace_cap(l, rate));
            } else {
                dim.pace.charge(-back);
            }
            if t.interactive {
                dim.interactive
                    .adjust(dim.interactive.slot_of(t.charged_at), delta);
            }
            if let Some(c) = t.green {
                let rate = child_rate(l, dim.learner.effective(), usize::from(c));
                let child = &mut self.tenants[usize::from(c)][UNITS];
                let scaled_delta = scaled(actual, l) - scaled(t.cost.units, l);
                if scaled_delta < 0 {
                    child.refund(-scaled_delta, child_cap(l, rate));
                } else {
                    child.charge(scaled_delta);
                }
            }
        }
        for (d, remaining) in [
            (REQ, usage.remaining.requests),
            (UNITS, usage.remaining.units),
        ] {
            let (Some(rem), Some(dim)) = (remaining, &mut self.dims[d]) else {
                continue;
            };
            // The server says its window has `rem` left; when ours has more room, the others
            // spent the difference: count it as spent now (it leaves with this slot).
            let room = u128::from(dim.learner.effective()).saturating_sub(dim.spent.sum());
            let rem = u128::from(rem);
            if rem < room {
                dim.spent.add(u64::try_from(room - rem).unwrap_or(u64::MAX));
            }
        }
        true
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

    pub(crate) fn learning(&self) -> bool {
        self.dims.iter().flatten().any(|d| !d.learner.at_max())
    }

    pub(crate) fn effective(&self) -> (Option<u64>, Option<u64>) {
        (
            self.dims[REQ].as_ref().map(|d| d.learner.effective()),
            self.dims[UNITS].as_ref().map(|d| d.learner.effective()),
        )
    }
}
