//! [`RedisSlot`]: one key of a store, its leases and waiters, the background task that
//! refills them, and the [`Slot`] operations on it, failing open or closed with the store.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::conn::Common;
use super::lease::{Leases, Stand, Step};
use super::mode::StoreMode;
use super::script::{Answer, Args, Op};
use super::{lock, sat};
use crate::Outcome;
use crate::admission::{
    Ask, Cost, Grant, MAX_WAIT, MemorySlot, MemoryTicket, RejectReason, Rejected, Slot, Tenant,
    Usage,
};

/// One key of a [`RedisStore`]: its leases, waiters and refill task.
///
/// [`RedisStore`]: super::RedisStore
#[derive(Clone)]
pub struct RedisSlot(pub(super) Arc<SlotInner>);

impl fmt::Debug for RedisSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSlot")
            .field("key", &self.0.key)
            .finish_non_exhaustive()
    }
}

pub(super) struct SlotInner {
    pub(super) common: Arc<Common>,
    pub(super) key: String,
    pub(super) args: Args,
    pub(super) max_cost: [u64; 2],
    pub(super) tenants: usize,
    pub(super) leases: Mutex<Leases>,
    pub(super) kick: Arc<Notify>,
    pub(super) fallback: Option<Arc<MemorySlot>>,
}

impl SlotInner {
    fn lease_index(&self, tenant: Option<Tenant>) -> usize {
        match tenant {
            Some(t) if usize::from(t.0) < self.tenants => 1 + usize::from(t.0),
            _ => 0,
        }
    }

    fn tenant_of(&self, i: usize) -> Option<u16> {
        (i > 0).then(|| (i - 1) as u16)
    }

    fn too_large(&self, cost: Cost) -> bool {
        (self.args.limits[0] > 0 && cost.requests > self.max_cost[0])
            || (self.args.limits[1] > 0 && cost.units > self.max_cost[1])
            || self
                .args
                .long
                .iter()
                .any(|w| (w[2] > 0 && cost.requests > w[2]) || (w[3] > 0 && cost.units > w[3]))
    }

    /// Why a call that cannot be admitted in time is refused: a long window (or a daily
    /// hold) the server said binds, else the deadline.
    fn refusal(&self, bound: u8) -> RejectReason {
        match bound {
            0 => RejectReason::Deadline,
            255 => RejectReason::QuotaExhausted { window: None },
            i => RejectReason::QuotaExhausted {
                window: self
                    .args
                    .long
                    .get(usize::from(i) - 1)
                    .map(|w| Duration::from_micros(w[0])),
            },
        }
    }

    /// How long a queued call should expect to wait: until the server is asked again, plus a
    /// round trip.
    fn estimate(&self, leases: &Leases, i: usize, now: Instant) -> Duration {
        let until = leases
            .next_ask(i)
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
        until + self.common.rtt()
    }

    /// Redis is unavailable: fail closed, or admit against the local fraction.
    fn degraded(&self, ask: &Ask, now: Instant) -> Result<(RedisTicket, Grant), Rejected> {
        // Demand keeps the refill task retrying, which is how the store finds Redis again.
        self.kick.notify_one();
        match &self.fallback {
            Some(local) => {
                let (t, grant) = local.reserve(ask, now)?;
                Ok((RedisTicket(TicketState::Local(t)), grant))
            }
            None => Err(Rejected {
                retry_in: Some(self.common.retry),
                reason: RejectReason::StoreUnavailable,
            }),
        }
    }

    async fn run(&self, i: usize, step: Step) {
        match step {
            Step::Take(want) => {
                let op = Op::take(want, self.tenant_of(i));
                let res = self.common.call(&self.key, &self.args, &op).await;
                let now = Instant::now();
                match res {
                    Ok(Answer::Granted { within, probe, at }) => {
                        self.common.up();
                        lock(&self.leases).granted(i, want, within, probe, at, now);
                    }
                    Ok(Answer::Wait { us, bound }) => {
                        self.common.up();
                        lock(&self.leases).retry_at(i, now + Duration::from_micros(us), bound);
                    }
                    Err(e) => {
                        lock(&self.leases).retry_at(i, now + self.common.retry, 0);
                        self.common.down(e);
                    }
                }
            }
            Step::Give { amount, within, at } => {
                let op = Op::give(amount, self.tenant_of(i), within, at);
                let res = self.common.call(&self.key, &self.args, &op).await;
                lock(&self.leases).gave(i);
                match res {
                    Ok(_) => self.common.up(),
                    Err(e) => self.common.down(e),
                }
            }
            Step::Learn(op) => {
                let res = self.common.call(&self.key, &self.args, &op).await;
                lock(&self.leases).learned(i);
                match res {
                    Ok(_) => self.common.up(),
                    Err(e) => self.common.down(e),
                }
            }
        }
    }

