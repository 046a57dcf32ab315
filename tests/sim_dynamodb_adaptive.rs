//! The DynamoDB simulator as DynamoDB is today: adaptive capacity (a hot key takes the
//! table's unused capacity up to the per-key ceiling), throttling reasons, reads apart from
//! writes, on-demand tables, per-key statistics.
#![cfg(feature = "sim")]

use std::time::Duration;

use tokio::time::Instant;
use tower::{Service, ServiceExt};
use tower_headroom::sim::{
    CapacityModel, DynamoCall, DynamoConfig, DynamoSim, NEW_ON_DEMAND_PEAK_WCU, PARTITION_MAX_RCU,
    PARTITION_MAX_WCU, TableConfig, ThrottlingReason,
};

const TABLE: &str = "orders";

fn sim(config: TableConfig, t0: Instant) -> DynamoSim {
    DynamoSim::builder()
        .table(config)
        .start(t0)
        .build()
        .unwrap()
}

fn provisioned(rcu: u64, wcu: u64) -> TableConfig {
    TableConfig::builder(TABLE)
        .rcu(rcu)
        .wcu(wcu)
        .build()
        .unwrap()
}

/// Calls made by `call(i)` at `now` until one is throttled: (admitted, the throttle).
fn until_throttled(
    sim: &DynamoSim,
    now: Instant,
    call: impl Fn(u64) -> DynamoCall,
) -> (u64, tower_headroom::sim::SimError) {
    let mut admitted = 0;
    loop {
        match sim.charge(&call(admitted), now) {
            Ok(_) => admitted += 1,
            Err(error) => return (admitted, error),
        }
        assert!(admitted < 10_000_000, "never throttled");
    }
}

fn write(key: &str) -> DynamoCall {
    DynamoCall::write(TABLE, key, 1_024)
}

#[test]
fn a_hot_key_takes_the_tables_unused_capacity_at_once() {
    let t0 = Instant::now();
    // 400 WCU on 4 partitions: the even split would give the key 100 WCU.
    let config = TableConfig::builder(TABLE).rcu(100).wcu(400).partitions(4);
    let adaptive = sim(config.clone().build().unwrap(), t0);
    let (n, err) = until_throttled(&adaptive, t0, |_| write("hot"));
    assert_eq!(n, 400, "the key took the whole table's second");
    assert_eq!(
        err.throttling_reason(),
        Some(ThrottlingReason::TableWriteProvisionedThroughputExceeded)
    );
    assert_eq!(err.code(), "ProvisionedThroughputExceededException");
    assert_eq!(
        err.throttled_resource(),
        Some("arn:aws:dynamodb:us-east-1:123456789012:table/orders")
    );
    // The same table split evenly: a quarter for the key, and a key-range throttle.
    let even = sim(
        config
            .capacity_model(CapacityModel::EvenSplit)
            .build()
            .unwrap(),
        t0,
    );
    let (n, err) = until_throttled(&even, t0, |_| write("hot"));
    assert_eq!(n, 100);
    assert_eq!(
        err.throttling_reason(),
        Some(ThrottlingReason::TableWriteKeyRangeThroughputExceeded)
    );
}

