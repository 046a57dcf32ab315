//! DynamoDB's awsJson1_0 protocol over [`DynamoSim`] and a DynamoDB-compatible store.
//!
//! | operation | charged | how |
//! |---|---|---|
//! | `PutItem` | write | the item's size, before forwarding |
//! | `UpdateItem` | write | the key's and the new values' sizes (the old item is not read), before forwarding |
//! | `DeleteItem` | write | the key's size (one unit for ordinary keys), before forwarding |
//! | `BatchWriteItem` | write, per item | as `PutItem` / `DeleteItem`; throttled items come back in `UnprocessedItems`, and only when every item is throttled does the call fail |
//! | `GetItem` | read | the returned item's size, after the store answered |
//! | `Query` | read | the returned items' total size, after the store answered |
//! | `CreateTable`, `DescribeTable`, `ListTables`, `DeleteTable`, `UpdateTable`, `Scan`, `BatchGetItem`, `TransactWriteItems`, `TransactGetItems`, `DescribeTimeToLive`, `UpdateTimeToLive` | no | forwarded as they are |
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
//! (`{}`; `Query`: no items; `BatchWriteItem`: only the throttled items unprocessed), so
//! capacity scenarios can run in process on virtual time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::item_size::{item_size, value_size};
use super::wire::{self, AMZ_JSON_1_0, Protocol, WireError, WireResponse};
use super::{Head, sim_error};
use crate::ConfigError;
use crate::sim::{DynamoCall, DynamoSim};

/// The `X-Amz-Target` prefix of DynamoDB's current API version.
const TARGET_PREFIX: &[u8] = b"DynamoDB_20120810.";

/// The DynamoDB operations the front knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DynamoOp {
    PutItem,
    UpdateItem,
    DeleteItem,
    BatchWriteItem,
    GetItem,
    Query,
    CreateTable,
    DeleteTable,
    /// Forwarded as is, never charged.
    PassThrough(&'static str),
}

impl DynamoOp {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DynamoOp::PutItem => "PutItem",
            DynamoOp::UpdateItem => "UpdateItem",
            DynamoOp::DeleteItem => "DeleteItem",
            DynamoOp::BatchWriteItem => "BatchWriteItem",
            DynamoOp::GetItem => "GetItem",
            DynamoOp::Query => "Query",
            DynamoOp::CreateTable => "CreateTable",
            DynamoOp::DeleteTable => "DeleteTable",
            DynamoOp::PassThrough(name) => name,
        }
    }
}

/// The operation named by an `X-Amz-Target` header value.
pub(crate) fn parse_target(target: &[u8]) -> Option<DynamoOp> {
    let name = target.strip_prefix(TARGET_PREFIX)?;
    Some(match name {
        b"PutItem" => DynamoOp::PutItem,
        b"UpdateItem" => DynamoOp::UpdateItem,
        b"DeleteItem" => DynamoOp::DeleteItem,
        b"BatchWriteItem" => DynamoOp::BatchWriteItem,
        b"GetItem" => DynamoOp::GetItem,
        b"Query" => DynamoOp::Query,
        b"CreateTable" => DynamoOp::CreateTable,
        b"DeleteTable" => DynamoOp::DeleteTable,
        b"DescribeTable" => DynamoOp::PassThrough("DescribeTable"),
        b"ListTables" => DynamoOp::PassThrough("ListTables"),
        b"UpdateTable" => DynamoOp::PassThrough("UpdateTable"),
        b"Scan" => DynamoOp::PassThrough("Scan"),
        b"BatchGetItem" => DynamoOp::PassThrough("BatchGetItem"),
        b"TransactWriteItems" => DynamoOp::PassThrough("TransactWriteItems"),
        b"TransactGetItems" => DynamoOp::PassThrough("TransactGetItems"),
        b"DescribeTimeToLive" => DynamoOp::PassThrough("DescribeTimeToLive"),
        b"UpdateTimeToLive" => DynamoOp::PassThrough("UpdateTimeToLive"),
        _ => return None,
    })
}

/// The store the front forwards to.
#[derive(Clone, Debug)]
pub(crate) struct Upstream {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
}

