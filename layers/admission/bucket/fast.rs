//! The token bucket's fast path: [`BucketState::reserve_fast`], the success path of
//! [`reserve`](BucketState::reserve) in one pass.

use super::{BucketState, part, scaled};
use crate::admission::limit::{Limit, Priority};
use crate::admission::quota::Ask;

impl BucketState {
    /// The common case of [`reserve`](Self::reserve), in one pass: an interactive call on a
    /// key without shares, nobody booked ahead, the learned rates at the configured limits and
    /// enough in the bucket for it. Then the call is admitted at the instant returned (`now`,
    /// or the key's later clock), and the state changes exactly as `reserve` would change it
    /// (the same advance, the same charge); the ticket is [`Admitted::ticket`](super::state::Admitted::ticket). Anything else
    /// — or too little in the bucket — answers `None` without changing the state, and
    /// `reserve` takes over.
    // Always inline: into `KeyState::reserve_fast`, its one caller, which is out of line
    // itself; one call saved per reservation.
    #[inline(always)]
    pub(crate) fn reserve_fast(&mut self, l: &Limit, ask: &Ask, now: u64) -> Option<u64> {
        let now = self.clock.max(now);
        if l.shares.is_some() || ask.priority != Priority::Interactive || self.lanes[0].waiting > 0
        {
            return None;
        }
        // Enough in every bucket at `now`, as `level_wait` computes it for lane 0: with nobody
        // booked ahead and a learner at the configured limit, the rate after the advance is the configured one.
        for d in 0..2 {
            if let Some(dim) = &self.dims[d] {
                let n = part(ask.cost, d);
                if !dim.learner.at_max() || dim.too_large(n) {
                    return None;
                }
                let mut bucket = dim.bucket;
                bucket.advance_unsaturated(now, dim.rate, dim.cap);
                if bucket.level < scaled(n, l).min(dim.cap) {
                    return None;
                }
            }
        }
        self.clock = now;
        self.last_used = now;
        for d in 0..2 {
            let Some(dim) = &mut self.dims[d] else {
                continue;
            };
            // `advance` with nobody booked and a learner at the configured limit (its regain changes nothing,
            // the rate becomes the configured limit), then `charge` to no tenant.
            let n = part(ask.cost, d);
            dim.bucket.advance_unsaturated(now, dim.rate, dim.cap);
            dim.spent.advance(now);
            let rate = dim.learner.effective();
            if dim.rate != rate {
                dim.rate = rate;
            }
            // The level covers the charge (checked above), so it cannot saturate.
            dim.bucket.level -= scaled(n, l);
            dim.spent.add(n);
        }
        Some(now)
    }
}
