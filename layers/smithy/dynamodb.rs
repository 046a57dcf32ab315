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
use aws_sdk_dynamodb::types::{AttributeValue, ConsumedCapacity, ReturnConsumedCapacity};
use aws_smithy_runtime_api::client::interceptors::context::{Input, Output};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::config_bag::ConfigBag;

use super::call::Prepared;
use super::interceptor::Shape;
use super::{Estimation, SdkHeadroom};
use crate::admission::{Cost, QuotaStore};
use crate::dynamodb::{self, Access, Read};
use crate::error::ConfigError;
use crate::item_size::{CONTAINER, ELEMENT, SCALAR, number_size};

#[derive(Debug)]
pub(crate) struct DynamoDb;

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
/// name order, each with its units (half units for reads).
type PerTable = std::collections::BTreeMap<String, u64>;

/// The keys and costs of an operation that may touch several tables: the first table's (by
/// name) is the call's own key, the others' its [`also`](Prepared::also) keys; each attempt
/// reserves on all of them or none, and each settles from its own table's `ConsumedCapacity`.
fn per_table(
    tables: PerTable,
    access: Access,
    field: &mut Option<ReturnConsumedCapacity>,
) -> Option<Prepared> {
    let mut tables = tables.into_iter();
    let (table, units) = tables.next()?;
    let mut prepared = prepared(dynamodb::arc_key(&table, access), units, ask_usage(field));
    prepared.also = tables
        .map(|(table, units)| (dynamodb::arc_key(&table, access), Cost::units(units)))
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
        if let Some(i) = input.downcast_mut::<PutItemInput>() {
            let units = dynamodb::write_units(i.item.as_ref().map_or(0, item_size));
            let asked = ask_usage(&mut i.return_consumed_capacity);
            return Some(prepared(key(&i.table_name, W)?, units, asked));
        }
        if let Some(i) = input.downcast_mut::<UpdateItemInput>() {
            let asked = ask_usage(&mut i.return_consumed_capacity);
            return Some(prepared(key(&i.table_name, W)?, 1, asked));
        }
        if let Some(i) = input.downcast_mut::<DeleteItemInput>() {
            let asked = ask_usage(&mut i.return_consumed_capacity);
            return Some(prepared(key(&i.table_name, W)?, 1, asked));
        }
        if let Some(i) = input.downcast_mut::<GetItemInput>() {
            let asked = ask_usage(&mut i.return_consumed_capacity);
            let units = one_block(i.consistent_read);
            return Some(prepared(key(&i.table_name, R)?, units, asked));
        }
        if let Some(i) = input.downcast_mut::<QueryInput>() {
            let asked = ask_usage(&mut i.return_consumed_capacity);
            let units = one_block(i.consistent_read);
            return Some(prepared(key(&i.table_name, R)?, units, asked));
        }
        if let Some(i) = input.downcast_mut::<ScanInput>() {
            let asked = ask_usage(&mut i.return_consumed_capacity);
            let units = one_block(i.consistent_read);
            return Some(prepared(key(&i.table_name, R)?, units, asked));
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
                tables.insert(table.clone(), units);
            }
            return per_table(tables, W, &mut i.return_consumed_capacity);
        }
        if let Some(i) = input.downcast_mut::<BatchGetItemInput>() {
            let mut tables = PerTable::new();
            for (table, keys) in i.request_items.as_ref()? {
                let units =
                    (keys.keys().len() as u64).saturating_mul(one_block(keys.consistent_read()));
                tables.insert(table.clone(), units);
            }
            return per_table(tables, R, &mut i.return_consumed_capacity);
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
                let units = dynamodb::transactional_write_units(bytes);
                let entry = tables.entry(table.to_owned()).or_default();
                *entry = entry.saturating_add(units);
            }
            return per_table(tables, W, &mut i.return_consumed_capacity);
        }
        if let Some(i) = input.downcast_mut::<TransactGetItemsInput>() {
            let mut tables = PerTable::new();
            for get in i.transact_items.as_deref()?.iter().filter_map(|t| t.get()) {
                let units = dynamodb::read_half_units(0, Read::Transactional);
                let entry = tables.entry(get.table_name().to_owned()).or_default();
                *entry = entry.saturating_add(units);
            }
            return per_table(tables, R, &mut i.return_consumed_capacity);
        }
        None
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
        consumed(output, dynamodb::key_table(key))
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

