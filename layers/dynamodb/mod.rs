//! DynamoDB's capacity as quota keys and units: reads and writes of a table (and of a global
//! secondary index) on separate keys, each limited by the number the console shows for it, and
//! what each operation costs in them.
//!
//! DynamoDB provisions, spends and throttles read capacity units (RCU) and write capacity
//! units (WCU) apart, per table and per global secondary index
//! ([provisioned capacity mode](https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/provisioned-capacity-mode.html)).
//! So a table is two quota keys, [`read_key`] (`"orders:read"`) and [`write_key`]
//! (`"orders:write"`), and an index two more ([`index_key`]: `"orders/by-date:read"`). Table
//! and index names are 3 to 255 characters of `a-z`, `A-Z`, `0-9`, `_`, `-` and `.`
//! ([naming rules](https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.NamingRulesDataTypes.html)),
//! never `:` or `/`, so no two keys collide. One line per table gives both their limits,
//! counted as DynamoDB counts ([`Profile::DynamoDb`]: a token bucket per second with 300 s of
//! burst, starting with one second of it):
//!
//! ```
//! use std::sync::Arc;
//! use tower_headroom::Profile;
//! use tower_headroom::admission::Quota;
//! use tower_headroom::dynamodb::{self, TableLimits};
//!
//! let quota: Quota<Arc<str>> = Quota::builder(Profile::DynamoDb.limit().units(100).build()?)
//!     .table("orders", 100, 100)? // 100 RCU, 100 WCU
//!     .table("users", 25, 5)?
//!     .index("orders", "by-date", 50, 50)?
//!     .build();
//! assert_eq!(dynamodb::read_key("orders"), "orders:read");
//! # let _ = quota;
//! # Ok::<(), tower_headroom::ConfigError>(())
//! ```
//!
//! # Table names and table ARNs
//!
//! Wherever a request names a table it may give the table's ARN instead: "You can also provide
//! the Amazon Resource Name (ARN) of the table in this parameter" (`TableName` of
//! [`GetItem`](https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_GetItem.html),
//! `PutItem`, `Query`, the transactions'
//! [`Get`](https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_Get.html) and
//! `Put`; the batches' `RequestItems` take "table names or table ARNs",
//! [`BatchWriteItem`](https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchWriteItem.html)),
//! and an answer's `ConsumedCapacity` then names the table by that ARN ("If you had specified
//! the Amazon Resource Name (ARN) of a table in the input, you'll see the table ARN in the
//! response",
//! [`ConsumedCapacity`](https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_ConsumedCapacity.html)).
//! A name never holds `:`, so [`table_name`] tells them apart and gives a table ARN's name
//! (`arn:aws:dynamodb:us-east-1:123456789012:table/orders` → `orders`, an index's or a
//! stream's ARN its table's). Every key this module builds goes through it, as does every
//! table name the SDK adapter, the per-key ceiling and the simulator read, so a call that
//! names `orders` by its ARN reserves and settles on `orders:read` / `orders:write` and
//! [`TableLimits::table`]'s limits apply to it.
//!
//! # Units
//!
//! From the developer guide ([DynamoDB read and write operations](https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html);
//! an item's size is its attribute names' and values' bytes, as the SDK adapter and the
//! simulator both count it):
//!
//! | request | cost |
//! |---|---|
//! | a write (`PutItem`, `UpdateItem`, `DeleteItem`, each item of a `BatchWriteItem`) | one WCU per started 1 KB of the item |
//! | a strongly consistent read (`ConsistentRead: true`) | one RCU per started 4 KB |
//! | an eventually consistent read (the default) | half of that |
//! | a transactional write or read (`TransactWriteItems`, `TransactGetItems`) | twice the standard cost |
//! | `Query`, `Scan` | the items read, summed, then rounded up to 4 KB |
//!
//! An eventually consistent read of a small item costs half an RCU, which an integer budget
//! cannot hold. So **read keys count half read capacity units**: [`read_limit`] (and
//! [`TableLimits::table`]) sets a read key's limit to twice the table's RCU, an eventually
//! consistent 4 KB read costs 1 there and a strongly consistent one 2. Write keys count whole
//! WCU. Set a read key's limit by hand only through [`read_limit`].
//!
//! # The per-key ceiling and the hot-key report
//!
//! One partition key value gets at most 1,000 WCU and 3,000 RCU per second however large the
//! table: [`PartitionCeiling`] gives keys it sees hot a budget of their own at that maximum,
//! learns from key-range throttles on that key alone, and reports the heaviest keys
//! ([`PartitionCeiling::report`]); [`PartitionCeilingLayer`] puts it in front of a Tower
//! client (see [`ceiling`] and [`ceiling_layer`]).

