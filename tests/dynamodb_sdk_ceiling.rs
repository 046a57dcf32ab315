//! The per-key ceiling built into the DynamoDB SDK adapter (`configure_dynamodb_ceiling`), with
//! the real `aws-sdk-dynamodb` client handed in process to the simulator's front on tokio's
//! paused clock: a key bursting over its 1,000 WCU/s partition maximum is held to it while
//! other keys pass at once, a cold key reserves nothing, a key-range throttle teaches only its
//! key, no key value is logged, the ceiling's report names the hot key by its hash, and every
//! operation the adapter reads keys from (reads, batches, queries, transactions) charges each
//! of its keys what it spends.
#![cfg(all(feature = "sim", feature = "dynamodb"))]

mod support {
    pub mod capture;
    pub mod sdk;
}

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use tokio::time::Instant;
use tower_headroom::Profile;
use tower_headroom::dynamodb::{Access, PARTITION_MAX_WCU, PartitionCeiling};
use tower_headroom::sim::front::{SimService, sdk_http_client};
use tower_headroom::sim::{CapacityModel, DynamoSim, TableConfig};
use tower_headroom::smithy::SdkHeadroom;

const TABLE: &str = "orders";
const HOT: &str = "order#hot-canary";

fn front(t0: Instant) -> SimService {
    let sim = DynamoSim::builder()
        .table(
            TableConfig::builder(TABLE)
                .rcu(100)
                .wcu(1_500)
                .latency(Duration::from_millis(5))
                .build()
                .unwrap(),
        )
        .start(t0)
        .build()
        .unwrap();
    SimService::builder()
        .dynamodb(sim)
        .partition_key(TABLE, "pk")
        .build()
        .unwrap()
}

fn ceiling(hot_share: f64) -> Arc<PartitionCeiling> {
    Arc::new(
        PartitionCeiling::builder()
            .hot_share(hot_share)
            .salt(7)
            .metrics(false)
            .build()
            .unwrap(),
    )
}

fn client(front: &SimService, ceiling: Arc<PartitionCeiling>) -> aws_sdk_dynamodb::Client {
    let headroom = SdkHeadroom::builder(Profile::DynamoDb).build().unwrap();
    let builder = support::sdk::dynamodb_sim_config(sdk_http_client(front.clone()));
    let config = headroom
        .configure_dynamodb_ceiling(builder, [], ceiling, [(TABLE, "pk")])
        .unwrap();
    aws_sdk_dynamodb::Client::from_conf(config.build())
}

/// A put of `kb` KB (item size exactly `kb` × 1,024 bytes) on `pk`.
async fn put(client: aws_sdk_dynamodb::Client, pk: String, kb: usize) -> Result<Duration, String> {
    let started = Instant::now();
    let pad = kb * 1024 - (2 + pk.len() + 1);
    client
        .put_item()
        .table_name(TABLE)
        .item("pk", AttributeValue::S(pk))
        .item("d", AttributeValue::S("x".repeat(pad)))
        .send()
        .await
        .map(|_| started.elapsed())
        .map_err(|e| format!("{e:?}"))
}

struct Burst {
    /// The hot key's calls: when each ended, and whether it succeeded.
    hot: Vec<(Instant, bool)>,
    /// The other keys' latencies (every call must succeed).
    others: Vec<Duration>,
}

/// 50 writes of 30 KB a second on the hot key (1,500 WCU/s) for 5 s, beside 10 writes a
/// second of 1 KB on other keys.
async fn burst(client: &aws_sdk_dynamodb::Client, t0: Instant) -> Burst {
    let (mut hot, mut others) = (Vec::new(), Vec::new());
    for second in 0..5u64 {
        for i in 0..50u64 {
            let at = t0 + Duration::from_secs(second) + Duration::from_millis(i * 20);
            let client = client.clone();
            hot.push(tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                let ok = put(client, HOT.to_owned(), 30).await.is_ok();
                (Instant::now(), ok)
            }));
        }
        for i in 0..10u64 {
            let at = t0 + Duration::from_secs(second) + Duration::from_millis(i * 100 + 5);
            let client = client.clone();
            let key = format!("order#{}", second * 10 + i);
            others.push(tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                put(client, key, 1).await
            }));
        }
    }
    let mut burst = Burst {
        hot: Vec::new(),
        others: Vec::new(),
    };
    for call in hot {
        burst.hot.push(call.await.unwrap());
    }
    for call in others {
        burst
            .others
            .push(call.await.unwrap().expect("other keys never fail"));
    }
    burst
}