#[test]
fn a_key_above_1000_wcu_throttles_with_the_key_range_reason_on_a_table_with_room() {
    let t0 = Instant::now();
    let sim = sim(provisioned(10_000, 10_000), t0);
    let (n, err) = until_throttled(&sim, t0, |_| write("hot"));
    assert_eq!(n, PARTITION_MAX_WCU);
    assert_eq!(
        err.throttling_reason(),
        Some(ThrottlingReason::TableWriteKeyRangeThroughputExceeded)
    );
    assert_eq!(err.code(), "ProvisionedThroughputExceededException");
    // Every other key still writes: the table has 9,000 WCU left this second.
    for i in 0..9_000 {
        sim.charge(&write(&format!("cold#{i}")), t0).unwrap();
    }
    let err = sim.charge(&write("cold#x"), t0).unwrap_err();
    assert_eq!(
        err.throttling_reason(),
        Some(ThrottlingReason::TableWriteProvisionedThroughputExceeded)
    );
    // Reads of the hot key are apart: 3,000 RCU of strongly consistent 4 KiB reads.
    let (reads, err) = until_throttled(&sim, t0, |_| DynamoCall::read(TABLE, "hot", 4_096, true));
    assert_eq!(reads, PARTITION_MAX_RCU);
    assert_eq!(
        err.throttling_reason(),
        Some(ThrottlingReason::TableReadKeyRangeThroughputExceeded)
    );
    // The key's ceiling refills at 1,000 WCU per second and holds one second, no burst.
    let later = t0 + Duration::from_secs(600);
    assert_eq!(
        until_throttled(&sim, later, |_| write("hot")).0,
        PARTITION_MAX_WCU
    );

    let stats = sim.stats_at(later);
    let t = stats.table(TABLE).unwrap();
    assert_eq!(
        t.throttled(ThrottlingReason::TableWriteKeyRangeThroughputExceeded),
        2
    );
    assert_eq!(
        t.throttled(ThrottlingReason::TableWriteProvisionedThroughputExceeded),
        1
    );
    assert_eq!(
        t.throttled(ThrottlingReason::TableReadKeyRangeThroughputExceeded),
        1
    );
    assert_eq!(t.writes.throttled_capacity, 3);
    let hot = &t.hot_keys[0];
    assert_eq!(&*hot.key, "hot");
    assert_eq!(hot.consumed_wcu, 2.0 * PARTITION_MAX_WCU as f64);
    assert_eq!(hot.consumed_rcu, PARTITION_MAX_RCU as f64);
    assert_eq!((hot.writes_throttled, hot.reads_throttled), (2, 1));
    assert_eq!(
        (hot.writes, hot.reads),
        (2 * PARTITION_MAX_WCU, PARTITION_MAX_RCU)
    );
    // The ten heaviest keys: the hot one, then cold ones of one unit each.
    assert_eq!(t.hot_keys.len(), 10);
    assert!(t.hot_keys[1..].iter().all(|k| k.consumed_wcu == 1.0));
    assert!(t.key("hot").is_some());
}

#[test]
fn a_table_over_its_wcu_throttles_with_the_provisioned_reason_and_burst_credit_is_the_tables() {
    let t0 = Instant::now();
    let sim = sim(provisioned(10, 10), t0);
    // A new table holds one second; spread over keys, the table is the limit.
    let (n, err) = until_throttled(&sim, t0, |i| write(&format!("k{i}")));
    assert_eq!(n, 10);
    assert_eq!(
        err.throttling_reason(),
        Some(ThrottlingReason::TableWriteProvisionedThroughputExceeded)
    );
    // 100 idle seconds bank 100 seconds of the table's capacity, for any one key.
    let t1 = t0 + Duration::from_secs(100);
    assert_eq!(sim.stats_at(t1).tables[0].write_credit, 1_000.0);
    assert_eq!(until_throttled(&sim, t1, |_| write("one")).0, 1_000);
    // And no more than 300 seconds plus the current one.
    let t2 = t1 + Duration::from_secs(10_000);
    assert_eq!(sim.stats_at(t2).tables[0].write_credit, 3_010.0);
}

#[test]
fn reads_never_spend_write_capacity() {
    let t0 = Instant::now();
    let sim = sim(provisioned(50, 5), t0);
    // 50 strongly consistent reads use the table's read second; the writes' second is whole.
    for i in 0..50 {
        sim.charge(&DynamoCall::read(TABLE, format!("k{i}"), 100, true), t0)
            .unwrap();
    }
    assert_eq!(sim.stats_at(t0).tables[0].write_credit, 5.0);
    assert_eq!(until_throttled(&sim, t0, |i| write(&format!("w{i}"))).0, 5);
    // Eventually consistent reads cost half: the read second refills to 50 units, 100 reads.
    let t1 = t0 + Duration::from_secs(1);
    let (n, err) = until_throttled(&sim, t1, |i| {
        DynamoCall::read(TABLE, format!("r{i}"), 100, false)
    });
    assert_eq!(n, 100);
    assert_eq!(
        err.throttling_reason(),
        Some(ThrottlingReason::TableReadProvisionedThroughputExceeded)
    );
    let t = &sim.stats_at(t1).tables[0];
    assert_eq!(t.consumed_rcu(), 100.0);
    assert_eq!(t.consumed_wcu(), 5.0);
}