use std::hash::Hash;

pub mod ceiling;
pub mod ceiling_layer;

pub use self::ceiling::{
    CeilingTicket, MAX_STREAMS, PARTITION_MAX_RCU, PARTITION_MAX_WCU, PartitionCeiling,
    PartitionCeilingBuilder, partition_max,
};
pub use self::ceiling_layer::{PartitionCeilingLayer, PartitionCeilingService, PartitionUnits};

use crate::Profile;
use crate::admission::{Limit, QuotaBuilder};
use crate::error::ConfigError;

/// Read keys count half read capacity units: an eventually consistent 4 KB read costs 1 unit
/// of a read key, a strongly consistent one 2 (see the [module docs](self#units)).
pub const HALF_UNITS_PER_RCU: u64 = 2;

/// What a request spends: read capacity or write capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Read capacity units (`GetItem`, `Query`, `Scan`, `BatchGetItem`, `TransactGetItems`).
    Read,
    /// Write capacity units (`PutItem`, `UpdateItem`, `DeleteItem`, `BatchWriteItem`,
    /// `TransactWriteItems`).
    Write,
}

impl Access {
    fn suffix(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }

    /// 0 for writes, 1 for reads: a place in a per-table pair.
    fn index(self) -> usize {
        match self {
            Access::Write => 0,
            Access::Read => 1,
        }
    }
}

/// The table a request's `TableName` (or a batch's `RequestItems` key, or a
/// `ConsumedCapacity` entry's `TableName`) names: a DynamoDB table ARN's table name (the
/// resource after `table/`, cut before a further `/`, as in an index's `/index/NAME` or a
/// stream's `/stream/LABEL`); anything else (a name, another service's ARN, junk) as it is.
/// See [the module docs](self#table-names-and-table-arns).
///
/// ```
/// use tower_headroom::dynamodb::table_name;
///
/// assert_eq!(table_name("orders"), "orders");
/// assert_eq!(table_name("arn:aws:dynamodb:us-east-1:123456789012:table/orders"), "orders");
/// assert_eq!(
///     table_name("arn:aws:dynamodb:us-east-1:123456789012:table/orders/index/by-date"),
///     "orders"
/// );
/// assert_eq!(table_name("arn:aws:s3:::orders"), "arn:aws:s3:::orders");
/// ```
pub fn table_name(name_or_arn: &str) -> &str {
    let Some(rest) = name_or_arn.strip_prefix("arn:") else {
        return name_or_arn;
    };
    // arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE (the resource may hold `:` itself).
    let mut fields = rest.splitn(5, ':');
    let (Some(_partition), Some("dynamodb"), Some(_region), Some(_account), Some(resource)) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return name_or_arn;
    };
    match resource.strip_prefix("table/") {
        Some(table) => match table.split('/').next() {
            Some(name) if !name.is_empty() => name,
            _ => name_or_arn,
        },
        None => name_or_arn,
    }
}

/// The quota key of a table's reads or writes: `"orders:read"`, `"orders:write"` (the table
/// by its name or its ARN: [`table_name`]).
pub fn key(table: &str, access: Access) -> String {
    format!("{}:{}", table_name(table), access.suffix())
}

