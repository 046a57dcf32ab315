//! Amazon DynamoDB (`aws-sdk-dynamodb`): capacity units from typed items, usage from
//! `ConsumedCapacity` (asked for, as `INDEXES`, when the caller did not ask, and removed from
//! the output the caller sees), reads and writes of a table on their own quota keys.
//!
//! Keys and units are [`crate::dynamodb`]'s: `"orders:read"` (counted in half RCUs) and
//! `"orders:write"`, limited by [`TableLimits::table`](crate::dynamodb::TableLimits::table).
//! Estimates follow DynamoDB's own rules (`crate::item_size`, the ones the simulator bills
//! by): a write costs one WCU per started KB of the item (`UpdateItem` and `DeleteItem`, whose
//! item the request does not hold, one); a read one 4 KB block at its consistency (an
//! eventually consistent `GetItem`, `Query`, `Scan` or `BatchGetItem` key half an RCU, a
//! strongly consistent one a whole one); `TransactWriteItems` and `TransactGetItems` twice
//! that. Each is settled from the table's own share of `ConsumedCapacity`.
//!
//! A `BatchWriteItem`, `BatchGetItem` or transaction that touches several tables reserves on
//! every table's key, all or nothing (each attempt waits until every table has room, or
//! gives every reservation back), and settles each from its own table's `ConsumedCapacity`
//! entry. A throttle of such a call teaches every table's key it reserved on (a batch is
//! refused whole only when all its items were throttled).
//! Breakers and metric labels follow the quota key (`target="orders:write"`).
//!
//! With [`SdkHeadroom::configure_dynamodb_ceiling`], each item's partition key (hashed at once)
//! also goes through the per-key ceiling ([`crate::dynamodb::PartitionCeiling`]): a hot key
//! waits for its own budget per attempt, and each attempt's outcome is recorded on its key.
//!
//! A table may be named by its ARN wherever DynamoDB takes a table name (`TableName`, a batch's
//! `RequestItems` keys, a transaction item's `TableName`), and an answer's `ConsumedCapacity`
//! then names it by that ARN: every table name the adapter reads, from an input or from a
//! `ConsumedCapacity` entry, goes through [`dynamodb::table_name`], so the call is keyed,
//! settled, grouped with the same table's other items, matched with declared indexes and
//! partition key attributes, and reported by the ceiling under the table's name
//! (`"orders:write"` whether the call said `orders` or
//! `arn:aws:dynamodb:us-east-1:123456789012:table/orders`; the sources are in
//! [`crate::dynamodb`]'s module docs).

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::operation::batch_get_item::{BatchGetItemInput, BatchGetItemOutput};
use aws_sdk_dynamodb::operation::batch_write_item::{BatchWriteItemInput, BatchWriteItemOutput};
use aws_sdk_dynamodb::operation::delete_item::{DeleteItemInput, DeleteItemOutput};
use aws_sdk_dynamodb::operation::get_item::{GetItemInput, GetItemOutput};
use aws_sdk_dynamodb::operation::put_item::{PutItemInput, PutItemOutput};
use aws_sdk_dynamodb::operation::query::{QueryInput, QueryOutput};
use aws_sdk_dynamodb::operation::scan::{ScanInput, ScanOutput};
use aws_sdk_dynamodb::operation::transact_get_items::{
    TransactGetItemsInput, TransactGetItemsOutput,
};
use aws_sdk_dynamodb::operation::transact_write_items::{
    TransactWriteItemsInput, TransactWriteItemsOutput,
};
use aws_sdk_dynamodb::operation::update_item::{UpdateItemInput, UpdateItemOutput};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnConsumedCapacity};
use aws_smithy_runtime_api::client::interceptors::context::{Input, Output};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::config_bag::ConfigBag;

use self::usage::{Of, consumed};

use super::call::Prepared;
use super::interceptor::Shape;
use super::{Estimation, SdkHeadroom};
use crate::admission::{Cost, QuotaStore};
use crate::dynamodb::{self, Access, PartitionCeiling, Read};
use crate::error::ConfigError;
use crate::item_size::{CONTAINER, ELEMENT, SCALAR, number_size};

mod keys;
mod usage;

/// The most tables whose global secondary indexes the shape remembers from answers, and the
/// most indexes per table (DynamoDB's default quota is 20 per table): memory stays bounded
/// whatever the answers name.
const MAX_TABLES: usize = 1024;
const MAX_INDEXES: usize = 32;