    pub(super) async fn give_back(&self) {
        let balances = lock(&self.leases).drain();
        for (i, amount, within, at) in balances {
            let op = Op::give(amount, self.tenant_of(i), within, at);
            if let Err(e) = self.common.call(&self.key, &self.args, &op).await {
                self.common.down(e);
            }
        }
    }
}

impl Drop for SlotInner {
    fn drop(&mut self) {
        // Let the refill task see that the key is gone, and give its leases back.
        self.kick.notify_one();
        let balances = lock(&self.leases).drain();
        if balances.is_empty() {
            return;
        }
        let common = Arc::clone(&self.common);
        let key = std::mem::take(&mut self.key);
        let args = self.args.clone();
        let tenant_of = |i: usize| (i > 0).then(|| (i - 1) as u16);
        let gives: Vec<Op> = balances
            .into_iter()
            .map(|(i, amount, within, at)| Op::give(amount, tenant_of(i), within, at))
            .collect();
        self.common.handle.spawn(async move {
            for op in gives {
                let _ = common.call(&key, &args, &op).await;
            }
        });
    }
}

/// The background task of one key: asks for leases when they run low or calls wait, and gives
/// idle ones back. Exits when the key is dropped.
pub(super) async fn refill(slot: Weak<SlotInner>, kick: Arc<Notify>) {
    let mut steps = Vec::new();
    loop {
        let notified = kick.notified();
        let next = {
            let Some(s) = slot.upgrade() else { return };
            steps.clear();
            let next = lock(&s.leases).plan(Instant::now(), &mut steps);
            for &(i, step) in &steps {
                s.run(i, step).await;
            }
            next
        };
        if !steps.is_empty() {
            continue;
        }
        match next {
            Some(at) => {
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep_until(at) => {}
                }
            }
            None => notified.await,
        }
    }
}

/// The ticket of a [`RedisSlot`] reservation.
#[derive(Debug)]
pub struct RedisTicket(TicketState);

#[derive(Debug)]
enum TicketState {
    /// Against a lease: waiting (`seq` in the queue) or in flight.
    Lease {
        lease: usize,
        seq: u64,
        ask: Ask,
        deadline: Instant,
        admitted: Instant,
        epoch: u64,
        flight: bool,
    },
    /// Against the local fallback budget (failing open).
    Local(MemoryTicket),
    /// Settled, cancelled or rejected.
    Done,
}

impl RedisSlot {
    fn local(&self) -> &Arc<MemorySlot> {
        self.0
            .fallback
            .as_ref()
            .expect("local tickets exist only with a fallback")
    }

    /// What the key's leases hold together (every tenant's), taken from the server and not
    /// yet spent: units, or requests for a limit of requests only; negative while calls that
    /// spent more than their estimates leave debt. `headroom_quota_lease_balance` samples it.
    pub fn leased(&self) -> i64 {
        lock(&self.0.leases).leased()
    }

    /// The balance of the lease for `tenant` (requests, units): for tests and dashboards.
    pub fn lease_balance(&self, tenant: Option<Tenant>) -> (i64, i64) {
        let b = lock(&self.0.leases).balance(self.0.lease_index(tenant));
        (b[0], b[1])
    }
}

impl Slot for RedisSlot {
    type Ticket = RedisTicket;

