//! Spend per time slot over a trailing window: the memory of the sliding-window accounting and
//! of learning ("what did this client spend in the last window?").
//!
//! A window of `W` nanoseconds is cut into `n` slots of `W / n`; the ring keeps `n + 1` of
//! them, the newest being the slot `now` falls in, so everything spent since `now − W` is in
//! it. A slot's spend leaves the ring when the slot ends plus one window: never earlier than
//! each of its calls' instant plus `W`, at most one slot later. Memory is fixed per ring
//! (`n + 1` counters), whatever the window and the traffic: a day's window keeps no per-call
//! records.

/// Spend per slot; see the module docs.
#[derive(Clone, Debug)]
pub(crate) struct Ring {
    slots: Box<[u64]>,
    slot_ns: u64,
    /// Absolute index (time / slot length) of the newest slot.
    head: u64,
    /// Where the newest slot ends (`(head + 1) * slot_ns`, saturating): before it, the ring
    /// needs no division to know that `now` is still in its newest slot.
    head_end: u64,
    /// The newest slot's position in `slots` (`head % len`).
    head_pos: usize,
    /// The sum of every slot (all are live), exact: each slot's change is added here. Kept as
    /// two words (low, high) so that an addition that does not carry writes one.
    sum: [u64; 2],
}

impl Ring {
    /// A ring over `window_ns` in (at most) `n` slots per window, its newest slot at `now`.
    pub(crate) fn new(window_ns: u64, n: u64, now: u64) -> Self {
        let window_ns = window_ns.max(1);
        let slot_ns = (window_ns / n.max(1)).max(1);
        let per_window = window_ns.div_ceil(slot_ns);
        let len = usize::try_from(per_window + 1).unwrap_or(usize::MAX);
        let mut ring = Ring {
            slots: vec![0; len].into_boxed_slice(),
            slot_ns,
            head: 0,
            head_end: 0,
            head_pos: 0,
            sum: [0, 0],
        };
        ring.set_head(now / slot_ns);
        ring
    }

    #[inline]
    fn set_head(&mut self, head: u64) {
        self.head = head;
        self.head_end = head.saturating_add(1).saturating_mul(self.slot_ns);
        self.head_pos = self.position(head);
    }

    #[inline]
    pub(crate) fn len(&self) -> u64 {
        self.slots.len() as u64
    }

    #[inline]
    fn position(&self, slot: u64) -> usize {
        (slot % self.len()) as usize
    }

    /// The absolute slot `t` falls in.
    #[inline]
    pub(crate) fn slot_of(&self, t: u64) -> u64 {
        t / self.slot_ns
    }

    /// Moves the newest slot to `now`, forgetting the slots that left the window.
    #[inline]
    pub(crate) fn advance(&mut self, now: u64) {
        if now < self.head_end {
            return;
        }
        self.advance_slow(now);
    }

    fn advance_slow(&mut self, now: u64) {
        let current = now / self.slot_ns;
        if current <= self.head {
            return;
        }
        let steps = (current - self.head).min(self.len());
        if steps == self.len() {
            // Everything has left: a key idle for a window is cleared in one pass.
            self.slots.fill(0);
            self.set_sum(0);
        } else {
            for p in self.positions_after_head(steps) {
                self.set_sum(self.sum() - u128::from(self.slots[p]));
                self.slots[p] = 0;
            }
        }
        self.set_head(current);
    }

    /// The positions in `slots` of the `steps` (at most `len`) slots after the newest, oldest
    /// first, without a division each.
    #[inline]
    fn positions_after_head(&self, steps: u64) -> impl Iterator<Item = usize> + use<> {
        let len = self.slots.len();
        let first = self.head_pos + 1;
        // `first + i` < 2 × len: one subtraction wraps it.
        (0..steps as usize).map(move |i| {
            let p = first + i;
            if p >= len { p - len } else { p }
        })
    }

    /// Where the newest slot ends: [`advance`](Self::advance) to an earlier instant changes
    /// nothing, and [`sum_at`](Self::sum_at) one is [`sum`](Self::sum).
    #[inline]
    pub(crate) fn head_end(&self) -> u64 {
        self.head_end
    }

    /// What the live slots hold.
    #[inline]
    pub(crate) fn sum(&self) -> u128 {
        u128::from(self.sum[0]) | (u128::from(self.sum[1]) << 64)
    }

    #[inline]
    fn set_sum(&mut self, sum: u128) {
        self.sum = [sum as u64, (sum >> 64) as u64];
    }

    /// What the ring will hold at `now` (at or after its newest slot), without moving it.
    #[inline]
    pub(crate) fn sum_at(&self, now: u64) -> u128 {
        if now < self.head_end {
            return self.sum();
        }
        self.sum_at_past_head(now)
    }