impl Upstream {
    /// `url` must be `http://host:port` (optionally with a trailing `/`).
    pub(crate) fn new(url: &str) -> Result<Upstream, ConfigError> {
        let bad = |reason| ConfigError::new("dynamodb_upstream", url, reason);
        let uri: Uri = url
            .parse()
            .map_err(|_| bad("must be an http:// URL, e.g. http://127.0.0.1:8000"))?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(bad(
                "must be an http:// URL with a host, e.g. http://127.0.0.1:8000",
            ));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("must not have a path or query"));
        }
        let uri = Uri::builder()
            .scheme("http")
            .authority(
                uri.authority()
                    .cloned()
                    .ok_or_else(|| bad("must have a host"))?,
            )
            .path_and_query("/")
            .build()
            .map_err(|_| bad("must be an http:// URL"))?;
        Ok(Upstream {
            client: Client::builder(TokioExecutor::new()).build_http(),
            uri,
        })
    }

    /// Sends one call, with the client's headers (signature included: the store may check
    /// that there is one) and `body`.
    async fn send(&self, headers: &HeaderMap, body: Bytes) -> Result<Answer, WireError> {
        let mut request = Request::post(self.uri.clone())
            .body(Full::new(body))
            .map_err(|_| WireError::internal("The simulator could not build the store request."))?;
        for (name, value) in headers {
            if !matches!(
                name.as_str(),
                "host" | "content-length" | "connection" | "transfer-encoding" | "expect"
            ) {
                request.headers_mut().append(name.clone(), value.clone());
            }
        }
        let response = self.client.request(request).await.map_err(|error| {
            tracing::warn!(%error, "sim front: the DynamoDB store is unreachable");
            WireError::internal("The simulator's DynamoDB store is unreachable.")
        })?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|_| WireError::internal("The simulator's DynamoDB store did not answer."))?
            .to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// An answer from the store (or made up without one).
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn empty(body: Value) -> Answer {
        Answer {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
        }
    }

    fn json(&self) -> Option<Map<String, Value>> {
        match serde_json::from_slice(&self.body) {
            Ok(Value::Object(map)) => Some(map),
            _ => None,
        }
    }

    /// The answer as it is (the store's checksum header included).
    fn into_response(self, request_id: &str) -> WireResponse {
        let mut response = wire::bytes_response(AMZ_JSON_1_0, self.status, self.body, request_id);
        for name in ["x-amz-crc32", wire::ERROR_TYPE] {
            if let Some(value) = self.headers.get(name) {
                response.headers_mut().insert(name, value.clone());
            }
        }
        response
    }

    /// The answer with a rewritten body (no checksum: it would be the store's, now wrong).
    fn rewritten(self, body: &Map<String, Value>, request_id: &str) -> WireResponse {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        wire::bytes_response(AMZ_JSON_1_0, self.status, Bytes::from(bytes), request_id)
    }
}

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

/// What a request asked to see of its consumed capacity.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Report {
    None,
    Total,
    Indexes,
}

fn report(body: &Map<String, Value>) -> Report {
    match body.get("ReturnConsumedCapacity").and_then(Value::as_str) {
        Some("TOTAL") => Report::Total,
        Some("INDEXES") => Report::Indexes,
        _ => Report::None,
    }
}

fn consumed_capacity(table: &str, units: f64, write: bool, report: Report) -> Value {
    let per_kind = if write {
        "WriteCapacityUnits"
    } else {
        "ReadCapacityUnits"
    };
    let mut value = json!({ "TableName": table, "CapacityUnits": units, per_kind: units });
    if report == Report::Indexes {
        value["Table"] = json!({ "CapacityUnits": units, per_kind: units });
    }
    value
}

/// A partition key value rendered for [`DynamoCall`]: a string, number or binary key's text.
fn key_text(value: &Value) -> Option<&str> {
    let object = value.as_object()?;
    ["S", "N", "B"]
        .iter()
        .find_map(|kind| object.get(*kind).and_then(Value::as_str))
}

fn table_name(body: &Map<String, Value>) -> Result<&str, WireError> {
    match body.get("TableName").and_then(Value::as_str) {
        Some(name) if !name.is_empty() => Ok(name),
        _ => Err(WireError::validation(
            "1 validation error detected: Value null at 'tableName' failed to satisfy constraint: Member must not be null",
        )),
    }
}

