//! Ending a sliding-window reservation: cancelled (refunded while it waited, kept in flight),
//! settled with what the call spent (slack back at once, debt, and what a throttle teaches),
//! or released unsent.

use super::{Dim, INTERACTIVE, WindowState};
use crate::Outcome;
use crate::admission::bucket::{REQ, UNITS, child_cap, child_rate, scaled};
use crate::admission::cost::Usage;
use crate::admission::limit::Limit;
use crate::admission::state::{Ticket, named_dims};

impl WindowState {
    pub(crate) fn cancel(&mut self, l: &Limit, t: &mut Ticket, now: u64) {
        if !t.waiting {
            // In flight: the call may have spent its estimate; it stays counted.
            self.end_probe(t);
            return;
        }
        let now = self.tick(now);
        if let Some(c) = t.green {
            self.advance_child(l, usize::from(c), now);
        }
        self.give_up(l, t, now);
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
        let probe = std::mem::take(&mut t.probe);
        if probe {
            self.probing = false;
        }
        let Some(named) = named_dims(outcome, limited) else {
            if probe && outcome.is_success() {
                // The provider's window has room again: release the calls held back.
                self.streak = 0;
            }
            return self.learning();
        };
        // A new run of throttles: none is running, and this call was sent after the last one
        // began (a throttle of a call sent before is old news of the same full window).
        let new_run = self.streak == 0 && t.charged_at >= self.held_at;
        for (d, hit) in named.into_iter().enumerate() {
            let Some(dim) = &mut self.dims[d] else {
                continue;
            };
            if hit {
                let ours = dim.spent.sum();
                dim.learner
                    .throttled(&l.learning, l.window, ours, self.clock, new_run);
            }
        }
        // The provider's window is full until a boundary this client cannot know: hold the
        // key's calls back a little (a 32nd of a window), then send one probe; each throttled
        // probe doubles the hold. So a full window costs a handful of throttles rather than
        // one per call sent into it.
        if probe || new_run {
            let hold = (l.window / 32).saturating_mul(1 << self.streak.min(5));
            self.blocked_until = self.blocked_until.max(self.clock.saturating_add(hold));
            self.held_at = self.clock;
            self.streak = self.streak.saturating_add(1);
        }
        if let Some(ra) = outcome.retry_after {
            self.blocked_until = self
                .blocked_until
                .max(self.clock.saturating_add(crate::nanos(ra)));
        }
        true
    }

    pub(crate) fn release_unsent(&mut self, l: &Limit, t: &mut Ticket, now: u64) {
        self.end_probe(t);
        self.settle_usage(l, t, &Usage::units(0), now);
    }

    /// A probe that will bring no answer: another call probes instead.
    fn end_probe(&mut self, t: &mut Ticket) {
        if std::mem::take(&mut t.probe) {
            self.probing = false;
        }
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
            if usize::from(t.lane) == INTERACTIVE {
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
        let r = &usage.remaining;
        for (d, remaining, reset) in [
            (REQ, r.requests, r.requests_reset),
            (UNITS, r.units, r.units_reset),
        ] {
            let (Some(rem), Some(dim)) = (remaining, &mut self.dims[d]) else {
                continue;
            };
            // The server says its budget has `rem` left; when the window has more room, the
            // others spent the difference: count it as spent, until the server says its budget
            // is full again (in the slot that leaves the window then), else for a window.
            let room = u128::from(dim.learner.effective()).saturating_sub(dim.spent.sum());
            let rem = u128::from(rem);
            if rem < room {
                let phantom = u64::try_from(room - rem).unwrap_or(u64::MAX);
                let slot = match reset {
                    Some(reset) => dim.spent.slot_of(
                        now.saturating_add(crate::nanos(reset))
                            .saturating_sub(l.window),
                    ),
                    None => dim.spent.slot_of(now),
                };
                dim.spent.adjust_or_oldest(slot, i128::from(phantom));
            }
        }
        true
    }
}
