//! DynamoDB tables in provisioned mode: RCU and WCU per second, burst credit, partitions with
//! hashed keys, `ProvisionedThroughputExceededException`, consumed capacity.
//!
//! # Capacity model
//!
//! - A table's capacity is split evenly across its partitions, each capped at 3000 RCU and
//!   1000 WCU ([`PARTITION_MAX_RCU`], [`PARTITION_MAX_WCU`]). The default partition count is
//!   the one DynamoDB computes from throughput, `ceil(RCU / 3000 + WCU / 1000)` (at least 1;
//!   table size is not modelled); [`TableConfigBuilder::partitions`] sets it. A key goes to
//!   `hash(key) % partitions` with a fixed-seed `foldhash`, so the mapping is stable across
//!   runs and a hot key throttles on its partition while the table as a whole has room.
//! - Each partition has a read and a write bucket refilled continuously at its share of the
//!   capacity per second. It holds one second of capacity plus up to `burst_seconds` (300 by
//!   default) of unused capacity as burst credit, and starts with one second's worth: credit
//!   has to accrue. As in DynamoDB, capacity is checked before an operation and charged after,
//!   so an operation is admitted while its bucket is above zero and a large item can take the
//!   bucket into debt, which later operations wait out.
//! - Adaptive capacity (DynamoDB lending idle partitions' capacity to a hot one after a while)
//!   is not modelled: the simulator shows the hot-key problem at its plainest.
//! - Consumed capacity: a write is `ceil(bytes / 1 KiB)` WCU, a read `ceil(bytes / 4 KiB)` RCU,
//!   halved for an eventually consistent read; at least one unit (half for an eventually
//!   consistent read). Arithmetic is exact (integers in half-unit-nanoseconds).
//!
//! Rejections: `ProvisionedThroughputExceededException` (400, "The level of configured
//! provisioned throughput for the table was exceeded. Consider increasing your provisioning
//! level with the UpdateTable API."), and `ResourceNotFoundException` (400, "Requested resource
//! not found") for an unknown table. No `Retry-After`.

use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::StatusCode;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::{
    CallerStats, Callers, Rejection, SimCounts, SimError, after, elapsed, lock, serde_time,
};
use crate::ConfigError;

/// The most read capacity one partition serves per second.
pub const PARTITION_MAX_RCU: u64 = 3_000;
/// The most write capacity one partition serves per second.
pub const PARTITION_MAX_WCU: u64 = 1_000;
/// The most partitions a simulated table may have.
pub const MAX_PARTITIONS: u32 = 10_000;
/// The most seconds of burst credit a table may bank.
pub const MAX_BURST_SECONDS: u64 = 86_400;
/// The largest provisioned RCU or WCU a simulated table may have.
pub const MAX_CAPACITY: u64 = 10_000_000;

const NANOS_PER_SEC: i128 = 1_000_000_000;
/// The seed of the key-to-partition hash: fixed, so a key maps to the same partition on every
/// run.
const PARTITION_HASH_SEED: u64 = 0x5EED_D1AB_0000_0001;

fn default_burst_seconds() -> u64 {
    300
}
fn default_latency() -> Duration {
    Duration::from_millis(5)
}

/// One provisioned table.
///
/// Deserialized as `{ name, rcu, wcu, partitions?, burst_seconds?, latency_ms? }`; validated
/// when the simulator is built.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TableConfig {
    /// The table name.
    pub name: String,
    /// Provisioned read capacity units per second.
    pub rcu: u64,
    /// Provisioned write capacity units per second.
    pub wcu: u64,
    /// The partition count (default: computed from throughput, as DynamoDB does).
    #[serde(default)]
    pub partitions: Option<u32>,
    /// Seconds of unused capacity kept as burst credit (default 300).
    #[serde(default = "default_burst_seconds")]
    pub burst_seconds: u64,
    /// How long every answer takes (default 5 ms).
    #[serde(
        rename = "latency_ms",
        with = "serde_time::millis",
        default = "default_latency"
    )]
    pub latency: Duration,
}

