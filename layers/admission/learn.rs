//! Learning the share of a shared quota that is really this client's: the effective limit of
//! one dimension of one key, cut once per run of throttles the accounting did not predict,
//! regained continuously once a whole window has passed without a throttle. See
//! [`Learning`](super::Learning) for the rules.
//!
//! Why not AIMD: multiplying the limit by a constant on every throttle has no memory of how
//! many throttles one full provider window produces (a burst of fourteen took a limit from
//! 170,000 to its floor in nine seconds), and adding a constant per success takes minutes to
//! recover. The provider's window tells what to do instead: when it throttles, it was full,
//! so the others spent what this client did not; this client's own trailing spend (a little
//! less: the window it spans began before the provider's did) is the share that fits. The
//! regain is continuous rather than in steps, so that a queue of waiting calls is let through
//! gradually instead of all at once into a window that may still be full.

use super::limit::LearningRules;

const PPM: u128 = 1_000_000;
/// A cut keeps this share (per million) of what the client spent in the trailing window: the
/// trailing window began before the provider's current one, so it holds a little more than
/// the client's part of the window that filled.
const CUT_OF_OURS_PPM: u64 = 950_000;
/// Past this many quiet windows the gap is closed at once.
const MAX_WINDOWS: u64 = 64;

/// One dimension's effective limit; see the module docs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Learner {
    effective: u64,
    max: u64,
    floor: u64,
    /// When the last cut was made.
    cut_at: Option<u64>,
    /// The last throttle: the regain runs from then.
    quiet_since: u64,
    /// The effective limit at `quiet_since`.
    base: u64,
    /// Cuts in a row, each within two windows of the one before: the limit is still above
    /// the share that fits, so each cut goes deeper.
    cuts_in_a_row: u32,
}

fn share(n: u64, ppm: u64) -> u64 {
    u64::try_from(u128::from(n) * u128::from(ppm) / PPM).unwrap_or(u64::MAX)
}

impl Learner {
    pub(crate) fn new(max: u64, rules: &LearningRules, now: u64) -> Self {
        Learner {
            effective: max,
            max,
            floor: share(max, rules.floor_ppm).max(1),
            cut_at: None,
            quiet_since: now,
            base: max,
            cuts_in_a_row: 0,
        }
    }

    /// The effective limit, as last updated.
    #[inline]
    pub(crate) fn effective(&self) -> u64 {
        self.effective
    }

    /// The effective limit at `now`, without recording it: after a window with no throttle
    /// since the last one, the gap to the configured limit left then shrinks by `regain` every
    /// further window (continuously).
    #[inline]
    pub(crate) fn effective_at(&self, rules: &LearningRules, window: u64, now: u64) -> u64 {
        let window = window.max(1);
        let quiet_end = self.quiet_since.saturating_add(window);
        if self.base >= self.max || now <= quiet_end {
            return self.effective.max(self.base.min(self.max));
        }
        let windows = (now - quiet_end) as f64 / window as f64;
        if windows >= MAX_WINDOWS as f64 || rules.regain_ppm >= PPM as u64 {
            return self.max;
        }
        let keep = (1.0 - rules.regain_ppm as f64 / 1e6).powf(windows);
        let gap = (self.max - self.base) as f64 * keep;
        // `as` saturates; the gap is at most `max - base`.
        let effective = self.max - (gap.round() as u64).min(self.max - self.base);
        effective.max(self.effective)
    }

    /// When the last cut was made.
    pub(crate) fn cut_at(&self) -> Option<u64> {
        self.cut_at
    }

    /// Whether the limit is the configured one. Then it stays so until the next throttle:
    /// [`effective_at`](Self::effective_at) is the configured limit at any time, and
    /// [`regain`](Self::regain) changes nothing.
    #[inline]
    pub(crate) fn at_max(&self) -> bool {
        self.effective >= self.max
    }

    /// Records the regain due by `now`.
    pub(crate) fn regain(&mut self, rules: &LearningRules, window: u64, now: u64) {
        self.effective = self.effective_at(rules, window, now);
    }

