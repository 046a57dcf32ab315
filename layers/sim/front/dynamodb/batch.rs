//! The batch operations, charged item by item: `BatchWriteItem` before forwarding the admitted
//! items, `BatchGetItem` after the store answered; throttled items and keys come back
//! unprocessed, and only a batch with every item throttled fails.

use bytes::Bytes;
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::capacity::{Report, consumed_capacity, report};
use super::keys::{key_text, missing_key};
use super::{DynamoFront, DynamoOp};
use crate::dynamodb;
use crate::sim::DynamoCall;
use crate::sim::front::item_size::item_size;
use crate::sim::front::wire::{WireError, WireResponse};
use crate::sim::front::{Head, sim_error};

/// Whether `item` holds every attribute of `key` with the same value.
fn matches_key(item: &Map<String, Value>, key: &Map<String, Value>) -> bool {
    key.iter()
        .all(|(name, value)| item.get(name) == Some(value))
}

impl DynamoFront {
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
        for (given, writes) in requests {
            let Some(writes) = writes.as_array() else {
                return Err(WireError::serialization(
                    "RequestItems values must be lists.",
                ));
            };
            // The reply names the table as the request did (name or ARN).
            let table = dynamodb::table_name(given);
            let Some(sim) = self.charged(table) else {
                admitted.insert(given.clone(), Value::Array(writes.clone()));
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
                let mut call = DynamoCall::write(table, key, item_size(item));
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
                admitted.insert(given.clone(), Value::Array(ok));
            }
            if !refused.is_empty() {
                unprocessed.insert(given.clone(), Value::Array(refused));
            }
            spent.push((given.clone(), units));
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
        insert_consumed(&mut reply, &spent, true, report);
        Ok(answer.rewritten(&reply, &head.request_id))
    }

    pub(super) async fn batch_get(
        &self,
        head: &Head,
        raw: Bytes,
        body: Map<String, Value>,
    ) -> Result<WireResponse, WireError> {
        let Some(Value::Object(requests)) = body.get("RequestItems") else {
            return Err(WireError::validation(
                "1 validation error detected: Value null at 'requestItems' failed to satisfy constraint: Member must not be null",
            ));
        };
        // Every charged table's partition key, before anything is sent.
        let mut charged = Vec::new();
        for (given, request) in requests {
            let Some(request) = request.as_object() else {
                return Err(WireError::serialization(
                    "RequestItems values must be objects.",
                ));
            };
            let table = dynamodb::table_name(given);
            if let Some(sim) = self.charged(table) {
                let pk = self.partition_key(table, head).await?;
                charged.push((given.clone(), request.clone(), sim, pk));
            }
        }
        let answer = self.forward(DynamoOp::BatchGetItem, head, raw).await?;
        if !answer.status.is_success() || charged.is_empty() {
            return Ok(answer.into_response(&head.request_id));
        }
        let mut reply = answer.json().unwrap_or_default();
        let mut responses = match reply.remove("Responses") {
            Some(Value::Object(responses)) => responses,
            _ => Map::new(),
        };
        let mut unprocessed = match reply.remove("UnprocessedKeys") {
            Some(Value::Object(theirs)) => theirs,
            _ => Map::new(),
        };
        let now = Instant::now();
        let (mut admitted, mut throttle) = (0usize, None);
        let mut spent: Vec<(String, f64)> = Vec::new();
        for (table, request, sim, pk) in charged {
            let consistent = request.get("ConsistentRead").and_then(Value::as_bool) == Some(true);
            let keys = request
                .get("Keys")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut items: Vec<Value> = match responses.remove(&table) {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            };
            let (mut refused, mut units) = (Vec::new(), 0.0);
            for key in keys {
                let key_map = key.as_object().ok_or_else(missing_key)?;
                let pk_value = key_map
                    .get(&*pk)
                    .and_then(key_text)
                    .ok_or_else(missing_key)?;
                let found = items
                    .iter()
                    .position(|i| i.as_object().is_some_and(|i| matches_key(i, key_map)));
                let bytes = found
                    .and_then(|at| items[at].as_object())
                    .map_or(0, item_size);
                let name = dynamodb::table_name(&table);
                let mut call = DynamoCall::read(name, pk_value, bytes, consistent);
                if let Some(caller) = &head.caller {
                    call = call.caller(caller.clone());
                }
                match sim.charge(&call, now) {
                    Ok(charged) => {
                        admitted += 1;
                        units += charged;
                    }
                    Err(error) => {
                        throttle = Some(error);
                        if let Some(at) = found {
                            items.remove(at);
                        }
                        refused.push(key);
                    }
                }
            }
            responses.insert(table.clone(), Value::Array(items));
            if !refused.is_empty() {
                let mut rest = request.clone();
                rest.insert(String::from("Keys"), Value::Array(refused));
                unprocessed.insert(table.clone(), Value::Object(rest));
            }
            spent.push((table, units));
        }
        if let Some(error) = &throttle
            && admitted == 0
        {
            // DynamoDB fails the whole call only when no item could be read.
            return Err(sim_error(error));
        }
        tracing::trace!(
            admitted,
            throttled = unprocessed.len(),
            "sim front: batch get charged"
        );
        reply.insert(String::from("Responses"), Value::Object(responses));
        reply.insert(String::from("UnprocessedKeys"), Value::Object(unprocessed));
        let report = report(&body);
        insert_consumed(&mut reply, &spent, false, report);
        Ok(answer.rewritten(&reply, &head.request_id))
    }
}

/// A batch reply's `ConsumedCapacity`: one entry per table it charged (`write` units or read
/// units), when the request asked for a report.
fn insert_consumed(
    reply: &mut Map<String, Value>,
    spent: &[(String, f64)],
    write: bool,
    report: Report,
) {
    if report != Report::None {
        reply.insert(
            String::from("ConsumedCapacity"),
            Value::Array(
                spent
                    .iter()
                    .map(|(table, units)| consumed_capacity(table, *units, write, report))
                    .collect(),
            ),
        );
    }
}