impl TableConfig {
    /// A builder for the table `name`; `rcu` and `wcu` must be set.
    pub fn builder(name: impl Into<String>) -> TableConfigBuilder {
        TableConfigBuilder {
            config: TableConfig {
                name: name.into(),
                rcu: 0,
                wcu: 0,
                partitions: None,
                burst_seconds: default_burst_seconds(),
                latency: default_latency(),
            },
        }
    }

    /// Checks every field; the error names the first bad one and its value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.trim().is_empty() {
            return Err(ConfigError::new("name", &self.name, "must not be empty"));
        }
        for (field, value) in [("rcu", self.rcu), ("wcu", self.wcu)] {
            if value == 0 {
                return Err(ConfigError::new(field, value, "must be at least 1"));
            }
            if value > MAX_CAPACITY {
                return Err(ConfigError::new(field, value, "must be at most 10,000,000"));
            }
        }
        if let Some(p) = self.partitions
            && !(1..=MAX_PARTITIONS).contains(&p)
        {
            return Err(ConfigError::new(
                "partitions",
                p,
                "must be between 1 and 10,000",
            ));
        }
        if self.burst_seconds > MAX_BURST_SECONDS {
            return Err(ConfigError::new(
                "burst_seconds",
                self.burst_seconds,
                "must be at most 86,400",
            ));
        }
        Ok(())
    }

    /// The partition count: the configured one, or `ceil(RCU / 3000 + WCU / 1000)`.
    pub fn partition_count(&self) -> u32 {
        self.partitions.unwrap_or_else(|| {
            let needed = (self.rcu + 3 * self.wcu).div_ceil(PARTITION_MAX_RCU).max(1);
            u32::try_from(needed)
                .unwrap_or(MAX_PARTITIONS)
                .min(MAX_PARTITIONS)
        })
    }
}

/// Builds a validated [`TableConfig`].
#[derive(Clone, Debug)]
pub struct TableConfigBuilder {
    config: TableConfig,
}

impl TableConfigBuilder {
    /// Provisioned read capacity units per second.
    pub fn rcu(mut self, rcu: u64) -> Self {
        self.config.rcu = rcu;
        self
    }
    /// Provisioned write capacity units per second.
    pub fn wcu(mut self, wcu: u64) -> Self {
        self.config.wcu = wcu;
        self
    }
    /// The partition count; capacity is split evenly across them.
    pub fn partitions(mut self, partitions: u32) -> Self {
        self.config.partitions = Some(partitions);
        self
    }
    /// Seconds of unused capacity kept as burst credit.
    pub fn burst_seconds(mut self, seconds: u64) -> Self {
        self.config.burst_seconds = seconds;
        self
    }
    /// How long every answer takes.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.config.latency = latency;
        self
    }
    /// Validates the configuration.
    pub fn build(self) -> Result<TableConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

/// Simulated DynamoDB tables, as a configuration file describes them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DynamoConfig {
    /// The tables.
    pub tables: Vec<TableConfig>,
}

/// Builds a [`DynamoSim`].
#[derive(Clone, Debug, Default)]
pub struct DynamoSimBuilder {
    tables: Vec<TableConfig>,
    start: Option<Instant>,
}

