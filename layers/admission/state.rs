//! One key's quota state, whichever [`Accounting`] its limit uses: the state the stores hold,
//! the ticket a reservation carries, and the rules both accountings share.

use super::bucket::BucketState;
use super::cost::{Cost, Usage};
use super::limit::{Accounting, Limit};
use super::quota::{Ask, RejectReason};
use super::window::WindowState;
use crate::{Outcome, OutcomeKind, ThrottleScope};

/// What a reservation remembers, so that it can be confirmed, settled or cancelled later
/// without looking anything up.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket {
    pub(crate) cost: Cost,
    pub(crate) lane: u8,
    /// The tenant whose share the call is charged to, when within its share.
    pub(crate) green: Option<u16>,
    pub(crate) charged: bool,
    pub(crate) waiting: bool,
    pub(crate) admit_at: u64,
    pub(crate) deadline: u64,
    /// When the call's spend was recorded (its slot in the spend rings).
    pub(crate) charged_at: u64,
    /// The call probes a key held back after a throttle: its answer releases the others.
    pub(crate) probe: bool,
}

/// A refusal from the arithmetic: reason plus the wait that would have been needed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Refusal {
    pub(crate) reason: RejectReason,
    pub(crate) retry_in: Option<u64>,
}

/// The dimensions (requests, units) an outcome teaches, as the Outcome table says: `None` for
/// an outcome that teaches the key's quota nothing (a success, a failure that is not a
/// throttle, a throttle of one partition or key). A throttle of a dimension the key does not
/// limit teaches the ones it does.
pub(crate) fn named_dims(outcome: &Outcome, limited: [bool; 2]) -> Option<[bool; 2]> {
    if !outcome.kind.teaches_quota() {
        return None;
    }
    let scope = match outcome.kind {
        OutcomeKind::Throttled(scope) => scope,
        _ => ThrottleScope::Unknown,
    };
    let named = match scope {
        ThrottleScope::Requests => [true, false],
        ThrottleScope::Tokens | ThrottleScope::Capacity => [false, true],
        _ => [true, true],
    };
    if (0..2).any(|d| named[d] && limited[d]) {
        Some(named)
    } else {
        Some([true, true])
    }
}

/// One key's state.
// One per key, inline behind the key's own mutex: boxing the larger variant would add a
// pointer chase to every call for a few hundred bytes per key.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub(crate) enum KeyState {
    Bucket(BucketState),
    Window(WindowState),
}

macro_rules! each {
    ($self:expr, $s:ident => $body:expr) => {
        match $self {
            KeyState::Bucket($s) => $body,
            KeyState::Window($s) => $body,
        }
    };
}

impl KeyState {
    pub(crate) fn new(l: &Limit, now: u64) -> Self {
        match l.accounting {
            Accounting::TokenBucket { .. } => KeyState::Bucket(BucketState::new(l, now)),
            Accounting::SlidingWindow => KeyState::Window(WindowState::new(l, now)),
        }
    }

    /// Reserves `ask`, to be admitted no later than `deadline`.
    pub(crate) fn reserve(
        &mut self,
        l: &Limit,
        ask: &Ask,
        deadline: u64,
        now: u64,
    ) -> Result<Ticket, Refusal> {
        each!(self, s => s.reserve(l, ask, deadline, now))
    }

    /// After waking at `t.admit_at`: admitted (`Ok(None)`), wait more (`Ok(Some(later))`) or
    /// refused (the deadline cannot be met; the ticket is then spent).
    pub(crate) fn confirm(
        &mut self,
        l: &Limit,
        t: &mut Ticket,
        now: u64,
    ) -> Result<Option<u64>, Refusal> {
        each!(self, s => s.confirm(l, t, now))
    }

    /// The call will not happen (dropped while waiting) or was dropped in flight (then its
    /// estimate stays spent: it may have run).
    pub(crate) fn cancel(&mut self, l: &Limit, t: &mut Ticket, now: u64) {
        each!(self, s => s.cancel(l, t, now))
    }

    /// Settles an admitted call; returns whether the effective limit may have moved.
    pub(crate) fn settle(
        &mut self,
        l: &Limit,
        t: &mut Ticket,
        outcome: &Outcome,
        usage: &Usage,
        now: u64,
    ) -> bool {
        each!(self, s => s.settle(l, t, outcome, usage, now))
    }

    /// An admitted call that was never sent: its units go back, its request stays counted.
    pub(crate) fn release_unsent(&mut self, l: &Limit, t: &mut Ticket, now: u64) {
        each!(self, s => s.release_unsent(l, t, now))
    }

    /// The wait an interactive, within-share call of `cost` would get now; `None` when it can
    /// never be admitted. Does not change the state.
    pub(crate) fn peek(&self, l: &Limit, cost: Cost, now: u64) -> Option<u64> {
        each!(self, s => s.peek(l, cost, now))
    }

    /// Whether forgetting this state changes nothing.
    pub(crate) fn at_rest(&self, l: &Limit, now: u64, idle: u64) -> bool {
        each!(self, s => s.at_rest(l, now, idle))
    }

    /// Calls waiting, all lanes.
    pub(crate) fn waiting(&self) -> u32 {
        each!(self, s => s.waiting())
    }

    /// Whether a learned limit is below the configured one.
    pub(crate) fn learning(&self) -> bool {
        each!(self, s => s.learning())
    }

    /// What was spent over the trailing window at `now`: (requests, units).
    pub(crate) fn spent(&self, now: u64) -> (Option<u64>, Option<u64>) {
        each!(self, s => s.spent(now))
    }

    /// The effective (learned) limits per window: (requests, units).
    pub(crate) fn effective(&self) -> (Option<u64>, Option<u64>) {
        each!(self, s => s.effective())
    }
}