/// What one `ConsumedCapacity` says the table itself spent, in its key's units: the table's
/// own share when the answer splits it from its indexes' (`INDEXES`), else the read or write
/// units, else the total; reads in half units.
fn table_units(c: &ConsumedCapacity, access: Access) -> Option<u64> {
    let own = c.table();
    let units = match access {
        Access::Read => own
            .and_then(|t| t.read_capacity_units().or(t.capacity_units()))
            .or(c.read_capacity_units())
            .or(c.capacity_units())
            .and_then(dynamodb::rcu_to_half_units)?,
        Access::Write => {
            let wcu = own
                .and_then(|t| t.write_capacity_units().or(t.capacity_units()))
                .or(c.write_capacity_units())
                .or(c.capacity_units())?;
            // A server's odd number (negative, NaN) is no usage reading.
            (wcu.is_finite() && wcu >= 0.0).then(|| wcu.ceil() as u64)?
        }
    };
    Some(units)
}

/// The units an output reports consumed, in its key's units: for a batch or transaction, what
/// `table` consumed (every table's, when the answer names none); `None` when it reports none.
fn consumed(output: &Output, table: &str) -> Option<u64> {
    use Access::{Read as R, Write as W};
    macro_rules! single {
        ($($output:ty => $access:expr),*) => {$(
            if let Some(o) = output.downcast_ref::<$output>() {
                return o.consumed_capacity().and_then(|c| table_units(c, $access));
            }
        )*};
    }
    single!(
        PutItemOutput => W,
        UpdateItemOutput => W,
        DeleteItemOutput => W,
        GetItemOutput => R,
        QueryOutput => R,
        ScanOutput => R
    );
    let named = |all: &[ConsumedCapacity]| all.iter().any(|c| c.table_name().is_some());
    let sum = |all: &[ConsumedCapacity], access| {
        let mine = |c: &&ConsumedCapacity| !named(all) || c.table_name() == Some(table);
        let mut units = all
            .iter()
            .filter(mine)
            .filter_map(|c| table_units(c, access))
            .peekable();
        units.peek()?;
        Some(units.fold(0u64, u64::saturating_add))
    };
    macro_rules! many {
        ($($output:ty => $access:expr),*) => {$(
            if let Some(o) = output.downcast_ref::<$output>() {
                return sum(o.consumed_capacity(), $access);
            }
        )*};
    }
    many!(
        BatchWriteItemOutput => W,
        BatchGetItemOutput => R,
        TransactWriteItemsOutput => W,
        TransactGetItemsOutput => R
    );
    None
}

