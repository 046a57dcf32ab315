//! The data operations, charged: writes before forwarding, reads after the store answered,
//! batch writes item by item.

use bytes::Bytes;
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::capacity::{Report, charge, consumed_capacity, report, with_capacity};
use super::keys::{key_text, missing_key, query_key, table_name};
use super::{DynamoFront, DynamoOp};
use crate::sim::DynamoCall;
use crate::sim::front::item_size::{item_size, value_size};
use crate::sim::front::wire::{WireError, WireResponse};
use crate::sim::front::{Head, sim_error};

impl DynamoFront {
    pub(super) async fn write(
        &self,
        op: DynamoOp,
        head: &Head,
        raw: Bytes,
        body: &Map<String, Value>,
    ) -> Result<WireResponse, WireError> {
        let table = table_name(body)?;
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
            table,
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
        let table = table_name(body)?;
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
            table,
            units,
            false,
            report(body),
            &head.request_id,
        ))
    }

    pub(super) async fn batch_write(
        &self,
        head: &Head,
        raw: Bytes,
        mut body: Map<String, Value>,
    ) -> Result<WireResponse, WireError> {
        let Some(Value::Object(requests)) = body.get("RequestItems") else {
            return Err(WireError::validation(
                "1 validation error detected: Value null at 'requestItems' failed to satisfy constraint: Member must not be null",
            ));
        };
        let now = Instant::now();
        let mut admitted = Map::new();
        let mut unprocessed = Map::new();
        let mut spent: Vec<(String, f64)> = Vec::new();
        let mut throttle = None;
        let mut items = 0usize;
        for (table, writes) in requests {
            let Some(writes) = writes.as_array() else {
                return Err(WireError::serialization(
                    "RequestItems values must be lists.",
                ));
            };
            let Some(sim) = self.charged(table) else {
                admitted.insert(table.clone(), Value::Array(writes.clone()));
                continue;
            };
            let pk = self.partition_key(table, head).await?;
            let (mut ok, mut refused, mut units) = (Vec::new(), Vec::new(), 0.0);
            for write in writes {
                items += 1;
                let item = write
                    .get("PutRequest")
                    .and_then(|p| p.get("Item"))
                    .or_else(|| write.get("DeleteRequest").and_then(|d| d.get("Key")))
                    .and_then(Value::as_object)
                    .ok_or_else(missing_key)?;
                let key = item.get(&*pk).and_then(key_text).ok_or_else(missing_key)?;
                let mut call = DynamoCall::write(table.as_str(), key, item_size(item));
                if let Some(caller) = &head.caller {
                    call = call.caller(caller.clone());
                }
                match sim.charge(&call, now) {
                    Ok(charged) => {
                        units += charged;
                        ok.push(write.clone());
                    }
                    Err(error) => {
                        throttle = Some(error);
                        refused.push(write.clone());
                    }
                }
            }
            if !ok.is_empty() {
                admitted.insert(table.clone(), Value::Array(ok));
            }
            if !refused.is_empty() {
                unprocessed.insert(table.clone(), Value::Array(refused));
            }
            spent.push((table.clone(), units));
        }
        if let Some(error) = &throttle {
            if admitted.is_empty() {
                // DynamoDB fails the whole call only when no item could be written.
                return Err(sim_error(error));
            }
        }
        let report = report(&body);
        let raw = if unprocessed.is_empty() {
            raw
        } else {
            body.insert(String::from("RequestItems"), Value::Object(admitted));
            Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
        };
        tracing::trace!(
            items,
            throttled = unprocessed.len(),
            "sim front: batch write charged"
        );
        let answer = self.forward(DynamoOp::BatchWriteItem, head, raw).await?;
        if !answer.status.is_success() || (unprocessed.is_empty() && report == Report::None) {
            return Ok(answer.into_response(&head.request_id));
        }
        let mut reply = answer.json().unwrap_or_default();
        let merged = match reply.remove("UnprocessedItems") {
            Some(Value::Object(mut theirs)) => {
                for (table, writes) in unprocessed {
                    let slot = theirs
                        .entry(table)
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let (Value::Array(slot), Value::Array(writes)) = (slot, writes) {
                        slot.extend(writes);
                    }
                }
                theirs
            }
            _ => unprocessed,
        };
        reply.insert(String::from("UnprocessedItems"), Value::Object(merged));
        if report != Report::None {
            reply.insert(
                String::from("ConsumedCapacity"),
                Value::Array(
                    spent
                        .iter()
                        .map(|(table, units)| consumed_capacity(table, *units, true, report))
                        .collect(),
                ),
            );
        }
        Ok(answer.rewritten(&reply, &head.request_id))
    }
}
