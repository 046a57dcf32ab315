//! The local side of leasing: one key's leases (one per tenant, one for calls without a
//! tenant), the calls waiting for them, and what to ask the server next. Sync, time passed in,
//! no I/O: the refill task asks [`Leases::plan`] what to do and reports the answers back.

use std::collections::{HashMap, VecDeque};
use std::task::Waker;
use std::time::Duration;

use tokio::time::Instant;

use super::super::{Cost, Priority};
use super::script::Op;

/// Per dimension: requests, units.
pub(crate) type Amount = [i64; 2];

fn amount(cost: Cost) -> Amount {
    [sat(cost.requests), sat(cost.units)]
}

fn sat(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Sizes shared by every lease of a key.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sizes {
    /// Which dimensions the limit has.
    pub(crate) limited: [bool; 2],
    /// How much a lease asks for (zero: no leasing, ask for exactly what callers wait for).
    pub(crate) lease: Amount,
    /// What batch calls leave in a lease for interactive ones.
    pub(crate) reserve: Amount,
    /// Unused lease older than this goes back to the server.
    pub(crate) ttl: Duration,
    /// The longest a caller waits in the queue.
    pub(crate) max_queue: u32,
}

#[derive(Clone, Copy, Debug)]
struct Waiter {
    seq: u64,
    need: Amount,
}

/// One lease: budget taken from the server and not yet spent, and the calls waiting for more.
#[derive(Debug)]
pub(crate) struct Lease {
    /// Taken and not spent; negative when calls spent more than estimated (debt).
    balance: Amount,
    /// Whether the last grant was within the tenant's share (refunds go back to it then).
    within: bool,
    queue: [VecDeque<Waiter>; 2],
    /// Admitted from the queue, not yet confirmed: (seq, when).
    granted: Vec<(u64, Instant)>,
    /// Not before this instant is the server asked again (it said wait, or it failed).
    next_ask: Option<Instant>,
    /// An ask is on its way.
    asking: bool,
    /// Used by a call since the refill task last looked. Calls set only this flag: the times
    /// the lease keeps are all the store's own (the refill task's), never a caller's `now`,
    /// so a caller whose instants run ahead or behind cannot make its lease look idle or
    /// forever busy.
    used: bool,
    /// When the refill task last saw the lease used (none yet: nothing is leased ahead for a
    /// key never used); unused balance older than the ttl goes back.
    last_used: Option<Instant>,
    /// When the server granted the last take (its clock, microseconds): unused budget goes
    /// back to that grant's time slot.
    taken_at: u64,
    /// The last grant probed a window held back after a throttle (bit 1) or a key held after
    /// a daily throttle (bit 2): the next answer a call of this lease gets is reported as the
    /// probe's.
    probe: u8,
    /// What bound the server's last "wait" answer (0 the window, `i` long window `i`, 255 a
    /// daily hold); cleared by a grant.
    bound: u8,
    /// The balance was forfeited after a daily throttle: until the next grant, refunds of
    /// calls admitted before it are not credited (they are of a spent day; credited, they
    /// would admit calls the server refuses, and given back they would open room in the day
    /// the server has marked spent).
    forfeited: bool,
    /// What to tell the server's learner, in order.
    learns: VecDeque<Op>,
}

impl Lease {
    fn new() -> Self {
        Lease {
            balance: [0; 2],
            within: false,
            queue: [VecDeque::new(), VecDeque::new()],
            granted: Vec::new(),
            next_ask: None,
            asking: false,
            used: false,
            last_used: None,
            taken_at: 0,
            probe: 0,
            bound: 0,
            forfeited: false,
            learns: VecDeque::new(),
        }
    }

    fn covers(&self, sizes: &Sizes, need: Amount, lane: usize) -> bool {
        (0..2).all(|d| {
            !sizes.limited[d]
                || self.balance[d].saturating_sub(need[d])
                    >= if lane == 1 { sizes.reserve[d] } else { 0 }
        })
    }

    fn debit(&mut self, need: Amount) {
        for (b, n) in self.balance.iter_mut().zip(need) {
            *b = b.saturating_sub(n);
        }
    }

    fn credit(&mut self, give: Amount) {
        for (b, n) in self.balance.iter_mut().zip(give) {
            *b = b.saturating_add(n);
        }
    }

    fn waiting(&self) -> bool {
        !self.queue[0].is_empty() || !self.queue[1].is_empty()
    }

    /// What to ask the server for: a fresh lease when running low, or at least what the head
    /// of the queue needs. Never the whole queue at once: a take no larger than a lease keeps
    /// within the server bucket's capacity, and without leasing each call is one take.
    fn want(&self, sizes: &Sizes, now: Instant) -> Option<Amount> {
        let active = self.waiting()
            || self.used
            || self
                .last_used
                .is_some_and(|t| now.saturating_duration_since(t) < sizes.ttl);
        if !active {
            return None;
        }
        let head = self.queue[0]
            .front()
            .or(self.queue[1].front())
            .map_or([0; 2], |w| w.need);
        let mut want = [0; 2];
        let mut any = false;
        for d in 0..2 {
            if !sizes.limited[d] {
                continue;
            }
            let needed = if self.waiting() {
                head[d].saturating_add(sizes.reserve[d])
            } else {
                0
            };
            let target = sizes.lease[d].max(needed);
            // Refill when below half a lease, or short of what the head of the queue needs.
            let low = self.balance[d] < needed
                || (sizes.lease[d] > 0 && self.balance[d] < sizes.lease[d] / 2);
            if low {
                any = true;
            }
            want[d] = target.saturating_sub(self.balance[d]).max(0);
        }
        // A lease is for every limited dimension at once: ask for each one's top-up, at least
        // what the queue's head needs in the others.
        (any && want.iter().any(|w| *w > 0)).then_some(want)
    }
}

/// What the refill task should do for one lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Ask the server for this much.
    Take(Amount),
    /// Give this back (negative parts are debt to charge).
    Give {
        /// The amounts.
        amount: Amount,
        /// Refund the tenant's share too.
        within: bool,
        /// When the server granted it.
        at: u64,
    },
    /// Tell the server's learner how a call ended.
    Learn(Op),
}