impl DynamoSimBuilder {
    /// Adds a table.
    pub fn table(mut self, table: TableConfig) -> Self {
        self.tables.push(table);
        self
    }
    /// Adds tables.
    pub fn tables(mut self, tables: impl IntoIterator<Item = TableConfig>) -> Self {
        self.tables.extend(tables);
        self
    }
    /// The simulator's start (default: the moment [`build`](Self::build) runs).
    pub fn start(mut self, start: Instant) -> Self {
        self.start = Some(start);
        self
    }
    /// Validates every table and builds the simulator.
    pub fn build(self) -> Result<DynamoSim, ConfigError> {
        if self.tables.is_empty() {
            return Err(ConfigError::new(
                "tables",
                0,
                "at least one table is needed",
            ));
        }
        for (i, table) in self.tables.iter().enumerate() {
            table.validate()?;
            if self.tables[..i].iter().any(|t| t.name == table.name) {
                return Err(ConfigError::new(
                    "tables",
                    &table.name,
                    "the same table name appears twice",
                ));
            }
        }
        let start = self.start.unwrap_or_else(Instant::now);
        let states = self
            .tables
            .iter()
            .map(|t| TableState::new(t, start))
            .collect();
        let tables = self
            .tables
            .into_iter()
            .map(|config| Table {
                name: config.name.as_str().into(),
                partitions: config.partition_count(),
                config,
            })
            .collect();
        Ok(DynamoSim {
            inner: Arc::new(Inner {
                start,
                tables,
                state: Mutex::new(State {
                    tables: states,
                    callers: Callers::default(),
                }),
                inspections: AtomicU64::new(0),
            }),
        })
    }
}

/// What a call does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// A read (`GetItem`, `Query`, `Scan` page): RCU.
    Read {
        /// Strongly consistent (full RCU) or eventually consistent (half).
        consistent: bool,
    },
    /// A write (`PutItem`, `UpdateItem`, `DeleteItem`): WCU.
    Write,
}

/// One call to a table: what DynamoDB's capacity accounting sees of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynamoCall {
    /// The table name.
    pub table: Arc<str>,
    /// The partition key, rendered as a string (the front renders numbers and binary keys).
    pub partition_key: Arc<str>,
    /// Read or write.
    pub op: Op,
    /// The item size in bytes.
    pub item_bytes: u64,
    /// The calling application's label, for per-caller statistics.
    pub caller: Option<Arc<str>>,
}

impl DynamoCall {
    /// A write of `item_bytes` under `partition_key`.
    pub fn write(
        table: impl Into<Arc<str>>,
        partition_key: impl Into<Arc<str>>,
        item_bytes: u64,
    ) -> Self {
        DynamoCall {
            table: table.into(),
            partition_key: partition_key.into(),
            op: Op::Write,
            item_bytes,
            caller: None,
        }
    }

    /// A read of `item_bytes` under `partition_key`.
    pub fn read(
        table: impl Into<Arc<str>>,
        partition_key: impl Into<Arc<str>>,
        item_bytes: u64,
        consistent: bool,
    ) -> Self {
        DynamoCall {
            op: Op::Read { consistent },
            ..DynamoCall::write(table, partition_key, item_bytes)
        }
    }

    /// Labels the call with the calling application.
    pub fn caller(mut self, caller: impl Into<Arc<str>>) -> Self {
        self.caller = Some(caller.into());
        self
    }

    /// The capacity the call consumes, in half units: writes `ceil(bytes / 1 KiB)` WCU, reads
    /// `ceil(bytes / 4 KiB)` RCU, halved when eventually consistent, at least one unit (half).
    fn half_units(&self) -> u64 {
        match self.op {
            Op::Write => crate::item_size::write_units(self.item_bytes) * 2,
            Op::Read { consistent } => {
                self.item_bytes.div_ceil(4096).max(1) * if consistent { 2 } else { 1 }
            }
        }
    }

    /// The capacity units the call consumes when admitted (`ConsumedCapacity.CapacityUnits`).
    pub fn capacity_units(&self) -> f64 {
        self.half_units() as f64 / 2.0
    }
}

/// A successful call's answer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DynamoReply {
    /// Capacity units consumed (`ConsumedCapacity.CapacityUnits`).
    pub consumed_capacity: f64,
}

/// Simulated DynamoDB tables, shared by all clones and all callers.
///
/// As a [`tower::Service`] it answers a [`DynamoCall`] after the table's latency with a
/// [`DynamoReply`] or a [`SimError`]; [`DynamoSim::charge`] is the synchronous core, which an
/// HTTP front calls before forwarding an admitted call to a real store.
#[derive(Clone, Debug)]
pub struct DynamoSim {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    start: Instant,
    tables: Vec<Table>,
    state: Mutex<State>,
    /// Calls to the methods that read the simulator's set-up or state (see
    /// [`DynamoSim::inspections`]).
    inspections: AtomicU64,
}

