//! The simulator's shared state: per table its read and write buckets that allow debt (the
//! table's under adaptive capacity, each partition's in the even split), its keys' ceilings,
//! its on-demand throughput, and which partition a key goes to; [`TableState::admit`] decides.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::keys::{KeyCeilings, KeyTotals};
use super::on_demand::OnDemand;
use super::reason::Limit;
use super::{
    CapacityModel, PARTITION_MAX_RCU, PARTITION_MAX_WCU, PartitionStats, TableConfig,
    ThrottlingReason,
};
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
    pub(super) arn: Arc<str>,
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
    /// The table's own buckets (adaptive capacity; unused in the even split and on demand).
    pub(super) read: Bucket,
    pub(super) write: Bucket,
    pub(super) keys: KeyCeilings,
    pub(super) totals: KeyTotals,
    pub(super) on_demand: Option<OnDemand>,
    /// Throttles per [`ThrottlingReason::index`].
    pub(super) throttles: [u64; 6],
    /// On-demand throttles above twice the previous peak (also counted as key-range ones).
    pub(super) peak_throttles: u64,
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
    pub(super) fn new(
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
        if !self.has_room(now) {
            return false;
        }
        self.spend(half_units);
        true
    }

    /// Whether the level (refilled to `now`) is above zero.
    pub(super) fn has_room(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.level > 0
    }

    /// Charges `half_units` (possibly into debt).
    pub(super) fn spend(&mut self, half_units: u64) {
        self.level -= i128::from(half_units) * self.half_unit;
    }

    /// Whether the bucket (refilled to `now`) is full.
    pub(super) fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.level >= self.max
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
            read: Bucket::new(config.rcu, config.rcu, 1, config.burst_seconds, start),
            write: Bucket::new(config.wcu, config.wcu, 1, config.burst_seconds, start),
            keys: KeyCeilings::default(),
            totals: KeyTotals::default(),
            on_demand: config.is_on_demand().then(|| OnDemand::new(config)),
            throttles: [0; 6],
            peak_throttles: 0,
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

impl TableState {
    /// Admits a call of `half_units` to `key` (on `partition`) at `now` and charges it, or
    /// names the limit that refuses it. `second` is whole seconds since the start.
    ///
    /// - Even split: the partition's bucket.
    /// - Adaptive: the key's ceiling, then the table's bucket; both charged when admitted.
    /// - On-demand: the key's ceiling, then the table's maximum and twice its previous peak.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn admit(
        &mut self,
        config: &TableConfig,
        key: &Arc<str>,
        partition: usize,
        read: bool,
        half_units: u64,
        now: Instant,
        second: u64,
    ) -> Result<(), Limit> {
        if config.capacity_model == CapacityModel::EvenSplit && self.on_demand.is_none() {
            let p = &mut self.partitions[partition];
            let bucket = if read { &mut p.read } else { &mut p.write };
            return if bucket.try_charge(half_units, now) {
                Ok(())
            } else {
                Err(Limit::KeyRange)
            };
        }
        let ceiling = self.keys.get(key, now);
        let key_bucket = if read {
            &mut ceiling.read
        } else {
            &mut ceiling.write
        };
        if !key_bucket.has_room(now) {
            return Err(Limit::KeyRange);
        }
        match &mut self.on_demand {
            Some(on_demand) => {
                on_demand.check(read, second)?;
                on_demand.spend(read, half_units);
            }
            None => {
                let table = if read {
                    &mut self.read
                } else {
                    &mut self.write
                };
                if !table.has_room(now) {
                    return Err(Limit::Provisioned);
                }
                table.spend(half_units);
            }
        }
        key_bucket.spend(half_units);
        Ok(())
    }

    /// Counts a throttle of `key` for `limit`.
    pub(super) fn throttled(&mut self, key: &Arc<str>, partition: usize, read: bool, limit: Limit) {
        let p = &mut self.partitions[partition].stats;
        if read {
            p.reads_throttled += 1;
        } else {
            p.writes_throttled += 1;
        }
        self.throttles[ThrottlingReason::of(limit, read).index()] += 1;
        if limit == Limit::OnDemandPeak {
            self.peak_throttles += 1;
        }
        self.totals.throttled(key, read);
    }

    /// Counts an admitted call's consumption.
    pub(super) fn consumed(
        &mut self,
        key: &Arc<str>,
        partition: usize,
        read: bool,
        half_units: u64,
    ) {
        let p = &mut self.partitions[partition].stats;
        if read {
            p.consumed_read_half_units += half_units;
        } else {
            p.consumed_write_half_units += half_units;
        }
        self.totals.consumed(key, read, half_units);
    }
}

pub(super) fn partition_of(key: &str, partitions: u32) -> usize {
    let hash = foldhash::fast::FixedState::with_seed(PARTITION_HASH_SEED).hash_one(key);
    (hash % u64::from(partitions.max(1))) as usize
}