/// One key's leases and waiters.
#[derive(Debug)]
pub(crate) struct Leases {
    pub(crate) sizes: Sizes,
    leases: Vec<Lease>,
    seq: u64,
    wakers: HashMap<u64, Waker>,
}

/// Where a lease ticket stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stand {
    /// Waiting in the queue.
    Waiting,
    /// Admitted, at this instant.
    Admitted(Instant),
}

/// Why a call could not be queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Full {
    /// The lane's queue is full.
    Queue,
}

impl Leases {
    pub(crate) fn new(sizes: Sizes, count: usize) -> Self {
        Leases {
            sizes,
            leases: (0..count).map(|_| Lease::new()).collect(),
            seq: 0,
            wakers: HashMap::new(),
        }
    }

    /// Admits `cost` from lease `i` now if nothing waits before it and the balance covers it.
    #[inline]
    pub(crate) fn try_admit(&mut self, i: usize, cost: Cost, priority: Priority) -> bool {
        let lane = lane(priority);
        let sizes = self.sizes;
        let l = &mut self.leases[i];
        l.used = true;
        let ahead = !l.queue[0].is_empty() || (lane == 1 && !l.queue[1].is_empty());
        let need = amount(cost);
        if ahead || !l.covers(&sizes, need, lane) {
            return false;
        }
        l.debit(need);
        true
    }

    /// Whether lease `i` is low enough that the refill task should run.
    #[inline]
    pub(crate) fn low(&self, i: usize, now: Instant) -> bool {
        let l = &self.leases[i];
        !l.asking && l.want(&self.sizes, now).is_some()
    }

