//! [`Reservation`]: the quota one call holds, settled with what the call spent.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Instant;

use super::{Ask, Grant, MemorySlot, Rejected, Slot};
use crate::Outcome;
use crate::admission::cost::Usage;

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
    ///
    /// [`Quota::slot`]: super::Quota::slot
    #[inline(always)]
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

    /// The long window ([`LimitBuilder::also`], e.g. a day) that made this call wait, if one
    /// did: a call granted [`Grant::At`] an instant because its tokens per day had no room
    /// until then names the day here. `None` for a call admitted at once or that waited only
    /// for the limit's own window.
    ///
    /// [`LimitBuilder::also`]: crate::admission::LimitBuilder::also
    pub fn bound_by(&self) -> Option<std::time::Duration> {
        self.slot.bound_by(&self.ticket)
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

impl<T: Slot> Reservation<T> {
    /// [`Drop`] of a reservation still unsettled: out of line, so that the drop itself is a
    /// test of `done`, small enough to inline everywhere, the unwinding paths included. The
    /// compiler then sees that a settled reservation's drop does nothing and keeps the
    /// reservation in registers.
    #[cold]
    #[inline(never)]
    fn cancel_on_drop(&mut self) {
        self.slot.cancel(&mut self.ticket, Instant::now());
    }
}

impl<T: Slot> Drop for Reservation<T> {
    #[inline(always)]
    fn drop(&mut self) {
        if !self.done {
            self.cancel_on_drop();
        }
    }
}
