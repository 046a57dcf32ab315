//! Long windows on a [`Limit`]: budgets over a longer window than the limit's own (Amazon
//! Bedrock's tokens per day beside its tokens per minute), checked and charged beside the
//! primary window's accounting. A call is admitted only when every window has room.
//!
//! Configure one with [`LimitBuilder::also`](super::LimitBuilder::also) (or the shorthands
//! [`units_per_day`](super::LimitBuilder::units_per_day) and
//! [`requests_per_day`](super::LimitBuilder::requests_per_day)) and a [`Window`].
//!
//! The primary window keeps all its machinery (lanes, shares, learning, pacing); a long window
//! is a plain budget: a call is charged its estimate in the current time slot when it is
//! booked (and moved to the slot it is admitted in, if it waited in the primary's queue), its
//! real units replace the estimate in that slot when it settles, and a call that never ran
//! gives its charge back. A call that does not fit waits until the window has room when that
//! is within its deadline (the wait is the longest over all windows), and is otherwise
//! rejected with [`RejectReason::QuotaExhausted`](super::RejectReason::QuotaExhausted) naming
//! the window and when it has room again.
//!
//! **Memory is fixed per key**: each dimension of a long window is a ring of
//! [`LONG_SLOTS`] (96) counters plus one, whatever the traffic: a day window keeps no
//! per-call records. 96 slots make a day window's slot 15 minutes: the rounding costs at most
//! one slot's spend, is always conservative — a slot's spend counts until the whole slot has
//! left the window, so a call's units leave the window between one window and one window plus
//! 15 minutes after it — and the ring is 776 bytes per dimension. (The primary window's 256
//! slots would be 5.6-minute slots for no gain a day-long budget needs: what matters there is
//! when the day has room again, not to the second.)
//!
//! Waiting on a long window is not queued: calls that wait for the same slot to leave all
//! look again when it has left, and those that still do not fit wait again (or are rejected
//! at their deadline). A waiting call is charged nothing until it is admitted.
//!
//! A key whose long windows still hold spend is not at rest: the in-process store keeps its
//! state (and the Redis store its hash) until the longest window has emptied, up to a day and
//! a slot after its last call.
//!
//! **A daily throttle** (an outcome [`ThrottleScope::Daily`](crate::ThrottleScope::Daily), a
//! provider's "Too many tokens per day") never teaches the primary window's learned limit
//! (the minute had room). On a key with long windows it marks the longest one exhausted: its
//! spend is raised to its limit in the current slot, so room comes back only as this client's
//! own older spend leaves the window (a whole window when it spent nothing in it: the
//! provider's day was spent by others). Calls charged before it keep their charge there: their
//! settlements and refunds give nothing back to the spent day (on the Redis server too). On a key without a long window it holds the key's
//! calls for [`DAILY_HOLD`] (15 minutes, one slot of a day window), after which one call
//! probes: its success releases the key, another daily throttle holds it again.

use std::time::Duration;

use super::bucket::{REQ, UNITS, part};
use super::cost::Cost;
use super::limit::{ConfigError, Limit, MAX_LIMIT, MAX_WINDOW, Priority, Tenant};
use super::quota::RejectReason;
use super::ring::Ring;
use super::state::Refusal;

/// Time slots per long window: 15 minutes for a day.
pub const LONG_SLOTS: u64 = 96;
/// The most long windows one [`Limit`] may have (e.g. an hour and a day: no provider
/// documents more than one long window per key; three leave room and keep the per-call work
/// bounded).
pub const MAX_LONG_WINDOWS: usize = 3;
/// How long a key without a long window holds its calls after a daily throttle, before one
/// call probes.
pub const DAILY_HOLD: Duration = Duration::from_secs(15 * 60);
/// While a probe is out after a daily hold, the other calls look again this often.
const PROBE_RECHECK: u64 = 15 * 1_000_000_000;
/// The `bound` of a call held by a daily throttle on a key without a long window.
pub(crate) const HOLD: u8 = u8::MAX;

/// A budget over a window longer than the limit's own, for
/// [`LimitBuilder::also`](super::LimitBuilder::also): requests and/or units per window.
///
/// ```
/// use tower_headroom::admission::{Limit, Window};
///
/// // Bedrock: 200,000 tokens per minute and 288,000,000 per day.
/// let limit = Limit::per_minute()
///     .units(200_000)
///     .also(Window::days(1).units(288_000_000))
///     .build()?;
/// assert_eq!(limit.long_windows()[0].units_limit(), Some(288_000_000));
/// # Ok::<(), tower_headroom::admission::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    window: Duration,
    requests: Option<u64>,
    units: Option<u64>,
}

