//! The DynamoDB simulator: consumed capacity, burst credit accrual and cap, hot partitions
//! under the even split (DynamoDB before adaptive capacity), debt from large items, error
//! shapes and their classification, configuration. Adaptive capacity, throttling reasons and
//! on-demand tables are in `sim_dynamodb_adaptive.rs`.
#![cfg(feature = "sim")]

use std::time::Duration;

use tokio::time::Instant;
use tower::{Service, ServiceExt};
use tower_headroom::classify::Classify;
use tower_headroom::sim::{
    CapacityModel, DynamoCall, DynamoConfig, DynamoReply, DynamoSim, SimClassifier, TableConfig,
    ThrottlingReason,
};
use tower_headroom::{OutcomeKind, ThrottleScope};

const TABLE: &str = "orders";

fn table(rcu: u64, wcu: u64) -> tower_headroom::sim::TableConfigBuilder {
    TableConfig::builder(TABLE).rcu(rcu).wcu(wcu)
}

fn sim(config: TableConfig, t0: Instant) -> DynamoSim {
    DynamoSim::builder()
        .table(config)
        .start(t0)
        .build()
        .unwrap()
}

/// Writes of 1 KiB to `key` at `now` until one is throttled; returns how many were admitted.
fn writes_until_throttled(sim: &DynamoSim, key: &str, now: Instant) -> u64 {
    let mut admitted = 0;
    while sim
        .charge(&DynamoCall::write(TABLE, key, 1_024), now)
        .is_ok()
    {
        admitted += 1;
        assert!(admitted < 1_000_000, "never throttled");
    }
    admitted
}

#[test]
fn consumed_capacity_follows_item_size_and_consistency() {
    let t0 = Instant::now();
    let sim = sim(
        table(1_000_000, 1_000_000)
            .partitions(1_000)
            .build()
            .unwrap(),
        t0,
    );
    let cases = [
        (DynamoCall::write(TABLE, "k", 0), 1.0),
        (DynamoCall::write(TABLE, "k", 1), 1.0),
        (DynamoCall::write(TABLE, "k", 1_024), 1.0),
        (DynamoCall::write(TABLE, "k", 1_025), 2.0),
        (DynamoCall::write(TABLE, "k", 400 * 1_024), 400.0),
        (DynamoCall::read(TABLE, "k", 0, true), 1.0),
        (DynamoCall::read(TABLE, "k", 4_096, true), 1.0),
        (DynamoCall::read(TABLE, "k", 4_097, true), 2.0),
        (DynamoCall::read(TABLE, "k", 100, false), 0.5),
        (DynamoCall::read(TABLE, "k", 4_097, false), 1.0),
        (DynamoCall::read(TABLE, "k", 12_289, false), 2.0),
    ];
    let mut rcu = 0.0;
    let mut wcu = 0.0;
    for (call, expected) in cases {
        assert_eq!(call.capacity_units(), expected, "{call:?}");
        assert_eq!(sim.charge(&call, t0).unwrap(), expected, "{call:?}");
        match call.op {
            tower_headroom::sim::Op::Write => wcu += expected,
            tower_headroom::sim::Op::Read { .. } => rcu += expected,
        }
    }
    let stats = sim.stats_at(t0);
    let t = stats.table(TABLE).unwrap();
    assert_eq!(t.consumed_wcu(), wcu);
    assert_eq!(t.consumed_rcu(), rcu);
    assert_eq!(t.writes.admitted, 5);
    assert_eq!(t.reads.admitted, 6);
}