#[test]
fn on_demand_takes_twice_the_previous_peak_and_a_new_peak_counts_30_minutes_later() {
    let t0 = Instant::now();
    let sim = sim(
        TableConfig::builder(TABLE)
            .on_demand()
            .previous_peak(100, 50)
            .build()
            .unwrap(),
        t0,
    );
    // Twice the previous write peak, 100 WCU, in one second, over many keys.
    let (n, err) = until_throttled(&sim, t0, |i| write(&format!("k{i}")));
    assert_eq!(n, 100);
    assert_eq!(
        err.throttling_reason(),
        Some(ThrottlingReason::TableWriteKeyRangeThroughputExceeded)
    );
    assert_eq!(err.code(), "ProvisionedThroughputExceededException");
    assert!(
        err.message()
            .starts_with("Throughput exceeds the current capacity")
    );
    // No burst credit: a minute later, after an idle minute, 100 again.
    let t1 = t0 + Duration::from_secs(60);
    assert_eq!(
        until_throttled(&sim, t1, |i| write(&format!("a{i}"))).0,
        100
    );
    // The first second's 100 WCU becomes the previous peak 30 minutes later: 200 at once.
    let t2 = t0 + Duration::from_secs(30 * 60 - 1);
    assert_eq!(
        until_throttled(&sim, t2, |i| write(&format!("b{i}"))).0,
        100
    );
    let t3 = t0 + Duration::from_secs(30 * 60 + 1);
    assert_eq!(
        until_throttled(&sim, t3, |i| write(&format!("c{i}"))).0,
        200
    );
    let stats = sim.stats_at(t3);
    let t = stats.table(TABLE).unwrap();
    assert_eq!(t.previous_peak, Some((100.0, 100.0)));
    assert_eq!(t.on_demand_peak_throttles, 4);
    // Reads on the same rule, apart: twice 100 RCU.
    let (reads, _) = until_throttled(&sim, t3, |i| {
        DynamoCall::read(TABLE, format!("r{i}"), 1, true)
    });
    assert_eq!(reads, 200);
}

#[test]
fn a_new_on_demand_table_takes_4000_writes_per_second() {
    let t0 = Instant::now();
    let sim = sim(TableConfig::builder(TABLE).on_demand().build().unwrap(), t0);
    let (n, _) = until_throttled(&sim, t0, |i| write(&format!("k{i}")));
    assert_eq!(n, 2 * NEW_ON_DEMAND_PEAK_WCU);
    assert_eq!(n, 4_000);
    // One key still stops at the partition maximum.
    let t1 = t0 + Duration::from_secs(1);
    let (n, err) = until_throttled(&sim, t1, |_| write("hot"));
    assert_eq!(n, PARTITION_MAX_WCU);
    assert_eq!(
        err.throttling_reason(),
        Some(ThrottlingReason::TableWriteKeyRangeThroughputExceeded)
    );
}

#[test]
fn on_demand_maximum_throughput_throttles_with_its_reason() {
    let t0 = Instant::now();
    let sim = sim(
        TableConfig::builder(TABLE)
            .on_demand()
            .max_write_request_units(30)
            .max_read_request_units(20)
            .build()
            .unwrap(),
        t0,
    );
    let (n, err) = until_throttled(&sim, t0, |i| write(&format!("k{i}")));
    assert_eq!(n, 30);
    assert_eq!(err.code(), "ThrottlingException");
    assert_eq!(
        err.throttling_reason(),
        Some(ThrottlingReason::TableWriteMaxOnDemandThroughputExceeded)
    );
    let (n, err) = until_throttled(&sim, t0, |i| {
        DynamoCall::read(TABLE, format!("k{i}"), 1, true)
    });
    assert_eq!(n, 20);
    assert_eq!(
        err.throttling_reason(),
        Some(ThrottlingReason::TableReadMaxOnDemandThroughputExceeded)
    );
    // Per second: the next second admits 30 writes again.
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(until_throttled(&sim, t1, |i| write(&format!("n{i}"))).0, 30);
    let t = &sim.stats_at(t1).tables[0];
    assert_eq!(
        t.throttled(ThrottlingReason::TableWriteMaxOnDemandThroughputExceeded),
        2
    );
    assert_eq!(
        t.throttled(ThrottlingReason::TableReadMaxOnDemandThroughputExceeded),
        1
    );
    assert_eq!(t.on_demand_peak_throttles, 0);
}

