//! A call's reservations on its other quota keys ([`Prepared::also`](super::call::Prepared)):
//! a DynamoDB batch or transaction over several tables reserves on every table's key. The
//! HTTP client admits them after the call's own key, all or nothing; the interceptor records
//! what each key spent from the attempt's output; the attempt's end settles them by the
//! lifecycle's rules, as the call's own reservation is settled.

use std::sync::Arc;

use tokio::time::Instant;

use super::Shared;
use super::call::Call;
use crate::Outcome;
use crate::admission::{QuotaStore, Reservation, Slot, StoreSlot, Usage};
use crate::lifecycle::{self, Ended};

/// A reservation on one of a call's other keys.
pub(crate) struct Also<T: Slot> {
    key: Arc<str>,
    reservation: Reservation<T>,
    units: Option<u64>,
}

/// Ends the reservations on a call's other keys as its own ended: given back when the attempt
/// was never sent, else settled with the outcome and each key's own usage.
pub(super) fn end<T: Slot>(also: Vec<Also<T>>, ended: &Ended, outcome: &Outcome, now: Instant) {
    for also in also {
        if ended.sent {
            let usage = also.units.map_or(Usage::UNKNOWN, Usage::units);
            lifecycle::settle(also.reservation, outcome, usage, || now);
        } else {
            also.reservation.release_unsent(now);
        }
    }
}

type SlotOf<S> = <S as StoreSlot>::Slot;

impl<S: QuotaStore<Arc<str>> + 'static> Shared<S> {
    /// Stores the attempt's reservations on the call's other keys.
    pub(crate) fn admitted_also(call: &mut Call<S>, also: Vec<(Arc<str>, Reservation<SlotOf<S>>)>) {
        if let Some(attempt) = call.attempt.as_mut() {
            attempt.also = also
                .into_iter()
                .map(|(key, reservation)| Also {
                    key,
                    reservation,
                    units: None,
                })
                .collect();
        }
    }

    /// Records what the attempt spent on each of the call's other keys, from `usage` of the
    /// key (read from the attempt's output).
    pub(crate) fn also_usage(call: &mut Call<S>, usage: impl Fn(&str) -> Option<u64>) {
        if let Some(attempt) = call.attempt.as_mut() {
            for also in &mut attempt.also {
                also.units = usage(&also.key);
            }
        }
    }

    /// Gives the reservation of the attempt in flight back, unsent: another of the call's keys
    /// refused the attempt, and a call reserves on all its keys or on none.
    pub(crate) fn release_unsent(call: &mut Call<S>, now: Instant) {
        if let Some(reservation) = Self::take_reservation(call) {
            reservation.release_unsent(now);
        }
    }
}
