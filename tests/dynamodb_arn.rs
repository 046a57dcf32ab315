//! A table named by its ARN, as DynamoDB allows wherever it takes a table name, with the real
//! `aws-sdk-dynamodb` client handed in process to the simulator's front on tokio's paused
//! clock: the calls reserve and settle on `orders:read` / `orders:write` (the limits of
//! `.table("orders", ..)`) exactly as the same calls naming `orders`, settlement finds the
//! table's `ConsumedCapacity` entry although the answer names it by the ARN, and the per-key
//! ceiling counts the call's key in `report("orders", ..)`.
#![cfg(all(feature = "sim", feature = "dynamodb"))]

mod support {
    pub mod sdk;
}

use std::sync::Arc;

use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, WriteRequest};
use tokio::time::Instant;
use tower_headroom::Profile;
use tower_headroom::admission::SlotStats;
use tower_headroom::dynamodb::{self, Access, PartitionCeiling};
use tower_headroom::sim::front::sdk_http_client;
use tower_headroom::smithy::SdkHeadroom;

const ARN: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/orders";

/// What one run left: the two keys' stats, the keys an ARN would have made, and what the
/// simulator charged.
#[derive(Debug, PartialEq)]
struct Run {
    write: SlotStats,
    read: SlotStats,
    arn_keys: (bool, bool),
    consumed: (f64, f64),
}

/// A `PutItem` (1 KB: 1 WCU), an `UpdateItem` estimated at 1 WCU that the simulator charges
/// 3 (its new value is 2.9 KB), a `BatchWriteItem` deleting a key of 2 KB (estimated at 1,
/// charged 2, settled from the batch's `ConsumedCapacity` entry for the table) and a strongly
/// consistent `GetItem` (2 half units), each naming the table as `table`.
async fn run(table: &str) -> Run {
    let front = support::sdk::orders_front(100, 100);
    let (quota, headroom) = support::sdk::orders_headroom(100, 100);
    let builder = support::sdk::dynamodb_sim_config(sdk_http_client(front.clone()));
    let client =
        aws_sdk_dynamodb::Client::from_conf(headroom.configure_dynamodb(builder).unwrap().build());

    client
        .put_item()
        .table_name(table)
        .item("pk", AttributeValue::S("order-1".into()))
        // 2 + 7 + 1 + 1,014 bytes: one write unit.
        .item("d", AttributeValue::S("x".repeat(1_014)))
        .send()
        .await
        .unwrap();
    client
        .update_item()
        .table_name(table)
        .key("pk", AttributeValue::S("order-1".into()))
        .update_expression("SET d = :d")
        .expression_attribute_values(":d", AttributeValue::S("y".repeat(2_900)))
        .send()
        .await
        .unwrap();
    let delete = WriteRequest::builder()
        .delete_request(
            DeleteRequest::builder()
                .key("pk", AttributeValue::S("k".repeat(2_000)))
                .build()
                .unwrap(),
        )
        .build();
    let batch = client
        .batch_write_item()
        .request_items(table, vec![delete])
        .send()
        .await
        .unwrap();
    assert!(batch.unprocessed_items().is_none_or(|u| u.is_empty()));
    assert!(
        batch.consumed_capacity().is_empty(),
        "the adapter asked for the usage and removes it from what the caller sees"
    );
    client
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S("order-1".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();

    let now = Instant::now();
    let stats = |key: String| quota.stats(&Arc::from(key), now);
    let table_stats = front.dynamodb().unwrap().stats();
    let orders = table_stats.table("orders").expect("charged under its name");
    Run {
        write: stats(dynamodb::write_key("orders")).expect("orders:write"),
        read: stats(dynamodb::read_key("orders")).expect("orders:read"),
        arn_keys: (
            stats(format!("{ARN}:write")).is_some(),
            stats(format!("{ARN}:read")).is_some(),
        ),
        consumed: (orders.consumed_wcu(), orders.consumed_rcu()),
    }
}

#[tokio::test(start_paused = true)]
async fn an_arn_reserves_and_settles_on_the_tables_keys_as_its_name_does() {
    let by_name = run("orders").await;
    let by_arn = run(ARN).await;
    assert_eq!(by_arn, by_name);
    // Settled at what the simulator charged (1 + 3 + 2 WCU; 1 RCU as 2 half units), not at
    // the estimates (1 + 1 + 1; 2), under the limits `.table("orders", 100, 100)` set.
    assert_eq!(by_arn.consumed, (6.0, 1.0));
    assert_eq!(by_arn.write.units_spent, Some(6));
    assert_eq!(by_arn.read.units_spent, Some(2));
    assert_eq!(
        (by_arn.write.units_limit, by_arn.read.units_limit),
        (Some(100), Some(200))
    );
    assert_eq!(by_arn.arn_keys, (false, false), "no key names the ARN");
}

#[tokio::test(start_paused = true)]
async fn the_ceiling_counts_a_call_naming_the_table_by_its_arn() {
    let front = support::sdk::orders_front(100, 100);
    let ceiling = Arc::new(
        PartitionCeiling::builder()
            .salt(7)
            .metrics(false)
            .build()
            .unwrap(),
    );
    let headroom = SdkHeadroom::builder(Profile::DynamoDb).build().unwrap();
    let builder = support::sdk::dynamodb_sim_config(sdk_http_client(front.clone()));
    let config = headroom
        .configure_dynamodb_ceiling(builder, [], Arc::clone(&ceiling), [("orders", "pk")])
        .unwrap();
    let client = aws_sdk_dynamodb::Client::from_conf(config.build());
    for (table, units) in [(ARN, 2usize), ("orders", 1)] {
        client
            .put_item()
            .table_name(table)
            .item("pk", AttributeValue::S("order-7".into()))
            // 2 + 7 + 1 + the value: `units` KB exactly.
            .item("d", AttributeValue::S("x".repeat(units * 1024 - 10)))
            .send()
            .await
            .unwrap();
    }
    client
        .get_item()
        .table_name(ARN)
        .key("pk", AttributeValue::S("order-7".into()))
        .send()
        .await
        .unwrap();
    let now = Instant::now();
    let id = ceiling.id(b"order-7");
    let writes = ceiling
        .report("orders", Access::Write, now)
        .expect("recorded");
    assert_eq!(writes.by_units().len(), 1);
    assert_eq!(
        (writes.by_units()[0].id, writes.by_units()[0].units),
        (id, 3),
        "the ARN's 2 WCU and the name's 1 on the one key"
    );
    let reads = ceiling
        .report("orders", Access::Read, now)
        .expect("recorded");
    assert_eq!((reads.by_units()[0].id, reads.by_units()[0].units), (id, 1));
    // The ARN names the same report.
    assert_eq!(
        ceiling
            .report(ARN, Access::Write, now)
            .map(|r| r.by_units()[0].units),
        Some(3)
    );
}
