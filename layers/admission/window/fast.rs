//! The sliding window's fast path: [`WindowState::reserve_fast`], the success path of
//! [`reserve`](WindowState::reserve) in one pass.

use super::{INTERACTIVE, WindowState};
use crate::admission::bucket::{part, scaled};
use crate::admission::limit::{Limit, Priority};
use crate::admission::quota::Ask;

impl WindowState {
    /// The common case of [`reserve`](Self::reserve), in one pass: an interactive call on a
    /// key without shares, no hold, no probe, nobody queued in its lane, the learned limits at
    /// the configured ones and room in the window for it. Then the call is admitted at the
    /// instant returned (`now`, or the key's later clock), and the state changes exactly as
    /// `reserve` would change it (the same advance, the same charge); the ticket is
    /// [`Admitted::ticket`](super::state::Admitted::ticket). Anything else — or no room — answers `None` without changing the
    /// state, and `reserve` takes over.
    // Always inline: into `KeyState::reserve_fast`, its one caller, which is out of line
    // itself; one call saved per reservation.
    #[inline(always)]
    pub(crate) fn reserve_fast(&mut self, l: &Limit, ask: &Ask, now: u64) -> Option<u64> {
        let now = self.clock.max(now);
        if l.shares.is_some()
            || ask.priority != Priority::Interactive
            || self.probing
            || self.streak > 0
            || self.blocked_until > now
            || self.lanes[INTERACTIVE].pending != [0, 0]
        {
            return None;
        }
        // Room for the call in every limited dimension, as `wait_at` computes it for lane 0
        // with nothing ahead: the trailing window's spend plus the cost within the limit,
        // which a learner at the configured limit holds at the configured one.
        for d in 0..2 {
            if let Some(dim) = &self.dims[d] {
                let n = part(ask.cost, d);
                if !dim.learner.at_max()
                    || n > dim.max
                    || dim.spent.sum_at(now) + u128::from(n) > u128::from(dim.max)
                {
                    return None;
                }
            }
        }
        self.clock = now;
        self.last_used = now;
        // A ring starts a new slot: the general advance (rare: once a slot at most).
        if now >= self.fast_until {
            self.advance(l, now);
        }
        for d in 0..2 {
            let Some(dim) = &mut self.dims[d] else {
                continue;
            };
            // `advance` — the rings are in their newest slots until `fast_until`, the pace
            // refills at the rate of a learner at the configured limit, its regain changes
            // nothing — then `charge_admitted` for an interactive call that probes nothing (no
            // streak). The pace first, so that its level stays in registers (the rings' slots
            // are behind a pointer the compiler cannot tell from the pace).
            let n = part(ask.cost, d);
            let mut pace = dim.pace;
            pace.advance_unsaturated(now, dim.max, dim.pace_cap_max);
            pace.charge_floored(scaled(n, l), dim.pace_floor_max);
            dim.pace = pace;
            // The check above: the ring holds at most `max - n` at `now` (and `advance` to
            // `now`, done, leaves it holding that), so adding `n` stays within `max`.
            dim.spent.add_within(n);
            dim.interactive.add(n);
        }
        self.interactive_calls.add(1);
        Some(now)
    }
}