    #[inline]
    fn reserve(&self, ask: &Ask, now: Instant) -> Result<(RedisTicket, Grant), Rejected> {
        let s = &*self.0;
        if s.too_large(ask.cost) {
            return Err(Rejected {
                retry_in: None,
                reason: RejectReason::CostTooLarge,
            });
        }
        let i = s.lease_index(ask.tenant);
        let mode = s.common.mode();
        let epoch = s.common.epoch.load(Ordering::Acquire);
        let mut leases = lock(&s.leases);
        if leases.try_admit(i, ask.cost, ask.priority) {
            let low = leases.low(i, now);
            drop(leases);
            if low {
                s.kick.notify_one();
            }
            let ticket = TicketState::Lease {
                lease: i,
                seq: 0,
                ask: *ask,
                deadline: now,
                admitted: now,
                epoch,
                flight: true,
            };
            return Ok((RedisTicket(ticket), Grant::Now));
        }
        if mode != StoreMode::Shared {
            drop(leases);
            return s.degraded(ask, now);
        }
        let deadline = ask.deadline_at(now).min(now + MAX_WAIT);
        let max_wait = deadline.saturating_duration_since(now);
        let est = s.estimate(&leases, i, now);
        if est > max_wait {
            return Err(Rejected {
                retry_in: Some(est),
                reason: s.refusal(leases.bound(i)),
            });
        }
        let seq = leases
            .enqueue(i, ask.cost, ask.priority)
            .map_err(|_| Rejected {
                retry_in: Some(est),
                reason: RejectReason::QueueFull,
            })?;
        drop(leases);
        s.kick.notify_one();
        let ticket = TicketState::Lease {
            lease: i,
            seq,
            ask: *ask,
            deadline,
            admitted: deadline,
            epoch,
            flight: false,
        };
        Ok((RedisTicket(ticket), Grant::At((now + est).min(deadline))))
    }

    fn confirm(&self, ticket: &mut RedisTicket, now: Instant) -> Result<Grant, Rejected> {
        let s = &*self.0;
        let (i, seq, ask, deadline) = match &mut ticket.0 {
            TicketState::Local(t) => return self.local().confirm(t, now),
            TicketState::Done => {
                return Err(Rejected {
                    retry_in: None,
                    reason: RejectReason::Deadline,
                });
            }
            TicketState::Lease { flight: true, .. } => return Ok(Grant::Now),
            TicketState::Lease {
                lease,
                seq,
                ask,
                deadline,
                admitted,
                epoch,
                ..
            } => {
                *epoch = s.common.epoch.load(Ordering::Acquire);
                let mut leases = lock(&s.leases);
                match leases.stand(*lease, *seq) {
                    Some(Stand::Admitted(at)) => {
                        leases.confirm(*lease, *seq);
                        *admitted = at;
                        if let TicketState::Lease { flight, .. } = &mut ticket.0 {
                            *flight = true;
                        }
                        return Ok(Grant::Now);
                    }
                    Some(Stand::Waiting)
                        if s.common.mode() == StoreMode::Shared && now < *deadline =>
                    {
                        let est = s.estimate(&leases, *lease, now);
                        return Ok(Grant::At((now + est).min(*deadline)));
                    }
                    _ => {}
                }
                (*lease, *seq, *ask, *deadline)
            }
        };
        // Out of the queue: the deadline passed, or the store went down.
        lock(&s.leases).remove(i, seq, ask.cost, now);
        ticket.0 = TicketState::Done;
        if s.common.mode() != StoreMode::Shared && now < deadline {
            let ask = ask.deadline(crate::Deadline::at(deadline));
            let (t, grant) = s.degraded(&ask, now)?;
            *ticket = t;
            return Ok(grant);
        }
        let leases = lock(&s.leases);
        let est = s.estimate(&leases, i, now);
        Err(Rejected {
            retry_in: Some(est),
            reason: if s.common.mode() == StoreMode::Shared {
                s.refusal(leases.bound(i))
            } else {
                RejectReason::StoreUnavailable
            },
        })
    }

    #[inline]
    fn settle(
        &self,
        ticket: &mut RedisTicket,
        outcome: &Outcome,
        usage: &Usage,
        now: impl FnOnce() -> Instant,
    ) -> Option<u64> {
        match std::mem::replace(&mut ticket.0, TicketState::Done) {
            TicketState::Local(mut t) => self.local().settle(&mut t, outcome, usage, now),
            TicketState::Lease {
                lease,
                ask,
                flight: true,
                ..
            } => {
                let s = &*self.0;
                let limited = [s.args.limits[0] > 0, s.args.limits[1] > 0];
                // A daily throttle teaches the long windows (or the daily hold), not the limit.
                let teaches = crate::admission::state::named_dims(outcome, limited).is_some()
                    || crate::admission::state::is_daily(outcome);
                let mut leases = lock(&s.leases);
                if crate::admission::state::is_daily(outcome) {
                    // The day is spent: what this process holds of it must not admit calls
                    // the server would refuse.
                    leases.forfeit(lease);
                } else if let Some(units) = usage.units.filter(|u| *u != ask.cost.units) {
                    let delta = sat(ask.cost.units).saturating_sub(sat(units));
                    // Waiters admitted from the refund were woken.
                    leases.adjust(lease, [0, delta], now());
                }
                // The shared state learns from throttles, and from the answer of a call whose
                // budget came with the probe of a window held back.
                if teaches || leases.probing(lease) {
                    leases.learn(lease, |probe, at| Op::learn(outcome, limited, probe, at));
                    drop(leases);
                    s.kick.notify_one();
                }
                None
            }
            TicketState::Lease {
                lease, seq, ask, ..
            } => {
                lock(&self.0.leases).remove(lease, seq, ask.cost, now());
                None
            }
            TicketState::Done => None,
        }
    }