/// The quota key of a table's reads: `"orders:read"` (counted in half RCUs, [`read_limit`]).
pub fn read_key(table: &str) -> String {
    key(table, Access::Read)
}

/// The quota key of a table's writes: `"orders:write"`.
pub fn write_key(table: &str) -> String {
    key(table, Access::Write)
}

/// The quota key of a global secondary index's reads or writes: `"orders/by-date:read"` (the
/// table by its name or its ARN: [`table_name`]).
pub fn index_key(table: &str, index: &str, access: Access) -> String {
    format!("{}/{index}:{}", table_name(table), access.suffix())
}

/// A read key's limit for `rcu` read capacity units per second: `2 × rcu` half units
/// ([`HALF_UNITS_PER_RCU`]), counted as [`Profile::DynamoDb`] counts.
pub fn read_limit(rcu: u64) -> Result<Limit, ConfigError> {
    let half_units = rcu
        .checked_mul(HALF_UNITS_PER_RCU)
        .ok_or_else(|| ConfigError::new("rcu", rcu, "must be at most 2^49"))?;
    Profile::DynamoDb
        .limit()
        .units(half_units)
        .build()
        .map_err(|e| match e.field() {
            "units" => ConfigError::new("rcu", rcu, "must be at least 1 and at most 2^49"),
            _ => e,
        })
}

/// A write key's limit for `wcu` write capacity units per second, counted as
/// [`Profile::DynamoDb`] counts.
pub fn write_limit(wcu: u64) -> Result<Limit, ConfigError> {
    Profile::DynamoDb
        .limit()
        .units(wcu)
        .build()
        .map_err(|e| match e.field() {
            "units" => ConfigError::new("wcu", wcu, "must be at least 1 and at most 2^50"),
            _ => e,
        })
}

/// One line per table on a [`QuotaBuilder`]: the read and write keys' limits from the
/// table's (or index's) provisioned RCU and WCU.
pub trait TableLimits: Sized {
    /// The limits of `table`'s [`read_key`] and [`write_key`]: `rcu` read and `wcu` write
    /// capacity units per second. Fails naming `rcu` or `wcu` when one is 0 or out of range.
    fn table(self, table: &str, rcu: u64, wcu: u64) -> Result<Self, ConfigError>;

    /// The limits of a global secondary index's keys ([`index_key`]).
    fn index(self, table: &str, index: &str, rcu: u64, wcu: u64) -> Result<Self, ConfigError>;
}

impl<K> TableLimits for QuotaBuilder<K>
where
    K: Hash + Eq + Clone + Send + Sync + From<String>,
{
    fn table(self, table: &str, rcu: u64, wcu: u64) -> Result<Self, ConfigError> {
        Ok(self
            .key_limit(K::from(read_key(table)), read_limit(rcu)?)
            .key_limit(K::from(write_key(table)), write_limit(wcu)?))
    }

    fn index(self, table: &str, index: &str, rcu: u64, wcu: u64) -> Result<Self, ConfigError> {
        Ok(self
            .key_limit(
                K::from(index_key(table, index, Access::Read)),
                read_limit(rcu)?,
            )
            .key_limit(
                K::from(index_key(table, index, Access::Write)),
                write_limit(wcu)?,
            ))
    }
}

/// How a read is served, and so what it costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Read {
    /// Eventually consistent (DynamoDB's default): half an RCU per started 4 KB.
    Eventual,
    /// Strongly consistent (`ConsistentRead: true`): one RCU per started 4 KB.
    Strong,
    /// Part of a transaction (`TransactGetItems`): two RCU per started 4 KB.
    Transactional,
}

impl Read {
    /// `ConsistentRead` as the request gives it (absent: eventually consistent).
    pub fn consistent(consistent_read: Option<bool>) -> Self {
        if consistent_read == Some(true) {
            Read::Strong
        } else {
            Read::Eventual
        }
    }
}

