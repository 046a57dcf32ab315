//! DynamoDB's read and write capacity kept apart, with the real `aws-sdk-dynamodb` client
//! configured by `configure_dynamodb`, its requests handed in process to the simulator's front
//! on tokio's paused clock.
//!
//! The repro: a 100 RCU / 100 WCU table, 80 writes/s and 80 strongly consistent
//! reads/s of 1 KB items. With every operation keyed by the table alone, reads spent the
//! write budget: both fell to 50/s and waited seconds. With reads and writes on their own
//! keys (`orders:read`, `orders:write`, one line: `.table("orders", 100, 100)`), both run at
//! their offered rate and no call waits for admission.
#![cfg(all(feature = "sim", feature = "dynamodb"))]

mod support {
    pub mod sdk;
}

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use tokio::time::Instant;
use tower_headroom::Profile;
use tower_headroom::admission::Quota;
use tower_headroom::dynamodb::{self, TableLimits};
use tower_headroom::sim::front::{SimService, sdk_http_client};
use tower_headroom::sim::{DynamoSim, TableConfig};
use tower_headroom::smithy::SdkHeadroom;

const LATENCY: Duration = Duration::from_millis(5);

fn client(headroom: &SdkHeadroom, front: &SimService) -> aws_sdk_dynamodb::Client {
    let builder = support::sdk::dynamodb_sim_config(sdk_http_client(front.clone()));
    aws_sdk_dynamodb::Client::from_conf(headroom.configure_dynamodb(builder).unwrap().build())
}

/// The p99 of `latencies`.
fn p99(latencies: &mut [Duration]) -> Duration {
    latencies.sort_unstable();
    latencies[(latencies.len() * 99).div_ceil(100) - 1]
}