    /// [`sum_at`](Self::sum_at) once `now` is past the newest slot: out of line, so that the
    /// admission fast path, which inlines `sum_at`, stays small.
    #[inline(never)]
    fn sum_at_past_head(&self, now: u64) -> u128 {
        let current = now / self.slot_ns;
        if current <= self.head {
            return self.sum();
        }
        let sum = self.sum();
        let steps = (current - self.head).min(self.len());
        if sum == 0 || steps == self.len() {
            // Nothing held, or everything has left (a key idle for a window): no slot to read.
            return 0;
        }
        let gone: u128 = self
            .positions_after_head(steps)
            .map(|p| u128::from(self.slots[p]))
            .sum();
        sum - gone
    }

    /// Whether `slot` is still in the ring.
    #[inline]
    pub(crate) fn live(&self, slot: u64) -> bool {
        slot <= self.head && self.head - slot < self.len()
    }

    /// Adds `amount` to the newest slot; returns that slot. Always inline: a few instructions,
    /// on the success path.
    #[inline(always)]
    pub(crate) fn add(&mut self, amount: u64) -> u64 {
        let p = self.head_pos;
        let old = self.slots[p];
        let new = old.saturating_add(amount);
        self.slots[p] = new;
        let (low, carry) = self.sum[0].overflowing_add(new - old);
        self.sum[0] = low;
        if carry {
            self.sum[1] += 1;
        }
        self.head
    }

    /// [`add`](Self::add) for a caller that knows the ring holds at most `u64::MAX - amount`
    /// (the sliding window's fast path: what it holds plus the call is within the limit, at
    /// most 2^50): then neither the newest slot (part of the sum) nor the sum's low word can
    /// overflow, and this is `add` without the saturation and the carry. Returns nothing (the
    /// fast path knows the slot).
    #[inline]
    pub(crate) fn add_within(&mut self, amount: u64) {
        debug_assert!(self.sum() + u128::from(amount) <= u128::from(u64::MAX));
        let p = self.head_pos;
        self.slots[p] += amount;
        self.sum[0] += amount;
    }

    /// Changes `slot` by `delta` (never below zero) when it is still live; a slot that left the
    /// window is left alone (its spend no longer counts anywhere).
    #[inline]
    pub(crate) fn adjust(&mut self, slot: u64, delta: i128) {
        if delta == 0 || !self.live(slot) {
            return;
        }
        let p = self.position(slot);
        let old = self.slots[p];
        let new = u64::try_from((i128::from(old) + delta).max(0)).unwrap_or(u64::MAX);
        self.slots[p] = new;
        self.set_sum(self.sum() - u128::from(old) + u128::from(new));
    }

    /// Adds `delta` to `slot`, or to the oldest live slot when `slot` has already left the
    /// window (what should have left by now leaves as soon as anything can), or to the newest
    /// when `slot` is ahead of it.
    pub(crate) fn adjust_or_oldest(&mut self, slot: u64, delta: i128) {
        let oldest = (self.head + 1).saturating_sub(self.len());
        self.adjust(slot.clamp(oldest, self.head), delta);
    }

    /// Nanoseconds from `now` until at least `free` of what the ring holds at `now` has left
    /// it (the oldest slot leaves at the next slot boundary, the next one a slot later, …);
    /// `None` when the ring does not hold that much.
    pub(crate) fn wait_to_free(&self, free: u128, now: u64) -> Option<u64> {
        if free == 0 {
            return Some(0);
        }
        let len = self.len();
        let oldest = (self.head + 1).saturating_sub(len);
        let mut freed = 0u128;
        for j in 0..len {
            let slot = oldest + j;
            if slot > self.head {
                break;
            }
            // Slot `slot` leaves when slot `slot + len` begins; one that has left by `now` is
            // not part of what `sum_at(now)` counts.
            let leaves = (slot + len).saturating_mul(self.slot_ns);
            if leaves <= now {
                continue;
            }
            freed += u128::from(self.slots[self.position(slot)]);
            if freed >= free {
                return Some(leaves - now);
            }
        }
        None
    }

    /// When everything now in the ring has left it.
    pub(crate) fn empties_at(&self) -> u64 {
        (self.head + self.len()).saturating_mul(self.slot_ns)
    }

