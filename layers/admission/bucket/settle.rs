//! Ending a token-bucket reservation: cancelled (refunded while it waited, kept in flight),
//! settled with what the call spent (refund, debt, and what a throttle teaches), or released
//! unsent.

use super::{BucketState, REQ, UNITS, part, scaled};
use crate::Outcome;
use crate::admission::cost::Usage;
use crate::admission::limit::Limit;
use crate::admission::state::{Ticket, named_dims};

impl BucketState {
    /// The call will not happen (dropped while waiting) or was dropped in flight.
    pub(crate) fn cancel(&mut self, l: &Limit, t: &mut Ticket, now: u64) {
        if !t.waiting {
            // In flight: the call may have spent its estimate; keep it charged.
            return;
        }
        let now = self.tick(now);
        if t.charged && now >= t.admit_at {
            // Booked and its instant has come: by the book it was admitted, so it is in flight.
            self.leave_lane(t, now);
            return;
        }
        let booked = t.charged;
        let last = t.lane == 0 && t.admit_at >= self.lanes[0].tail;
        if booked {
            self.prune_bookings(now);
            if let Some(i) = self.bookings[..self.booked]
                .iter()
                .position(|b| b.at == t.admit_at)
            {
                self.booked -= 1;
                self.bookings[i] = self.bookings[self.booked];
            }
            self.advance(l, now);
            if let Some(c) = t.green {
                self.advance_child(l, usize::from(c), now);
            }
            for d in 0..2 {
                self.adjust(l, d, scaled(part(t.cost, d), l), t.green, last);
                if let Some(dim) = &mut self.dims[d] {
                    let slot = dim.spent.slot_of(t.charged_at);
                    dim.spent.adjust(slot, -i128::from(part(t.cost, d)));
                }
            }
            t.charged = false;
        }
        self.leave_lane(t, now);
    }

    /// Settles an admitted call: real usage, the server's remaining budget, and learning.
    /// Returns whether the effective limit may have moved.
    pub(crate) fn settle(
        &mut self,
        l: &Limit,
        t: &mut Ticket,
        outcome: &Outcome,
        usage: &Usage,
        now: u64,
    ) -> bool {
        if self.settle_usage(l, t, usage, now) {
            self.learn(l, outcome, now)
        } else {
            false
        }
    }

    /// An admitted call that was never sent: its units go back, its request stays counted (as
    /// the request of any admitted call does), and nothing is learned.
    pub(crate) fn release_unsent(&mut self, l: &Limit, t: &mut Ticket, now: u64) {
        self.settle_usage(l, t, &Usage::units(0), now);
    }

    /// Settles real usage and the server's remaining budget; `false` when the call was never
    /// admitted (then it is cancelled) and there is nothing to learn from.
    fn settle_usage(&mut self, l: &Limit, t: &mut Ticket, usage: &Usage, now: u64) -> bool {
        if t.waiting {
            if !t.charged {
                self.cancel(l, t, now);
                return false;
            }
            self.leave_lane(t, now);
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
        self.prune_bookings(now);
        if let Some(actual) = usage.units {
            let delta = scaled(t.cost.units, l).saturating_sub(scaled(actual, l));
            self.adjust(l, UNITS, delta, t.green, false);
            if let Some(dim) = &mut self.dims[UNITS] {
                let slot = dim.spent.slot_of(t.charged_at);
                dim.spent
                    .adjust(slot, i128::from(actual) - i128::from(t.cost.units));
            }
        }
        for (d, remaining) in [
            (REQ, usage.remaining.requests),
            (UNITS, usage.remaining.units),
        ] {
            if let (Some(rem), Some(dim)) = (remaining, &mut self.dims[d]) {
                // The server's bucket holds `rem`: ours may not hold more, whatever its
                // capacity (a bucket with no burst credit never holds more than zero anyway).
                dim.bucket.level = dim.bucket.level.min(scaled(rem, l));
            }
        }
        true
    }

    /// Learning, as the Outcome table says: an unpredicted throttle cuts the named dimensions'
    /// effective limits to this client's trailing spend (once per window); a server
    /// `Retry-After` empties the bucket for that long. Returns whether a limit may have moved.
    fn learn(&mut self, l: &Limit, outcome: &Outcome, now: u64) -> bool {
        let Some(named) = named_dims(
            outcome,
            [self.dims[REQ].is_some(), self.dims[UNITS].is_some()],
        ) else {
            return self.learning();
        };
        for (d, hit) in named.into_iter().enumerate() {
            let Some(dim) = &mut self.dims[d] else {
                continue;
            };
            if !hit {
                continue;
            }
            // A bucket provider's throttles are not windows to wait out: one cut per window.
            let new_run = dim
                .learner
                .cut_at()
                .is_none_or(|at| now >= at.saturating_add(l.window));
            dim.learner
                .throttled(&l.learning, l.window, dim.spent.sum(), now, new_run);
            dim.rate = dim.learner.effective();
            if let Some(ra) = outcome.retry_after {
                let debt = -(i128::from(crate::nanos(ra)) * i128::from(dim.rate));
                dim.bucket.level = dim.bucket.level.min(debt);
            }
        }
        true
    }
}