#[tokio::test(start_paused = true)]
async fn reads_never_wait_for_the_write_budget() {
    let sim = DynamoSim::builder()
        .table(
            TableConfig::builder("orders")
                .rcu(100)
                .wcu(100)
                .partitions(1)
                .latency(LATENCY)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let front = SimService::builder()
        .dynamodb(sim)
        .partition_key("orders", "pk")
        .build()
        .unwrap();
    // The console's numbers, one line for the table; nothing tuned.
    let (quota, headroom) = support::sdk::orders_headroom(100, 100);
    let client = client(&headroom, &front);

    // 80 writes/s and 80 strongly consistent reads/s for 10 s, open loop: each call starts on
    // its schedule whatever the others do, and its latency counts from its scheduled start.
    const CALLS: u32 = 800;
    let every = Duration::from_micros(12_500);
    let start = Instant::now();
    let mut calls = Vec::new();
    for i in 0..CALLS {
        tokio::time::sleep_until(start + every * i).await;
        let (client, scheduled) = (client.clone(), Instant::now());
        let pk = format!("order-{i:05}");
        let write = client
            .put_item()
            .table_name("orders")
            .item("pk", AttributeValue::S(pk.clone()))
            // 2 + 11 + 1 + 900 bytes: one write unit.
            .item("d", AttributeValue::S("x".repeat(900)));
        calls.push(tokio::spawn(async move {
            let sent = write.send().await;
            sent.map(|_| ("write", scheduled.elapsed()))
                .map_err(|e| e.to_string())
        }));
        let read = client
            .get_item()
            .table_name("orders")
            .key("pk", AttributeValue::S(pk))
            .consistent_read(true);
        calls.push(tokio::spawn(async move {
            let sent = read.send().await;
            sent.map(|_| ("read", scheduled.elapsed()))
                .map_err(|e| e.to_string())
        }));
    }
    let (mut writes, mut reads) = (Vec::new(), Vec::new());
    for call in calls {
        match call.await.unwrap().expect("every call completes") {
            ("write", latency) => writes.push(latency),
            (_, latency) => reads.push(latency),
        }
    }
    let elapsed = start.elapsed();
    eprintln!("800 writes and 800 reads in {elapsed:?}");
    assert_eq!((writes.len(), reads.len()), (800, 800));
    // At their offered rate: the last call was scheduled at 9.9875 s.
    assert!(elapsed < Duration::from_millis(10_100), "{elapsed:?}");
    // No admission wait at p99 beyond a few ms over the table's own latency.
    for (name, latencies) in [("writes", &mut writes), ("reads", &mut reads)] {
        let p99 = p99(latencies);
        let p50 = latencies[latencies.len() / 2];
        eprintln!(
            "{name}: {} calls, p50 {p50:?}, p99 {p99:?}",
            latencies.len()
        );
        assert!(
            p99 <= LATENCY + Duration::from_millis(3),
            "{name}: p99 {p99:?}"
        );
    }
    let stats = front.dynamodb().unwrap().stats();
    let table = &stats.tables[0];
    assert_eq!(table.writes.throttled_capacity, 0, "{table:?}");
    assert_eq!(table.reads.throttled_capacity, 0, "{table:?}");
    assert_eq!(table.consumed_wcu(), 800.0);
    assert_eq!(table.consumed_rcu(), 800.0);
    // Each key spent its own budget, in its own units: reads in half RCUs (200 a second),
    // writes in WCUs (100 a second); the last second held 80 of each.
    let now = Instant::now();
    let read = quota
        .stats(&Arc::from(dynamodb::read_key("orders")), now)
        .unwrap();
    let write = quota
        .stats(&Arc::from(dynamodb::write_key("orders")), now)
        .unwrap();
    assert_eq!(
        (read.units_limit, write.units_limit),
        (Some(200), Some(100))
    );
    let (read_spent, write_spent) = (read.units_spent.unwrap(), write.units_spent.unwrap());
    assert!((150..=170).contains(&read_spent), "{read:?}");
    assert!((75..=85).contains(&write_spent), "{write:?}");
    assert!(
        quota.stats(&Arc::from("orders"), now).is_none(),
        "no key for the table alone"
    );
}

/// A `BatchWriteItem` over two tables reserves on both tables' write keys, all or nothing,
/// and settles each from its own table's `ConsumedCapacity`.
#[tokio::test(start_paused = true)]
async fn a_batch_over_two_tables_reserves_on_both_all_or_nothing() {
    use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
    use tower_headroom::Deadline;
    use tower_headroom::deadline::within;

    let table = |name: &str| {
        TableConfig::builder(name)
            .rcu(100)
            .wcu(100)
            .partitions(1)
            .latency(LATENCY)
            .build()
            .unwrap()
    };
    let sim = DynamoSim::builder()
        .table(table("orders"))
        .table(table("users"))
        .build()
        .unwrap();
    let front = SimService::builder()
        .dynamodb(sim)
        .partition_key("orders", "pk")
        .partition_key("users", "pk")
        .build()
        .unwrap();
    let quota: Quota<Arc<str>> =
        Quota::builder(Profile::DynamoDb.limit().units(100).build().unwrap())
            .table("orders", 100, 100)
            .unwrap()
            .table("users", 100, 10)
            .unwrap()
            .build();
    let headroom = SdkHeadroom::builder(Profile::DynamoDb)
        .quota(quota.clone())
        .build()
        .unwrap();
    let client = client(&headroom, &front);
    let put = |pk: &str| {
        WriteRequest::builder()
            .put_request(
                PutRequest::builder()
                    .item("pk", AttributeValue::S(pk.to_owned()))
                    .item("d", AttributeValue::S("x".repeat(900)))
                    .build()
                    .unwrap(),
            )
            .build()
    };
    let batch = |orders: usize, users: usize| {
        client
            .batch_write_item()
            .request_items(
                "orders",
                (0..orders).map(|i| put(&format!("o{i}"))).collect(),
            )
            .request_items("users", (0..users).map(|i| put(&format!("u{i}"))).collect())
    };
    let spent = |key: String| {
        quota
            .stats(&Arc::from(key), Instant::now())
            .and_then(|s| s.units_spent)
            .unwrap_or(0)
    };
    batch(6, 4).send().await.unwrap();
    // Each table's key holds its own items' units, as its ConsumedCapacity entry said.
    assert_eq!(spent(dynamodb::write_key("orders")), 6);
    assert_eq!(spent(dynamodb::write_key("users")), 4);
    let stats = front.dynamodb().unwrap().stats();
    assert_eq!(stats.table("orders").unwrap().consumed_wcu(), 6.0);
    assert_eq!(stats.table("users").unwrap().consumed_wcu(), 4.0);

    // `users` has 6 of its 10 WCU left this second: a batch needing 10 there cannot start
    // within a deadline of now. `orders` (the call's first key) had room and was reserved
    // first; it gives its reservation back, and nothing is sent.
    let refused = within(Deadline::at(Instant::now()), batch(1, 10).send()).await;
    assert!(refused.is_err());
    assert_eq!(
        spent(dynamodb::write_key("orders")),
        6,
        "orders gave its reservation back"
    );
    assert_eq!(spent(dynamodb::write_key("users")), 4);
    let stats = front.dynamodb().unwrap().stats();
    assert_eq!(
        stats.table("orders").unwrap().writes.admitted,
        6,
        "nothing was sent"
    );
    assert_eq!(
        stats.table("users").unwrap().writes.admitted,
        4,
        "nothing was sent"
    );
    // With a second for `users` to refill, the same batch goes through on both.
    batch(1, 10).send().await.unwrap();
    assert_eq!(spent(dynamodb::write_key("orders")), 7);
}