/// The DynamoDB shape: the global secondary indexes per table, the ones the caller declared
/// ([`SdkHeadroom::configure_dynamodb_indexed`]) and the ones an answer's `ConsumedCapacity`
/// reported (`INDEXES`, which the adapter asks for).
#[derive(Debug, Default)]
pub(crate) struct DynamoDb {
    indexes: std::sync::Mutex<HashMap<String, Vec<String>>>,
    /// The per-key ceiling and each table's partition key attribute, when declared
    /// ([`SdkHeadroom::configure_dynamodb_ceiling`]).
    partition: Option<keys::PartitionKeys>,
}

impl DynamoDb {
    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<String>>> {
        // The map holds no invariant a panicking holder could break.
        self.indexes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remembers that `table` has the global secondary index `index`, within the bounds.
    pub(crate) fn add_index(&self, table: &str, index: &str) {
        let table = dynamodb::table_name(table);
        let mut known = self.known();
        if !known.contains_key(table) && known.len() >= MAX_TABLES {
            return;
        }
        let indexes = known.entry(table.to_owned()).or_default();
        if indexes.len() < MAX_INDEXES && !indexes.iter().any(|i| i == index) {
            indexes.push(index.to_owned());
        }
    }

    /// The known global secondary indexes of `table` (by its name or its ARN).
    fn indexes_of(&self, table: &str) -> Vec<String> {
        let table = dynamodb::table_name(table);
        self.known().get(table).cloned().unwrap_or_default()
    }

    /// A write's keys beyond its table's: every declared index of each table it writes, at
    /// the table's units (an index holds at most the item), settled from the index's own
    /// `ConsumedCapacity`.
    fn index_writes(&self, prepared: &mut Prepared, tables: &PerTable) {
        for (table, units) in tables {
            for index in self.indexes_of(table) {
                let key = Arc::from(dynamodb::index_key(table, &index, Access::Write));
                prepared.also.push((key, Cost::units(*units)));
            }
        }
    }

    /// A read's key: a declared global secondary index's read key when the read names it
    /// (`IndexName`), else the table's (a local secondary index reads the table's capacity).
    fn read_key(&self, table: &Option<String>, index: &Option<String>) -> Option<Arc<str>> {
        let table = dynamodb::table_name(table.as_deref()?);
        Some(match index.as_deref() {
            Some(index) if self.indexes_of(table).iter().any(|i| i == index) => {
                Arc::from(dynamodb::index_key(table, index, Access::Read))
            }
            _ => dynamodb::arc_key(table, Access::Read),
        })
    }
}

/// The size DynamoDB bills for an attribute value, in bytes (the rules: `crate::item_size`).
fn value_size(value: &AttributeValue) -> u64 {
    match value {
        AttributeValue::S(s) => s.len() as u64,
        AttributeValue::N(n) => number_size(n),
        AttributeValue::B(b) => b.as_ref().len() as u64,
        AttributeValue::Bool(_) | AttributeValue::Null(_) => SCALAR,
        AttributeValue::Ss(items) => items.iter().map(|s| s.len() as u64).sum(),
        AttributeValue::Ns(items) => items.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(items) => items.iter().map(|b| b.as_ref().len() as u64).sum(),
        AttributeValue::L(items) => {
            CONTAINER + items.iter().map(|v| ELEMENT + value_size(v)).sum::<u64>()
        }
        AttributeValue::M(map) => {
            CONTAINER
                + map
                    .iter()
                    .map(|(k, v)| ELEMENT + k.len() as u64 + value_size(v))
                    .sum::<u64>()
        }
        _ => SCALAR,
    }
}

/// An item's size: attribute names plus values.
pub(crate) fn item_size(item: &HashMap<String, AttributeValue>) -> u64 {
    item.iter()
        .map(|(name, value)| name.len() as u64 + value_size(value))
        .sum()
}

/// Asks for `INDEXES` consumed capacity when the caller asked for none (the table's own share
/// apart from its indexes', so a write to a table with indexes settles the table's key with
/// the table's units); says whether it asked.
fn ask_usage(field: &mut Option<ReturnConsumedCapacity>) -> bool {
    match field {
        None | Some(ReturnConsumedCapacity::None) => {
            *field = Some(ReturnConsumedCapacity::Indexes);
            true
        }
        Some(_) => false,
    }
}

fn prepared(key: Arc<str>, units: u64, asked_usage: bool) -> Prepared {
    Prepared {
        key,
        cost: Cost::units(units),
        tokens: None,
        stream: false,
        asked_usage,
        routable: false,
        keys_are_models: false,
        also: Vec::new(),
    }
}

/// One request's cost per table, for the operations that may touch several: the tables in
/// name order (a table given by its ARN under its name, [`dynamodb::table_name`]), each with
/// its units (half units for reads).
type PerTable = std::collections::BTreeMap<String, u64>;

/// Adds `units` to `table`'s entry (by its name or its ARN: the same entry).
fn add_units(tables: &mut PerTable, table: &str, units: u64) {
    let table = dynamodb::table_name(table);
    match tables.get_mut(table) {
        Some(entry) => *entry = entry.saturating_add(units),
        None => {
            tables.insert(table.to_owned(), units);
        }
    }
}

/// The keys and costs of an operation that may touch several tables: the first table's (by
/// name) is the call's own key, the others' its [`also`](Prepared::also) keys; each attempt
/// reserves on all of them or none, and each settles from its own table's `ConsumedCapacity`.
fn per_table(
    tables: &PerTable,
    access: Access,
    field: &mut Option<ReturnConsumedCapacity>,
) -> Option<Prepared> {
    let mut tables = tables.iter();
    let (table, units) = tables.next()?;
    let mut prepared = prepared(dynamodb::arc_key(table, access), *units, ask_usage(field));
    prepared.also = tables
        .map(|(table, units)| (dynamodb::arc_key(table, access), Cost::units(*units)))
        .collect();
    Some(prepared)
}

/// The units a read of one item (or one page) is estimated at before it runs: one 4 KB
/// block, at the read's consistency; settled from `ConsumedCapacity`.
fn one_block(consistent_read: Option<bool>) -> u64 {
    dynamodb::read_half_units(0, Read::consistent(consistent_read))
}

impl Shape for DynamoDb {
    fn prepare(&self, input: &mut Input, _estimation: &Estimation) -> Option<Prepared> {
        use Access::{Read as R, Write as W};
        let key =
            |table: &Option<String>, access| table.as_deref().map(|t| dynamodb::arc_key(t, access));
        let single_write = |table: &Option<String>, units: u64, asked: bool| {
            let mut prepared = prepared(key(table, W)?, units, asked);
            let mut tables = PerTable::new();
            add_units(&mut tables, table.as_deref()?, units);
            self.index_writes(&mut prepared, &tables);
            Some(prepared)
        };
        if let Some(i) = input.downcast_mut::<PutItemInput>() {
            let units = dynamodb::write_units(i.item.as_ref().map_or(0, item_size));
            let asked = ask_usage(&mut i.return_consumed_capacity);
            return single_write(&i.table_name, units, asked);
        }
        if let Some(i) = input.downcast_mut::<UpdateItemInput>() {
            let asked = ask_usage(&mut i.return_consumed_capacity);
            return single_write(&i.table_name, 1, asked);
        }
        if let Some(i) = input.downcast_mut::<DeleteItemInput>() {
            let asked = ask_usage(&mut i.return_consumed_capacity);
            return single_write(&i.table_name, 1, asked);
        }
        if let Some(i) = input.downcast_mut::<GetItemInput>() {
            let asked = ask_usage(&mut i.return_consumed_capacity);
            let units = one_block(i.consistent_read);
            return Some(prepared(key(&i.table_name, R)?, units, asked));
        }
        if let Some(i) = input.downcast_mut::<QueryInput>() {
            let asked = ask_usage(&mut i.return_consumed_capacity);
            let units = one_block(i.consistent_read);
            let key = self.read_key(&i.table_name, &i.index_name)?;
            return Some(prepared(key, units, asked));
        }
        if let Some(i) = input.downcast_mut::<ScanInput>() {
            let asked = ask_usage(&mut i.return_consumed_capacity);
            let units = one_block(i.consistent_read);
            let key = self.read_key(&i.table_name, &i.index_name)?;
            return Some(prepared(key, units, asked));
        }
        if let Some(i) = input.downcast_mut::<BatchWriteItemInput>() {
            let mut tables = PerTable::new();
            for (table, writes) in i.request_items.as_ref()? {
                let units = writes
                    .iter()
                    .map(|w| match w.put_request() {
                        Some(put) => dynamodb::write_units(item_size(put.item())),
                        None => 1,
                    })
                    .fold(0u64, u64::saturating_add);
                add_units(&mut tables, table, units);
            }
            let mut prepared = per_table(&tables, W, &mut i.return_consumed_capacity)?;
            self.index_writes(&mut prepared, &tables);
            return Some(prepared);
        }
        if let Some(i) = input.downcast_mut::<BatchGetItemInput>() {
            let mut tables = PerTable::new();
            for (table, keys) in i.request_items.as_ref()? {
                let units =
                    (keys.keys().len() as u64).saturating_mul(one_block(keys.consistent_read()));
                add_units(&mut tables, table, units);
            }
            return per_table(&tables, R, &mut i.return_consumed_capacity);
        }
        if let Some(i) = input.downcast_mut::<TransactWriteItemsInput>() {
            let mut tables = PerTable::new();
            for item in i.transact_items.as_deref()? {
                let (table, bytes) = if let Some(put) = item.put() {
                    (put.table_name(), item_size(put.item()))
                } else if let Some(update) = item.update() {
                    (update.table_name(), 0)
                } else if let Some(delete) = item.delete() {
                    (delete.table_name(), 0)
                } else if let Some(check) = item.condition_check() {
                    (check.table_name(), 0)
                } else {
                    continue;
                };
                add_units(
                    &mut tables,
                    table,
                    dynamodb::transactional_write_units(bytes),
                );
            }
            let mut prepared = per_table(&tables, W, &mut i.return_consumed_capacity)?;
            self.index_writes(&mut prepared, &tables);
            return Some(prepared);
        }
        if let Some(i) = input.downcast_mut::<TransactGetItemsInput>() {
            let mut tables = PerTable::new();
            for get in i.transact_items.as_deref()?.iter().filter_map(|t| t.get()) {
                let units = dynamodb::read_half_units(0, Read::Transactional);
                add_units(&mut tables, get.table_name(), units);
            }
            return per_table(&tables, R, &mut i.return_consumed_capacity);
        }
        None
    }