#[test]
fn burst_credit_accrues_up_to_300_seconds_and_no_more() {
    let t0 = Instant::now();
    // One partition split evenly: the key may spend the whole burst credit (under adaptive
    // capacity one key stops at 1,000 WCU per second).
    let sim = sim(
        table(10, 10)
            .partitions(1)
            .capacity_model(CapacityModel::EvenSplit)
            .build()
            .unwrap(),
        t0,
    );
    // A new table starts with one second of capacity, no burst credit.
    assert_eq!(writes_until_throttled(&sim, "k", t0), 10);
    // 100 idle seconds bank 100 seconds of capacity.
    let t1 = t0 + Duration::from_secs(100);
    assert_eq!(
        sim.stats_at(t1).tables[0].partitions[0].write_credit,
        1_000.0
    );
    assert_eq!(writes_until_throttled(&sim, "k", t1), 1_000);
    // A long idle time banks 300 seconds, plus the current second, and no more.
    let t2 = t1 + Duration::from_secs(1_000);
    assert_eq!(
        sim.stats_at(t2).tables[0].partitions[0].write_credit,
        3_010.0
    );
    assert_eq!(writes_until_throttled(&sim, "k", t2), 3_010);
    // Reads bank separately, on the same rule.
    let mut reads = 0;
    while sim
        .charge(&DynamoCall::read(TABLE, "k", 4_096, true), t2)
        .is_ok()
    {
        reads += 1;
    }
    assert_eq!(reads, 3_010);
    let stats = sim.stats_at(t2);
    assert_eq!(stats.tables[0].writes.throttled_capacity, 3);
    assert_eq!(stats.tables[0].reads.throttled_capacity, 1);
}

#[test]
fn burst_seconds_is_configurable() {
    let t0 = Instant::now();
    let sim = sim(
        table(10, 10)
            .partitions(1)
            .burst_seconds(0)
            .build()
            .unwrap(),
        t0,
    );
    assert_eq!(
        writes_until_throttled(&sim, "k", t0 + Duration::from_secs(100)),
        10
    );
    let sim2 = DynamoSim::builder()
        .table(
            table(10, 10)
                .partitions(1)
                .burst_seconds(30)
                .build()
                .unwrap(),
        )
        .start(t0)
        .build()
        .unwrap();
    assert_eq!(
        writes_until_throttled(&sim2, "k", t0 + Duration::from_secs(100)),
        310
    );
}