fn missing_key() -> WireError {
    WireError::validation("One of the required keys was not given a value")
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

    async fn write(
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

    async fn read(
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

    async fn batch_write(
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

/// Charges one call through the simulator's service (its latency included).
async fn charge(sim: &DynamoSim, call: DynamoCall) -> Result<f64, WireError> {
    let mut sim = sim.clone();
    std::future::poll_fn(|cx| tower_service::Service::poll_ready(&mut sim, cx))
        .await
        .map_err(|e| sim_error(&e))?;
    match tower_service::Service::call(&mut sim, call).await {
        Ok(reply) => Ok(reply.consumed_capacity),
        Err(error) => Err(sim_error(&error)),
    }
}

/// The store's answer with the simulator's `ConsumedCapacity`, when the request asked for it.
fn with_capacity(
    answer: Answer,
    table: &str,
    units: f64,
    write: bool,
    report: Report,
    request_id: &str,
) -> WireResponse {
    if report == Report::None || !answer.status.is_success() {
        return answer.into_response(request_id);
    }
    let mut reply = answer.json().unwrap_or_default();
    reply.insert(
        String::from("ConsumedCapacity"),
        consumed_capacity(table, units, write, report),
    );
    answer.rewritten(&reply, request_id)
}

/// The `HASH` attribute of a `KeySchema` list.
fn hash_key(schema: Option<&Value>) -> Option<&str> {
    schema?.as_array()?.iter().find_map(|k| {
        (k.get("KeyType")?.as_str()? == "HASH")
            .then(|| k.get("AttributeName")?.as_str())
            .flatten()
    })
}

/// The partition key value a `Query` names: `pk = :v` in its `KeyConditionExpression`
/// (names through `ExpressionAttributeNames`), or the legacy `KeyConditions` `EQ`.
fn query_key(body: &Map<String, Value>, pk: &str) -> Option<String> {
    if let Some(expression) = body.get("KeyConditionExpression").and_then(Value::as_str) {
        let names = body
            .get("ExpressionAttributeNames")
            .and_then(Value::as_object);
        let values = body
            .get("ExpressionAttributeValues")
            .and_then(Value::as_object);
        let resolve = |token: &str| -> Option<String> {
            let token = token.trim().trim_matches(|c| c == '(' || c == ')').trim();
            if token.starts_with('#') {
                names?.get(token)?.as_str().map(str::to_owned)
            } else {
                Some(token.to_owned())
            }
        };
        for clause in split_and(expression) {
            let Some((left, right)) = clause.split_once('=') else {
                continue;
            };
            // Skip <=, >=, <> comparisons.
            if left.ends_with(['<', '>']) || right.starts_with('>') {
                continue;
            }
            let (left, right) = (left.trim(), right.trim());
            let (name, placeholder) = if right.trim_start_matches('(').starts_with(':') {
                (left, right)
            } else {
                (right, left)
            };
            if resolve(name).as_deref() == Some(pk) {
                let placeholder = placeholder.trim_matches(|c| c == '(' || c == ')').trim();
                return values?
                    .get(placeholder)
                    .and_then(key_text)
                    .map(str::to_owned);
            }
        }
        return None;
    }
    let condition = body.get("KeyConditions")?.get(pk)?;
    (condition.get("ComparisonOperator")?.as_str()? == "EQ")
        .then(|| {
            condition
                .get("AttributeValueList")?
                .get(0)
                .and_then(key_text)
                .map(str::to_owned)
        })
        .flatten()
}

/// The clauses of a key condition joined by `AND` (any case).
fn split_and(expression: &str) -> Vec<&str> {
    let mut clauses = Vec::new();
    let mut start = 0;
    let bytes = expression.as_bytes();
    let mut i = 0;
    while i + 5 <= bytes.len() {
        let word = &expression[i..i + 5];
        if word.eq_ignore_ascii_case(" and ") {
            clauses.push(&expression[start..i]);
            start = i + 5;
            i += 5;
        } else {
            i += 1;
        }
    }
    clauses.push(&expression[start..]);
    clauses
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn targets_name_known_operations_only() {
        assert_eq!(
            parse_target(b"DynamoDB_20120810.PutItem"),
            Some(DynamoOp::PutItem)
        );
        assert_eq!(
            parse_target(b"DynamoDB_20120810.ListTables"),
            Some(DynamoOp::PassThrough("ListTables"))
        );
        assert_eq!(parse_target(b"DynamoDB_20120810.DropEverything"), None);
        assert_eq!(parse_target(b"DynamoDB_20111205.PutItem"), None);
        assert_eq!(parse_target(b"PutItem"), None);
    }

    #[test]
    fn query_keys_resolve_names_and_placeholders() {
        let body = map(json!({
            "KeyConditionExpression": "#p = :v AND begins_with(sk, :prefix)",
            "ExpressionAttributeNames": {"#p": "pk"},
            "ExpressionAttributeValues": {":v": {"S": "hot"}, ":prefix": {"S": "a"}},
        }));
        assert_eq!(query_key(&body, "pk").as_deref(), Some("hot"));
        let body = map(json!({
            "KeyConditionExpression": "sk >= :s and :v = pk",
            "ExpressionAttributeValues": {":v": {"N": "42"}, ":s": {"S": "x"}},
        }));
        assert_eq!(query_key(&body, "pk").as_deref(), Some("42"));
        let body = map(json!({
            "KeyConditions": {"pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "k"}]}},
        }));
        assert_eq!(query_key(&body, "pk").as_deref(), Some("k"));
        let body = map(json!({"KeyConditionExpression": "other = :v",
            "ExpressionAttributeValues": {":v": {"S": "x"}}}));
        assert_eq!(query_key(&body, "pk"), None);
    }

    #[test]
    fn hash_keys_come_from_the_key_schema() {
        let schema = json!([
            {"AttributeName": "sk", "KeyType": "RANGE"},
            {"AttributeName": "pk", "KeyType": "HASH"},
        ]);
        assert_eq!(hash_key(Some(&schema)), Some("pk"));
        assert_eq!(hash_key(Some(&json!("nope"))), None);
        assert_eq!(hash_key(None), None);
    }

    #[test]
    fn upstream_urls_are_checked() {
        assert!(Upstream::new("http://127.0.0.1:8000").is_ok());
        assert!(Upstream::new("http://127.0.0.1:8000/").is_ok());
        for bad in [
            "https://x:1",
            "127.0.0.1:8000",
            "http://x/path",
            "not a url",
            "",
        ] {
            let err = Upstream::new(bad).unwrap_err();
            assert_eq!(err.field(), "dynamodb_upstream", "{bad}");
        }
    }
}