    fn keys(&self, input: &Input) -> Option<crate::smithy::keys::Keys> {
        self.partition.as_ref()?.keys(input)
    }

    fn region(&self, cfg: &ConfigBag) -> Option<Arc<str>> {
        cfg.load::<aws_sdk_dynamodb::config::Region>()
            .map(|region| Arc::from(region.as_ref()))
    }

    fn usage(
        &self,
        output: &Output,
        _response: Option<&HttpResponse>,
        _estimation: &Estimation,
        key: &str,
    ) -> Option<u64> {
        let of = Of::key(key);
        if of.index.is_none() {
            // An index the answer reports is one the table's later calls reserve on too.
            usage::reported_indexes(output, |table, index| self.add_index(table, index));
        }
        consumed(output, &of)
    }

    fn restore(&self, output: &mut Output) {
        macro_rules! clear {
            ($($output:ty),*) => {$(
                if let Some(o) = output.downcast_mut::<$output>() {
                    o.consumed_capacity = None;
                    return;
                }
            )*};
        }
        clear!(
            PutItemOutput,
            UpdateItemOutput,
            DeleteItemOutput,
            GetItemOutput,
            QueryOutput,
            ScanOutput,
            BatchWriteItemOutput,
            BatchGetItemOutput,
            TransactWriteItemsOutput,
            TransactGetItemsOutput
        );
    }
}

impl<S: QuotaStore<Arc<str>> + 'static> SdkHeadroom<S> {
    /// Installs the interceptor, the retry classifier, the HTTP client wrapper (around the
    /// builder's HTTP client) and the paired [`RetryConfig`](aws_smithy_types::retry::RetryConfig)
    /// on a DynamoDB config builder. Quota keys (and breakers) are per table and access: a
    /// table's reads on [`dynamodb::read_key`] (`"orders:read"`, half RCUs), its writes on
    /// [`dynamodb::write_key`] (`"orders:write"`); give both limits with
    /// [`TableLimits::table`](crate::dynamodb::TableLimits::table).
    ///
    /// Replaces three of the builder's settings, and logs old and new values in a `debug`
    /// event (target `tower_headroom::smithy`): the retry config (standard mode with
    /// [`sdk_max_attempts`](Self::sdk_max_attempts) and [`sdk_max_backoff`](Self::sdk_max_backoff)),
    /// the retry partition ([`sdk_retry_partition`](Self::sdk_retry_partition)) and the
    /// stalled-stream protection (the builder's, upload check off); see [the module docs](super).
    ///
    /// Fails with a [`ConfigError`] naming `http_client` when the builder has none to wrap.
    pub fn configure_dynamodb(
        &self,
        builder: aws_sdk_dynamodb::config::Builder,
    ) -> Result<aws_sdk_dynamodb::config::Builder, ConfigError> {
        super::configure!(self, builder, DynamoDb::default(), "dynamodb")
    }