impl Window {
    /// A window of `window`, with no limit yet (set [`requests`](Window::requests) and/or
    /// [`units`](Window::units)).
    pub const fn new(window: Duration) -> Self {
        Window {
            window,
            requests: None,
            units: None,
        }
    }

    /// A window of `n` days (at most one is accepted: [`MAX_WINDOW`]).
    pub const fn days(n: u64) -> Self {
        Window::new(Duration::from_secs(n.saturating_mul(24 * 3600)))
    }

    /// A window of `n` hours.
    pub const fn hours(n: u64) -> Self {
        Window::new(Duration::from_secs(n.saturating_mul(3600)))
    }

    /// Requests per window.
    pub const fn requests(mut self, limit: u64) -> Self {
        self.requests = Some(limit);
        self
    }

    /// Units per window (tokens per day).
    pub const fn units(mut self, limit: u64) -> Self {
        self.units = Some(limit);
        self
    }

    /// The window's length.
    pub const fn duration(&self) -> Duration {
        self.window
    }

    /// Requests per window, if limited.
    pub const fn requests_limit(&self) -> Option<u64> {
        self.requests
    }

    /// Units per window, if limited.
    pub const fn units_limit(&self) -> Option<u64> {
        self.units
    }

    /// The window with its limits cut to `fraction` (a Redis store's local fallback budget).
    #[cfg(feature = "redis")]
    pub(crate) fn scaled(&self, fraction: f64) -> Window {
        let cut = |v: Option<u64>| v.map(|v| ((v as f64 * fraction).floor() as u64).clamp(1, v));
        Window {
            window: self.window,
            requests: cut(self.requests),
            units: cut(self.units),
        }
    }

    fn max(&self, d: usize) -> Option<u64> {
        if d == REQ { self.requests } else { self.units }
    }
}

/// Checks the long windows of a limit whose own window is `primary` with `limits` (requests,
/// units); returns them sorted by length.
pub(crate) fn check(
    primary: Duration,
    limits: [Option<u64>; 2],
    mut windows: Vec<Window>,
) -> Result<Box<[Window]>, ConfigError> {
    if windows.len() > MAX_LONG_WINDOWS {
        return Err(ConfigError::new(
            "also",
            windows.len(),
            "at most 3 long windows per limit",
        ));
    }
    windows.sort_by_key(|w| w.window);
    for (i, w) in windows.iter().enumerate() {
        if w.window <= primary || w.window > MAX_WINDOW {
            return Err(ConfigError::new(
                "also.window",
                w.window,
                "must be longer than the limit's window and at most 24 h",
            ));
        }
        if i > 0 && windows[i - 1].window == w.window {
            return Err(ConfigError::new(
                "also.window",
                w.window,
                "give each long window once",
            ));
        }
        if w.requests.is_none() && w.units.is_none() {
            return Err(ConfigError::new(
                "also.requests",
                None::<u64>,
                "set a requests or a units limit (or both) on a long window",
            ));
        }
        for (d, field) in [(REQ, "also.requests"), (UNITS, "also.units")] {
            let Some(v) = w.max(d) else { continue };
            if v == 0 || v > MAX_LIMIT {
                return Err(ConfigError::new(
                    field,
                    v,
                    "must be at least 1 and at most 2^50 per window",
                ));
            }
            if limits[d].is_some_and(|p| v < p) {
                return Err(ConfigError::new(
                    field,
                    v,
                    "must be at least the limit's own per-window limit",
                ));
            }
        }
    }
    Ok(windows.into_boxed_slice())
}

/// What a reservation remembers of the long windows.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LongTicket {
    /// Waiting for a long window (or a daily hold) to have room: not booked anywhere yet.
    pub(crate) held: bool,
    /// Charged to the long windows at `at`.
    pub(crate) charged: bool,
    pub(crate) at: u64,
    /// What made the call wait or be refused: 0 nothing, `i + 1` long window `i`, [`HOLD`].
    pub(crate) bound: u8,
    /// The call probes a key held after a daily throttle.
    pub(crate) probe: bool,
    /// The ask, to book it in the primary window once the long ones have room.
    pub(crate) priority: Priority,
    pub(crate) tenant: Option<Tenant>,
}