    /// Queues `cost` on lease `i`; returns the ticket's sequence number.
    pub(crate) fn enqueue(
        &mut self,
        i: usize,
        cost: Cost,
        priority: Priority,
    ) -> Result<u64, Full> {
        let lane = lane(priority);
        let max = self.sizes.max_queue as usize;
        let l = &mut self.leases[i];
        if l.queue[lane].len() >= max {
            return Err(Full::Queue);
        }
        l.used = true;
        self.seq += 1;
        let need = amount(cost);
        l.queue[lane].push_back(Waiter {
            seq: self.seq,
            need,
        });
        Ok(self.seq)
    }

    /// When the server will next be asked for lease `i` (for a waiter's estimate).
    /// What the calls waiting on lease `i` need, both lanes together.
    pub(crate) fn queued(&self, i: usize) -> Amount {
        let mut total: Amount = [0; 2];
        for waiter in self.leases[i].queue.iter().flatten() {
            for (t, n) in total.iter_mut().zip(waiter.need) {
                *t = t.saturating_add(n);
            }
        }
        total
    }

    pub(crate) fn next_ask(&self, i: usize) -> Option<Instant> {
        self.leases[i].next_ask
    }

    /// Where ticket `seq` of lease `i` stands; `None` when it is neither waiting nor admitted
    /// (already confirmed or removed).
    pub(crate) fn stand(&self, i: usize, seq: u64) -> Option<Stand> {
        let l = &self.leases[i];
        if let Some((_, at)) = l.granted.iter().find(|(s, _)| *s == seq) {
            return Some(Stand::Admitted(*at));
        }
        l.queue
            .iter()
            .any(|q| q.iter().any(|w| w.seq == seq))
            .then_some(Stand::Waiting)
    }

    /// Takes an admitted ticket out of the granted list (it is now in flight).
    pub(crate) fn confirm(&mut self, i: usize, seq: u64) {
        self.leases[i].granted.retain(|(s, _)| *s != seq);
        self.wakers.remove(&seq);
    }

    /// Removes a ticket that will not run: waiting  or admitted and not yet
    /// confirmed (its budget goes back to the lease). Returns whether anyone was admitted
    /// because of it.
    pub(crate) fn remove(&mut self, i: usize, seq: u64, cost: Cost, now: Instant) -> bool {
        self.wakers.remove(&seq);
        let l = &mut self.leases[i];
        let need = amount(cost);
        for q in &mut l.queue {
            if let Some(pos) = q.iter().position(|w| w.seq == seq) {
                q.remove(pos);
                // The head may have left: whoever is next may fit.
                return self.pump(i, now);
            }
        }
        if let Some(pos) = l.granted.iter().position(|(s, _)| *s == seq) {
            l.granted.swap_remove(pos);
            l.credit(need);
            return self.pump(i, now);
        }
        false
    }

    /// Gives budget back to lease `i` (a refund on settle, a call never sent) or takes more
    /// (negative: debt); admits waiters that now fit.
    pub(crate) fn adjust(&mut self, i: usize, mut delta: Amount, now: Instant) -> bool {
        if self.leases[i].forfeited {
            // A spent day's refunds stay spent; debt still counts.
            delta = delta.map(|d| d.min(0));
        }
        self.leases[i].credit(delta);
        if delta.iter().any(|d| *d > 0) {
            self.pump(i, now)
        } else {
            false
        }
    }

    /// Admits waiters of lease `i`, in order (interactive first, FIFO in each lane), as long
    /// as the balance covers the head; wakes them. Returns whether anyone was admitted.
    pub(crate) fn pump(&mut self, i: usize, now: Instant) -> bool {
        let sizes = self.sizes;
        let l = &mut self.leases[i];
        let mut any = false;
        for lane in 0..2 {
            while let Some(w) = l.queue[lane].front().copied() {
                if lane == 1 && !l.queue[0].is_empty() {
                    break;
                }
                if !l.covers(&sizes, w.need, lane) {
                    break;
                }
                l.queue[lane].pop_front();
                l.debit(w.need);
                l.granted.push((w.seq, now));
                if let Some(waker) = self.wakers.remove(&w.seq) {
                    waker.wake();
                }
                any = true;
            }
            if !l.queue[0].is_empty() {
                break;
            }
        }
        any
    }

