//! [`DynamoSim`]: the simulated tables and their synchronous core, [`DynamoSim::charge`],
//! which admits or throttles a call at a given instant and never sleeps.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::StatusCode;
use tokio::time::Instant;

use super::reason::throttle_error;
use super::state::{Inner, partition_of};
use super::{CapacityModel, DynamoCall, DynamoStats, Op, PartitionStats, TableStats};
use crate::sim::{Rejection, SimError, elapsed, lock};

/// How many of the heaviest keys a snapshot lists.
const HOT_KEYS: usize = 10;

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

    /// The synchronous core: admits the call at `now` under its table's capacity model
    /// ([`CapacityModel`], [`BillingMode`](super::BillingMode)) and returns the capacity units consumed, or rejects it with
    /// the throttling reason attached ([`SimError::throttling_reason`]). Never sleeps.
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
        let config = &inner.tables[index];
        let table = &mut state.tables[index];
        let partition = partition_of(&call.partition_key, config.partitions);
        let half_units = call.half_units();
        let read = matches!(call.op, Op::Read { .. });
        let second = elapsed(inner.start, now).as_secs();
        if let Err(limit) = table.admit(
            &config.config,
            &call.partition_key,
            partition,
            read,
            half_units,
            now,
            second,
        ) {
            if read {
                &mut table.reads
            } else {
                &mut table.writes
            }
            .count(Rejection::Capacity);
            table.throttled(&call.partition_key, partition, read, limit);
            state.callers.count(&call.caller, Rejection::Capacity);
            return Err(throttle_error(
                limit,
                read,
                config.config.is_on_demand(),
                &config.arn,
            ));
        }
        let counts = if read {
            &mut table.reads
        } else {
            &mut table.writes
        };
        counts.admitted += 1;
        counts.completed += 1;
        table.consumed(&call.partition_key, partition, read, half_units);
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
            .map(|(table, st)| {
                let second = elapsed(inner.start, now).as_secs();
                let even_split = table.config.capacity_model == CapacityModel::EvenSplit
                    && st.on_demand.is_none();
                st.read.refill(now);
                st.write.refill(now);
                let (table_read, table_write) = (st.read.units(), st.write.units());
                let partitions: Vec<PartitionStats> = st
                    .partitions
                    .iter_mut()
                    .map(|p| {
                        p.read.refill(now);
                        p.write.refill(now);
                        let (read_credit, write_credit) = if even_split {
                            (p.read.units(), p.write.units())
                        } else {
                            (table_read, table_write)
                        };
                        PartitionStats {
                            read_credit,
                            write_credit,
                            ..p.stats
                        }
                    })
                    .collect();
                let (read_credit, write_credit) = if even_split {
                    (
                        partitions.iter().map(|p| p.read_credit).sum(),
                        partitions.iter().map(|p| p.write_credit).sum(),
                    )
                } else {
                    (table_read, table_write)
                };
                TableStats {
                    name: table.name.clone(),
                    rcu: table.config.rcu,
                    wcu: table.config.wcu,
                    elapsed: elapsed(inner.start, now),
                    reads: st.reads,
                    writes: st.writes,
                    partitions,
                    read_credit,
                    write_credit,
                    throttles: st.throttles,
                    on_demand_peak_throttles: st.peak_throttles,
                    previous_peak: st.on_demand.as_mut().map(|o| o.previous_peak(second)),
                    hot_keys: st.totals.top(HOT_KEYS),
                }
            })
            .collect();
        DynamoStats {
            tables,
            callers: state.callers.snapshot(),
        }
    }
}