/// Write capacity units of a standard write of an item of `bytes`: one per started KB, at
/// least one.
pub fn write_units(bytes: u64) -> u64 {
    bytes.div_ceil(1024).max(1)
}

/// Write capacity units of a transactional write (`TransactWriteItems`) of an item of
/// `bytes`: twice a standard write's.
pub fn transactional_write_units(bytes: u64) -> u64 {
    write_units(bytes).saturating_mul(2)
}

/// A read of `bytes` (one item, or a `Query`'s or `Scan`'s items summed) in a read key's half
/// units: started 4 KB × 1 eventually consistent, × 2 strongly consistent, × 4 transactional;
/// at least one 4 KB.
pub fn read_half_units(bytes: u64, read: Read) -> u64 {
    let blocks = bytes.div_ceil(4096).max(1);
    let per_block = match read {
        Read::Eventual => 1,
        Read::Strong => 2,
        Read::Transactional => 4,
    };
    blocks.saturating_mul(per_block)
}

/// Read capacity units as DynamoDB reports them (`ConsumedCapacity`, possibly `0.5`) in a
/// read key's half units, rounded up; `None` for a negative or non-finite number.
pub fn rcu_to_half_units(rcu: f64) -> Option<u64> {
    (rcu.is_finite() && rcu >= 0.0).then(|| (rcu * HALF_UNITS_PER_RCU as f64).ceil() as u64)
}

/// The table a quota key is for: `"orders:read"` and `"orders/by-date:write"` give
/// `orders`; a key of another shape is itself. (Keys built here never hold an ARN; a key made
/// by hand from a table ARN, `"arn:…:table/orders:write"`, still gives `orders`.)
pub fn key_table(key: &str) -> &str {
    let name = key.rsplit_once(':').map_or(key, |(name, _)| name);
    let name = table_name(name);
    name.split_once('/').map_or(name, |(table, _)| table)
}

