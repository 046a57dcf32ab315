//! The storage seam: one key's state as a store holds it ([`Slot`]), the store that finds a
//! key's slot ([`QuotaStore`], [`StoreSlot`]), and read-only [`Headroom`] for routers.

use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use super::{Ask, Grant, Rejected};
use crate::Outcome;
use crate::admission::cost::{Cost, Usage};

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
///
/// [`MemoryStore`]: super::MemoryStore
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
    /// The long window ([`LimitBuilder::also`]) that made the reservation wait, if one did:
    /// the call waited (or waits) for it to have room. The default: none.
    ///
    /// [`LimitBuilder::also`]: crate::admission::LimitBuilder::also
    fn bound_by(&self, ticket: &Self::Ticket) -> Option<Duration> {
        let _ = ticket;
        None
    }
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

/// `impl Slot for $ty` forwarding every operation to the `S` it points to.
macro_rules! forward_slot {
    ($(#[$doc:meta])* $ty:ty) => {
        $(#[$doc])*
        impl<S: Slot + ?Sized> Slot for $ty {
            type Ticket = S::Ticket;

            #[inline(always)]
            fn reserve(&self, ask: &Ask, now: Instant) -> Result<(Self::Ticket, Grant), Rejected> {
                (**self).reserve(ask, now)
            }
            #[inline]
            fn confirm(&self, ticket: &mut Self::Ticket, now: Instant) -> Result<Grant, Rejected> {
                (**self).confirm(ticket, now)
            }
            #[inline(always)]
            fn settle(
                &self,
                ticket: &mut Self::Ticket,
                outcome: &Outcome,
                usage: &Usage,
                now: impl FnOnce() -> Instant,
            ) -> Option<u64> {
                (**self).settle(ticket, outcome, usage, now)
            }
            #[inline]
            fn release_unsent(&self, ticket: &mut Self::Ticket, now: Instant) {
                (**self).release_unsent(ticket, now)
            }
            #[inline]
            fn cancel(&self, ticket: &mut Self::Ticket, now: Instant) {
                (**self).cancel(ticket, now)
            }
            #[inline]
            fn admit_wait(&self, cost: Cost, now: Instant) -> Option<Duration> {
                (**self).admit_wait(cost, now)
            }
            #[inline]
            fn admitted_at(&self, ticket: &Self::Ticket) -> Instant {
                (**self).admitted_at(ticket)
            }
            #[inline]
            fn bound_by(&self, ticket: &Self::Ticket) -> Option<Duration> {
                (**self).bound_by(ticket)
            }
            #[inline]
            fn poll_wake(&self, ticket: &mut Self::Ticket, cx: &mut Context<'_>) -> Poll<()> {
                (**self).poll_wake(ticket, cx)
            }
        }
    };
}

forward_slot!(
    /// How stores hand slots to reservations that outlive the caller's borrow (the layers'
    /// futures hold `Reservation<Arc<MemorySlot>>`).
    std::sync::Arc<S>
);
forward_slot!(
    /// A reservation that borrows its slot, for a caller that holds the slot for as long as
    /// the call (the shape of a rate limiter checked by reference): it saves the two atomic
    /// reference-count operations an owned `Arc` costs per call.
    &S
);

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
