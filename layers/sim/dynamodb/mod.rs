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

mod builder;
mod call;
mod config;
mod core;
mod service;
mod state;
mod stats;

pub use self::builder::DynamoSimBuilder;
pub use self::call::{DynamoCall, DynamoReply, Op};
pub use self::config::{DynamoConfig, TableConfig, TableConfigBuilder};
pub use self::core::DynamoSim;
pub use self::service::DynamoFuture;
pub use self::stats::{DynamoStats, PartitionStats, TableStats};

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
