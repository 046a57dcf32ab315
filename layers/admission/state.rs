//! One key's quota state, whichever [`Accounting`] its limit uses, with its long windows: the
//! state the stores hold, the ticket a reservation carries, and the rules both accountings
//! share.
//!
//! The success path has a fast path: [`KeyState::reserve_fast`] admits an interactive call at
//! once when nothing else is in play (no tenant shares, no hold or probe, nobody queued ahead,
//! learned limits at the configured ones, room now) with the same state changes as
//! [`KeyState::reserve`], in one pass instead of the general arithmetic; otherwise it declines
//! without changing anything and the store calls `reserve`. The tests in `state/tests.rs`
//! compare the two, field by field, over random walks on every kind of limit.

use super::bucket::BucketState;
use super::cost::{Cost, Usage};
use super::limit::{Accounting, Limit};
use super::long::{Long, LongTicket, exhausted};
use super::quota::{Ask, RejectReason};
use super::window::WindowState;
use crate::{Outcome, OutcomeKind, ThrottleScope};

/// The most lanes a key's model has (the sliding window's five).
pub(crate) const MAX_LANES: usize = 5;

/// One lane's queue, for the gauges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LaneStat {
    /// The lane's name in metrics.
    pub(crate) name: &'static str,
    /// Calls waiting in it.
    pub(crate) waiting: u32,
    /// Nanoseconds the oldest of them has waited.
    pub(crate) oldest: u64,
}

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
    /// The long windows' part.
    pub(crate) long: LongTicket,
}

impl Ticket {
    /// Whether settling or cancelling this ticket has more to do than a success at its
    /// estimate: it waits, or it probes.
    #[inline]
    pub(crate) fn probes(&self) -> bool {
        self.probe || self.long.probe
    }
}

/// What [`KeyState::reserve_fast`] admitted: two instants, returned in registers rather than
/// as a whole [`Ticket`] (copying one freshly written costs more than the rest of the fast
/// path).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Admitted {
    /// When the primary window admitted the call.
    pub(crate) at: u64,
    /// When the long windows were charged, if the key has any.
    pub(crate) long_at: Option<u64>,
}

