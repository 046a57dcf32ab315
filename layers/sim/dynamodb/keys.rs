//! Per partition key state: the key's own ceiling of 3,000 RCU / 1,000 WCU per second
//! ([`KeyCeilings`]) and what each key consumed and had throttled ([`KeyTotals`]), both in
//! bounded memory.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::time::Instant;

use super::state::Bucket;
use super::{KeyStats, PARTITION_MAX_RCU, PARTITION_MAX_WCU};

/// The fixed seed of the maps: iteration order, and so eviction, is the same on every run.
type Map<V> = HashMap<Arc<str>, V, foldhash::fast::FixedState>;

/// Keys tracked before idle ones are dropped.
const CEILING_KEYS: usize = 4_096;
/// Keys whose totals are kept; above it the lighter half is dropped.
const TOTAL_KEYS: usize = 8_192;

/// One key's read and write ceilings: one second of the partition maximum, refilled at it.
#[derive(Debug)]
pub(super) struct Ceiling {
    pub(super) read: Bucket,
    pub(super) write: Bucket,
}

/// The ceilings of the keys seen recently. A key not in the map has full buckets, so dropping
/// a key whose buckets are full again loses nothing.
#[derive(Debug, Default)]
pub(super) struct KeyCeilings {
    keys: Map<Ceiling>,
    /// Sweep idle keys when the map grows past this.
    sweep_at: usize,
}

impl KeyCeilings {
    pub(super) fn get(&mut self, key: &Arc<str>, now: Instant) -> &mut Ceiling {
        if !self.keys.contains_key(&**key) {
            if self.keys.len() >= self.sweep_at.max(CEILING_KEYS) {
                self.keys
                    .retain(|_, c| !(c.read.is_full(now) && c.write.is_full(now)));
                self.sweep_at = (self.keys.len() * 2).max(CEILING_KEYS);
            }
            self.keys.insert(
                key.clone(),
                Ceiling {
                    read: Bucket::new(PARTITION_MAX_RCU, PARTITION_MAX_RCU, 1, 0, now),
                    write: Bucket::new(PARTITION_MAX_WCU, PARTITION_MAX_WCU, 1, 0, now),
                },
            );
        }
        self.keys
            .get_mut(&**key)
            .expect("the key was inserted above")
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    reads: u64,
    writes: u64,
    read_half_units: u64,
    write_half_units: u64,
    reads_throttled: u64,
    writes_throttled: u64,
}

impl Totals {
    fn weight(&self) -> u64 {
        self.read_half_units
            + self.write_half_units
            + 2 * (self.reads_throttled + self.writes_throttled)
    }
}

/// What each key consumed and had throttled. Bounded: past [`TOTAL_KEYS`] keys the lighter
/// half (by consumed half units plus two per throttle) is dropped, so a heavy key's figures
/// are exact and a light key may be forgotten.
#[derive(Debug, Default)]
pub(super) struct KeyTotals {
    keys: Map<Totals>,
}

impl KeyTotals {
    fn entry(&mut self, key: &Arc<str>) -> &mut Totals {
        if !self.keys.contains_key(&**key) {
            if self.keys.len() >= TOTAL_KEYS {
                let mut weights: Vec<u64> = self.keys.values().map(Totals::weight).collect();
                weights.sort_unstable();
                let cut = weights[weights.len() / 2];
                self.keys.retain(|_, t| t.weight() > cut);
            }
            self.keys.insert(key.clone(), Totals::default());
        }
        self.keys
            .get_mut(&**key)
            .expect("the key was inserted above")
    }

    pub(super) fn consumed(&mut self, key: &Arc<str>, read: bool, half_units: u64) {
        let t = self.entry(key);
        if read {
            t.reads += 1;
            t.read_half_units += half_units;
        } else {
            t.writes += 1;
            t.write_half_units += half_units;
        }
    }

    pub(super) fn throttled(&mut self, key: &Arc<str>, read: bool) {
        let t = self.entry(key);
        if read {
            t.reads_throttled += 1;
        } else {
            t.writes_throttled += 1;
        }
    }

    /// The `n` heaviest keys, heaviest first (ties by key, so the order is stable).
    pub(super) fn top(&self, n: usize) -> Vec<KeyStats> {
        let mut all: Vec<(&Arc<str>, &Totals)> = self.keys.iter().collect();
        all.sort_by(|a, b| b.1.weight().cmp(&a.1.weight()).then_with(|| a.0.cmp(b.0)));
        all.into_iter()
            .take(n)
            .map(|(key, t)| KeyStats {
                key: key.clone(),
                reads: t.reads,
                writes: t.writes,
                consumed_rcu: t.read_half_units as f64 / 2.0,
                consumed_wcu: t.write_half_units as f64 / 2.0,
                reads_throttled: t.reads_throttled,
                writes_throttled: t.writes_throttled,
            })
            .collect()
    }
}
