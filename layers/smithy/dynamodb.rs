//! Amazon DynamoDB (`aws-sdk-dynamodb`): capacity units from typed items, usage from
//! `ConsumedCapacity` (asked for when the caller did not ask, and removed from the output the
//! caller sees), one quota key and breaker per table.
//!
//! Estimates follow DynamoDB's own rules (`crate::item_size`, the ones the simulator bills by):
//! a write costs one WCU per started KB of the item; reads and queries are estimated at one
//! unit and settled from `ConsumedCapacity`. A `BatchWriteItem` is keyed by its first table.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::operation::batch_get_item::{BatchGetItemInput, BatchGetItemOutput};
use aws_sdk_dynamodb::operation::batch_write_item::{BatchWriteItemInput, BatchWriteItemOutput};
use aws_sdk_dynamodb::operation::delete_item::{DeleteItemInput, DeleteItemOutput};
use aws_sdk_dynamodb::operation::get_item::{GetItemInput, GetItemOutput};
use aws_sdk_dynamodb::operation::put_item::{PutItemInput, PutItemOutput};
use aws_sdk_dynamodb::operation::query::{QueryInput, QueryOutput};
use aws_sdk_dynamodb::operation::scan::{ScanInput, ScanOutput};
use aws_sdk_dynamodb::operation::update_item::{UpdateItemInput, UpdateItemOutput};
use aws_sdk_dynamodb::types::{AttributeValue, ConsumedCapacity, ReturnConsumedCapacity};
use aws_smithy_runtime_api::client::interceptors::context::{Input, Output};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::config_bag::ConfigBag;

use super::call::Prepared;
use super::interceptor::Shape;
use super::{Estimation, SdkHeadroom};
use crate::admission::{Cost, QuotaStore};
use crate::error::ConfigError;
use crate::item_size::{CONTAINER, ELEMENT, SCALAR, number_size, write_units};

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

/// Asks for `TOTAL` consumed capacity when the caller asked for none; says whether it asked.
fn ask_usage(field: &mut Option<ReturnConsumedCapacity>) -> bool {
    match field {
        None | Some(ReturnConsumedCapacity::None) => {
            *field = Some(ReturnConsumedCapacity::Total);
            true
        }
        Some(_) => false,
    }
}

fn prepared(table: Option<&str>, units: u64, asked_usage: bool) -> Option<Prepared> {
    Some(Prepared {
        key: Arc::from(table?),
        cost: Cost::units(units),
        tokens: None,
        stream: false,
        asked_usage,
        routable: false,
        keys_are_models: false,
    })
}

fn capacity(c: Option<&ConsumedCapacity>) -> Option<f64> {
    c.and_then(|c| c.capacity_units())
}

impl Shape for DynamoDb {
    fn prepare(&self, input: &mut Input, _estimation: &Estimation) -> Option<Prepared> {
        if let Some(i) = input.downcast_mut::<PutItemInput>() {
            let units = write_units(i.item.as_ref().map_or(0, item_size));
            let asked = ask_usage(&mut i.return_consumed_capacity);
            return prepared(i.table_name.as_deref(), units, asked);
        }
        if let Some(i) = input.downcast_mut::<UpdateItemInput>() {
            let asked = ask_usage(&mut i.return_consumed_capacity);
            return prepared(i.table_name.as_deref(), 1, asked);
        }
        if let Some(i) = input.downcast_mut::<DeleteItemInput>() {
            let asked = ask_usage(&mut i.return_consumed_capacity);
            return prepared(i.table_name.as_deref(), 1, asked);
        }
        if let Some(i) = input.downcast_mut::<GetItemInput>() {
            let asked = ask_usage(&mut i.return_consumed_capacity);
            return prepared(i.table_name.as_deref(), 1, asked);
        }
        if let Some(i) = input.downcast_mut::<QueryInput>() {
            let asked = ask_usage(&mut i.return_consumed_capacity);
            return prepared(i.table_name.as_deref(), 1, asked);
        }
        if let Some(i) = input.downcast_mut::<ScanInput>() {
            let asked = ask_usage(&mut i.return_consumed_capacity);
            return prepared(i.table_name.as_deref(), 1, asked);
        }
        if let Some(i) = input.downcast_mut::<BatchWriteItemInput>() {
            let requests = i.request_items.as_ref()?;
            let table = requests.keys().min()?.clone();
            let units = requests
                .values()
                .flatten()
                .map(|w| match w.put_request() {
                    Some(put) => write_units(item_size(put.item())),
                    None => 1,
                })
                .sum();
            let asked = ask_usage(&mut i.return_consumed_capacity);
            return prepared(Some(&table), units, asked);
        }
        if let Some(i) = input.downcast_mut::<BatchGetItemInput>() {
            let requests = i.request_items.as_ref()?;
            let table = requests.keys().min()?.clone();
            let units = requests.values().map(|k| k.keys().len() as u64).sum();
            let asked = ask_usage(&mut i.return_consumed_capacity);
            return prepared(Some(&table), units, asked);
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
        _key: &str,
    ) -> Option<u64> {
        let units = consumed(output)?;
        // A server's odd number (negative, NaN) is no usage reading.
        (units.is_finite() && units >= 0.0).then(|| units.ceil() as u64)
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
            BatchGetItemOutput
        );
    }
}

/// The capacity units an output reports consumed, summed over tables for batches.
fn consumed(output: &Output) -> Option<f64> {
    macro_rules! single {
        ($($output:ty),*) => {$(
            if let Some(o) = output.downcast_ref::<$output>() {
                return capacity(o.consumed_capacity());
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
    let sum = |all: &[ConsumedCapacity]| all.iter().filter_map(|c| c.capacity_units()).sum();
    if let Some(o) = output.downcast_ref::<BatchWriteItemOutput>() {
        return Some(sum(o.consumed_capacity()));
    }
    output
        .downcast_ref::<BatchGetItemOutput>()
        .map(|o| sum(o.consumed_capacity()))
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
        assert_eq!(write_units(item_size(&item)), 1);
        item.insert("blob".to_owned(), AttributeValue::S("x".repeat(2_000)));
        assert_eq!(write_units(item_size(&item)), 2);
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

    #[test]
    fn asks_for_usage_only_when_the_caller_did_not() {
        let mut none = None;
        assert!(ask_usage(&mut none));
        assert_eq!(none, Some(ReturnConsumedCapacity::Total));
        let mut indexes = Some(ReturnConsumedCapacity::Indexes);
        assert!(!ask_usage(&mut indexes));
        assert_eq!(indexes, Some(ReturnConsumedCapacity::Indexes));
    }
}
