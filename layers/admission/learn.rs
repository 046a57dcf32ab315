//! Learning the share of a shared quota that is really this client's: the effective limit of
//! one dimension of one key, cut once per window on throttles the accounting did not predict,
//! regained per quiet window. See [`Learning`](super::Learning) for the rules.
//!
//! Why not AIMD: multiplying the limit by a constant on every throttle has no memory of how
//! many throttles one full provider window produces (a burst of fourteen took a limit from
//! 170,000 to its floor in nine seconds), and adding a constant per success takes minutes to
//! recover. The provider's window tells what to do instead: when it throttles, it was full,
//! so the others spent what this client did not; this client's own trailing spend is the
//! share that fits.

use super::limit::LearningRules;

const PPM: u128 = 1_000_000;
/// Past this many quiet windows the gap is closed at once (the loop stays bounded).
const MAX_STEPS: u64 = 64;

/// One dimension's effective limit; see the module docs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Learner {
    effective: u64,
    max: u64,
    floor: u64,
    /// When the last cut was made: no other cut within a window of it.
    cut_at: Option<u64>,
    /// The last throttle or regain step: a regain needs a whole window after it.
    quiet_since: u64,
}

fn share(n: u64, ppm: u64) -> u64 {
    u64::try_from(u128::from(n) * u128::from(ppm) / PPM).unwrap_or(u64::MAX)
}

/// `share`, rounded up: a regain step closes a gap of a few units too.
fn share_up(n: u64, ppm: u64) -> u64 {
    u64::try_from((u128::from(n) * u128::from(ppm)).div_ceil(PPM)).unwrap_or(u64::MAX)
}

impl Learner {
    pub(crate) fn new(max: u64, rules: &LearningRules, now: u64) -> Self {
        Learner {
            effective: max,
            max,
            floor: share(max, rules.floor_ppm).max(1),
            cut_at: None,
            quiet_since: now,
        }
    }

    /// The effective limit, as last updated.
    pub(crate) fn effective(&self) -> u64 {
        self.effective
    }

    /// The effective limit at `now`, with the regains due by then, without recording them.
    pub(crate) fn effective_at(&self, rules: &LearningRules, window: u64, now: u64) -> u64 {
        let mut copy = *self;
        copy.regain(rules, window, now);
        copy.effective
    }

    /// Whether the limit is the configured one.
    pub(crate) fn at_max(&self) -> bool {
        self.effective >= self.max
    }

    /// Gives back `regain` of the gap for every whole quiet window up to `now`.
    pub(crate) fn regain(&mut self, rules: &LearningRules, window: u64, now: u64) {
        if self.effective >= self.max {
            return;
        }
        let window = window.max(1);
        let windows = now.saturating_sub(self.quiet_since) / window;
        if windows == 0 {
            return;
        }
        if windows >= MAX_STEPS || rules.regain_ppm >= PPM as u64 {
            self.effective = self.max;
        } else {
            for _ in 0..windows {
                let gap = self.max - self.effective;
                let step = share_up(gap, rules.regain_ppm);
                self.effective = (self.effective + step).min(self.max);
            }
        }
        self.quiet_since = self.quiet_since.saturating_add(windows * window);
    }

    /// A throttle the accounting did not predict, at `now`, when this client had `ours` in its
    /// trailing window. Returns whether the limit was cut.
    pub(crate) fn throttled(
        &mut self,
        rules: &LearningRules,
        window: u64,
        ours: u128,
        now: u64,
    ) -> bool {
        if rules.off() {
            return false;
        }
        self.regain(rules, window, now);
        self.quiet_since = now;
        if std::env::var("DBG").is_ok() {
            eprintln!("DBG throttle t={:.1} ours={ours} eff={}", now as f64 / 1e9, self.effective);
        }
        if self
            .cut_at
            .is_some_and(|at| now < at.saturating_add(window))
        {
            return false;
        }
        self.cut_at = Some(now);
        let ours = u64::try_from(ours).unwrap_or(u64::MAX);
        let kept = share(self.effective, rules.max_cut_ppm);
        let cut = ours.max(kept).max(self.floor).min(self.effective);
        let moved = cut < self.effective;
        self.effective = cut;
        moved
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
    fn one_cut_per_window_to_our_own_spend() {
        let mut l = Learner::new(1_000, &RULES, 0);
        assert!(l.throttled(&RULES, W, 700, 10));
        assert_eq!(l.effective(), 700);
        // The same window throttling again teaches nothing new.
        for t in 11..70 {
            assert!(!l.throttled(&RULES, W, 300, t));
        }
        assert_eq!(l.effective(), 700);
        // A window later, a throttle may cut again, but never below half in one cut.
        assert!(l.throttled(&RULES, W, 100, 70));
        assert_eq!(l.effective(), 350);
    }

    #[test]
    fn quiet_windows_regain_half_the_gap_each() {
        let mut l = Learner::new(1_000, &RULES, 0);
        l.throttled(&RULES, W, 500, 0);
        assert_eq!(l.effective_at(&RULES, W, 59), 500);
        assert_eq!(l.effective_at(&RULES, W, 60), 750);
        assert_eq!(l.effective_at(&RULES, W, 120), 875);
        assert_eq!(l.effective_at(&RULES, W, 180), 938);
        assert_eq!(l.effective_at(&RULES, W, 600), 1_000);
        assert_eq!(l.effective_at(&RULES, W, 1_000_000), 1_000);
        // A throttle restarts the quiet count.
        l.regain(&RULES, W, 90);
        assert_eq!(l.effective(), 750);
        l.throttled(&RULES, W, 900, 100);
        assert_eq!(l.effective(), 750, "our spend above the limit cuts nothing");
        assert_eq!(l.effective_at(&RULES, W, 159), 750);
        assert_eq!(l.effective_at(&RULES, W, 160), 875);
    }

    #[test]
    fn floor_and_off() {
        // Cut and regain balance at a third of the limit when the others take everything.
        let mut l = Learner::new(1_000, &RULES, 0);
        for w in 0..20 {
            l.throttled(&RULES, W, 0, w * W);
        }
        assert_eq!(l.effective(), 333);
        // Without regain, the floor holds.
        let no_regain = LearningRules {
            regain_ppm: 0,
            ..RULES
        };
        let mut l = Learner::new(1_000, &no_regain, 0);
        for w in 0..10 {
            l.throttled(&no_regain, W, 0, w * W);
        }
        assert_eq!(l.effective(), 100);
        let off = LearningRules {
            max_cut_ppm: 1_000_000,
            regain_ppm: 0,
            floor_ppm: 1_000_000,
        };
        let mut l = Learner::new(1_000, &off, 0);
        assert!(!l.throttled(&off, W, 0, 5));
        assert_eq!(l.effective(), 1_000);
    }
}