/// The long window named by a `bound`.
pub(crate) fn bound_window(l: &Limit, bound: u8) -> Option<Duration> {
    match bound {
        0 | HOLD => None,
        i => l.long.get(usize::from(i) - 1).map(|w| w.window),
    }
}

/// The refusal of a call bound by a long window (or a daily hold) for `wait` more.
pub(crate) fn exhausted(l: &Limit, wait: u64, bound: u8) -> Refusal {
    Refusal {
        reason: RejectReason::QuotaExhausted {
            window: bound_window(l, bound),
        },
        retry_in: Some(wait),
    }
}

#[derive(Clone, Debug)]
struct LongDim {
    spent: Ring,
    max: u64,
}

/// One key's long windows and its daily hold.
#[derive(Clone, Debug, Default)]
pub(crate) struct Long {
    /// Per long window (in the limit's order), per dimension.
    windows: Box<[[Option<LongDim>; 2]]>,
    /// After a daily throttle on a key without a long window: no call before this (0: none).
    hold_until: u64,
    /// A probe is out after the hold: the other calls wait for its answer.
    probing: bool,
    clock: u64,
    /// When a daily throttle last filled the longest window: what was charged there at or
    /// before it stays spent (see [`adjust`](Self::adjust)).
    filled_at: Option<u64>,
}

impl Long {
    pub(crate) fn new(l: &Limit, now: u64) -> Self {
        let windows = l
            .long
            .iter()
            .map(|w| {
                let window = crate::nanos(w.window);
                [REQ, UNITS].map(|d| {
                    w.max(d).map(|max| LongDim {
                        spent: Ring::new(window, LONG_SLOTS, now),
                        max,
                    })
                })
            })
            .collect();
        Long {
            windows,
            hold_until: 0,
            filled_at: None,
            probing: false,
            clock: now,
        }
    }

    /// Whether anything here may refuse or delay a call.
    #[inline]
    pub(crate) fn active(&self) -> bool {
        !self.windows.is_empty() || self.hold_until != 0
    }

    /// The latest time seen.
    #[inline]
    pub(crate) fn clock(&self) -> u64 {
        self.clock
    }

    /// Whether a call of `cost` is admitted by the long windows at `now` (at or after the
    /// clock) with no wait: no daily hold (so it probes nothing), and room in every long
    /// window, as [`wait_at`](Self::wait_at) answers zero. Changes nothing.
    #[inline]
    pub(crate) fn fits_now(&self, cost: Cost, now: u64) -> bool {
        if self.hold_until != 0 {
            return false;
        }
        for w in &self.windows {
            for (d, dim) in w.iter().enumerate() {
                if let Some(dim) = dim
                    && dim.spent.sum_at(now) + u128::from(part(cost, d)) > u128::from(dim.max)
                {
                    return false;
                }
            }
        }
        true
    }

    /// Time never runs backwards.
    #[inline]
    pub(crate) fn tick(&mut self, now: u64) -> u64 {
        self.clock = self.clock.max(now);
        self.clock
    }

    fn dims(&mut self) -> impl Iterator<Item = (usize, &mut LongDim)> {
        self.windows
            .iter_mut()
            .flat_map(|w| w.iter_mut().enumerate())
            .filter_map(|(d, dim)| dim.as_mut().map(|dim| (d, dim)))
    }

    /// A cost some long window could never hold.
    pub(crate) fn too_large(&self, cost: Cost) -> bool {
        self.windows
            .iter()
            .flat_map(|w| w.iter().enumerate())
            .any(|(d, dim)| dim.as_ref().is_some_and(|dim| part(cost, d) > dim.max))
    }

    /// The wait until every long window has room for `cost` (and a daily hold is over), and
    /// what binds it (see [`LongTicket::bound`]).
    pub(crate) fn wait_at(&self, cost: Cost, now: u64) -> (u64, u8) {
        let now = now.max(self.clock);
        let (mut wait, mut bound) = (0, 0);
        if self.hold_until != 0 {
            if now < self.hold_until {
                (wait, bound) = (self.hold_until - now, HOLD);
            } else if self.probing {
                (wait, bound) = (PROBE_RECHECK, HOLD);
            }
        }
        for (i, w) in self.windows.iter().enumerate() {
            for (d, dim) in w.iter().enumerate() {
                let Some(dim) = dim else { continue };
                let total = dim.spent.sum_at(now) + u128::from(part(cost, d));
                let Some(over) = total.checked_sub(u128::from(dim.max)).filter(|o| *o > 0) else {
                    continue;
                };
                // A cost within the limit always fits once the ring has emptied.
                let w_ns = dim
                    .spent
                    .wait_to_free(over, now)
                    .unwrap_or_else(|| dim.spent.empties_at().saturating_sub(now))
                    .max(1);
                if w_ns > wait {
                    (wait, bound) = (w_ns, (i + 1) as u8);
                }
            }
        }
        (wait, bound)
    }

