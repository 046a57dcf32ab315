//! What a snapshot of the simulator reports: per partition ([`PartitionStats`]), per key
//! for the heaviest keys ([`KeyStats`]), per table ([`TableStats`]) and for all of them
//! ([`DynamoStats`]).

use std::sync::Arc;
use std::time::Duration;

use super::ThrottlingReason;
use crate::sim::{CallerStats, SimCounts};

/// Statistics of one partition.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct PartitionStats {
    /// Reads throttled on this partition.
    pub reads_throttled: u64,
    /// Writes throttled on this partition.
    pub writes_throttled: u64,
    pub(super) consumed_read_half_units: u64,
    pub(super) consumed_write_half_units: u64,
    /// Read capacity units in the bucket at the snapshot (negative: debt): the partition's
    /// in the even split, the table's (which every partition shares) under adaptive capacity.
    pub read_credit: f64,
    /// Write capacity units in the bucket at the snapshot (negative: debt), as `read_credit`.
    pub write_credit: f64,
}

/// What one partition key consumed and had throttled (keys are kept in bounded memory: a
/// heavy key's figures are exact, a light one may have been forgotten).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct KeyStats {
    /// The partition key, as the call rendered it.
    pub key: Arc<str>,
    /// Its reads admitted.
    pub reads: u64,
    /// Its writes admitted.
    pub writes: u64,
    /// Read capacity units its admitted reads consumed.
    pub consumed_rcu: f64,
    /// Write capacity units its admitted writes consumed.
    pub consumed_wcu: f64,
    /// Its reads throttled (any reason).
    pub reads_throttled: u64,
    /// Its writes throttled (any reason).
    pub writes_throttled: u64,
}

impl PartitionStats {
    /// Read capacity units consumed on this partition.
    pub fn consumed_rcu(&self) -> f64 {
        self.consumed_read_half_units as f64 / 2.0
    }

    /// Write capacity units consumed on this partition.
    pub fn consumed_wcu(&self) -> f64 {
        self.consumed_write_half_units as f64 / 2.0
    }
}

/// Statistics of one table.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct TableStats {
    /// The table name.
    pub name: Arc<str>,
    /// Provisioned RCU.
    pub rcu: u64,
    /// Provisioned WCU.
    pub wcu: u64,
    /// Time from the simulator's start to the snapshot.
    pub elapsed: Duration,
    /// Reads by what happened to them.
    pub reads: SimCounts,
    /// Writes by what happened to them.
    pub writes: SimCounts,
    /// Per partition, in partition order.
    pub partitions: Vec<PartitionStats>,
    /// Read capacity units of burst credit at the snapshot (negative: debt): the table's
    /// bucket, or in the even split the sum of its partitions'.
    pub read_credit: f64,
    /// Write capacity units of burst credit at the snapshot, as `read_credit`.
    pub write_credit: f64,
    pub(super) throttles: [u64; 6],
    /// On-demand throttles above twice the previous peak (also counted under the key-range
    /// reasons, which DynamoDB sends for them).
    pub on_demand_peak_throttles: u64,
    /// On-demand: the previous peak in force at the snapshot, (RCU, WCU) per second.
    pub previous_peak: Option<(f64, f64)>,
    /// The heaviest keys (by capacity consumed plus throttles), heaviest first, at most ten.
    pub hot_keys: Vec<KeyStats>,
}

impl TableStats {
    /// Calls throttled for `reason`.
    pub fn throttled(&self, reason: ThrottlingReason) -> u64 {
        self.throttles[reason.index()]
    }

    /// The statistics of `key`, if it is among [`hot_keys`](Self::hot_keys).
    pub fn key(&self, key: &str) -> Option<&KeyStats> {
        self.hot_keys.iter().find(|k| &*k.key == key)
    }

    /// Read capacity units consumed.
    pub fn consumed_rcu(&self) -> f64 {
        self.partitions
            .iter()
            .map(PartitionStats::consumed_rcu)
            .sum()
    }

    /// Write capacity units consumed.
    pub fn consumed_wcu(&self) -> f64 {
        self.partitions
            .iter()
            .map(PartitionStats::consumed_wcu)
            .sum()
    }

    /// WCU consumed over `wcu × elapsed seconds` (0 before any time has passed).
    pub fn write_utilization(&self) -> f64 {
        utilization(self.consumed_wcu(), self.wcu, self.elapsed)
    }

    /// RCU consumed over `rcu × elapsed seconds` (0 before any time has passed).
    pub fn read_utilization(&self) -> f64 {
        utilization(self.consumed_rcu(), self.rcu, self.elapsed)
    }
}

fn utilization(consumed: f64, capacity: u64, elapsed: Duration) -> f64 {
    let available = capacity as f64 * elapsed.as_secs_f64();
    if available > 0.0 {
        consumed / available
    } else {
        0.0
    }
}

/// A snapshot of a [`DynamoSim`].
///
/// [`DynamoSim`]: super::DynamoSim
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct DynamoStats {
    /// Per table, in configuration order.
    pub tables: Vec<TableStats>,
    /// Per caller label.
    pub callers: Vec<CallerStats>,
}

impl DynamoStats {
    /// The statistics of one table.
    pub fn table(&self, name: &str) -> Option<&TableStats> {
        self.tables.iter().find(|t| &*t.name == name)
    }

    /// The statistics of one caller.
    pub fn caller(&self, caller: &str) -> Option<&CallerStats> {
        self.callers.iter().find(|c| &*c.caller == caller)
    }
}