#[tokio::test(start_paused = true)]
async fn the_service_rejection_carries_the_reason() {
    let sim = DynamoSim::builder()
        .table(provisioned(1, 1))
        .region("eu-west-1")
        .account_id("111122223333")
        .build()
        .unwrap();
    let mut svc = sim.clone();
    // Two units from a one-unit second: the next write, 5 ms later, finds the table in debt.
    svc.ready()
        .await
        .unwrap()
        .call(DynamoCall::write(TABLE, "k", 2_000))
        .await
        .unwrap();
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(write("k"))
        .await
        .unwrap_err();
    assert_eq!(
        err.throttling_reason(),
        Some(ThrottlingReason::TableWriteProvisionedThroughputExceeded)
    );
    assert_eq!(
        err.throttled_resource(),
        Some("arn:aws:dynamodb:eu-west-1:111122223333:table/orders")
    );
}

#[test]
fn many_cold_keys_stay_in_bounded_memory_and_the_hot_key_stays_exact() {
    let t0 = Instant::now();
    let sim = sim(provisioned(100, 100_000), t0);
    for i in 0..50_000u64 {
        let now = t0 + Duration::from_millis(i);
        sim.charge(&write("hot"), now).unwrap();
        sim.charge(&write(&format!("cold#{i}")), now).unwrap();
    }
    let stats = sim.stats_at(t0 + Duration::from_secs(60));
    let t = &stats.tables[0];
    assert_eq!(&*t.hot_keys[0].key, "hot");
    assert_eq!(t.hot_keys[0].consumed_wcu, 50_000.0);
    assert_eq!(t.consumed_wcu(), 100_000.0);
}

#[test]
fn capacity_options_are_configured_and_checked() {
    let config: DynamoConfig = serde_json::from_str(
        r#"{ "tables": [
            { "name": "a", "rcu": 10, "wcu": 10, "capacity_model": "even_split" },
            { "name": "b", "billing_mode": "pay_per_request", "max_write_request_units": 5 }
        ], "region": "eu-west-1" }"#,
    )
    .unwrap();
    assert_eq!(config.tables[0].capacity_model, CapacityModel::EvenSplit);
    assert!(config.tables[1].is_on_demand());
    assert_eq!(config.tables[1].max_write_request_units, Some(5));
    assert_eq!(config.region, "eu-west-1");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let sim = DynamoSim::from_config(config).unwrap();
    let err = sim
        .charge(&DynamoCall::write("b", "k", 6 * 1_024), Instant::now())
        .map(|_| ())
        .and_then(|()| {
            sim.charge(&DynamoCall::write("b", "k", 1), Instant::now())
                .map(|_| ())
        })
        .unwrap_err();
    assert_eq!(
        err.throttled_resource(),
        Some("arn:aws:dynamodb:eu-west-1:123456789012:table/b")
    );

    let cases = [
        (
            TableConfig::builder(TABLE)
                .rcu(1)
                .wcu(1)
                .max_write_request_units(5)
                .build(),
            "max_write_request_units",
        ),
        (
            TableConfig::builder(TABLE)
                .on_demand()
                .max_read_request_units(0)
                .build(),
            "max_read_request_units",
        ),
        (
            TableConfig::builder(TABLE)
                .on_demand()
                .capacity_model(CapacityModel::EvenSplit)
                .build(),
            "capacity_model",
        ),
        (
            TableConfig::builder(TABLE)
                .rcu(1)
                .wcu(1)
                .previous_peak(1, 1)
                .build(),
            "previous_peak_rcu",
        ),
    ];
    for (result, field) in cases {
        assert_eq!(result.unwrap_err().field(), field);
    }
    let bad_region = DynamoSim::builder()
        .table(provisioned(1, 1))
        .region("us-east-1/../x")
        .build()
        .unwrap_err();
    assert_eq!(bad_region.field(), "region");
}