    /// Registers the waker of a waiting ticket.
    pub(crate) fn register(&mut self, seq: u64, waker: &Waker) {
        match self.wakers.get_mut(&seq) {
            Some(w) if w.will_wake(waker) => {}
            Some(w) => w.clone_from(waker),
            None => {
                self.wakers.insert(seq, waker.clone());
            }
        }
    }

    /// Wakes every waiter (the store changed mode).
    pub(crate) fn wake_all(&mut self) {
        for (_, w) in self.wakers.drain() {
            w.wake();
        }
    }

    /// What the refill task should do now for each lease, and when to look again.
    pub(crate) fn plan(&mut self, now: Instant, steps: &mut Vec<(usize, Step)>) -> Option<Instant> {
        let sizes = self.sizes;
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        for (i, l) in self.leases.iter_mut().enumerate() {
            if std::mem::take(&mut l.used) {
                l.last_used = Some(now);
            }
            if l.asking {
                continue;
            }
            if let Some(op) = l.learns.pop_front() {
                l.asking = true;
                steps.push((i, Step::Learn(op)));
                continue;
            }
            if let Some(want) = l.want(&sizes, now) {
                match l.next_ask {
                    Some(t) if t > now => at(t),
                    _ => {
                        l.asking = true;
                        steps.push((i, Step::Take(want)));
                    }
                }
                continue;
            }
            // Idle past the ttl: give the unused balance back (or pay the debt).
            if !l.waiting() && l.balance != [0; 2] {
                let expires = l.last_used.map_or(now, |t| t + sizes.ttl);
                if expires <= now {
                    let amount = l.balance;
                    l.balance = [0; 2];
                    l.asking = true;
                    steps.push((
                        i,
                        Step::Give {
                            amount,
                            within: l.within,
                            at: l.taken_at,
                        },
                    ));
                } else {
                    at(expires);
                }
            }
        }
        next
    }

    /// The server granted `amount` to lease `i` at its time `at`, as the probe of a window
    /// held back after a throttle when `probe`.
    pub(crate) fn granted(
        &mut self,
        i: usize,
        amount: Amount,
        within: bool,
        probe: u8,
        at: u64,
        now: Instant,
    ) {
        let l = &mut self.leases[i];
        l.asking = false;
        l.next_ask = None;
        l.within = within;
        l.taken_at = at;
        l.probe |= probe;
        l.bound = 0;
        l.forfeited = false;
        l.credit(amount);
        self.pump(i, now);
    }

    /// Whether lease `i`'s budget came with a probe whose answer is not reported yet.
    pub(crate) fn probing(&self, i: usize) -> bool {
        self.leases[i].probe != 0
    }

    /// A daily throttle: lease `i`'s budget is of a spent day, so it is dropped (not given
    /// back), and its calls ask the server, which answers for the day.
    pub(crate) fn forfeit(&mut self, i: usize) {
        let l = &mut self.leases[i];
        l.balance = [0; 2];
        l.forfeited = true;
    }

    /// What bound the server's last "wait" for lease `i` (see [`Lease::bound`]).
    pub(crate) fn bound(&self, i: usize) -> u8 {
        self.leases[i].bound
    }

    /// Queues a report to the server's learner for lease `i`: `op(probe, at)`, with whether
    /// it answers the probe, and when the lease's budget was granted.
    pub(crate) fn learn(&mut self, i: usize, op: impl FnOnce(u8, u64) -> Op) {
        let l = &mut self.leases[i];
        let probe = std::mem::take(&mut l.probe);
        l.learns.push_back(op(probe, l.taken_at));
    }

    /// A report to the learner finished (whatever its answer: the next one goes on).
    pub(crate) fn learned(&mut self, i: usize) {
        self.leases[i].asking = false;
    }

    /// The server said to wait until `at` before asking lease `i`'s amount again, or a call
    /// failed (then `at` is when to try again).
    pub(crate) fn retry_at(&mut self, i: usize, at: Instant, bound: u8) {
        let l = &mut self.leases[i];
        l.asking = false;
        l.next_ask = Some(at);
        l.bound = bound;
    }

