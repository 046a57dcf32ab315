//! What a snapshot of the simulator reports: per partition ([`PartitionStats`]), per table
//! ([`TableStats`]) and for all of them ([`DynamoStats`]).

use std::sync::Arc;
use std::time::Duration;

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
    /// Read capacity units in the bucket at the snapshot (negative: debt).
    pub read_credit: f64,
    /// Write capacity units in the bucket at the snapshot (negative: debt).
    pub write_credit: f64,
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
}

impl TableStats {
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
