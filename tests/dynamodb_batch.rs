//! `BatchWriter` and `BatchReader` with the real `aws-sdk-dynamodb` client against the
//! simulator's front: throttled items come back in `UnprocessedItems` and are resent with
//! backoff until written; a deadline or a fatal error stops with every item not written in
//! hand; errors name no item. In process on tokio's paused clock, and on loopback with the
//! items stored in dynalite.
#![cfg(all(feature = "sim", feature = "dynamodb"))]

mod support {
    pub mod dynalite;
    pub mod sdk;
}

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, PutRequest, WriteRequest};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use support::sdk::{ACCESS_KEY, SECRET_KEY};
use tower_headroom::sim::DynamoSim;
use tower_headroom::sim::TableConfig;
use tower_headroom::sim::front::{Server, SimService, sdk_http_client};
use tower_headroom::smithy::batch::{BatchReader, BatchStop, BatchWriter};

fn client(endpoint: &str, http: SharedHttpClient) -> aws_sdk_dynamodb::Client {
    use aws_sdk_dynamodb::config::{Credentials, Region};
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version_latest()
        .region(Region::from_static("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
        .http_client(http)
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

fn front(wcu: u64, store: Option<&str>) -> SimService {
    let sim = DynamoSim::builder()
        .table(
            TableConfig::builder("orders")
                .rcu(1_000)
                .wcu(wcu)
                .partitions(1)
                .latency(Duration::from_millis(5))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let builder = SimService::builder()
        .dynamodb(sim)
        .partition_key("orders", "pk");
    match store {
        Some(url) => builder.dynamodb_upstream(url),
        None => builder,
    }
    .build()
    .unwrap()
}

fn put(i: usize) -> (String, WriteRequest) {
    let put = PutRequest::builder()
        .item("pk", AttributeValue::S(format!("secret-order#{i}")))
        .item("note", AttributeValue::S("x".repeat(500)))
        .build()
        .unwrap();
    (
        "orders".to_owned(),
        WriteRequest::builder().put_request(put).build(),
    )
}

fn pk(request: &WriteRequest) -> String {
    match request.put_request().unwrap().item().get("pk") {
        Some(AttributeValue::S(pk)) => pk.clone(),
        other => panic!("no pk: {other:?}"),
    }
}

fn written_units(front: &SimService) -> f64 {
    front.dynamodb().unwrap().stats().tables[0].consumed_wcu()
}

#[tokio::test(start_paused = true)]
async fn every_item_is_written_and_throttled_ones_are_resent_with_backoff() {
    let front = front(50, None);
    let writer = BatchWriter::new(client(
        "http://dynamodb.sim",
        sdk_http_client(front.clone()),
    ))
    .seed(7);
    let start = tokio::time::Instant::now();
    // Spawned: the write future is `Send`.
    let written = tokio::spawn(async move { writer.write((0..500).map(put)).await })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(written.items, 500);
    // Every batch carried 25 requests or fewer, resent ones included.
    assert!(
        written.batches >= (500 + written.resent).div_ceil(25),
        "{written:?}"
    );
    assert!(
        written.resent > 0,
        "the table's 50 WCU/s throttled some: {written:?}"
    );
    // Each item is charged once, when DynamoDB wrote it.
    assert_eq!(written_units(&front), 500.0);
    // 500 WCU at 50 WCU/s: about ten seconds, not a minute of blind retries.
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(8) && took < Duration::from_secs(20),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_deadline_stops_with_every_unwritten_item_in_hand_and_names_none() {
    let front = front(20, None);
    let writer = BatchWriter::new(client(
        "http://dynamodb.sim",
        sdk_http_client(front.clone()),
    ))
    .deadline(Duration::from_secs(3))
    .seed(7);
    let error = writer.write((0..300).map(put)).await.unwrap_err();
    assert_eq!(error.stop, BatchStop::Deadline);
    assert_eq!(error.done.items + error.unwritten.len(), 300, "{error:?}");
    assert_eq!(written_units(&front), error.done.items as f64);
    let unwritten: HashSet<String> = error.unwritten.iter().map(|(_, r)| pk(r)).collect();
    assert_eq!(unwritten.len(), error.unwritten.len(), "no item twice");
    // The last items given were never sent: they are among the unwritten.
    assert!(unwritten.contains("secret-order#299"));
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(!text.contains("secret-order"), "{text}");
    }
}

#[tokio::test(start_paused = true)]
async fn every_key_is_read_and_unprocessed_keys_are_resent() {
    let front = front(50, None);
    let reader = BatchReader::new(client(
        "http://dynamodb.sim",
        sdk_http_client(front.clone()),
    ))
    .seed(5)
    .deadline(Duration::from_secs(120));
    let keys = (0..3_000).map(|i| {
        let key = HashMap::from([("pk".to_owned(), AttributeValue::S(format!("k{i}")))]);
        ("orders".to_owned(), key)
    });
    let read = reader.get(keys).await.unwrap();
    assert_eq!(read.keys, 3_000);
    // The table's 1,000 RCU/s (half a unit per eventually consistent key) left keys
    // unprocessed, which were sent again.
    assert!(read.resent > 0, "{read:?}");
    assert!(
        read.batches >= (3_000 + read.resent).div_ceil(100),
        "{read:?}"
    );
    let stats = front.dynamodb().unwrap().stats();
    assert_eq!(stats.tables[0].consumed_rcu(), 1_500.0);
}

#[tokio::test(start_paused = true)]
async fn a_tables_options_apply_to_keys_that_name_it_by_its_arn() {
    const ARN: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/orders";
    let front = front(50, None);
    let consistent = KeysAndAttributes::builder()
        .set_keys(Some(Vec::new()))
        .consistent_read(true)
        .build()
        .unwrap();
    let reader = BatchReader::new(client(
        "http://dynamodb.sim",
        sdk_http_client(front.clone()),
    ))
    .table_options("orders", consistent);
    let keys = (0..10).map(|i| {
        let key = HashMap::from([("pk".to_owned(), AttributeValue::S(format!("k{i}")))]);
        (ARN.to_owned(), key)
    });
    assert_eq!(reader.get(keys).await.unwrap().keys, 10);
    // Strongly consistent: one RCU a key (eventually consistent would be half).
    let stats = front.dynamodb().unwrap().stats();
    assert_eq!(stats.tables[0].consumed_rcu(), 10.0);
}

#[tokio::test(start_paused = true)]
async fn nothing_to_write_sends_nothing() {
    let writer = BatchWriter::new(client(
        "http://dynamodb.sim",
        sdk_http_client(front(50, None)),
    ));
    let written = writer.write(std::iter::empty()).await.unwrap();
    assert_eq!((written.items, written.batches), (0, 0));
}

#[tokio::test]
async fn written_items_are_stored_and_read_back_in_batches() {
    let dynalite = support::dynalite::start();
    support::sdk::create_orders(&support::sdk::dynamodb(&dynalite.url())).await;
    let front = front(200, Some(&dynalite.url()));
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), front.clone())
        .await
        .unwrap();
    let client = client(&server.url(), support::sdk::http_client());

    let written = BatchWriter::new(client.clone())
        .seed(3)
        .write((0..260).map(put))
        .await
        .unwrap();
    assert_eq!(written.items, 260);

    let keys = (0..260).map(|i| {
        let key = HashMap::from([(
            "pk".to_owned(),
            AttributeValue::S(format!("secret-order#{i}")),
        )]);
        ("orders".to_owned(), key)
    });
    let consistent = KeysAndAttributes::builder()
        .set_keys(Some(Vec::new()))
        .consistent_read(true)
        .projection_expression("pk")
        .build()
        .unwrap();
    let read = BatchReader::new(client.clone())
        .table_options("orders", consistent)
        .get(keys)
        .await
        .unwrap();
    assert_eq!(read.keys, 260);
    assert!(
        read.batches >= (260 + read.resent).div_ceil(100),
        "{read:?}"
    );
    let found: HashSet<String> = read.items["orders"]
        .iter()
        .map(|item| match &item["pk"] {
            AttributeValue::S(pk) => pk.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(found.len(), 260);
    // The projection was honoured: only the key came back.
    assert!(read.items["orders"].iter().all(|item| item.len() == 1));

    // A table that does not exist: a fatal answer, no resending, every item in hand.
    let requests = (0..60).map(|i| {
        let (_, request) = put(i);
        ("no-such-table".to_owned(), request)
    });
    let error = BatchWriter::new(client.clone())
        .write(requests)
        .await
        .unwrap_err();
    assert!(matches!(error.stop, BatchStop::Fatal(_)), "{error:?}");
    assert_eq!(error.unwritten.len(), 60);
    assert_eq!(error.done.batches, 1);
    // What DynamoDB answered: its error code in the message, the SDK's error as the source.
    assert_eq!(error.error_code(), Some("ResourceNotFoundException"));
    assert!(
        error.to_string().ends_with("(ResourceNotFoundException)"),
        "{error}"
    );
    let source = std::error::Error::source(&error).expect("the SDK's error");
    assert!(
        format!("{source:?}").contains("ResourceNotFoundException"),
        "{source:?}"
    );
    assert!(!error.to_string().contains("secret-order"));
    assert!(!format!("{error:?}").contains("secret-order"));
    server.shutdown().await.unwrap();
}