impl Admitted {
    /// The ticket `reserve` returns for the call: admitted at once in the first lane, charged
    /// to no tenant's share, probing nothing.
    #[inline]
    pub(crate) fn ticket(self, ask: &Ask, deadline: u64) -> Ticket {
        let long = match self.long_at {
            None => LongTicket::default(),
            Some(at) => LongTicket {
                held: false,
                charged: true,
                at,
                bound: 0,
                probe: false,
                priority: ask.priority,
                tenant: ask.tenant,
            },
        };
        Ticket {
            cost: ask.cost,
            lane: 0,
            green: None,
            charged: true,
            waiting: false,
            admit_at: self.at,
            deadline,
            charged_at: self.at,
            probe: false,
            long,
        }
    }
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
    // A daily quota is spent: the per-window limit was not the problem (like a partition's).
    if !outcome.kind.teaches_quota() || is_daily(outcome) {
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

/// Whether an outcome says a daily quota is spent.
pub(crate) fn is_daily(outcome: &Outcome) -> bool {
    matches!(outcome.kind, OutcomeKind::Throttled(ThrottleScope::Daily))
}

/// The primary window's state.
// One per key, inline behind the key's own mutex: boxing the larger variant would add a
// pointer chase to every call for a few hundred bytes per key.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
enum Primary {
    Bucket(BucketState),
    Window(WindowState),
}

macro_rules! each {
    ($self:expr, $s:ident => $body:expr) => {
        match $self {
            Primary::Bucket($s) => $body,
            Primary::Window($s) => $body,
        }
    };
}

/// One key's state: the primary window's accounting and the long windows beside it.
#[derive(Clone, Debug)]
pub(crate) struct KeyState {
    primary: Primary,
    long: Long,
}

impl KeyState {
    pub(crate) fn new(l: &Limit, now: u64) -> Self {
        let primary = match l.accounting {
            Accounting::TokenBucket { .. } => Primary::Bucket(BucketState::new(l, now)),
            Accounting::SlidingWindow => Primary::Window(WindowState::new(l, now)),
        };
        KeyState {
            primary,
            long: Long::new(l, now),
        }
    }

    /// The common case of [`reserve`](Self::reserve), the success path taken without the
    /// general arithmetic: an interactive call on a key without shares, with nothing held,
    /// probing or queued ahead of it, the learned limits at the configured ones, and room for
    /// it now in the primary window and in every long window. Then it is admitted at once, the
    /// state changes exactly as `reserve` would change it, and this returns where the ticket
    /// `reserve` would have returned differs from an empty one ([`Admitted::ticket`]).
    /// Otherwise it answers `None` with the state unchanged, and the caller goes on to
    /// [`reserve`](Self::reserve).
    ///
    /// Inlined (with the primary window's own fast path) into the slot's `reserve`, which is
    /// inlined into its callers: the one call it saved per reservation measured 6% of the
    /// success path (`benches/admission.rs`). A key with long windows (tokens per day) takes
    /// [`reserve_fast_long`](Self::reserve_fast_long), out of line: inlined too, it made that
    /// path slower, not faster.
    #[inline(always)]
    pub(crate) fn reserve_fast(&mut self, l: &Limit, ask: &Ask, now: u64) -> Option<Admitted> {
        if self.long.active() {
            return self.reserve_fast_long(l, ask, now);
        }
        let at = each!(&mut self.primary, s => s.reserve_fast(l, ask, now))?;
        Some(Admitted { at, long_at: None })
    }

    /// [`reserve_fast`](Self::reserve_fast) on a key with long windows: as `reserve_long`
    /// with every long window's wait zero — no hold (so no probe), room in each; then the
    /// primary window admits at once, and the long windows are charged.
    #[inline(never)]
    fn reserve_fast_long(&mut self, l: &Limit, ask: &Ask, now: u64) -> Option<Admitted> {
        let long_now = self.long.clock().max(now);
        if !self.long.fits_now(ask.cost, long_now) {
            return None;
        }
        let at = each!(&mut self.primary, s => s.reserve_fast(l, ask, long_now))?;
        let now = self.long.tick(now);
        self.long.charge(ask.cost, now);
        Some(Admitted {
            at,
            long_at: Some(now),
        })
    }

    /// Reserves `ask`, to be admitted no later than `deadline`.
    #[inline]
    pub(crate) fn reserve(
        &mut self,
        l: &Limit,
        ask: &Ask,
        deadline: u64,
        now: u64,
    ) -> Result<Ticket, Refusal> {
        if !self.long.active() {
            return each!(&mut self.primary, s => s.reserve(l, ask, deadline, now));
        }
        self.reserve_long(l, ask, deadline, now)
    }

    /// [`reserve`](Self::reserve) when long windows (or a daily hold) may bind: the call
    /// waits for them first (charged nothing meanwhile), then books in the primary window.
    fn reserve_long(
        &mut self,
        l: &Limit,
        ask: &Ask,
        deadline: u64,
        now: u64,
    ) -> Result<Ticket, Refusal> {
        let now = self.long.tick(now);
        if self.long.too_large(ask.cost) {
            return Err(Refusal {
                reason: RejectReason::CostTooLarge,
                retry_in: None,
            });
        }
        let (wait, bound) = self.long.wait_at(ask.cost, now);
        let long = LongTicket {
            bound,
            priority: ask.priority,
            tenant: ask.tenant,
            ..LongTicket::default()
        };
        if wait > 0 {
            each!(&mut self.primary, s => s.touch(l, now));
            if now.saturating_add(wait) > deadline {
                return Err(exhausted(l, wait, bound));
            }
            return Ok(Ticket {
                cost: ask.cost,
                lane: 0,
                green: None,
                charged: false,
                waiting: true,
                admit_at: now.saturating_add(wait),
                deadline,
                charged_at: now,
                probe: false,
                long: LongTicket { held: true, ..long },
            });
        }
        let mut t = each!(&mut self.primary, s => s.reserve(l, ask, deadline, now))?;
        t.long = long;
        self.long.admit(&mut t.long, t.cost, now);
        Ok(t)
    }

    /// After waking at `t.admit_at`: admitted (`Ok(None)`), wait more (`Ok(Some(later))`) or
    /// refused (the deadline cannot be met; the ticket is then spent).
    pub(crate) fn confirm(
        &mut self,
        l: &Limit,
        t: &mut Ticket,
        now: u64,
    ) -> Result<Option<u64>, Refusal> {
        if t.long.held {
            return self.confirm_held(l, t, now);
        }
        let was_waiting = t.waiting;
        let r = each!(&mut self.primary, s => s.confirm(l, t, now));
        if was_waiting && t.long.charged {
            let now = self.long.tick(now);
            match r {
                Ok(None) => self.long.moved(&mut t.long, t.cost, now),
                Ok(Some(_)) => {}
                Err(_) => self.after_primary(t, now),
            }
        }
        r
    }

    /// After the primary window gave a call up or let it go: when it holds no charge for the
    /// call (it was never admitted), neither do the long windows; when it does (in flight),
    /// the long windows keep theirs, and a probe that brings no answer lets another probe.
    fn after_primary(&mut self, t: &mut Ticket, now: u64) {
        if t.charged {
            self.long.end_probe(&mut t.long, None);
        } else {
            self.long.refund(&mut t.long, t.cost, now);
        }
    }

    /// A call waiting for a long window: still waiting, refused, or booked in the primary
    /// window now.
    fn confirm_held(
        &mut self,
        l: &Limit,
        t: &mut Ticket,
        now: u64,
    ) -> Result<Option<u64>, Refusal> {
        let now = self.long.tick(now);
        let (wait, bound) = self.long.wait_at(t.cost, now);
        if wait > 0 {
            each!(&mut self.primary, s => s.touch(l, now));
            t.long.bound = bound;
            if now.saturating_add(wait) > t.deadline {
                t.waiting = false;
                t.long.held = false;
                return Err(exhausted(l, wait, bound));
            }
            t.admit_at = now.saturating_add(wait);
            return Ok(Some(t.admit_at));
        }
        let ask = Ask {
            cost: t.cost,
            priority: t.long.priority,
            tenant: t.long.tenant,
            deadline: None,
        };
        match each!(&mut self.primary, s => s.reserve(l, &ask, t.deadline, now)) {
            Ok(mut booked) => {
                booked.long = LongTicket {
                    held: false,
                    ..t.long
                };
                self.long.admit(&mut booked.long, booked.cost, now);
                *t = booked;
                Ok(t.waiting.then_some(t.admit_at))
            }
            Err(refusal) => {
                t.waiting = false;
                t.long.held = false;
                Err(refusal)
            }
        }
    }

    /// The call will not happen (dropped while waiting) or was dropped in flight (then its
    /// estimate stays spent: it may have run).
    pub(crate) fn cancel(&mut self, l: &Limit, t: &mut Ticket, now: u64) {
        if t.long.held {
            t.waiting = false;
            t.long.held = false;
            return;
        }
        // A booked call whose instant has come stays charged (by the book it was admitted):
        // its long-window charge moves to its admission, as `confirm` moves it, so that it
        // does not leave the long windows early.
        let booked_and_due = t.waiting && t.charged && now >= t.admit_at;
        each!(&mut self.primary, s => s.cancel(l, t, now));
        if t.long.charged || t.long.probe {
            let now = self.long.tick(now);
            if booked_and_due && t.charged {
                self.long.moved(&mut t.long, t.cost, t.admit_at.min(now));
            }
            self.after_primary(t, now);
        }
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
        if t.long.held {
            self.cancel(l, t, now);
            return false;
        }
        let moved = each!(&mut self.primary, s => s.settle(l, t, outcome, usage, now));
        let daily = is_daily(outcome);
        if !(t.long.charged || t.long.probe || daily) {
            return moved;
        }
        let now = self.long.tick(now);
        if !t.charged {
            // Never admitted: cancelled.
            self.long.refund(&mut t.long, t.cost, now);
            return moved;
        }
        self.long.settle(&t.long, t.cost, usage.units, now);
        self.long.end_probe(&mut t.long, Some(daily));
        if daily {
            self.long.daily(now);
        }
        moved
    }

    /// An admitted call that was never sent: its units go back, its request stays counted.
    pub(crate) fn release_unsent(&mut self, l: &Limit, t: &mut Ticket, now: u64) {
        if t.long.held {
            self.cancel(l, t, now);
            return;
        }
        each!(&mut self.primary, s => s.release_unsent(l, t, now));
        if t.long.charged || t.long.probe {
            let now = self.long.tick(now);
            if t.charged {
                self.long.settle(&t.long, t.cost, Some(0), now);
            }
            self.after_primary(t, now);
        }
    }

    /// The wait an interactive, within-share call of `cost` would get now; `None` when it can
    /// never be admitted. Does not change the state. A long window without room for it (or a
    /// daily hold) answers the wait until it has room: a router compares it with the call's
    /// deadline and moves on.
    pub(crate) fn peek(&self, l: &Limit, cost: Cost, now: u64) -> Option<u64> {
        let wait = each!(&self.primary, s => s.peek(l, cost, now))?;
        if !self.long.active() {
            return Some(wait);
        }
        if self.long.too_large(cost) {
            return None;
        }
        Some(wait.max(self.long.wait_at(cost, now).0))
    }

    /// Whether forgetting this state changes nothing.
    pub(crate) fn at_rest(&self, l: &Limit, now: u64, idle: u64) -> bool {
        each!(&self.primary, s => s.at_rest(l, now, idle)) && self.long.at_rest(now)
    }

    /// Calls waiting, all lanes.
    pub(crate) fn waiting(&self) -> u32 {
        each!(&self.primary, s => s.waiting())
    }

    /// Per lane, in the order the lanes are served: its name, the calls waiting in it and the
    /// nanoseconds the oldest of them has waited at `now`; `None` past the model's lanes.
    pub(crate) fn lanes(&self, now: u64) -> [Option<LaneStat>; MAX_LANES] {
        fn named<const N: usize>(
            names: [&'static str; N],
            lanes: [(u32, u64); N],
        ) -> [Option<LaneStat>; MAX_LANES] {
            let mut out = [None; MAX_LANES];
            for (slot, (name, (waiting, oldest))) in
                out.iter_mut().zip(names.into_iter().zip(lanes))
            {
                *slot = Some(LaneStat {
                    name,
                    waiting,
                    oldest,
                });
            }
            out
        }
        match &self.primary {
            Primary::Bucket(s) => named(super::bucket::LANE_NAMES, s.lanes(now)),
            Primary::Window(s) => named(super::window::LANE_NAMES, s.lanes(now)),
        }
    }

    /// Whether a learned limit is below the configured one.
    pub(crate) fn learning(&self) -> bool {
        each!(&self.primary, s => s.learning())
    }

    /// What was spent over the trailing window at `now`: (requests, units).
    pub(crate) fn spent(&self, now: u64) -> (Option<u64>, Option<u64>) {
        each!(&self.primary, s => s.spent(now))
    }

    /// The effective (learned) limits per window: (requests, units).
    pub(crate) fn effective(&self) -> (Option<u64>, Option<u64>) {
        each!(&self.primary, s => s.effective())
    }

    /// The long windows' state (tests).
    #[cfg(test)]
    pub(crate) fn long(&self) -> &Long {
        &self.long
    }
}

#[cfg(test)]
mod tests;
