//! [`DynamoSim`]: the simulated tables and their synchronous core, [`DynamoSim::charge`],
//! which admits or throttles a call at a given instant and never sleeps.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::StatusCode;
use tokio::time::Instant;

use super::state::{Inner, partition_of};
use super::{DynamoCall, DynamoStats, Op, PartitionStats, TableStats};
use crate::sim::{Rejection, SimError, elapsed, lock};

/// Simulated DynamoDB tables, shared by all clones and all callers.
///
/// As a [`tower::Service`] it answers a [`DynamoCall`] after the table's latency with a
/// [`DynamoReply`] or a [`SimError`]; [`DynamoSim::charge`] is the synchronous core, which an
/// HTTP front calls before forwarding an admitted call to a real store.
///
/// [`DynamoReply`]: super::DynamoReply
#[derive(Clone, Debug)]
pub struct DynamoSim {
    pub(super) inner: Arc<Inner>,
}

impl DynamoSim {
    /// The instant the simulator started.
    pub fn started_at(&self) -> Instant {
        self.inner.inspected();
        self.inner.start
    }

    /// How many times the set-up or state of this simulator was read, by any clone, through
    /// [`started_at`](Self::started_at), [`partition`](Self::partition),
    /// [`stats`](Self::stats) or [`stats_at`](Self::stats_at). Calls themselves are not
    /// counted. For harnesses that must show a client was configured without looking.
    pub fn inspections(&self) -> u64 {
        self.inner.inspections.load(Ordering::Relaxed)
    }

    /// Whether the simulator has `table` (the front's own check; not an inspection).
    pub(crate) fn has_table(&self, table: &str) -> bool {
        self.inner.tables.iter().any(|t| &*t.name == table)
    }

    /// The partition a key maps to in `table` (`None` for an unknown table).
    pub fn partition(&self, table: &str, partition_key: &str) -> Option<usize> {
        self.inner.inspected();
        let table = self.inner.tables.iter().find(|t| &*t.name == table)?;
        Some(partition_of(partition_key, table.partitions))
    }

    /// The synchronous core: charges the call against its partition's bucket at `now` and
    /// returns the capacity units consumed, or rejects it. Never sleeps.
    pub fn charge(&self, call: &DynamoCall, now: Instant) -> Result<f64, SimError> {
        let inner = &self.inner;
        let mut state = lock(&inner.state);
        let state = &mut *state;
        let Some(index) = inner.tables.iter().position(|t| *t.name == *call.table) else {
            state.callers.count(&call.caller, Rejection::Invalid);
            return Err(SimError::new(
                StatusCode::BAD_REQUEST,
                "ResourceNotFoundException",
                "Requested resource not found",
            ));
        };
        let table = &mut state.tables[index];
        let partition = partition_of(&call.partition_key, inner.tables[index].partitions);
        let half_units = call.half_units();
        let p = &mut table.partitions[partition];
        let (bucket, counts, throttles, consumed) = match call.op {
            Op::Read { .. } => (
                &mut p.read,
                &mut table.reads,
                &mut p.stats.reads_throttled,
                &mut p.stats.consumed_read_half_units,
            ),
            Op::Write => (
                &mut p.write,
                &mut table.writes,
                &mut p.stats.writes_throttled,
                &mut p.stats.consumed_write_half_units,
            ),
        };
        if !bucket.try_charge(half_units, now) {
            counts.count(Rejection::Capacity);
            *throttles += 1;
            state.callers.count(&call.caller, Rejection::Capacity);
            return Err(SimError::new(
                StatusCode::BAD_REQUEST,
                "ProvisionedThroughputExceededException",
                "The level of configured provisioned throughput for the table was exceeded. \
                 Consider increasing your provisioning level with the UpdateTable API.",
            ));
        }
        counts.admitted += 1;
        counts.completed += 1;
        *consumed += half_units;
        let units = half_units as f64 / 2.0;
        if let Some((counts, spent)) = state.callers.entry(&call.caller) {
            counts.admitted += 1;
            counts.completed += 1;
            *spent += units;
        }
        Ok(units)
    }

    /// A snapshot of every table's and caller's statistics.
    pub fn stats(&self) -> DynamoStats {
        self.stats_at(Instant::now())
    }

    /// A snapshot at `now` (burst credit refilled up to `now`).
    pub fn stats_at(&self, now: Instant) -> DynamoStats {
        let inner = &self.inner;
        inner.inspected();
        let mut state = lock(&inner.state);
        let tables = inner
            .tables
            .iter()
            .zip(state.tables.iter_mut())
            .map(|(table, st)| TableStats {
                name: table.name.clone(),
                rcu: table.config.rcu,
                wcu: table.config.wcu,
                elapsed: elapsed(inner.start, now),
                reads: st.reads,
                writes: st.writes,
                partitions: st
                    .partitions
                    .iter_mut()
                    .map(|p| {
                        p.read.refill(now);
                        p.write.refill(now);
                        PartitionStats {
                            read_credit: p.read.units(),
                            write_credit: p.write.units(),
                            ..p.stats
                        }
                    })
                    .collect(),
            })
            .collect();
        DynamoStats {
            tables,
            callers: state.callers.snapshot(),
        }
    }
}
