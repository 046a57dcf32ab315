//! The DynamoDB front under adaptive capacity, in process on tokio's paused clock: the
//! `ThrottlingReasons` of error bodies, and batches that return exactly the throttled items
//! (`UnprocessedItems`, `UnprocessedKeys`) and fail only when every item is throttled.
#![cfg(feature = "sim")]

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tower::{Service, ServiceExt};
use tower_headroom::sim::front::SimService;
use tower_headroom::sim::{DynamoSim, TableConfig, ThrottlingReason};

const ARN: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/orders";

/// A 10,000 WCU / 10,000 RCU table: room for everyone but a key above the partition maximum.
fn front() -> (SimService, DynamoSim) {
    let sim = DynamoSim::builder()
        .table(
            TableConfig::builder("orders")
                .rcu(10_000)
                .wcu(10_000)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let front = SimService::builder()
        .dynamodb(sim.clone())
        .partition_key("orders", "pk")
        .build()
        .unwrap();
    (front, sim)
}

async fn send(front: &mut SimService, request: Request<Full<Bytes>>) -> Response<Full<Bytes>> {
    ServiceExt::<Request<Full<Bytes>>>::ready(front)
        .await
        .unwrap()
        .call(request)
        .await
        .unwrap()
}

async fn json_of(response: Response<Full<Bytes>>) -> Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

fn dynamo(op: &str, body: Value) -> Request<Full<Bytes>> {
    Request::post("/")
        .header("x-amz-target", format!("DynamoDB_20120810.{op}"))
        .header("content-type", "application/x-amz-json-1.0")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// A `PutRequest` of about 1 KiB under `key` (one WCU).
fn item(key: &str) -> Value {
    json!({"PutRequest": {"Item": {"pk": {"S": key}, "v": {"S": "x".repeat(900)}}}})
}

/// Spends `key`'s write second: 1,000 one-unit writes straight to the simulator.
fn exhaust(sim: &DynamoSim, key: &str) {
    let now = tokio::time::Instant::now();
    for _ in 0..1_000 {
        sim.charge(
            &tower_headroom::sim::DynamoCall::write("orders", key, 900),
            now,
        )
        .unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_throttle_body_has_the_dynamodb_shape_and_its_throttling_reason() {
    let (mut front, sim) = front();
    exhaust(&sim, "hot");
    let put = dynamo(
        "PutItem",
        json!({"TableName": "orders", "Item": {"pk": {"S": "hot"}}}),
    );
    let response = send(&mut front, put).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["x-amzn-errortype"],
        "ProvisionedThroughputExceededException"
    );
    let body = json_of(response).await;
    assert_eq!(
        body["__type"],
        "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"
    );
    assert!(body["message"].is_string());
    assert_eq!(
        body["ThrottlingReasons"],
        json!([{"reason": "TableWriteKeyRangeThroughputExceeded", "resource": ARN}])
    );
    // A cold key on the same table writes.
    let put = dynamo(
        "PutItem",
        json!({"TableName": "orders", "Item": {"pk": {"S": "cold"}}}),
    );
    assert_eq!(send(&mut front, put).await.status(), 200);
    // Reads of the hot key are not throttled by its writes.
    let get = dynamo(
        "GetItem",
        json!({"TableName": "orders", "Key": {"pk": {"S": "hot"}}, "ConsistentRead": true}),
    );
    assert_eq!(send(&mut front, get).await.status(), 200);
    // Other errors carry no reasons.
    let bad = dynamo("PutItem", json!({"TableName": "orders"}));
    let body = json_of(send(&mut front, bad).await).await;
    assert!(body.get("ThrottlingReasons").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_batch_write_returns_exactly_the_throttled_items() {
    let (mut front, sim) = front();
    exhaust(&sim, "hot");
    let request = dynamo(
        "BatchWriteItem",
        json!({
            "RequestItems": {"orders": [item("a"), item("hot"), item("b"), item("hot"), item("c")]},
            "ReturnConsumedCapacity": "TOTAL",
        }),
    );
    let response = send(&mut front, request).await;
    assert_eq!(response.status(), 200);
    let body = json_of(response).await;
    assert_eq!(
        body["UnprocessedItems"],
        json!({"orders": [item("hot"), item("hot")]})
    );
    assert_eq!(body["ConsumedCapacity"][0]["CapacityUnits"], 3.0);
    let t = &sim.stats().tables[0];
    assert_eq!(t.writes.admitted, 1_003);
    assert_eq!(
        t.throttled(ThrottlingReason::TableWriteKeyRangeThroughputExceeded),
        2
    );

    // Every item throttled: the whole call fails, with the reason.
    let request = dynamo(
        "BatchWriteItem",
        json!({"RequestItems": {"orders": [item("hot"), item("hot")]}}),
    );
    let response = send(&mut front, request).await;
    assert_eq!(response.status(), 400);
    let body = json_of(response).await;
    assert_eq!(
        body["__type"],
        "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"
    );
    assert_eq!(
        body["ThrottlingReasons"][0]["reason"],
        "TableWriteKeyRangeThroughputExceeded"
    );
}

#[tokio::test(start_paused = true)]
async fn a_batch_get_returns_exactly_the_throttled_keys() {
    let (mut front, sim) = front();
    // Spend the hot key's read second: 3,000 strongly consistent reads.
    let now = tokio::time::Instant::now();
    for _ in 0..3_000 {
        sim.charge(
            &tower_headroom::sim::DynamoCall::read("orders", "hot", 100, true),
            now,
        )
        .unwrap();
    }
    let key = |k: &str| json!({"pk": {"S": k}});
    let request = dynamo(
        "BatchGetItem",
        json!({
            "RequestItems": {"orders": {
                "Keys": [key("a"), key("hot"), key("b")],
                "ConsistentRead": true,
            }},
            "ReturnConsumedCapacity": "TOTAL",
        }),
    );
    let response = send(&mut front, request).await;
    assert_eq!(response.status(), 200);
    let body = json_of(response).await;
    assert_eq!(
        body["UnprocessedKeys"],
        json!({"orders": {"Keys": [key("hot")], "ConsistentRead": true}})
    );
    assert_eq!(body["Responses"]["orders"], json!([]));
    assert_eq!(body["ConsumedCapacity"][0]["CapacityUnits"], 2.0);
    assert_eq!(body["ConsumedCapacity"][0]["ReadCapacityUnits"], 2.0);
    let t = &sim.stats().tables[0];
    assert_eq!(t.reads.admitted, 3_002);
    assert_eq!(t.writes.calls(), 0, "reads never touch the write side");

    // Every key throttled: the whole call fails with the read reason.
    let request = dynamo(
        "BatchGetItem",
        json!({"RequestItems": {"orders": {"Keys": [key("hot")]}}}),
    );
    let response = send(&mut front, request).await;
    assert_eq!(response.status(), 400);
    let body = json_of(response).await;
    assert_eq!(
        body["ThrottlingReasons"],
        json!([{"reason": "TableReadKeyRangeThroughputExceeded", "resource": ARN}])
    );
}

#[tokio::test(start_paused = true)]
async fn an_on_demand_maximum_is_a_throttling_exception_with_its_reason() {
    let sim = DynamoSim::builder()
        .table(
            TableConfig::builder("orders")
                .on_demand()
                .max_write_request_units(1)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let mut front = SimService::builder()
        .dynamodb(sim)
        .partition_key("orders", "pk")
        .build()
        .unwrap();
    let put = || {
        dynamo(
            "PutItem",
            json!({"TableName": "orders", "Item": {"pk": {"S": "k"}}}),
        )
    };
    assert_eq!(send(&mut front, put()).await.status(), 200);
    let response = send(&mut front, put()).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["x-amzn-errortype"],
        "ThrottlingException"
    );
    let body = json_of(response).await;
    assert_eq!(
        body["__type"],
        "com.amazonaws.dynamodb.v20120810#ThrottlingException"
    );
    assert_eq!(
        body["ThrottlingReasons"],
        json!([{"reason": "TableWriteMaxOnDemandThroughputExceeded", "resource": ARN}])
    );
    let kind = tower_headroom::classify::aws::classify(
        body["__type"].as_str().unwrap(),
        body["message"].as_str(),
    );
    assert!(
        matches!(kind, tower_headroom::OutcomeKind::Throttled(_)),
        "{kind:?}"
    );
}
