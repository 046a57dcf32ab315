//! Settlement: what an output's `ConsumedCapacity` says a quota key spent, in the key's units.
//!
//! An entry's `TableName` is the table's ARN when the call named the table by its ARN; it is
//! read through [`dynamodb::table_name`], as the quota keys were built.

use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemOutput;
use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemOutput;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput;
use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::operation::scan::ScanOutput;
use aws_sdk_dynamodb::operation::transact_get_items::TransactGetItemsOutput;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsOutput;
use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
use aws_sdk_dynamodb::types::ConsumedCapacity;
use aws_smithy_runtime_api::client::interceptors::context::Output;

use crate::dynamodb::{self, Access};

/// What a quota key is for: a table, or one of its global secondary indexes.
pub(super) struct Of<'a> {
    table: &'a str,
    pub(super) index: Option<&'a str>,
}

impl<'a> Of<'a> {
    /// `"orders:read"`: the table; `"orders/by-date:write"`: the index. (The adapter's keys
    /// name tables by name, never by ARN: [`dynamodb::key`].)
    pub(super) fn key(key: &'a str) -> Self {
        let name = key.rsplit_once(':').map_or(key, |(name, _)| name);
        match name.split_once('/') {
            Some((table, index)) => Of {
                table,
                index: Some(index),
            },
            None => Of {
                table: name,
                index: None,
            },
        }
    }
}

/// What one `ConsumedCapacity` says the table itself (or, for `index`, that global secondary
/// index) spent, in its key's units: its own share when the answer splits the table from its
/// indexes (`INDEXES`), else the read or write units, else the total; reads in half units. An
/// index the answer does not name spent nothing it can tell.
fn table_units(c: &ConsumedCapacity, access: Access, index: Option<&str>) -> Option<u64> {
    let own = match (index, c.global_secondary_indexes()) {
        (Some(index), Some(indexes)) => Some(indexes.get(index)?),
        // Without the split (`TOTAL`) a read of an index is all the answer counts; a write's
        // total holds the table's units too, so the index's share is unknown.
        (Some(_), None) if access == Access::Write => return None,
        (Some(_), None) => None,
        (None, _) => c.table(),
    };
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
/// the key's table (or index) consumed (every table's, when the answer names none); `None`
/// when it reports none.
pub(super) fn consumed(output: &Output, of: &Of<'_>) -> Option<u64> {
    use Access::{Read as R, Write as W};
    macro_rules! single {
        ($($output:ty => $access:expr),*) => {$(
            if let Some(o) = output.downcast_ref::<$output>() {
                return o.consumed_capacity().and_then(|c| table_units(c, $access, of.index));
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
        let mine = |c: &&ConsumedCapacity| {
            !named(all) || c.table_name().map(dynamodb::table_name) == Some(of.table)
        };
        let mut units = all
            .iter()
            .filter(mine)
            .filter_map(|c| table_units(c, access, of.index))
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

/// Calls `found(table, index)` for each global secondary index an output's `ConsumedCapacity`
/// reports (asked for as `INDEXES`) with the table it names.
pub(super) fn reported_indexes(output: &Output, mut found: impl FnMut(&str, &str)) {
    let mut report = |c: &ConsumedCapacity| {
        if let (Some(table), Some(indexes)) = (c.table_name(), c.global_secondary_indexes()) {
            let table = dynamodb::table_name(table);
            for index in indexes.keys() {
                found(table, index);
            }
        }
    };
    macro_rules! single {
        ($($output:ty),*) => {$(
            if let Some(o) = output.downcast_ref::<$output>() {
                if let Some(c) = o.consumed_capacity() {
                    report(c);
                }
                return;
            }
        )*};
    }
    single!(
        PutItemOutput,
        UpdateItemOutput,
        DeleteItemOutput,
        GetItemOutput,
        QueryOutput,
        ScanOutput
    );
    macro_rules! many {
        ($($output:ty),*) => {$(
            if let Some(o) = output.downcast_ref::<$output>() {
                o.consumed_capacity().iter().for_each(&mut report);
                return;
            }
        )*};
    }
    many!(
        BatchWriteItemOutput,
        BatchGetItemOutput,
        TransactWriteItemsOutput,
        TransactGetItemsOutput
    );
}