    /// A throttle the accounting did not predict, at `now`, when this client had `ours` in its
    /// trailing window; `new_run` when it starts a new run of throttles (the provider's window
    /// had room again since the last run: a new window). Cuts the limit to a little under
    /// `ours` — once per run, at most once per quarter window, never below `max_cut` of the
    /// limit before nor below the floor — and restarts the regain. Returns whether it cut.
    pub(crate) fn throttled(
        &mut self,
        rules: &LearningRules,
        window: u64,
        ours: u128,
        now: u64,
        new_run: bool,
    ) -> bool {
        if rules.off() {
            return false;
        }
        self.regain(rules, window, now);
        let may_cut = new_run
            && self
                .cut_at
                .is_none_or(|at| now >= at.saturating_add(window / 4));
        let mut cut = false;
        if may_cut {
            let again = self
                .cut_at
                .is_some_and(|at| now < at.saturating_add(2 * window));
            self.cuts_in_a_row = if again { self.cuts_in_a_row + 1 } else { 0 };
            let mut ppm = CUT_OF_OURS_PPM;
            for _ in 0..self.cuts_in_a_row.min(4) {
                ppm = share(ppm, CUT_OF_OURS_PPM);
            }
            let ours = u64::try_from(ours).unwrap_or(u64::MAX);
            let kept = share(self.effective, rules.max_cut_ppm);
            let to = share(ours, ppm)
                .max(kept)
                .max(self.floor)
                .min(self.effective);
            cut = to < self.effective;
            self.effective = to;
            self.cut_at = Some(now);
        }
        self.quiet_since = now;
        self.base = self.effective;
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: LearningRules = LearningRules {
        max_cut_ppm: 500_000,
        regain_ppm: 500_000,
        floor_ppm: 100_000,
    };
    const W: u64 = 60;

    #[test]
    fn one_cut_per_run_to_a_little_under_our_own_spend() {
        let mut l = Learner::new(1_000, &RULES, 0);
        assert!(l.throttled(&RULES, W, 700, 10, true));
        assert_eq!(l.effective(), 665);
        // The same run of throttles teaches nothing new.
        for t in 11..70 {
            assert!(!l.throttled(&RULES, W, 300, t, false));
        }
        assert_eq!(l.effective(), 665);
        // A new run may cut again, but not within a quarter window, nor below half at once.
        assert!(!l.throttled(&RULES, W, 100, 20, true));
        assert!(l.throttled(&RULES, W, 100, 80, true));
        assert_eq!(l.effective(), 332);
    }

    #[test]
    fn after_a_quiet_window_the_gap_halves_every_window() {
        let mut l = Learner::new(1_000, &RULES, 0);
        l.throttled(&RULES, W, 526, 0, true);
        assert_eq!(l.effective(), 500);
        assert_eq!(l.effective_at(&RULES, W, 0), 500);
        assert_eq!(
            l.effective_at(&RULES, W, 60),
            500,
            "a whole quiet window first"
        );
        assert_eq!(l.effective_at(&RULES, W, 90), 646, "then continuously");
        assert_eq!(l.effective_at(&RULES, W, 120), 750);
        assert_eq!(l.effective_at(&RULES, W, 180), 875);
        assert_eq!(l.effective_at(&RULES, W, 240), 937);
        assert_eq!(l.effective_at(&RULES, W, 66 * 60), 1_000);
        // A throttle restarts the quiet window from where the limit stood.
        l.regain(&RULES, W, 120);
        assert_eq!(l.effective(), 750);
        assert!(!l.throttled(&RULES, W, 900, 120, false));
        assert_eq!(l.effective(), 750, "a throttle within the run cuts nothing");
        assert_eq!(l.effective_at(&RULES, W, 180), 750);
        assert_eq!(l.effective_at(&RULES, W, 240), 875);
    }

    #[test]
    fn floor_and_off() {
        let no_regain = LearningRules {
            regain_ppm: 0,
            ..RULES
        };
        let mut l = Learner::new(1_000, &no_regain, 0);
        for w in 0..10 {
            l.throttled(&no_regain, W, 0, w * W, true);
        }
        assert_eq!(l.effective(), 100);
        let off = LearningRules {
            max_cut_ppm: 1_000_000,
            regain_ppm: 0,
            floor_ppm: 1_000_000,
        };
        let mut l = Learner::new(1_000, &off, 0);
        assert!(!l.throttled(&off, W, 0, 5, true));
        assert_eq!(l.effective(), 1_000);
    }
}