    /// A give-back finished (successfully or not: budget that could not be returned is lost,
    /// which errs on the safe side).
    pub(crate) fn gave(&mut self, i: usize) {
        self.leases[i].asking = false;
    }

    /// Takes every balance, for returning on shutdown or drop: (lease, amount, within share,
    /// when granted).
    pub(crate) fn drain(&mut self) -> Vec<(usize, Amount, bool, u64)> {
        self.leases
            .iter_mut()
            .enumerate()
            .filter(|(_, l)| l.balance != [0; 2])
            .map(|(i, l)| (i, std::mem::take(&mut l.balance), l.within, l.taken_at))
            .collect()
    }

    /// Whether anything waits or is held: the key cannot be forgotten yet.
    pub(crate) fn busy(&self) -> bool {
        self.leases
            .iter()
            .any(|l| l.waiting() || !l.granted.is_empty() || l.asking || !l.learns.is_empty())
    }

    /// The balance of lease `i`, for tests and stats.
    pub(crate) fn balance(&self, i: usize) -> Amount {
        self.leases[i].balance
    }

    /// What the key's leases hold together, taken from the server and not yet spent, in
    /// units (in requests for a limit of requests only); negative when calls spent more than
    /// their estimates (debt the next asks cover).
    pub(crate) fn leased(&self) -> i64 {
        let d = usize::from(self.sizes.limited[1]);
        self.leases
            .iter()
            .fold(0i64, |sum, lease| sum.saturating_add(lease.balance[d]))
    }
}

