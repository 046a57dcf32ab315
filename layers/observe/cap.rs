//! A bound on the label sets one layer creates series for.
//!
//! Labels chosen per key (a breaker per model id, per table, per host) would otherwise grow the
//! metrics without bound: every new key is ~40 series that are never removed. A layer that
//! makes label sets per key takes each from a [`LabelBudget`]: the first
//! [`MAX_LABEL_SETS`] distinct sets get series of their own, later ones report under
//! `target=`[`OVERFLOW_TARGET`] (model and region empty), and a set whose last key was evicted
//! gives its place back (its series stay in the recorder, no longer updated).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::Labels;

/// The most distinct label sets (target, model, region) a layer gives series of their own.
pub const MAX_LABEL_SETS: usize = 256;

/// The target label of the label sets beyond a layer's budget.
pub const OVERFLOW_TARGET: &str = "_overflow";

/// The label sets one layer has given series to, counted by the keys that hold each.
#[derive(Clone)]
pub(crate) struct LabelBudget {
    inner: Arc<Inner>,
}

struct Inner {
    max: usize,
    /// Each label set in use, with how many keys hold it.
    held: Mutex<HashMap<Labels, usize>>,
    warned: AtomicBool,
    /// The layer, for the warning.
    layer: &'static str,
}

/// A key's hold on its label set: dropped with the key, it gives the set's place back when it
/// was the last.
pub(crate) struct LabelHold {
    budget: Option<(Arc<Inner>, Labels)>,
}

impl LabelBudget {
    /// At most `max` distinct label sets for `layer` (named in the warning).
    pub(crate) fn new(max: usize, layer: &'static str) -> Self {
        LabelBudget {
            inner: Arc::new(Inner {
                max,
                held: Mutex::new(HashMap::new()),
                warned: AtomicBool::new(false),
                layer,
            }),
        }
    }

    /// The labels a new key reports under: its own while the budget has room (or the set is
    /// already held), else the overflow set; with the hold to keep as long as the key lives.
    /// Called when a key is created, never per call.
    pub(crate) fn admit(&self, labels: Labels) -> (Labels, LabelHold) {
        if labels == Labels::none() {
            return (labels, LabelHold { budget: None });
        }
        let mut held = self
            .inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&labels) {
            *count += 1;
        } else if held.len() < self.inner.max {
            held.insert(labels.clone(), 1);
        } else {
            drop(held);
            if !self.inner.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    layer = self.inner.layer,
                    max = self.inner.max,
                    "more label sets than the metrics keep apart; the rest report as target={OVERFLOW_TARGET}"
                );
            }
            return (Labels::target(OVERFLOW_TARGET), LabelHold { budget: None });
        }
        let hold = LabelHold {
            budget: Some((Arc::clone(&self.inner), labels.clone())),
        };
        (labels, hold)
    }

    /// How many distinct label sets are held.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for LabelHold {
    fn drop(&mut self) {
        if let Some((inner, labels)) = self.budget.take() {
            let mut held = inner.held.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(count) = held.get_mut(&labels) {
                *count -= 1;
                if *count == 0 {
                    held.remove(&labels);
                }
            }
        }
    }
}

impl std::fmt::Debug for LabelBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabelBudget")
            .field("max", &self.inner.max)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LabelHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LabelHold")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_beyond_the_budget_overflow_and_evicted_sets_give_their_place_back() {
        let budget = LabelBudget::new(2, "test");
        let (a, hold_a) = budget.admit(Labels::target("a"));
        let (a2, hold_a2) = budget.admit(Labels::target("a"));
        let (b, hold_b) = budget.admit(Labels::target("b"));
        assert_eq!((a.target_name(), a2.target_name()), (Some("a"), Some("a")));
        assert_eq!(b.target_name(), Some("b"));
        let (c, _overflow) = budget.admit(Labels::target("c"));
        assert_eq!(c, Labels::target(OVERFLOW_TARGET));
        // No labels never count.
        let (none, _) = budget.admit(Labels::none());
        assert_eq!(none, Labels::none());
        // "a" is held by two keys: one gone, still held.
        drop(hold_a);
        assert_eq!(budget.held(), 2);
        drop(hold_a2);
        assert_eq!(budget.held(), 1);
        let (d, _hold_d) = budget.admit(Labels::target("d"));
        assert_eq!(d.target_name(), Some("d"));
        drop(hold_b);
        assert_eq!(budget.held(), 1);
    }
}