impl Inner {
    fn inspected(&self) {
        self.inspections.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Table {
    config: TableConfig,
    name: Arc<str>,
    partitions: u32,
}

#[derive(Debug)]
struct State {
    tables: Vec<TableState>,
    callers: Callers,
}

#[derive(Debug)]
struct TableState {
    reads: SimCounts,
    writes: SimCounts,
    partitions: Vec<PartitionState>,
}

#[derive(Debug)]
struct PartitionState {
    read: Bucket,
    write: Bucket,
    stats: PartitionStats,
}

/// A refilling bucket that allows debt. The level is in half-units × nanoseconds ×
/// partitions, so that a partition's refill (`capacity / partitions` units per second) is the
/// integer `2 × capacity` per nanosecond.
#[derive(Debug)]
struct Bucket {
    level: i128,
    max: i128,
    /// Added per nanosecond.
    rate: i128,
    /// One half-unit.
    half_unit: i128,
    last: Instant,
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

    fn refill(&mut self, now: Instant) {
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
    fn try_charge(&mut self, half_units: u64, now: Instant) -> bool {
        self.refill(now);
        if self.level <= 0 {
            return false;
        }
        self.level -= i128::from(half_units) * self.half_unit;
        true
    }

    /// The level in units (for tests and statistics).
    fn units(&self) -> f64 {
        self.level as f64 / (2 * self.half_unit) as f64
    }
}

impl TableState {
    fn new(config: &TableConfig, start: Instant) -> Self {
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

fn partition_of(key: &str, partitions: u32) -> usize {
    let hash = foldhash::fast::FixedState::with_seed(PARTITION_HASH_SEED).hash_one(key);
    (hash % u64::from(partitions.max(1))) as usize
}

impl DynamoSim {
    /// A builder; add at least one table.
    pub fn builder() -> DynamoSimBuilder {
        DynamoSimBuilder::default()
    }

    /// Builds a simulator from a deserialized configuration, starting now.
    pub fn from_config(config: DynamoConfig) -> Result<Self, ConfigError> {
        DynamoSim::builder().tables(config.tables).build()
    }

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

/// Statistics of one partition.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct PartitionStats {
    /// Reads throttled on this partition.
    pub reads_throttled: u64,
    /// Writes throttled on this partition.
    pub writes_throttled: u64,
    consumed_read_half_units: u64,
    consumed_write_half_units: u64,
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

impl tower_service::Service<DynamoCall> for DynamoSim {
    type Response = DynamoReply;
    type Error = SimError;
    type Future = DynamoFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), SimError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: DynamoCall) -> DynamoFuture {
        let now = Instant::now();
        let latency = self
            .inner
            .tables
            .iter()
            .find(|t| *t.name == *call.table)
            .map_or_else(default_latency, |t| t.config.latency);
        let result = self
            .charge(&call, now)
            .map(|consumed_capacity| DynamoReply { consumed_capacity });
        DynamoFuture {
            sleep: tokio::time::sleep_until(after(now, latency)),
            result: Some(result),
        }
    }
}

pin_project! {
    /// The future of a [`DynamoSim`] call: the answer, after the table's latency.
    pub struct DynamoFuture {
        #[pin]
        sleep: Sleep,
        result: Option<Result<DynamoReply, SimError>>,
    }
}

impl Future for DynamoFuture {
    type Output = Result<DynamoReply, SimError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        ready!(this.sleep.poll(cx));
        Poll::Ready(
            this.result
                .take()
                .expect("DynamoFuture polled after completion"),
        )
    }
}

impl std::fmt::Debug for DynamoFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoFuture")
            .field("result", &self.result)
            .finish_non_exhaustive()
    }
}