    /// [`configure_dynamodb`](Self::configure_dynamodb), with the global secondary indexes of
    /// each table, as `(table, index)` pairs, so that their capacity is admitted and settled on
    /// their own keys ([`dynamodb::index_key`]: `"orders/by-date:read"`, limits from
    /// [`TableLimits::index`](crate::dynamodb::TableLimits::index)): a `Query` or `Scan` naming
    /// a declared index (`IndexName`) reads the index's capacity, and every write to the table
    /// reserves on each declared index's write key as well (at the table's units, an upper
    /// bound; settled from the index's own `ConsumedCapacity`, which the adapter asks for as
    /// `INDEXES`). An index not declared (a local secondary index, which reads the table's
    /// capacity) keeps the table's keys. ([`configure_dynamodb`](Self::configure_dynamodb)
    /// learns a table's global secondary indexes from the first answer that reports them; this
    /// declares them from the first call. At most 32 indexes per table and 1,024 tables are
    /// kept.)
    pub fn configure_dynamodb_indexed<'a>(
        &self,
        builder: aws_sdk_dynamodb::config::Builder,
        indexes: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<aws_sdk_dynamodb::config::Builder, ConfigError> {
        let shape = DynamoDb::default();
        for (table, index) in indexes {
            shape.add_index(table, index);
        }
        super::configure!(self, builder, shape, "dynamodb")
    }

