//! A bulk load through `BatchWriteItem` under throttling, with the real `aws-sdk-dynamodb`
//! client against the simulator's front on tokio's paused clock: the loop users write by hand
//! (standard retry, resend `UnprocessedItems` with its own exponential backoff) against
//! `smithy::batch::BatchWriter` through `configure_dynamodb` (the table's quota from its
//! console numbers). Both write every item (the simulator's consumed WCU is the item count);
//! tower-headroom's throttled item attempts are at most 2% of its item attempts, and fewer
//! than the loop's.
#![cfg(all(feature = "sim", feature = "dynamodb"))]

#[path = "../examples/support/unprocessed_loop.rs"]
mod unprocessed_loop;

mod support {
    pub mod sdk;
}

use std::sync::Arc;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use tower_headroom::Profile;
use tower_headroom::admission::Quota;
use tower_headroom::dynamodb::TableLimits;
use tower_headroom::sim::front::{SimService, sdk_http_client};
use tower_headroom::smithy::SdkHeadroom;
use tower_headroom::smithy::batch::BatchWriter;

const ITEMS: usize = 2_000;
const WCU: u64 = 100;

fn front() -> SimService {
    support::sdk::orders_front(100, WCU)
}

fn config(front: &SimService) -> aws_sdk_dynamodb::config::Builder {
    support::sdk::dynamodb_sim_config(sdk_http_client(front.clone()))
}

/// One item of about 500 bytes: one WCU.
fn put(i: usize) -> WriteRequest {
    let put = PutRequest::builder()
        .item("pk", AttributeValue::S(format!("order#{i}")))
        .item("note", AttributeValue::S("x".repeat(480)))
        .build()
        .unwrap();
    WriteRequest::builder().put_request(put).build()
}

/// The simulator's count of the table's writes: (written, throttled item attempts).
fn writes(front: &SimService) -> (u64, u64, f64) {
    let stats = front.dynamodb().unwrap().stats();
    let table = &stats.tables[0];
    (
        table.writes.admitted,
        table.writes.throttled(),
        table.consumed_wcu(),
    )
}

/// The loop users write (AWS's docs' loop), over the test's items.
async fn plain_loop(client: aws_sdk_dynamodb::Client) {
    unprocessed_loop::documented_loop(client, "orders", (0..ITEMS).map(put).collect()).await;
}

#[tokio::test(start_paused = true)]
async fn a_bulk_load_writes_every_item_and_headroom_is_hardly_throttled() {
    // The loop users write.
    let plain = front();
    let client = aws_sdk_dynamodb::Client::from_conf(config(&plain).build());
    tokio::spawn(plain_loop(client)).await.unwrap();
    let (written, plain_throttled, wcu) = writes(&plain);
    assert_eq!(written, ITEMS as u64);
    assert_eq!(wcu, ITEMS as f64);

    // BatchWriter through configure_dynamodb, the table's quota from the console's numbers.
    let headroom_front = front();
    let quota: Quota<Arc<str>> =
        Quota::builder(Profile::DynamoDb.limit().units(WCU).build().unwrap())
            .table("orders", 100, WCU)
            .unwrap()
            .build();
    let headroom = SdkHeadroom::builder(Profile::DynamoDb)
        .quota(quota)
        .build()
        .unwrap();
    let client = aws_sdk_dynamodb::Client::from_conf(
        headroom
            .configure_dynamodb(config(&headroom_front))
            .unwrap()
            .build(),
    );
    let writer = BatchWriter::new(client).seed(7);
    let done = tokio::spawn(async move {
        writer
            .write((0..ITEMS).map(|i| ("orders".to_owned(), put(i))))
            .await
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(done.items, ITEMS);
    let (written, throttled, wcu) = writes(&headroom_front);
    assert_eq!(written, ITEMS as u64);
    assert_eq!(wcu, ITEMS as f64);
    println!(
        "bulk load of {ITEMS} items on a {WCU} WCU table: plain loop {plain_throttled} throttled item attempts, tower-headroom {throttled} ({done:?})"
    );
    assert!(
        throttled as f64 <= 0.02 * (written + throttled) as f64,
        "{throttled} of {}",
        written + throttled
    );
    assert!(
        throttled < plain_throttled,
        "{throttled} vs {plain_throttled}"
    );
}