impl<S: QuotaStore<Arc<str>> + 'static> SdkHeadroom<S> {
    /// Installs the interceptor, the retry classifier, the HTTP client wrapper (around the
    /// builder's HTTP client) and the paired [`RetryConfig`](aws_smithy_types::retry::RetryConfig)
    /// on a DynamoDB config builder. Quota keys and breakers are per table.
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
        super::configure!(self, builder, DynamoDb, "dynamodb")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_sizes_follow_dynamodb_rules() {
        let mut item = HashMap::new();
        item.insert("pk".to_owned(), AttributeValue::S("user#1".to_owned()));
        item.insert("n".to_owned(), AttributeValue::N("12345".to_owned()));
        item.insert("ok".to_owned(), AttributeValue::Bool(true));
        // pk: 2 + 6; n: 1 + 3 + 1; ok: 2 + 1
        assert_eq!(item_size(&item), 16);
        assert_eq!(dynamodb::write_units(item_size(&item)), 1);
        item.insert("blob".to_owned(), AttributeValue::S("x".repeat(2_000)));
        assert_eq!(dynamodb::write_units(item_size(&item)), 2);
    }

    #[test]
    fn usage_is_the_consumed_capacity_rounded_up() {
        let est = Estimation {
            chars_per_token: 4,
            models: crate::bedrock::ModelTable::builtin(),
        };
        let output = |units: f64| {
            Output::erase(
                PutItemOutput::builder()
                    .consumed_capacity(ConsumedCapacity::builder().capacity_units(units).build())
                    .build(),
            )
        };
        assert_eq!(DynamoDb.usage(&output(2.5), None, &est, "t"), Some(3));
        assert_eq!(DynamoDb.usage(&output(-1.0), None, &est, "t"), None);
        assert_eq!(DynamoDb.usage(&output(f64::NAN), None, &est, "t"), None);
        let mut restored = output(1.0);
        DynamoDb.restore(&mut restored);
        assert!(
            restored
                .downcast_ref::<PutItemOutput>()
                .unwrap()
                .consumed_capacity()
                .is_none()
        );
    }

    fn est() -> Estimation {
        Estimation {
            chars_per_token: 4,
            models: crate::bedrock::ModelTable::builtin(),
        }
    }

    /// The key and units the interceptor prepares for a typed input.
    fn prepare<T: std::fmt::Debug + Send + Sync + 'static>(input: T) -> (String, u64) {
        let mut input = Input::erase(input);
        let p = DynamoDb.prepare(&mut input, &est()).expect("prepared");
        (p.key.to_string(), p.cost.units)
    }

    fn kb(n: usize) -> HashMap<String, AttributeValue> {
        // "pk" (2) + "a" (1) + the value: n KB exactly.
        let mut item = HashMap::new();
        item.insert("pk".to_owned(), AttributeValue::S("x".repeat(1021)));
        item.insert(
            "a".to_owned(),
            AttributeValue::S("y".repeat(1024 * n - 1024)),
        );
        item
    }

    #[test]
    fn reads_and_writes_go_to_their_own_keys_at_dynamodb_units() {
        use aws_sdk_dynamodb::types::{
            ConditionCheck, Get, KeysAndAttributes, Put, TransactGetItem, TransactWriteItem, Update,
        };
        assert_eq!(item_size(&kb(1)), 1024);
        let put = |n| {
            PutItemInput::builder()
                .table_name("orders")
                .set_item(Some(kb(n)))
                .build()
                .unwrap()
        };
        assert_eq!(prepare(put(1)), ("orders:write".into(), 1));
        assert_eq!(prepare(put(3)), ("orders:write".into(), 3));
        let get = |consistent: Option<bool>| {
            GetItemInput::builder()
                .table_name("orders")
                .set_consistent_read(consistent)
                .build()
                .unwrap()
        };
        // Half units: eventually consistent 1, strongly consistent 2.
        assert_eq!(prepare(get(None)), ("orders:read".into(), 1));
        assert_eq!(prepare(get(Some(false))), ("orders:read".into(), 1));
        assert_eq!(prepare(get(Some(true))), ("orders:read".into(), 2));
        let query = QueryInput::builder()
            .table_name("orders")
            .consistent_read(true)
            .build()
            .unwrap();
        assert_eq!(prepare(query), ("orders:read".into(), 2));
        let scan = ScanInput::builder().table_name("orders").build().unwrap();
        assert_eq!(prepare(scan), ("orders:read".into(), 1));
        let update = UpdateItemInput::builder()
            .table_name("orders")
            .build()
            .unwrap();
        assert_eq!(prepare(update), ("orders:write".into(), 1));
        // Transactions at double: a 3 KB put 6, an update 2, a condition check 2.
        let transact = TransactWriteItemsInput::builder()
            .transact_items(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name("orders")
                            .set_item(Some(kb(3)))
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .transact_items(
                TransactWriteItem::builder()
                    .update(
                        Update::builder()
                            .table_name("orders")
                            .update_expression("SET a = :a")
                            .set_key(Some(kb(1)))
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .transact_items(
                TransactWriteItem::builder()
                    .condition_check(
                        ConditionCheck::builder()
                            .table_name("orders")
                            .condition_expression("attribute_exists(pk)")
                            .set_key(Some(kb(1)))
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .build()
            .unwrap();
        assert_eq!(prepare(transact), ("orders:write".into(), 10));
        // A transactional read: two RCU per 4 KB, four half units.
        let get_one = || {
            TransactGetItem::builder()
                .get(
                    Get::builder()
                        .table_name("orders")
                        .set_key(Some(kb(1)))
                        .build()
                        .unwrap(),
                )
                .build()
        };
        let transact_get = TransactGetItemsInput::builder()
            .transact_items(get_one())
            .transact_items(get_one())
            .build()
            .unwrap();
        assert_eq!(prepare(transact_get), ("orders:read".into(), 8));
        let keys = |consistent| {
            KeysAndAttributes::builder()
                .keys(kb(1))
                .keys(kb(1))
                .consistent_read(consistent)
                .build()
                .unwrap()
        };
        let batch_get = BatchGetItemInput::builder()
            .request_items("orders", keys(true))
            .build()
            .unwrap();
        assert_eq!(prepare(batch_get), ("orders:read".into(), 4));
        let batch_get = BatchGetItemInput::builder()
            .request_items("orders", keys(false))
            .build()
            .unwrap();
        assert_eq!(prepare(batch_get), ("orders:read".into(), 2));
    }

    #[test]
    fn settles_each_key_in_its_own_units_from_the_tables_share() {
        use aws_sdk_dynamodb::types::Capacity;
        let est = est();
        let get = |c: ConsumedCapacity| {
            Output::erase(GetItemOutput::builder().consumed_capacity(c).build())
        };
        // An eventually consistent small read: half an RCU, one half unit.
        let half = ConsumedCapacity::builder().capacity_units(0.5).build();
        assert_eq!(DynamoDb.usage(&get(half), None, &est, "t:read"), Some(1));
        let read = ConsumedCapacity::builder()
            .capacity_units(3.0)
            .read_capacity_units(3.0)
            .build();
        assert_eq!(DynamoDb.usage(&get(read), None, &est, "t:read"), Some(6));
        // A write to a table with an index: the table's own share (INDEXES) settles its key.
        let indexed = ConsumedCapacity::builder()
            .capacity_units(3.0)
            .table(Capacity::builder().capacity_units(1.0).build())
            .build();
        let put = Output::erase(PutItemOutput::builder().consumed_capacity(indexed).build());
        assert_eq!(DynamoDb.usage(&put, None, &est, "t:write"), Some(1));
        let batch = Output::erase(
            BatchGetItemOutput::builder()
                .consumed_capacity(ConsumedCapacity::builder().capacity_units(1.5).build())
                .consumed_capacity(ConsumedCapacity::builder().capacity_units(2.0).build())
                .build(),
        );
        assert_eq!(DynamoDb.usage(&batch, None, &est, "t:read"), Some(7));
        let none = Output::erase(BatchWriteItemOutput::builder().build());
        assert_eq!(DynamoDb.usage(&none, None, &est, "t:write"), None);
    }

    #[test]
    fn a_multi_table_batch_reserves_and_settles_each_table_apart() {
        use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
        let write = |n| {
            WriteRequest::builder()
                .put_request(PutRequest::builder().set_item(Some(kb(n))).build().unwrap())
                .build()
        };
        let batch = BatchWriteItemInput::builder()
            .request_items("users", vec![write(1)])
            .request_items("orders", vec![write(2), write(3)])
            .build()
            .unwrap();
        let mut input = Input::erase(batch);
        let p = DynamoDb.prepare(&mut input, &est()).unwrap();
        // The first table by name is the call's own key; every other table has its own.
        assert_eq!((&*p.key, p.cost.units), ("orders:write", 5));
        assert_eq!(p.also.len(), 1);
        assert_eq!((&*p.also[0].0, p.also[0].1.units), ("users:write", 1));
        let capacity = |table: &str, units: f64| {
            ConsumedCapacity::builder()
                .table_name(table)
                .capacity_units(units)
                .build()
        };
        let output = Output::erase(
            BatchWriteItemOutput::builder()
                .consumed_capacity(capacity("orders", 5.0))
                .consumed_capacity(capacity("users", 1.0))
                .build(),
        );
        let est = est();
        assert_eq!(DynamoDb.usage(&output, None, &est, "orders:write"), Some(5));
        assert_eq!(DynamoDb.usage(&output, None, &est, "users:write"), Some(1));
        assert_eq!(DynamoDb.usage(&output, None, &est, "other:write"), None);
    }

    #[test]
    fn asks_for_usage_only_when_the_caller_did_not() {
        let mut none = None;
        assert!(ask_usage(&mut none));
        assert_eq!(none, Some(ReturnConsumedCapacity::Indexes));
        let mut indexes = Some(ReturnConsumedCapacity::Indexes);
        assert!(!ask_usage(&mut indexes));
        assert_eq!(indexes, Some(ReturnConsumedCapacity::Indexes));
    }
}
