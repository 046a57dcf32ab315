//! The single-item data operations, charged: writes before forwarding, reads after the store
//! answered (batches are in `batch.rs`).

use bytes::Bytes;
use serde_json::{Map, Value};

use super::capacity::{charge, report, with_capacity};
use super::keys::{key_text, missing_key, query_key, table_name};
use super::{DynamoFront, DynamoOp};
use crate::dynamodb;
use crate::sim::DynamoCall;
use crate::sim::front::Head;
use crate::sim::front::item_size::{item_size, value_size};
use crate::sim::front::wire::{WireError, WireResponse};

impl DynamoFront {
    pub(super) async fn write(
        &self,
        op: DynamoOp,
        head: &Head,
        raw: Bytes,
        body: &Map<String, Value>,
    ) -> Result<WireResponse, WireError> {
        let given = table_name(body)?;
        let table = dynamodb::table_name(given);
        let Some(sim) = self.charged(table) else {
            return Ok(self
                .forward(op, head, raw)
                .await?
                .into_response(&head.request_id));
        };
        let pk = self.partition_key(table, head).await?;
        let source = if op == DynamoOp::PutItem {
            "Item"
        } else {
            "Key"
        };
        let Some(item) = body.get(source).and_then(Value::as_object) else {
            return Err(missing_key());
        };
        let key = item.get(&*pk).and_then(key_text).ok_or_else(missing_key)?;
        let bytes = match op {
            DynamoOp::UpdateItem => {
                item_size(item)
                    + body
                        .get("ExpressionAttributeValues")
                        .and_then(Value::as_object)
                        .map_or(0, |values| values.values().map(value_size).sum())
                    + body
                        .get("AttributeUpdates")
                        .and_then(Value::as_object)
                        .map_or(0, |updates| {
                            updates
                                .iter()
                                .map(|(name, u)| {
                                    name.len() as u64 + u.get("Value").map_or(0, value_size)
                                })
                                .sum()
                        })
            }
            _ => item_size(item),
        };
        let mut call = DynamoCall::write(table, key, bytes);
        if let Some(caller) = &head.caller {
            call = call.caller(caller.clone());
        }
        let units = charge(sim, call).await?;
        let answer = self.forward(op, head, raw).await?;
        Ok(with_capacity(
            answer,
            given,
            units,
            true,
            report(body),
            &head.request_id,
        ))
    }

    pub(super) async fn read(
        &self,
        op: DynamoOp,
        head: &Head,
        raw: Bytes,
        body: &Map<String, Value>,
    ) -> Result<WireResponse, WireError> {
        let given = table_name(body)?;
        let table = dynamodb::table_name(given);
        let Some(sim) = self.charged(table) else {
            return Ok(self
                .forward(op, head, raw)
                .await?
                .into_response(&head.request_id));
        };
        let pk = self.partition_key(table, head).await?;
        let key = match op {
            DynamoOp::GetItem => body
                .get("Key")
                .and_then(|k| k.get(&*pk))
                .and_then(key_text)
                .ok_or_else(missing_key)?
                .to_owned(),
            // A query whose partition key cannot be read here is charged to the partition of
            // the empty key; the store rejects a query without one anyway.
            _ => query_key(body, &pk).unwrap_or_default(),
        };
        let consistent = body.get("ConsistentRead").and_then(Value::as_bool) == Some(true);
        let answer = self.forward(op, head, raw).await?;
        if !answer.status.is_success() {
            return Ok(answer.into_response(&head.request_id));
        }
        let parsed = answer.json();
        let bytes = match (&parsed, op) {
            (Some(reply), DynamoOp::GetItem) => reply
                .get("Item")
                .and_then(Value::as_object)
                .map_or(0, item_size),
            (Some(reply), _) => reply
                .get("Items")
                .and_then(Value::as_array)
                .map_or(0, |items| {
                    items
                        .iter()
                        .filter_map(Value::as_object)
                        .map(item_size)
                        .sum()
                }),
            (None, _) => 0,
        };
        let mut call = DynamoCall::read(table, key, bytes, consistent);
        if let Some(caller) = &head.caller {
            call = call.caller(caller.clone());
        }
        let units = charge(sim, call).await?;
        Ok(with_capacity(
            answer,
            given,
            units,
            false,
            report(body),
            &head.request_id,
        ))
    }
}
