//! One second's Space-Saving summary, weighted by capacity units (Metwally et al. 2005): at
//! most `cap` keys; a key not tracked when the summary is full replaces the lightest one and
//! inherits its count as its possible over-count.

use super::KeyId;

/// One tracked key's second.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) id: KeyId,
    /// Units asked for, throttled attempts included (may over-count by `error`).
    pub(super) units: u64,
    /// Units of attempts not throttled, since the key was last (re)tracked.
    pub(super) served_units: u64,
    /// Throttled attempts, since the key was last (re)tracked.
    pub(super) throttles: u64,
    /// The most `units` may over-count: the count of the key it replaced.
    pub(super) error: u64,
    /// The key's value, when values are shown.
    pub(super) key: Option<Box<str>>,
}

impl Entry {
    /// The units the key certainly asked for since it was last (re)tracked: its count less
    /// what it may over-count.
    pub(super) fn guaranteed_units(&self) -> u64 {
        self.units - self.error
    }
}

/// The summary of one second.
#[derive(Clone, Debug)]
pub(super) struct Sketch {
    pub(super) second: u64,
    cap: usize,
    entries: Vec<Entry>,
}

impl Sketch {
    pub(super) fn new(second: u64, cap: usize) -> Self {
        Sketch {
            second,
            cap,
            entries: Vec::new(),
        }
    }

    pub(super) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Counts `units` for `id`; returns its entry.
    pub(super) fn add(
        &mut self,
        id: KeyId,
        units: u64,
        throttled: bool,
        key: Option<Box<str>>,
    ) -> &Entry {
        let served = if throttled { 0 } else { units };
        let throttles = u64::from(throttled);
        // One pass finds the key or, failing that, the lightest entry it would replace.
        let mut lightest = 0;
        for i in 0..self.entries.len() {
            if self.entries[i].id == id {
                let e = &mut self.entries[i];
                e.units = e.units.saturating_add(units);
                e.served_units = e.served_units.saturating_add(served);
                e.throttles = e.throttles.saturating_add(throttles);
                return &self.entries[i];
            }
            if self.entries[i].units < self.entries[lightest].units {
                lightest = i;
            }
        }
        let fresh = |error: u64| Entry {
            id,
            units: error.saturating_add(units),
            served_units: served,
            throttles,
            error,
            key,
        };
        if self.entries.len() < self.cap {
            self.entries.push(fresh(0));
            return self.entries.last().expect("just pushed");
        }
        let i = lightest;
        let lightest = self.entries[i].units;
        self.entries[i] = fresh(lightest);
        &self.entries[i]
    }
}
