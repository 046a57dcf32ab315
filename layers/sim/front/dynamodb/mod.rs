//! DynamoDB's awsJson1_0 protocol over [`DynamoSim`] and a DynamoDB-compatible store.
//!
//! | operation | charged | how |
//! |---|---|---|
//! | `PutItem` | write | the item's size, before forwarding |
//! | `UpdateItem` | write | the key's and the new values' sizes (the old item is not read), before forwarding |
//! | `DeleteItem` | write | the key's size (one unit for ordinary keys), before forwarding |
//! | `BatchWriteItem` | write, per item | as `PutItem` / `DeleteItem`; throttled items come back in `UnprocessedItems`, and only when every item is throttled does the call fail |
//! | `BatchGetItem` | read, per key | as `GetItem`, after the store answered; throttled keys are taken out of `Responses` and come back in `UnprocessedKeys`, and only when every key is throttled does the call fail |
//! | `GetItem` | read | the returned item's size, after the store answered |
//! | `Query` | read | the returned items' total size, after the store answered |
//! | `CreateTable`, `DescribeTable`, `ListTables`, `DeleteTable`, `UpdateTable`, `Scan`, `TransactWriteItems`, `TransactGetItems`, `DescribeTimeToLive`, `UpdateTimeToLive` | no | forwarded as they are |
//!
//! Reads are charged after the store answered because DynamoDB charges a read by what it
//! returned and a read has no side effect to undo when the charge is refused. Tables the
//! simulator has no quota for are forwarded uncharged. The partition key of an item is found
//! by the table's key schema, learned from `CreateTable` calls through the front, from
//! `DescribeTable` on the store, or from [`SimServiceBuilder::partition_key`](super::SimServiceBuilder::partition_key).
//!
//! When a request asks for it (`ReturnConsumedCapacity`: `TOTAL` or `INDEXES`), the answer's
//! `ConsumedCapacity` is the simulator's charge (it replaces the store's own figure, so what a
//! client learns is what the quota spent).
//!
//! Without a store, data operations are charged as above and answered with empty results
//! (`{}`; `Query`: no items; `BatchWriteItem`: only the throttled items unprocessed;
//! `BatchGetItem`: no items, only the throttled keys unprocessed), so capacity scenarios can
//! run in process on virtual time.
//!
//! Batches follow DynamoDB's rule: "If none of the items can be processed due to insufficient
//! provisioned throughput on all of the tables in the request, then BatchGetItem returns a
//! ProvisionedThroughputExceededException. If at least one of the items is successfully
//! processed, then BatchGetItem completes successfully, while returning the keys of the unread
//! items in UnprocessedKeys", and the same for `BatchWriteItem` and `UnprocessedItems`
//! (<https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html>,
//! <https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchWriteItem.html>).
//! A table may be named by its ARN (`TableName`, `RequestItems` keys), as DynamoDB allows: it is
//! charged, and its partition key found, under its name ([`crate::dynamodb::table_name`]); the
//! answer's `ConsumedCapacity` names it as the request did, as DynamoDB does.
//!
//! A throttle's error body carries DynamoDB's `ThrottlingReasons`
//! (`[{ "reason": "TableWriteKeyRangeThroughputExceeded", "resource": "arn:aws:dynamodb:…:table/NAME" }]`).

mod batch;
mod capacity;
mod data;
mod keys;
mod op;
mod upstream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use serde_json::{Map, Value, json};

use self::keys::{hash_key, table_name};
pub(crate) use self::op::{DynamoOp, parse_target};
use self::upstream::Answer;
pub(crate) use self::upstream::Upstream;
use super::Head;
use super::wire::{AMZ_JSON_1_0, Protocol, WireError, WireResponse};
use crate::sim::DynamoSim;

