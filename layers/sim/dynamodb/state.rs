//! The simulator's shared state: per table and partition, the read and write buckets that
//! allow debt, and which partition a key goes to.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::{PARTITION_MAX_RCU, PARTITION_MAX_WCU, PartitionStats, TableConfig};
use crate::sim::{Callers, SimCounts};

const NANOS_PER_SEC: i128 = 1_000_000_000;
/// The seed of the key-to-partition hash: fixed, so a key maps to the same partition on every
/// run.
const PARTITION_HASH_SEED: u64 = 0x5EED_D1AB_0000_0001;

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) start: Instant,
    pub(super) tables: Vec<Table>,
    pub(super) state: Mutex<State>,
    /// Calls to the methods that read the simulator's set-up or state (see
    /// [`DynamoSim::inspections`]).
    ///
    /// [`DynamoSim::inspections`]: super::DynamoSim::inspections
    pub(super) inspections: AtomicU64,
}

impl Inner {
    pub(super) fn inspected(&self) {
        self.inspections.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
pub(super) struct Table {
    pub(super) config: TableConfig,
    pub(super) name: Arc<str>,
    pub(super) partitions: u32,
}

#[derive(Debug)]
pub(super) struct State {
    pub(super) tables: Vec<TableState>,
    pub(super) callers: Callers,
}

#[derive(Debug)]
pub(super) struct TableState {
    pub(super) reads: SimCounts,
    pub(super) writes: SimCounts,
    pub(super) partitions: Vec<PartitionState>,
}

#[derive(Debug)]
pub(super) struct PartitionState {
    pub(super) read: Bucket,
    pub(super) write: Bucket,
    pub(super) stats: PartitionStats,
}

/// A refilling bucket that allows debt. The level is in half-units × nanoseconds ×
/// partitions, so that a partition's refill (`capacity / partitions` units per second) is the
/// integer `2 × capacity` per nanosecond.
#[derive(Debug)]
pub(super) struct Bucket {
    pub(super) level: i128,
    pub(super) max: i128,
    /// Added per nanosecond.
    pub(super) rate: i128,
    /// One half-unit.
    pub(super) half_unit: i128,
    pub(super) last: Instant,
}

impl Bucket {
    fn new(
        capacity: u64,
        per_partition_max: u64,
        partitions: u32,
        burst_seconds: u64,
        start: Instant,
    ) -> Self {
        let p = i128::from(partitions);
        // The table's capacity, less what the per-partition cap cuts off.
        let effective = i128::from(capacity).min(i128::from(per_partition_max) * p);
        let rate = 2 * effective;
        let one_second = rate * NANOS_PER_SEC;
        Bucket {
            level: one_second,
            max: one_second * (1 + i128::from(burst_seconds)),
            rate,
            half_unit: NANOS_PER_SEC * p,
            last: start,
        }
    }

    pub(super) fn refill(&mut self, now: Instant) {
        if now > self.last {
            let dt = i128::from(crate::nanos(now - self.last));
            self.level = self
                .level
                .saturating_add(dt.saturating_mul(self.rate))
                .min(self.max);
            self.last = now;
        }
    }

    /// Admits while the level is above zero, charging the whole cost (possibly into debt).
    pub(super) fn try_charge(&mut self, half_units: u64, now: Instant) -> bool {
        self.refill(now);
        if self.level <= 0 {
            return false;
        }
        self.level -= i128::from(half_units) * self.half_unit;
        true
    }

    /// The level in units (for tests and statistics).
    pub(super) fn units(&self) -> f64 {
        self.level as f64 / (2 * self.half_unit) as f64
    }
}

impl TableState {
    pub(super) fn new(config: &TableConfig, start: Instant) -> Self {
        let partitions = config.partition_count();
        TableState {
            reads: SimCounts::default(),
            writes: SimCounts::default(),
            partitions: (0..partitions)
                .map(|_| PartitionState {
                    read: Bucket::new(
                        config.rcu,
                        PARTITION_MAX_RCU,
                        partitions,
                        config.burst_seconds,
                        start,
                    ),
                    write: Bucket::new(
                        config.wcu,
                        PARTITION_MAX_WCU,
                        partitions,
                        config.burst_seconds,
                        start,
                    ),
                    stats: PartitionStats::default(),
                })
                .collect(),
        }
    }
}

pub(super) fn partition_of(key: &str, partitions: u32) -> usize {
    let hash = foldhash::fast::FixedState::with_seed(PARTITION_HASH_SEED).hash_one(key);
    (hash % u64::from(partitions.max(1))) as usize
}
