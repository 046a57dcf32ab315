//! One attempt: its target, breaker permit and quota reservation, and how they end.

use std::time::Duration;

use tokio::time::Instant;

use crate::Outcome;
use crate::admission::{Reservation, Slot, Usage};
use crate::breaker::{BreakerHandle, BreakerPermit};
use crate::concurrency::{AdaptiveLimit, ConcurrencyFull, ConcurrencyPermit};

/// One attempt in flight; see the [module docs](super).
pub(crate) struct Attempt<P: Slot> {
    /// The route index of the target, `None` for a call without a route.
    target: Option<usize>,
    permit: Option<BreakerPermit>,
    /// The target's concurrency slot, taken after the quota granted the attempt.
    slot: Option<ConcurrencyPermit>,
    reservation: Option<Reservation<P>>,
    started: Instant,
    sent: bool,
}

/// What an ended attempt tells the call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ended {
    /// The route index of the target, if any.
    pub(crate) target: Option<usize>,
    /// Whether the request was handed to the service.
    pub(crate) sent: bool,
    /// The key's effective limit, when settling may have moved it.
    pub(crate) limit: Option<u64>,
}

impl<P: Slot> Attempt<P> {
    /// An attempt at `target` under `permit`, begun at `now`.
    pub(crate) fn new(target: Option<usize>, permit: Option<BreakerPermit>, now: Instant) -> Self {
        Attempt {
            target,
            permit,
            slot: None,
            reservation: None,
            started: now,
            sent: false,
        }
    }

    /// The route index of the attempt's target.
    pub(crate) fn target(&self) -> Option<usize> {
        self.target
    }

    /// When the attempt began.
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// The breaker the attempt's permit came from, if it holds one (a streamed response reports
    /// a failure after its `200` there, see `smithy::stream`).
    #[cfg_attr(not(feature = "smithy"), allow(dead_code))]
    pub(crate) fn breaker(&self) -> Option<&BreakerHandle> {
        self.permit.as_ref().map(BreakerPermit::breaker)
    }

    /// Gives the attempt a breaker permit (a call without a route takes its key's).
    #[cfg_attr(not(feature = "smithy"), allow(dead_code))]
    pub(crate) fn set_permit(&mut self, permit: BreakerPermit) {
        self.permit = Some(permit);
    }

    /// Stores the attempt's reservation (admitted, or waiting for its grant).
    pub(crate) fn reserved(&mut self, reservation: Reservation<P>) {
        self.reservation = Some(reservation);
    }

    /// The reservation, while it waits for its grant.
    pub(crate) fn reservation_mut(&mut self) -> Option<&mut Reservation<P>> {
        self.reservation.as_mut()
    }

    /// Moves the reservation out (a streamed response settles it itself).
    pub(crate) fn take_reservation(&mut self) -> Option<Reservation<P>> {
        self.reservation.take()
    }

    /// Drops a reservation that a confirm rejected (and so spent already).
    pub(crate) fn forget_reservation(&mut self) {
        self.reservation = None;
    }

    /// Takes a slot of the target's concurrency limit at `now`, once the quota granted the
    /// attempt (a call waiting for quota holds none); refused at once when the limit is full.
    pub(crate) fn take_slot(
        &mut self,
        limit: &AdaptiveLimit,
        now: Instant,
    ) -> Result<(), ConcurrencyFull> {
        self.slot = Some(limit.try_acquire(now)?);
        Ok(())
    }

    /// The request was handed to the service: the attempt now says something about it.
    pub(crate) fn sent(&mut self) {
        self.sent = true;
    }

    /// Ends the attempt with `outcome` and what it spent, at `now`.
    ///
    /// An attempt never sent gives its units back (its request stays counted, as any admitted
    /// request's does) and its breaker permit up unrecorded: it says nothing about the backend.
    /// A sent one settles its reservation ([`settle`]) and records its outcome and latency in
    /// its breaker ([`record`]) and its concurrency limit.
    pub(crate) fn end(&mut self, outcome: &Outcome, usage: Usage, now: Instant) -> Ended {
        let mut limit = None;
        if !self.sent {
            if let Some(reservation) = self.reservation.take() {
                reservation.release_unsent(now);
            }
            // Dropped unrecorded: an unsent attempt teaches the breaker and the concurrency
            // limit nothing.
            drop(self.permit.take());
            drop(self.slot.take());
        } else {
            if let Some(reservation) = self.reservation.take() {
                limit = settle(reservation, outcome, usage, || now);
            }
            if let Some(permit) = self.permit.take() {
                record(permit, outcome, self.started, now);
            }
            if let Some(slot) = self.slot.take() {
                let latency = now.saturating_duration_since(slot.started());
                slot.record(outcome, latency, now);
            }
        }
        Ended {
            target: self.target,
            sent: self.sent,
            limit,
        }
    }
}

/// Settles a reservation with the call's outcome and usage: a call the server refused spent
/// nothing unless the server said otherwise (its usage unknown, not its estimate). Returns the key's effective limit when settling
/// may have moved it. `now` is read only when settling needs it.
#[inline]
pub(crate) fn settle<P: Slot>(
    reservation: Reservation<P>,
    outcome: &Outcome,
    usage: Usage,
    now: impl FnOnce() -> Instant,
) -> Option<u64> {
    reservation.finish_with(outcome, usage.or_refused(outcome), now)
}

/// Records a sent attempt's outcome in its breaker, with its latency from `started`.
#[inline]
pub(crate) fn record(permit: BreakerPermit, outcome: &Outcome, started: Instant, now: Instant) {
    let latency: Duration = now.saturating_duration_since(started);
    permit.record(*outcome, latency, now);
}