#[tokio::test(start_paused = true)]
async fn a_hot_key_is_held_to_its_maximum_and_others_pass_at_once() {
    let t0 = Instant::now();
    let front = front(t0);
    let ceiling = ceiling(0.5);
    let client = client(&front, Arc::clone(&ceiling));
    let logs = support::capture::captured(
        &[
            "tower_headroom::smithy",
            "tower_headroom::dynamodb",
            "tower_headroom::hot_keys",
            "tower_headroom::admission",
            "tower_headroom::lifecycle",
        ],
        async {
            let burst = burst(&client, t0).await;
            let stats = front.dynamodb().unwrap().stats();
            let table = &stats.tables[0];
            let hot = table.key(HOT).expect("the simulator saw the hot key");
            let attempts = hot.writes + hot.writes_throttled;
            // At most 5 % of the hot key's attempts throttled.
            assert!(
                hot.writes_throttled * 20 <= attempts,
                "{} of {attempts}",
                hot.writes_throttled
            );
            // Held to the maximum: its accepted units never beat 1,000 WCU/s by more than
            // the first second it spent before it was seen hot.
            let last = burst.hot.iter().map(|(at, _)| *at).max().unwrap();
            let span = last.saturating_duration_since(t0).as_secs_f64();
            let ok = burst.hot.iter().filter(|(_, ok)| *ok).count() as f64;
            assert!(
                ok * 30.0 <= PARTITION_MAX_WCU as f64 * (span + 1.0),
                "{ok} writes of 30 WCU in {span} s"
            );
            assert!(ok >= 150.0, "the hot key still writes: {ok}");
            // Its calls waited: it asked 1,500 WCU/s for 5 s.
            assert!(span > 6.0, "{span}");
            // Other keys: no throttle, no wait beyond the simulator's latency.
            assert_eq!(table.writes.throttled(), hot.writes_throttled);
            let slowest = burst.others.iter().max().unwrap();
            assert!(*slowest < Duration::from_millis(50), "{slowest:?}");
            // The report names the hot key, by its hash only.
            let report = ceiling
                .report(TABLE, Access::Write, Instant::now())
                .unwrap();
            let top = &report.by_units()[0];
            assert_eq!(top.id, ceiling.id(HOT.as_bytes()));
            assert!(top.key.is_none());
            assert_eq!(ceiling.hot_keys(Instant::now()), 1);
        },
    )
    .await;
    assert!(!logs.contains(HOT), "a key value was logged");
    assert!(!logs.contains("hot-canary"));
}

#[tokio::test(start_paused = true)]
async fn a_cold_key_reserves_nothing() {
    let t0 = Instant::now();
    let front = front(t0);
    let ceiling = ceiling(0.5);
    let client = client(&front, Arc::clone(&ceiling));
    for i in 0..20 {
        let latency = put(client.clone(), format!("order#{}", i % 4), 1)
            .await
            .unwrap();
        assert!(latency < Duration::from_millis(50), "{latency:?}");
    }
    let now = Instant::now();
    assert_eq!(ceiling.hot_keys(now), 0);
    assert_eq!(ceiling.budgets(now), 0);
    // Yet the report counts every attempt.
    let report = ceiling.report(TABLE, Access::Write, now).unwrap();
    assert_eq!(report.by_units().iter().map(|k| k.units).sum::<u64>(), 20);
}