/// A key's `Arc<str>`, for the SDK adapter.
#[cfg(feature = "dynamodb")]
pub(crate) fn arc_key(table: &str, access: Access) -> std::sync::Arc<str> {
    std::sync::Arc::from(key(table, access))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::Quota;
    use std::sync::Arc;

    #[test]
    fn units_round_as_dynamodb_rounds() {
        assert_eq!(write_units(0), 1);
        assert_eq!(write_units(1024), 1);
        assert_eq!(write_units(1025), 2);
        assert_eq!(transactional_write_units(1025), 4);
        // Half units: 1 KB eventually consistent is half an RCU, strongly one, in a
        // transaction two.
        assert_eq!(read_half_units(1024, Read::Eventual), 1);
        assert_eq!(read_half_units(1024, Read::Strong), 2);
        assert_eq!(read_half_units(1024, Read::Transactional), 4);
        assert_eq!(read_half_units(4096, Read::Strong), 2);
        assert_eq!(read_half_units(4097, Read::Eventual), 2);
        assert_eq!(read_half_units(4097, Read::Strong), 4);
        assert_eq!(read_half_units(0, Read::Eventual), 1);
        assert_eq!(Read::consistent(None), Read::Eventual);
        assert_eq!(Read::consistent(Some(false)), Read::Eventual);
        assert_eq!(Read::consistent(Some(true)), Read::Strong);
        assert_eq!(rcu_to_half_units(0.5), Some(1));
        assert_eq!(rcu_to_half_units(12.5), Some(25));
        assert_eq!(rcu_to_half_units(1.2), Some(3));
        assert_eq!(rcu_to_half_units(-1.0), None);
        assert_eq!(rcu_to_half_units(f64::NAN), None);
    }

    #[test]
    fn keys_and_limits_per_table() {
        assert_eq!(read_key("orders"), "orders:read");
        assert_eq!(write_key("orders"), "orders:write");
        assert_eq!(
            index_key("orders", "by-date", Access::Read),
            "orders/by-date:read"
        );
        assert_eq!(read_limit(100).unwrap().units(), Some(200));
        assert_eq!(write_limit(100).unwrap().units(), Some(100));
        assert_eq!(read_limit(0).unwrap_err().field(), "rcu");
        assert_eq!(read_limit(u64::MAX).unwrap_err().field(), "rcu");
        assert_eq!(write_limit(0).unwrap_err().field(), "wcu");
        assert_eq!(key_table("orders:read"), "orders");
        assert_eq!(key_table("orders/by-date:write"), "orders");
        assert_eq!(key_table("orders"), "orders");
    }

    #[test]
    fn a_table_arn_names_its_table_and_anything_else_is_itself() {
        let arn = "arn:aws:dynamodb:us-east-1:123456789012:table/orders";
        // A name, a table ARN, in every partition.
        assert_eq!(table_name("orders"), "orders");
        assert_eq!(table_name("my-table_1.v2"), "my-table_1.v2");
        assert_eq!(table_name(arn), "orders");
        assert_eq!(
            table_name("arn:aws-cn:dynamodb:cn-north-1:123456789012:table/orders"),
            "orders"
        );
        assert_eq!(
            table_name("arn:aws-us-gov:dynamodb:us-gov-west-1:123456789012:table/orders"),
            "orders"
        );
        // An index's or a stream's ARN: its table.
        assert_eq!(table_name(&format!("{arn}/index/by-date")), "orders");
        assert_eq!(
            table_name(&format!("{arn}/stream/2024-01-15T00:00:00.000")),
            "orders"
        );
        // Not a DynamoDB table ARN: as it is.
        for other in [
            "",
            "arn:",
            "arn:aws:s3:::orders",
            "arn:aws:sqs:us-east-1:123456789012:orders",
            "arn:aws:dynamodb:us-east-1:123456789012:global-table/orders",
            "arn:aws:dynamodb:us-east-1:123456789012:table/",
            "arn:aws:dynamodb:us-east-1:table/orders",
            "ARN:aws:dynamodb:us-east-1:123456789012:table/orders",
            "orders:read",
        ] {
            assert_eq!(table_name(other), other, "{other}");
        }
        // Keys are the same whether the table is named or given by its ARN.
        assert_eq!(read_key(arn), "orders:read");
        assert_eq!(write_key(arn), "orders:write");
        assert_eq!(
            index_key(arn, "by-date", Access::Read),
            "orders/by-date:read"
        );
        assert_eq!(key_table(&format!("{arn}:write")), "orders");
        assert_eq!(key_table(&write_key(arn)), "orders");
    }

    #[test]
    fn one_line_per_table_limits_reads_and_writes_apart() {
        use crate::admission::{Cost, Grant};
        use std::time::Duration;
        let quota: Quota<Arc<str>> = Quota::builder(write_limit(1).unwrap())
            .table("orders", 100, 50)
            .unwrap()
            .build();
        let now = quota.epoch();
        let read: Arc<str> = Arc::from(read_key("orders"));
        let write: Arc<str> = Arc::from(write_key("orders"));
        // One second of credit each: 100 RCU are 200 half units, 50 WCU are 50 units.
        let mut held = Vec::new();
        let mut grant = |key: &Arc<str>, units: u64| {
            let r = quota.reserve(key, Cost::units(units), now).unwrap();
            let grant = r.grant();
            held.push(r);
            grant
        };
        assert_eq!(grant(&read, 200), Grant::Now);
        assert_eq!(grant(&write, 50), Grant::Now);
        // Each key is spent on its own: reads wait for reads (2 half units: 10 ms), writes for
        // writes (1 unit: 20 ms).
        assert_eq!(grant(&read, 2), Grant::At(now + Duration::from_millis(10)));
        assert_eq!(grant(&write, 1), Grant::At(now + Duration::from_millis(20)));
        let e = Quota::<Arc<str>>::builder(write_limit(1).unwrap())
            .table("orders", 0, 1)
            .unwrap_err();
        assert_eq!(e.field(), "rcu");
    }
}