fn lane(priority: Priority) -> usize {
    match priority {
        Priority::Interactive => 0,
        Priority::Batch => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(lease: i64) -> Sizes {
        Sizes {
            limited: [true, true],
            lease: [lease / 10, lease],
            reserve: [0, 0],
            ttl: Duration::from_secs(1),
            max_queue: 4,
        }
    }

    #[test]
    fn admits_from_the_balance_and_refills_when_low() {
        let t0 = Instant::now();
        let mut l = Leases::new(sizes(100), 1);
        assert!(!l.try_admit(0, Cost::new(1, 10), Priority::Interactive));
        let mut steps = Vec::new();
        l.plan(t0, &mut steps);
        assert_eq!(steps, vec![(0, Step::Take([10, 100]))]);
        l.granted(0, [10, 100], false, 0, 0, t0);
        for _ in 0..5 {
            assert!(l.try_admit(0, Cost::new(1, 10), Priority::Interactive));
        }
        assert_eq!(l.balance(0), [5, 50]);
        assert!(!l.low(0, t0));
        assert!(l.try_admit(0, Cost::new(1, 10), Priority::Interactive));
        assert!(l.low(0, t0), "below half a lease");
        steps.clear();
        l.plan(t0, &mut steps);
        assert_eq!(steps, vec![(0, Step::Take([6, 60]))]);
    }

    #[test]
    fn waiters_are_admitted_in_order_interactive_first() {
        let t0 = Instant::now();
        let mut l = Leases::new(sizes(0), 1);
        let b = l.enqueue(0, Cost::new(1, 30), Priority::Batch).unwrap();
        let i1 = l
            .enqueue(0, Cost::new(1, 30), Priority::Interactive)
            .unwrap();
        let i2 = l
            .enqueue(0, Cost::new(1, 30), Priority::Interactive)
            .unwrap();
        let mut steps = Vec::new();
        l.plan(t0, &mut steps);
        assert_eq!(
            steps,
            vec![(0, Step::Take([1, 30]))],
            "exactly what the head needs"
        );
        l.granted(0, [2, 60], false, 0, 0, t0);
        assert_eq!(l.stand(0, i1,), Some(Stand::Admitted(t0)));
        assert_eq!(l.stand(0, i2), Some(Stand::Admitted(t0)));
        assert_eq!(l.stand(0, b), Some(Stand::Waiting));
        // A new interactive call does not jump the queue... there is none left; batch waits.
        assert!(!l.try_admit(0, Cost::new(1, 1), Priority::Batch));
        // Cancelling an admitted ticket gives its budget back, which admits the batch call.
        assert!(l.remove(0, i2, Cost::new(1, 30), t0));
        assert_eq!(l.stand(0, b), Some(Stand::Admitted(t0)));
        assert_eq!(l.balance(0), [0, 0]);
        assert_eq!(
            l.enqueue(0, Cost::new(1, 1), Priority::Batch).map(|_| ()),
            Ok(())
        );
    }

    #[test]
    fn queue_is_bounded_and_idle_balance_goes_back() {
        let t0 = Instant::now();
        let mut l = Leases::new(sizes(100), 1);
        for _ in 0..4 {
            l.enqueue(0, Cost::new(1, 500), Priority::Interactive)
                .unwrap();
        }
        assert_eq!(
            l.enqueue(0, Cost::new(1, 500), Priority::Interactive),
            Err(Full::Queue)
        );
        let mut l = Leases::new(sizes(100), 1);
        l.granted(0, [10, 100], true, 0, 0, t0);
        assert!(l.try_admit(0, Cost::new(1, 10), Priority::Interactive));
        let mut steps = Vec::new();
        // The refill task sees the use at t0 + 10 ms: idle time counts from there, on the
        // store's clock (the caller's instants never enter the lease's times).
        let seen = t0 + Duration::from_millis(10);
        let next = l.plan(seen, &mut steps);
        assert!(steps.is_empty());
        assert_eq!(next, Some(seen + Duration::from_secs(1)));
        l.plan(
            seen + Duration::from_secs(1) - Duration::from_millis(1),
            &mut steps,
        );
        assert!(steps.is_empty(), "not idle for the ttl yet");
        l.plan(seen + Duration::from_secs(1), &mut steps);
        assert_eq!(
            steps,
            vec![(
                0,
                Step::Give {
                    amount: [9, 90],
                    within: true,
                    at: 0
                }
            )]
        );
        assert_eq!(l.balance(0), [0, 0]);
    }

    #[test]
    fn a_forfeited_lease_credits_no_refund_until_the_next_grant() {
        let t0 = Instant::now();
        let mut l = Leases::new(sizes(100), 1);
        l.granted(0, [10, 100], false, 0, 0, t0);
        assert!(l.try_admit(0, Cost::new(1, 40), Priority::Interactive));
        assert!(l.try_admit(0, Cost::new(1, 40), Priority::Interactive));
        // The first call meets a spent day: the lease's balance is dropped.
        l.forfeit(0);
        assert_eq!(l.balance(0), [0, 0]);
        // The second, admitted before, settles below its estimate: its refund is of the
        // spent day, so it admits nothing here (and is never given back to the server).
        l.adjust(0, [0, 30], t0);
        assert_eq!(l.balance(0), [0, 0]);
        assert!(!l.try_admit(0, Cost::new(1, 10), Priority::Interactive));
        // Debt still counts.
        l.adjust(0, [0, -5], t0);
        assert_eq!(l.balance(0), [0, -5]);
        // A new grant (the server found room) ends it.
        l.granted(0, [10, 100], false, 0, 0, t0);
        l.adjust(0, [0, 5], t0);
        assert_eq!(l.balance(0), [10, 100]);
    }

    #[test]
    fn settling_more_than_estimated_leaves_debt_that_the_next_ask_covers() {
        let t0 = Instant::now();
        let mut l = Leases::new(sizes(100), 1);
        l.granted(0, [10, 100], false, 0, 0, t0);
        assert!(l.try_admit(0, Cost::new(1, 100), Priority::Interactive));
        l.adjust(0, [0, -50], t0);
        assert_eq!(l.balance(0), [9, -50]);
        let mut steps = Vec::new();
        l.plan(t0, &mut steps);
        assert_eq!(steps, vec![(0, Step::Take([1, 150]))]);
    }
}