#[test]
fn capacity_refills_continuously_at_the_provisioned_rate() {
    let t0 = Instant::now();
    let config = table(10, 10)
        .partitions(1)
        .burst_seconds(0)
        .build()
        .unwrap();
    let write = || DynamoCall::write(TABLE, "k", 1);
    let sim = sim(config.clone(), t0);
    assert_eq!(writes_until_throttled(&sim, "k", t0), 10);
    // 10 WCU refill one unit per 100 ms. Any credit above zero admits a write, which then
    // owes the rest of its unit: the next one waits until the debt is paid.
    assert!(sim.charge(&write(), t0 + ms(1)).is_ok());
    assert!(sim.charge(&write(), t0 + ms(100)).is_err());
    assert!(sim.charge(&write(), t0 + ms(101)).is_ok());
    // Steady state: probing every 5 ms for ten seconds gets exactly the provisioned rate.
    let steady = DynamoSim::builder()
        .table(config)
        .start(t0)
        .build()
        .unwrap();
    assert_eq!(writes_until_throttled(&steady, "k", t0), 10);
    let admitted = (1..=2_000u64)
        .filter(|i| steady.charge(&write(), t0 + ms(i * 5)).is_ok())
        .count();
    assert_eq!(admitted, 100);
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

#[test]
fn a_large_item_takes_the_partition_into_debt() {
    let t0 = Instant::now();
    let sim = sim(
        table(1, 1).partitions(1).burst_seconds(0).build().unwrap(),
        t0,
    );
    // One unit in the bucket: a 10 KiB write (10 WCU) is admitted and leaves 9 units of debt.
    assert_eq!(
        sim.charge(&DynamoCall::write(TABLE, "k", 10 * 1_024), t0)
            .unwrap(),
        10.0
    );
    assert_eq!(sim.stats_at(t0).tables[0].partitions[0].write_credit, -9.0);
    let small = DynamoCall::write(TABLE, "k", 1);
    assert!(sim.charge(&small, t0 + Duration::from_secs(9)).is_err());
    assert!(
        sim.charge(&small, t0 + Duration::from_millis(9_001))
            .is_ok()
    );
}

#[test]
fn a_hot_key_throttles_on_its_partition_while_the_table_has_room_in_the_even_split() {
    let t0 = Instant::now();
    // 100 WCU over 4 partitions split evenly: 25 WCU each.
    let even = || {
        table(100, 100)
            .partitions(4)
            .capacity_model(CapacityModel::EvenSplit)
            .build()
            .unwrap()
    };
    let sim = sim(even(), t0);
    let hot = "customer#1";
    let hot_partition = sim.partition(TABLE, hot).unwrap();
    let cold: Vec<String> = (0..1_000)
        .map(|i| format!("customer#{i}"))
        .filter(|k| sim.partition(TABLE, k).unwrap() != hot_partition)
        .take(20)
        .collect();
    assert_eq!(cold.len(), 20);
    assert_eq!(writes_until_throttled(&sim, hot, t0), 25);
    let err = sim
        .charge(&DynamoCall::write(TABLE, hot, 100), t0)
        .unwrap_err();
    assert_eq!(err.code(), "ProvisionedThroughputExceededException");
    assert_eq!(
        err.throttling_reason(),
        Some(ThrottlingReason::TableWriteKeyRangeThroughputExceeded)
    );
    // Keys on other partitions still write.
    for key in &cold {
        sim.charge(&DynamoCall::write(TABLE, key.as_str(), 100), t0)
            .unwrap();
    }
    let stats = sim.stats_at(t0);
    let t = stats.table(TABLE).unwrap();
    assert_eq!(t.consumed_wcu(), 45.0, "the table used 45 of its 100 WCU");
    assert_eq!(t.partitions[hot_partition].writes_throttled, 2);
    assert_eq!(
        t.partitions.iter().map(|p| p.writes_throttled).sum::<u64>(),
        2
    );
    assert_eq!(t.partitions[hot_partition].consumed_wcu(), 25.0);
    // The same key always lands on the same partition.
    let again = DynamoSim::builder().table(even()).build().unwrap();
    assert_eq!(again.partition(TABLE, hot), Some(hot_partition));
}

#[test]
fn partitions_default_to_what_dynamodb_computes_and_are_capped() {
    let count = |rcu, wcu| table(rcu, wcu).build().unwrap().partition_count();
    assert_eq!(count(100, 100), 1);
    assert_eq!(count(3_000, 1), 2);
    assert_eq!(count(3_000, 1_000), 2);
    assert_eq!(count(6_000, 2_000), 4);
    assert_eq!(count(1, 1_001), 2);
    // One partition serves at most 1000 WCU, whatever the table is provisioned for.
    let t0 = Instant::now();
    let capped = sim(table(10, 5_000).partitions(1).build().unwrap(), t0);
    assert_eq!(writes_until_throttled(&capped, "k", t0), 1_000);
    let reads = sim(table(9_000, 10).partitions(1).build().unwrap(), t0);
    let mut n = 0;
    while reads
        .charge(&DynamoCall::read(TABLE, "k", 1, true), t0)
        .is_ok()
    {
        n += 1;
    }
    assert_eq!(n, 3_000);
}

#[test]
fn rejections_have_the_dynamodb_shape_and_classify_as_intended() {
    let t0 = Instant::now();
    let sim = sim(table(1, 1).partitions(1).build().unwrap(), t0);
    sim.charge(&DynamoCall::write(TABLE, "k", 1), t0).unwrap();
    let throttled = sim
        .charge(&DynamoCall::write(TABLE, "k", 1), t0)
        .unwrap_err();
    assert_eq!(throttled.status(), 400);
    assert_eq!(throttled.code(), "ProvisionedThroughputExceededException");
    assert_eq!(
        throttled.message(),
        "The level of configured provisioned throughput for the table was exceeded. \
         Consider increasing your provisioning level with the UpdateTable API."
    );
    assert_eq!(throttled.retry_after(), None);
    let outcome = SimClassifier.classify(Err::<&DynamoReply, _>(&throttled));
    assert_eq!(
        outcome.kind,
        OutcomeKind::Throttled(ThrottleScope::Capacity)
    );

    let missing = sim
        .charge(&DynamoCall::write("nope", "k", 1), t0)
        .unwrap_err();
    assert_eq!(missing.status(), 400);
    assert_eq!(missing.code(), "ResourceNotFoundException");
    assert_eq!(missing.message(), "Requested resource not found");
    let outcome = SimClassifier.classify(Err::<&DynamoReply, _>(&missing));
    assert_eq!(outcome.kind, OutcomeKind::Fatal);

    let reply = DynamoReply {
        consumed_capacity: 1.0,
    };
    assert!(SimClassifier.classify(Ok(&reply)).is_success());
}

#[test]
fn per_caller_statistics() {
    let t0 = Instant::now();
    let sim = sim(table(2, 2).partitions(1).build().unwrap(), t0);
    sim.charge(&DynamoCall::write(TABLE, "k", 2_000).caller("batch"), t0)
        .unwrap();
    assert!(
        sim.charge(&DynamoCall::write(TABLE, "k", 1).caller("web"), t0)
            .is_err()
    );
    let stats = sim.stats_at(t0);
    assert_eq!(stats.caller("batch").unwrap().units, 2.0);
    assert_eq!(stats.caller("batch").unwrap().counts.admitted, 1);
    assert_eq!(stats.caller("web").unwrap().counts.throttled_capacity, 1);
}

#[tokio::test(start_paused = true)]
async fn the_service_answers_after_the_table_latency() {
    let sim = DynamoSim::builder()
        .table(
            table(5, 5)
                .partitions(1)
                .latency(Duration::from_millis(7))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let mut svc = sim.clone();
    let start = Instant::now();
    let reply = svc
        .ready()
        .await
        .unwrap()
        .call(DynamoCall::write(TABLE, "k", 3_000))
        .await
        .unwrap();
    assert_eq!(reply.consumed_capacity, 3.0);
    assert_eq!(start.elapsed(), Duration::from_millis(7));
    let stats = sim.stats();
    assert_eq!(stats.tables[0].elapsed, Duration::from_millis(7));
    assert_eq!(stats.tables[0].write_utilization(), 3.0 / (5.0 * 0.007));
}

#[test]
fn bad_configuration_is_a_config_error_naming_field_and_value() {
    let cases = [
        (
            TableConfig::builder("").rcu(1).wcu(1).build(),
            "name",
            "\"\"",
        ),
        (TableConfig::builder(TABLE).wcu(1).build(), "rcu", "0"),
        (TableConfig::builder(TABLE).rcu(1).build(), "wcu", "0"),
        (table(1, 1).partitions(0).build(), "partitions", "0"),
        (
            table(1, 1).burst_seconds(100_000).build(),
            "burst_seconds",
            "100000",
        ),
        (table(20_000_000, 1).build(), "rcu", "20000000"),
    ];
    for (result, field, value) in cases {
        let err = result.unwrap_err();
        assert_eq!(err.field(), field, "{err}");
        assert_eq!(err.value(), value, "{err}");
    }
    assert_eq!(DynamoSim::builder().build().unwrap_err().field(), "tables");
    let twice = DynamoSim::builder()
        .table(table(1, 1).build().unwrap())
        .table(table(2, 2).build().unwrap())
        .build()
        .unwrap_err();
    assert_eq!(twice.field(), "tables");

    let config: DynamoConfig = serde_json::from_str(
        r#"{ "tables": [{ "name": "t", "rcu": 100, "wcu": 50, "partitions": 4, "latency_ms": 3 }] }"#,
    )
    .unwrap();
    assert_eq!(config.tables[0].burst_seconds, 300);
    assert_eq!(config.tables[0].latency, Duration::from_millis(3));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    DynamoSim::from_config(config).unwrap();
    let bad: DynamoConfig =
        serde_json::from_str(r#"{ "tables": [{ "name": "t", "rcu": 0, "wcu": 50 }] }"#).unwrap();
    assert_eq!(DynamoSim::from_config(bad).unwrap_err().field(), "rcu");
}