/// The DynamoDB half of the front.
#[derive(Debug)]
pub(crate) struct DynamoFront {
    pub(crate) sim: Option<DynamoSim>,
    upstream: Option<Upstream>,
    /// Partition key attribute per table: configured, or learned.
    keys: Mutex<HashMap<String, Arc<str>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The map holds no invariant a panicking holder could break.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl DynamoFront {
    pub(crate) fn new(
        sim: Option<DynamoSim>,
        upstream: Option<Upstream>,
        keys: HashMap<String, String>,
    ) -> DynamoFront {
        DynamoFront {
            sim,
            upstream,
            keys: Mutex::new(keys.into_iter().map(|(t, k)| (t, Arc::from(k))).collect()),
        }
    }

    pub(crate) async fn handle(&self, op: DynamoOp, head: &Head, raw: Bytes) -> WireResponse {
        let id = &head.request_id;
        let result = match serde_json::from_slice::<Value>(&raw) {
            Ok(Value::Object(body)) => self.dispatch(op, head, raw, body).await,
            Ok(_) => Err(WireError::serialization(
                "The request body must be a JSON object.",
            )),
            Err(_) => Err(WireError::serialization(
                "The request body is not valid JSON.",
            )),
        };
        match result {
            Ok(response) => {
                tracing::debug!(
                    op = op.as_str(),
                    status = response.status().as_u16(),
                    "sim front: dynamodb call answered"
                );
                response
            }
            Err(error) => {
                tracing::debug!(
                    op = op.as_str(),
                    status = error.status.as_u16(),
                    code = error.code,
                    "sim front: dynamodb call refused"
                );
                error.into_response(Protocol::AwsJson10, id)
            }
        }
    }

    async fn dispatch(
        &self,
        op: DynamoOp,
        head: &Head,
        raw: Bytes,
        body: Map<String, Value>,
    ) -> Result<WireResponse, WireError> {
        match op {
            DynamoOp::PutItem | DynamoOp::UpdateItem | DynamoOp::DeleteItem => {
                self.write(op, head, raw, &body).await
            }
            DynamoOp::GetItem | DynamoOp::Query => self.read(op, head, raw, &body).await,
            DynamoOp::BatchWriteItem => self.batch_write(head, raw, body).await,
            DynamoOp::BatchGetItem => self.batch_get(head, raw, body).await,
            DynamoOp::CreateTable | DynamoOp::DeleteTable | DynamoOp::PassThrough(_) => {
                let answer = self.forward(op, head, raw).await?;
                if answer.status.is_success() {
                    self.learn(op, &body);
                }
                Ok(answer.into_response(&head.request_id))
            }
        }
    }

    async fn forward(&self, op: DynamoOp, head: &Head, raw: Bytes) -> Result<Answer, WireError> {
        match &self.upstream {
            Some(upstream) => upstream.send(&head.headers, raw).await,
            None => match op {
                DynamoOp::PutItem
                | DynamoOp::UpdateItem
                | DynamoOp::DeleteItem
                | DynamoOp::GetItem => Ok(Answer::empty(json!({}))),
                DynamoOp::Query => Ok(Answer::empty(
                    json!({"Items": [], "Count": 0, "ScannedCount": 0}),
                )),
                DynamoOp::BatchWriteItem => Ok(Answer::empty(json!({"UnprocessedItems": {}}))),
                DynamoOp::BatchGetItem => Ok(Answer::empty(
                    json!({"Responses": {}, "UnprocessedKeys": {}}),
                )),
                _ => Err(WireError::validation(format!(
                    "The simulator has no DynamoDB store to answer {}.",
                    op.as_str()
                ))),
            },
        }
    }

    /// Remembers key schemas the client creates, forgets deleted tables.
    fn learn(&self, op: DynamoOp, body: &Map<String, Value>) {
        let Ok(table) = table_name(body) else { return };
        let table = crate::dynamodb::table_name(table);
        match op {
            DynamoOp::CreateTable => {
                if let Some(key) = hash_key(body.get("KeySchema")) {
                    lock(&self.keys).insert(table.to_owned(), Arc::from(key));
                }
            }
            DynamoOp::DeleteTable => {
                lock(&self.keys).remove(table);
            }
            _ => {}
        }
    }

    /// Whether the simulator has a quota for `table`.
    fn charged(&self, table: &str) -> Option<&DynamoSim> {
        self.sim.as_ref().filter(|sim| sim.has_table(table))
    }

    /// `table`'s partition key attribute: known, or asked of the store.
    async fn partition_key(&self, table: &str, head: &Head) -> Result<Arc<str>, WireError> {
        if let Some(key) = lock(&self.keys).get(table) {
            return Ok(key.clone());
        }
        let unknown = || {
            WireError::validation(format!(
                "The simulator does not know the partition key of table {table}; create it through the simulator or configure front.partition_keys."
            ))
        };
        let upstream = self.upstream.as_ref().ok_or_else(unknown)?;
        // The client's headers (the store wants a signature and its date; it does not check
        // the signature), retargeted.
        let mut headers = head.headers.clone();
        headers.insert(
            "x-amz-target",
            HeaderValue::from_static("DynamoDB_20120810.DescribeTable"),
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(AMZ_JSON_1_0));
        let body =
            Bytes::from(serde_json::to_vec(&json!({ "TableName": table })).unwrap_or_default());
        let answer = upstream.send(&headers, body).await?;
        let key = answer
            .json()
            .filter(|_| answer.status.is_success())
            .and_then(|d| {
                hash_key(d.get("Table").and_then(|t| t.get("KeySchema"))).map(Arc::<str>::from)
            })
            .ok_or_else(unknown)?;
        lock(&self.keys).insert(table.to_owned(), key.clone());
        Ok(key)
    }
}