    /// Charges an admitted call's estimate at `now`, with no daily hold (so it probes nothing):
    /// [`admit`](Self::admit) on a fresh ticket, whose fields the caller knows.
    #[inline]
    pub(crate) fn charge(&mut self, cost: Cost, now: u64) {
        debug_assert_eq!(self.hold_until, 0);
        for w in &mut self.windows {
            for (d, dim) in w.iter_mut().enumerate() {
                if let Some(dim) = dim {
                    dim.spent.advance(now);
                    dim.spent.add(part(cost, d));
                }
            }
        }
    }

    /// Charges an admitted (or primary-booked) call's estimate at `now`; it becomes the probe
    /// when a daily hold is over and none is out.
    #[inline]
    pub(crate) fn admit(&mut self, t: &mut LongTicket, cost: Cost, now: u64) {
        for (d, dim) in self.dims() {
            dim.spent.advance(now);
            dim.spent.add(part(cost, d));
        }
        t.held = false;
        t.charged = true;
        t.at = now;
        if self.hold_until != 0 && now >= self.hold_until && !self.probing {
            self.probing = true;
            t.probe = true;
        }
    }

    /// Changes the charge made at `at` by `delta` (requests, units).
    ///
    /// A charge made at or before the last daily fill is not lowered in the longest window:
    /// the fill raised that window to its limit counting the charge, so giving it back would
    /// open room in a day the provider said is spent.
    fn adjust(&mut self, at: u64, delta: [i128; 2], now: u64) {
        let longest = self.windows.len().saturating_sub(1);
        let filled = self.filled_at.is_some_and(|f| at <= f);
        for (i, w) in self.windows.iter_mut().enumerate() {
            for (d, dim) in w.iter_mut().enumerate() {
                let Some(dim) = dim else { continue };
                dim.spent.advance(now);
                if i == longest && filled && delta[d] < 0 {
                    continue;
                }
                let slot = dim.spent.slot_of(at);
                dim.spent.adjust(slot, delta[d]);
            }
        }
    }

    /// A call booked at `t.at` that waited in the primary's queue is admitted at `now`: its
    /// charge moves to the slot it runs in (so it leaves the windows no earlier than the
    /// provider's count of it does).
    pub(crate) fn moved(&mut self, t: &mut LongTicket, cost: Cost, now: u64) {
        if !t.charged || now == t.at {
            return;
        }
        let c = [i128::from(cost.requests), i128::from(cost.units)];
        for (d, dim) in self.dims() {
            dim.spent.advance(now);
            let from = dim.spent.slot_of(t.at);
            dim.spent.adjust(from, -c[d]);
            dim.spent.add(part(cost, d));
        }
        t.at = now;
    }

    /// The call never ran: its whole charge goes back.
    pub(crate) fn refund(&mut self, t: &mut LongTicket, cost: Cost, now: u64) {
        if std::mem::take(&mut t.charged) {
            let c = [i128::from(cost.requests), i128::from(cost.units)];
            self.adjust(t.at, [-c[0], -c[1]], now);
        }
        self.end_probe(t, None);
    }

    /// The call ran and spent `units` (when known) of its estimate: the slot it was charged
    /// in holds the real units; its request stays counted.
    pub(crate) fn settle(&mut self, t: &LongTicket, cost: Cost, units: Option<u64>, now: u64) {
        if let (true, Some(units)) = (t.charged, units) {
            let delta = i128::from(units) - i128::from(cost.units);
            if delta != 0 {
                self.adjust(t.at, [0, delta], now);
            }
        }
    }

    /// The probe's answer (`daily`: another daily throttle; `None`: no answer, another call
    /// probes).
    pub(crate) fn end_probe(&mut self, t: &mut LongTicket, daily: Option<bool>) {
        if !std::mem::take(&mut t.probe) {
            return;
        }
        self.probing = false;
        if daily == Some(false) {
            self.hold_until = 0;
        }
    }