    /// The slot length.
    #[cfg(test)]
    pub(crate) fn slot_ns(&self) -> u64 {
        self.slot_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sum_at` and `advance` as first written: each slot found by its absolute index modulo
    /// the ring's length, one at a time.
    fn sum_at_slot_by_slot(r: &Ring, now: u64) -> u128 {
        let current = now / r.slot_ns;
        if now < r.head_end || current <= r.head {
            return r.sum();
        }
        let steps = (current - r.head).min(r.len());
        r.sum()
            - (1..=steps)
                .map(|i| u128::from(r.slots[r.position(r.head + i)]))
                .sum::<u128>()
    }

    fn advance_slot_by_slot(r: &mut Ring, now: u64) {
        let current = now / r.slot_ns;
        if now < r.head_end || current <= r.head {
            return;
        }
        let steps = (current - r.head).min(r.len());
        for i in 1..=steps {
            let p = r.position(r.head + i);
            r.set_sum(r.sum() - u128::from(r.slots[p]));
            r.slots[p] = 0;
        }
        r.set_head(current);
    }

    #[test]
    fn sum_at_and_advance_match_the_slot_by_slot_formulas() {
        let mut rng = fastrand::Rng::with_seed(5);
        for (window, n) in [(60, 6), (1_000, 7), (100, 100), (5, 1)] {
            let mut ring = Ring::new(window, n, rng.u64(0..1_000));
            let mut reference = ring.clone();
            let mut now = ring.head * ring.slot_ns;
            for _ in 0..20_000 {
                // Mostly within a window, sometimes past several.
                now += match rng.u8(0..10) {
                    0 => rng.u64(0..5 * window),
                    _ => rng.u64(0..window / 4 + 1),
                };
                let later = now + rng.u64(0..2 * window);
                assert_eq!(ring.sum_at(later), sum_at_slot_by_slot(&ring, later));
                ring.advance(now);
                advance_slot_by_slot(&mut reference, now);
                assert_eq!(
                    (&ring.slots, ring.sum(), ring.head, ring.head_pos),
                    (
                        &reference.slots,
                        reference.sum(),
                        reference.head,
                        reference.head_pos
                    )
                );
                if rng.bool() {
                    let amount = rng.u64(0..1_000);
                    ring.add(amount);
                    reference.add(amount);
                }
            }
        }
    }

    #[test]
    fn spend_leaves_one_window_after_its_slot_ends() {
        // 60 ns window in 6 slots of 10 ns.
        let mut r = Ring::new(60, 6, 0);
        let s = r.add(5);
        assert_eq!(s, 0);
        r.advance(65);
        assert_eq!(r.sum(), 5, "slot [0,10) still counts at 65");
        r.advance(69);
        assert_eq!(r.sum(), 5);
        r.advance(70);
        assert_eq!(r.sum(), 0, "gone when slot [70,80) begins");
    }

    #[test]
    fn waits_walk_the_oldest_slots_first() {
        let mut r = Ring::new(60, 6, 0);
        r.add(3);
        r.advance(25);
        r.add(4);
        assert_eq!(r.wait_to_free(0, 25), Some(0));
        assert_eq!(r.wait_to_free(2, 25), Some(70 - 25));
        assert_eq!(r.wait_to_free(7, 25), Some(90 - 25));
        assert_eq!(r.wait_to_free(8, 25), None);
        assert_eq!(r.empties_at(), 90);
        // Read ahead without moving: at 75 the first slot has left.
        assert_eq!(r.sum_at(75), 4);
        assert_eq!(r.wait_to_free(4, 75), Some(90 - 75));
        assert_eq!(r.wait_to_free(5, 75), None);
    }

    #[test]
    fn adjustments_apply_only_while_live_and_never_below_zero() {
        let mut r = Ring::new(60, 6, 0);
        let s = r.add(10);
        r.adjust(s, -25);
        assert_eq!(r.sum(), 0);
        r.adjust(s, 7);
        assert_eq!(r.sum(), 7);
        r.advance(1_000);
        r.adjust(s, 100);
        assert_eq!(r.sum(), 0);
        // A jump of many windows clears everything once.
        let t = r.add(1);
        r.advance(u64::MAX / 2);
        assert_eq!(r.sum(), 0);
        r.adjust(t, 5);
        assert_eq!(r.sum(), 0);
    }

    #[test]
    fn add_within_is_add_below_the_bound() {
        let mut a = Ring::new(60, 6, 0);
        let mut b = a.clone();
        for (t, n) in [(0, 5), (3, 7), (25, 1), (70, 9), (75, u64::MAX / 4)] {
            a.advance(t);
            b.advance(t);
            a.add(n);
            b.add_within(n);
            assert_eq!(a.sum(), b.sum());
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
        }
    }

    #[test]
    fn tiny_windows_still_have_slots() {
        let mut r = Ring::new(3, 256, 0);
        assert_eq!(r.slot_ns(), 1);
        r.add(1);
        r.advance(3);
        assert_eq!(r.sum(), 1);
        r.advance(4);
        assert_eq!(r.sum(), 0);
    }
}