    fn release_unsent(&self, ticket: &mut RedisTicket, now: Instant) {
        match std::mem::replace(&mut ticket.0, TicketState::Done) {
            TicketState::Local(mut t) => self.local().release_unsent(&mut t, now),
            TicketState::Lease {
                lease,
                ask,
                flight: true,
                ..
            } => {
                lock(&self.0.leases).adjust(lease, [0, sat(ask.cost.units)], now);
            }
            TicketState::Lease {
                lease, seq, ask, ..
            } => {
                lock(&self.0.leases).remove(lease, seq, ask.cost, now);
            }
            TicketState::Done => {}
        }
    }

    fn cancel(&self, ticket: &mut RedisTicket, now: Instant) {
        match &mut ticket.0 {
            TicketState::Local(t) => self.local().cancel(t, now),
            // In flight: the call may have spent its estimate; keep it charged.
            TicketState::Lease { flight: true, .. } | TicketState::Done => {}
            TicketState::Lease {
                lease, seq, ask, ..
            } => {
                lock(&self.0.leases).remove(*lease, *seq, ask.cost, now);
                ticket.0 = TicketState::Done;
            }
        }
    }

    fn admit_wait(&self, cost: Cost, now: Instant) -> Option<Duration> {
        let s = &*self.0;
        if s.too_large(cost) {
            return None;
        }
        match (s.common.mode(), &s.fallback) {
            (StoreMode::Shared, _) => {}
            (_, Some(local)) => return local.admit_wait(cost, now),
            (_, None) => return Some(s.common.retry),
        }
        let leases = lock(&s.leases);
        let b = leases.balance(0);
        let limited = [s.args.limits[0] > 0, s.args.limits[1] > 0];
        let covered =
            (!limited[0] || b[0] >= sat(cost.requests)) && (!limited[1] || b[1] >= sat(cost.units));
        if covered {
            return Some(Duration::ZERO);
        }
        // The server's budget is not known here until it is asked; what is known is this
        // process's own queue for the key. A call behind it waits at least as long as the
        // limit takes to pay for the queue, so a router sees a key that many callers of this
        // process already wait on as busier than one nobody waits on.
        let queued = leases.queued(0);
        let backlog = (0..2)
            .filter(|&d| limited[d])
            .map(|d| {
                let units = u128::try_from(queued[d].max(0)).unwrap_or(0);
                let us = units * u128::from(s.args.window_us) / u128::from(s.args.limits[d]);
                Duration::from_micros(u64::try_from(us).unwrap_or(u64::MAX))
            })
            .max()
            .unwrap_or(Duration::ZERO);
        Some(s.estimate(&leases, 0, now).max(backlog))
    }

    fn admitted_at(&self, ticket: &RedisTicket) -> Instant {
        match &ticket.0 {
            TicketState::Local(t) => self.local().admitted_at(t),
            TicketState::Lease { admitted, .. } => *admitted,
            TicketState::Done => Instant::now(),
        }
    }

    fn poll_wake(&self, ticket: &mut RedisTicket, cx: &mut Context<'_>) -> Poll<()> {
        let s = &*self.0;
        match &ticket.0 {
            TicketState::Lease {
                lease,
                seq,
                epoch,
                flight: false,
                ..
            } => {
                let mut leases = lock(&s.leases);
                match leases.stand(*lease, *seq) {
                    Some(Stand::Waiting) => {
                        leases.register(*seq, cx.waker());
                        // Checked after registering, under the lock a mode change takes to
                        // wake waiters: a change cannot slip between the two.
                        if s.common.epoch.load(Ordering::Acquire) != *epoch {
                            Poll::Ready(())
                        } else {
                            Poll::Pending
                        }
                    }
                    _ => Poll::Ready(()),
                }
            }
            TicketState::Local(_) | TicketState::Lease { .. } => Poll::Pending,
            TicketState::Done => Poll::Ready(()),
        }
    }
}