    /// A daily throttle at `now`: the longest window is spent for the rest of it, or (no long
    /// window) the key is held for [`DAILY_HOLD`].
    pub(crate) fn daily(&mut self, now: u64) {
        match self.windows.last_mut() {
            Some(longest) => {
                for dim in longest.iter_mut().flatten() {
                    dim.spent.advance(now);
                    let fill = u128::from(dim.max).saturating_sub(dim.spent.sum());
                    dim.spent.add(u64::try_from(fill).unwrap_or(u64::MAX));
                }
                self.filled_at = Some(now);
            }
            None => {
                self.hold_until = now.saturating_add(crate::nanos(DAILY_HOLD)).max(1);
                self.probing = false;
            }
        }
    }

    /// Whether forgetting this state changes nothing at `now`.
    pub(crate) fn at_rest(&self, now: u64) -> bool {
        !self.probing
            && now >= self.hold_until
            && self
                .windows
                .iter()
                .flatten()
                .flatten()
                .all(|dim| dim.spent.sum_at(now) == 0)
    }

    /// What each long window holds at `now` (requests, units), in the limit's order.
    #[cfg(test)]
    pub(crate) fn spent(&self, now: u64) -> Vec<[Option<u128>; 2]> {
        self.windows
            .iter()
            .map(|w| [0, 1].map(|d| w[d].as_ref().map(|dim| dim.spent.sum_at(now))))
            .collect()
    }

    /// Counters held per key: fixed by the configuration, whatever the traffic.
    #[cfg(test)]
    pub(crate) fn counters(&self) -> usize {
        self.windows
            .iter()
            .flatten()
            .flatten()
            .map(|dim| dim.spent.len() as usize)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Outcome;
    use crate::admission::Usage;
    use crate::admission::state::KeyState;

    const DAY: u64 = 24 * 3600 * 1_000_000_000;

    #[test]
    fn a_booked_call_dropped_after_its_instant_counts_from_its_instant() {
        const SEC: u64 = 1_000_000_000;
        const HOUR: u64 = 3_600 * SEC;
        // A minute's bucket of 1,000 units with a minute of burst, and an hour of 100,000.
        let l = Limit::per_minute()
            .units(1_000)
            .burst(std::time::Duration::from_secs(60))
            .also(Window::hours(1).units(100_000))
            .build()
            .unwrap();
        let mut s = KeyState::new(&l, 0);
        let ask = crate::admission::Ask::new(Cost::units(1_000));
        let a = s.reserve(&l, &ask, HOUR, 0).unwrap();
        assert!(!a.waiting, "the full bucket admits the first call at once");
        let mut b = s.reserve(&l, &ask, HOUR, 0).unwrap();
        assert!(b.waiting && b.admit_at >= 59 * SEC, "booked a minute ahead");
        // Dropped once its instant has come: by the book it ran, from its instant.
        s.cancel(&l, &mut b, 61 * SEC);
        // The hour's slots are 37.5 s: the first call's slot has left 40 s after the hour, the
        // second call's (admitted a minute in) has not.
        let spent = s.long().spent(HOUR + 40 * SEC)[0][1];
        assert_eq!(spent, Some(1_000));
    }

    #[test]
    fn a_day_of_calls_keeps_the_same_counters() {
        let l = Limit::per_minute()
            .requests(1_000)
            .units(1_000_000)
            .also(Window::hours(1).units(10_000_000))
            .units_per_day(1_000_000_000)
            .build()
            .unwrap();
        let mut s = KeyState::new(&l, 0);
        // 97 counters per dimension and window: an hour's units, a day's units.
        assert_eq!(s.long().counters(), 2 * 97);
        let ask = crate::admission::Ask::new(Cost::new(1, 1_000));
        for i in 0..100_000u64 {
            let now = i * (DAY / 100_000);
            let mut t = s.reserve(&l, &ask, now + DAY, now).unwrap();
            assert!(!t.waiting);
            s.settle(&l, &mut t, &Outcome::SUCCESS, &Usage::units(500), now);
        }
        assert_eq!(s.long().counters(), 2 * 97);
        // The day holds what was spent in it at the real units: every call of the day.
        assert_eq!(s.long().spent(DAY)[1][1], Some(100_000 * 500));
        let hour = s.long().spent(DAY)[0][1].unwrap();
        let per_hour = 100_000 * 500 / 24;
        // The rounding is conservative: the last hour, and up to one slot (a 96th) more.
        assert!(
            (per_hour - 500..=per_hour + per_hour / 96 + 500).contains(&hour),
            "{hour}"
        );
    }
}