#[tokio::test(start_paused = true)]
async fn a_key_range_throttle_teaches_only_its_key() {
    let t0 = Instant::now();
    // Two partitions of 500 WCU, no burst: a key over 500 WCU/s is refused with a key-range
    // reason before it reaches the share that would make it hot (the whole maximum).
    let sim = DynamoSim::builder()
        .table(
            TableConfig::builder(TABLE)
                .rcu(100)
                .wcu(1_000)
                .partitions(2)
                .burst_seconds(0)
                .capacity_model(CapacityModel::EvenSplit)
                .latency(Duration::from_millis(5))
                .build()
                .unwrap(),
        )
        .start(t0)
        .build()
        .unwrap();
    let a = "order#a";
    let part = sim.partition(TABLE, a).unwrap();
    let b = (0..)
        .map(|i| format!("order#b{i}"))
        .find(|b| sim.partition(TABLE, b) != Some(part))
        .unwrap();
    let front = SimService::builder()
        .dynamodb(sim)
        .partition_key(TABLE, "pk")
        .build()
        .unwrap();
    let ceiling = ceiling(1.0);
    let client = client(&front, Arc::clone(&ceiling));
    let mut calls = Vec::new();
    // 30 writes of 30 KB on one key in 0.6 s (900 WCU), 10 of 30 KB on another (300 WCU).
    for i in 0..30u64 {
        let client = client.clone();
        calls.push(tokio::spawn(async move {
            tokio::time::sleep_until(t0 + Duration::from_millis(i * 20)).await;
            put(client, a.to_owned(), 30).await
        }));
    }
    for i in 0..10u64 {
        let (client, b) = (client.clone(), b.clone());
        calls.push(tokio::spawn(async move {
            tokio::time::sleep_until(t0 + Duration::from_millis(i * 60 + 5)).await;
            put(client, b, 30).await
        }));
    }
    for call in calls {
        let _ = call.await.unwrap();
    }
    let stats = front.dynamodb().unwrap().stats();
    let table = &stats.tables[0];
    let throttled = table.key(a).unwrap().writes_throttled;
    assert!(throttled > 0);
    assert_eq!(table.key(&b).unwrap().writes_throttled, 0);
    let now = Instant::now();
    // Every throttled attempt was recorded on its key, and only there.
    let report = ceiling.report(TABLE, Access::Write, now).unwrap();
    let entry = |key: &str| {
        let id = ceiling.id(key.as_bytes());
        report.by_units().iter().find(|k| k.id == id).unwrap()
    };
    assert_eq!(entry(a).throttles, throttled);
    assert_eq!(entry(&b).throttles, 0);
    assert!(entry(a).peak_units_per_second < PARTITION_MAX_WCU);
    // The throttle made that key hot; the other stays cold.
    assert_eq!(ceiling.hot_keys(now), 1);
    let a = ceiling
        .admit(TABLE, Access::Write, a.as_bytes(), 1, now)
        .unwrap();
    let b = ceiling
        .admit(TABLE, Access::Write, b.as_bytes(), 1, now)
        .unwrap();
    assert!(a.is_hot());
    assert!(!b.is_hot());
}