    /// [`configure_dynamodb_indexed`](Self::configure_dynamodb_indexed), with the per-key
    /// ceiling: `partition_keys` names each table's partition key attribute, as
    /// `(table, attribute)` pairs, and every attempt on a declared table's key goes through
    /// `ceiling` (share one ceiling among the clients of the tables).
    ///
    /// The interceptor reads each item's partition key value from the typed input
    /// (`PutItem`, `UpdateItem`, `DeleteItem`, `GetItem`, each item of `BatchWriteItem`,
    /// `BatchGetItem`, `TransactWriteItems` and `TransactGetItems`, and a `Query` whose key
    /// condition is `pk = :v` on the table; not `Scan` or an index's `Query`) and hashes it at
    /// once; the HTTP client
    /// waits, per attempt and before the quota admits it, until each hot key's own budget
    /// (the partition maximum, 1,000 WCU and 3,000 RCU per second) has room, within the call's
    /// deadline — a wait past it fails the attempt unsent with [`Rejected`](crate::Rejected);
    /// each sent attempt's outcome is recorded in the ceiling (a key-range throttle teaches
    /// only its key; a batch or transaction refused as a whole records it on each of its keys,
    /// since DynamoDB does not say which) and in its hot-key
    /// [report](PartitionCeiling::report). A key's units are the call's estimate (an
    /// `UpdateItem` one WCU, a `GetItem` one 4 KB block): `ConsumedCapacity` is per table, not
    /// per key. A cold key reserves nothing. Without this call nothing reads partition keys.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_headroom::ConfigError;
    /// use tower_headroom::dynamodb::PartitionCeiling;
    /// use tower_headroom::smithy::SdkHeadroom;
    ///
    /// // `sdk` has the HTTP client to wrap; the ceiling is shared by the tables' clients.
    /// fn configure(
    ///     headroom: &SdkHeadroom,
    ///     ceiling: Arc<PartitionCeiling>,
    ///     sdk: aws_sdk_dynamodb::config::Builder,
    /// ) -> Result<aws_sdk_dynamodb::config::Builder, ConfigError> {
    ///     headroom.configure_dynamodb_ceiling(sdk, [], ceiling, [("orders", "pk")])
    /// }
    /// ```
    pub fn configure_dynamodb_ceiling<'a>(
        &self,
        builder: aws_sdk_dynamodb::config::Builder,
        indexes: impl IntoIterator<Item = (&'a str, &'a str)>,
        ceiling: Arc<PartitionCeiling>,
        partition_keys: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<aws_sdk_dynamodb::config::Builder, ConfigError> {
        let names = partition_keys
            .into_iter()
            .map(|(table, name)| (dynamodb::table_name(table).to_owned(), name.to_owned()))
            .collect();
        let shape = DynamoDb {
            partition: Some(keys::PartitionKeys { ceiling, names }),
            ..DynamoDb::default()
        };
        for (table, index) in indexes {
            shape.add_index(table, index);
        }
        super::configure!(self, builder, shape, "dynamodb")
    }
}

#[cfg(test)]
mod tests;
