//! DynamoDB tables as they throttle today: provisioned RCU and WCU with burst credit and
//! adaptive capacity (or the even split of before), the per-key ceiling, on-demand tables,
//! `ThrottlingReasons`, consumed capacity.
//!
//! # Capacity model
//!
//! - **Adaptive capacity** ([`CapacityModel::Adaptive`], the default). A provisioned table
//!   has one read and one write bucket refilled continuously at its RCU / WCU. Any key may
//!   use the table's unused capacity at once: "adaptive capacity enables your application to
//!   continue reading and writing to hot partitions without being throttled, provided that
//!   traffic does not exceed your table's total provisioned capacity or the partition maximum
//!   capacity", and it isolates frequently accessed items
//!   (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/burst-adaptive-capacity.html>).
//!   So the simulator treats each partition key as its own partition: one key gets at most
//!   the partition maximum of 3,000 RCU / 1,000 WCU per second ([`PARTITION_MAX_RCU`],
//!   [`PARTITION_MAX_WCU`]; "traffic against a given partition key does not exceed 3000 RCUs
//!   or 1000 WCUs",
//!   <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html>),
//!   one second's worth in a bucket of its own, whatever the table has free. A call is
//!   admitted when its key's bucket and then the table's are above zero, and charged to both.
//! - **The even split** ([`CapacityModel::EvenSplit`], DynamoDB before adaptive capacity).
//!   The table's capacity is split evenly across its partitions, each capped at the partition
//!   maximum and with burst credit of its own; a key goes to `hash(key) % partitions` with a
//!   fixed-seed `foldhash`, so the mapping is stable across runs and a hot key throttles on
//!   its partition's share while the table as a whole has room.
//! - **Partitions.** The default count is the one DynamoDB computes from throughput,
//!   `ceil(RCU / 3000 + WCU / 1000)` (at least 1; table size is not modelled);
//!   [`TableConfigBuilder::partitions`] sets it. Under adaptive capacity partitions only group
//!   the statistics.
//! - **Burst credit.** A bucket holds one second of capacity plus up to `burst_seconds` (300
//!   by default: "DynamoDB currently retains up to five minutes (300 seconds) of unused read
//!   and write capacity", burst-adaptive-capacity page above) of unused capacity, and starts
//!   with one second's worth: credit has to accrue. Under adaptive capacity the credit is the
//!   table's; a key's ceiling has none. As in DynamoDB, capacity is checked before an
//!   operation and charged after, so an operation is admitted while its bucket is above zero
//!   and a large item can take the bucket into debt, which later operations wait out.
//! - **On-demand tables** ([`BillingMode::PayPerRequest`]): no provisioned capacity; the
//!   table takes up to twice its previous peak per second at once (a new table's previous
//!   peak is half of "4,000 writes per second and 12,000 reads per second",
//!   [`NEW_ON_DEMAND_PEAK_WCU`], [`NEW_ON_DEMAND_PEAK_RCU`]), and a new peak counts 30
//!   minutes later; an optional `MaxReadRequestUnits` / `MaxWriteRequestUnits` per second
//!   caps it (see `on_demand.rs` for the sources). The per-key ceiling applies as above
//!   ("Adaptive capacity applies to on-demand mode and provisioned capacity", bp-partition-key-design page).
//! - Consumed capacity: a write is `ceil(bytes / 1 KiB)` WCU, a read `ceil(bytes / 4 KiB)`
//!   RCU, halved for an eventually consistent read; at least one unit (half for an eventually
//!   consistent read). Reads and writes never share a bucket. Arithmetic is exact (integers in
//!   half-unit-nanoseconds).
//!
//! # Rejections
//!
//! Every throttle carries a [`ThrottlingReason`] and the table's ARN
//! (`arn:aws:dynamodb:REGION:ACCOUNT:table/NAME`, region and account from
//! [`DynamoSimBuilder::region`] / [`DynamoSimBuilder::account_id`]), read with
//! [`SimError::throttling_reason`](crate::sim::SimError::throttling_reason) and sent by the
//! HTTP front as `ThrottlingReasons` (see `reason.rs` for the sources):
//!
//! | Limit | Error (HTTP 400) | Reason |
//! |---|---|---|
//! | provisioned table over its RCU/WCU and credit | `ProvisionedThroughputExceededException` | `Table{Read,Write}ProvisionedThroughputExceeded` |
//! | one key over 3,000 RCU / 1,000 WCU per second (even split: its partition's share) | `ProvisionedThroughputExceededException` | `Table{Read,Write}KeyRangeThroughputExceeded` |
//! | on-demand table over twice its previous peak | `ProvisionedThroughputExceededException` | `Table{Read,Write}KeyRangeThroughputExceeded` |
//! | on-demand table over its configured maximum | `ThrottlingException` | `Table{Read,Write}MaxOnDemandThroughputExceeded` |
//!
//! DynamoDB's throttling guide names four limit types (key range, provisioned, account,
//! on-demand maximum: <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/TroubleshootingThrottling.html>);
//! an on-demand table above twice its previous peak throttles on partitions that have not
//! split yet, hence the key-range reason. Account limits are not modelled. Messages:
//! provisioned tables "The level of configured provisioned throughput for the table was
//! exceeded. Consider increasing your provisioning level with the UpdateTable API.", on-demand
//! tables DynamoDB's "Throughput exceeds the current capacity of your table or index. …", the
//! on-demand maximum a message of the simulator's. `ResourceNotFoundException` (400,
//! "Requested resource not found") for an unknown table. No `Retry-After`.

mod builder;
mod call;
mod config;
mod core;
mod keys;
mod on_demand;
mod reason;
mod service;
mod state;
mod stats;

pub use self::builder::DynamoSimBuilder;
pub use self::call::{DynamoCall, DynamoReply, Op};
pub use self::config::{BillingMode, CapacityModel, DynamoConfig, TableConfig, TableConfigBuilder};
pub use self::core::DynamoSim;
pub use self::reason::ThrottlingReason;
pub use self::service::DynamoFuture;
pub use self::stats::{DynamoStats, KeyStats, PartitionStats, TableStats};

/// The most read capacity one partition (and so one key) serves per second.
pub const PARTITION_MAX_RCU: u64 = 3_000;
/// The most write capacity one partition (and so one key) serves per second.
pub const PARTITION_MAX_WCU: u64 = 1_000;
/// A new on-demand table's previous read peak: it sustains twice that, 12,000 reads per
/// second (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/pre-warming-on-demand-capacity-mode.html>).
pub const NEW_ON_DEMAND_PEAK_RCU: u64 = 6_000;
/// A new on-demand table's previous write peak: it sustains twice that, 4,000 writes per
/// second (same page).
pub const NEW_ON_DEMAND_PEAK_WCU: u64 = 2_000;
/// The region in table ARNs unless the builder sets one.
pub const DEFAULT_REGION: &str = "us-east-1";
/// The account id in table ARNs unless the builder sets one.
pub const DEFAULT_ACCOUNT_ID: &str = "123456789012";
/// The most partitions a simulated table may have.
pub const MAX_PARTITIONS: u32 = 10_000;
/// The most seconds of burst credit a table may bank.
pub const MAX_BURST_SECONDS: u64 = 86_400;
/// The largest provisioned RCU or WCU a simulated table may have.
pub const MAX_CAPACITY: u64 = 10_000_000;