/// Each operation the adapter reads keys from, sent by the real client: the ceiling's report
/// holds each key (by its hash only) with the units the operation spends on it, summed over
/// a call's items; what it cannot key (a `Query` on an index, a `Scan`, an undeclared table)
/// is not recorded.
#[tokio::test(start_paused = true)]
async fn every_keyed_operation_charges_its_keys() {
    use aws_sdk_dynamodb::types::{
        ConditionCheck, DeleteRequest, Get, KeysAndAttributes, Put, PutRequest, TransactGetItem,
        TransactWriteItem, Update, WriteRequest,
    };
    use std::collections::HashMap;

    const CUSTOMERS: &str = "customers";
    let t0 = Instant::now();
    let table = |name: &str| {
        TableConfig::builder(name)
            .rcu(3_000)
            .wcu(3_000)
            .latency(Duration::from_millis(5))
            .build()
            .unwrap()
    };
    let sim = DynamoSim::builder()
        .table(table(TABLE))
        .table(table(CUSTOMERS))
        .start(t0)
        .build()
        .unwrap();
    let front = SimService::builder()
        .dynamodb(sim)
        .partition_key(TABLE, "pk")
        .partition_key(CUSTOMERS, "id")
        .build()
        .unwrap();
    let ceiling = ceiling(0.5);
    let headroom = SdkHeadroom::builder(Profile::DynamoDb).build().unwrap();
    let builder = support::sdk::dynamodb_sim_config(sdk_http_client(front.clone()));
    let config = headroom
        .configure_dynamodb_ceiling(
            builder,
            [],
            Arc::clone(&ceiling),
            [(TABLE, "pk"), (CUSTOMERS, "id")],
        )
        .unwrap();
    let client = aws_sdk_dynamodb::Client::from_conf(config.build());

    let s = |v: &str| AttributeValue::S(v.to_owned());
    let key = |pk: &str, sk: u32| {
        HashMap::from([
            ("pk".to_owned(), s(pk)),
            ("sk".to_owned(), AttributeValue::N(sk.to_string())),
        ])
    };
    // An item of about 2.5 KB: three WCU.
    let item = |pk: &str, sk: u32| {
        let mut item = key(pk, sk);
        item.insert("d".to_owned(), s(&"x".repeat(2_500)));
        item
    };
    let customer = |id: &str| HashMap::from([("id".to_owned(), s(id))]);

    // GetItem: one 4 KB block, in half RCUs: 2 strongly consistent, 1 eventually.
    for (pk, consistent) in [("get-strong", true), ("get-eventual", false)] {
        client
            .get_item()
            .table_name(TABLE)
            .set_key(Some(key(pk, 1)))
            .consistent_read(consistent)
            .send()
            .await
            .unwrap();
    }
    // BatchWriteItem over two tables: two 3-WCU puts on one key (6), a delete (1), a put of
    // a small customer (1).
    let put = |item| {
        WriteRequest::builder()
            .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
            .build()
    };
    let delete = WriteRequest::builder()
        .delete_request(
            DeleteRequest::builder()
                .set_key(Some(key("batch-delete", 1)))
                .build()
                .unwrap(),
        )
        .build();
    client
        .batch_write_item()
        .request_items(
            TABLE,
            vec![put(item("batch-put", 1)), put(item("batch-put", 2)), delete],
        )
        .request_items(CUSTOMERS, vec![put(customer("customer-put"))])
        .send()
        .await
        .unwrap();
    // BatchGetItem: two strongly consistent keys on one partition key (4), an eventually
    // consistent customer (1).
    let strong = KeysAndAttributes::builder()
        .keys(key("batch-get", 1))
        .keys(key("batch-get", 2))
        .consistent_read(true)
        .build()
        .unwrap();
    let eventual = KeysAndAttributes::builder()
        .keys(customer("customer-get"))
        .build()
        .unwrap();
    client
        .batch_get_item()
        .request_items(TABLE, strong)
        .request_items(CUSTOMERS, eventual)
        .send()
        .await
        .unwrap();
    // Query: the partition key by name (strong: 2), by a `#name` after a sort key clause
    // (eventual: 1); on an index (another attribute), nothing.
    let query = |condition: &str, value: &str| {
        client
            .query()
            .table_name(TABLE)
            .key_condition_expression(condition)
            .expression_attribute_values(":v", s(value))
    };
    query("pk = :v", "query-plain")
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    query("sk > :s AND #k = :v", "query-named")
        .expression_attribute_names("#k", "pk")
        .expression_attribute_values(":s", AttributeValue::N("0".to_owned()))
        .send()
        .await
        .unwrap();
    query("pk = :v", "query-index")
        .index_name("by-date")
        .send()
        .await
        .unwrap();
    // Transactions: twice the units. The front keeps no store, so it refuses them, but the
    // attempts were sent and are recorded.
    let transact_write = client
        .transact_write_items()
        .transact_items(
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(TABLE)
                        .set_item(Some(item("transact-put", 1)))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .transact_items(
            TransactWriteItem::builder()
                .update(
                    Update::builder()
                        .table_name(TABLE)
                        .set_key(Some(key("transact-update", 1)))
                        .update_expression("SET n = :n")
                        .expression_attribute_values(":n", AttributeValue::N("1".to_owned()))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .transact_items(
            TransactWriteItem::builder()
                .condition_check(
                    ConditionCheck::builder()
                        .table_name(CUSTOMERS)
                        .set_key(Some(customer("customer-check")))
                        .condition_expression("attribute_exists(id)")
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await;
    assert!(transact_write.is_err());
    let transact_get = client
        .transact_get_items()
        .transact_items(
            TransactGetItem::builder()
                .get(
                    Get::builder()
                        .table_name(TABLE)
                        .set_key(Some(key("transact-get", 1)))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await;
    assert!(transact_get.is_err());
    // Not keyed: a Scan (sent, and refused by the storeless front), and a table with no
    // declared partition key.
    let _scan_refused = client.scan().table_name(TABLE).send().await;
    client
        .put_item()
        .table_name("audit")
        .item("pk", s("audit-put"))
        .send()
        .await
        .unwrap();

    let now = Instant::now();
    let units = |table: &str, access: Access| -> HashMap<_, _> {
        let report = ceiling.report(table, access, now).unwrap();
        assert!(report.by_units().iter().all(|k| k.key.is_none()));
        report.by_units().iter().map(|k| (k.id, k.units)).collect()
    };
    let id = |value: &str| ceiling.id(value.as_bytes());
    let expect = |pairs: &[(&str, u64)]| -> HashMap<_, _> {
        pairs.iter().map(|&(v, units)| (id(v), units)).collect()
    };
    assert_eq!(
        units(TABLE, Access::Read),
        expect(&[
            ("get-strong", 2),
            ("get-eventual", 1),
            ("batch-get", 4),
            ("query-plain", 2),
            ("query-named", 1),
            ("transact-get", 4),
        ])
    );
    assert_eq!(
        units(TABLE, Access::Write),
        expect(&[
            ("batch-put", 6),
            ("batch-delete", 1),
            ("transact-put", 6),
            ("transact-update", 2),
        ])
    );
    assert_eq!(
        units(CUSTOMERS, Access::Write),
        expect(&[("customer-put", 1), ("customer-check", 2)])
    );
    assert_eq!(
        units(CUSTOMERS, Access::Read),
        expect(&[("customer-get", 1)])
    );
    assert!(ceiling.report("audit", Access::Write, now).is_none());
    // Nothing was hot: no key reserved anything.
    assert_eq!(ceiling.budgets(now), 0);
}
