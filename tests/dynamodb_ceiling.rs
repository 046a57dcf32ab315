//! The per-key ceiling in front of a client (`dynamodb::PartitionCeilingLayer`), against the
//! DynamoDB simulator with adaptive capacity on the paused clock: a key bursting over its
//! 1,000 WCU/s ceiling is held to it, other keys pass untouched, and the hot-key report names
//! the hot key.
#![cfg(feature = "sim")]

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{BoxError, Layer, ServiceBuilder, ServiceExt};
use tower_headroom::dynamodb::{
    Access, PARTITION_MAX_WCU, PartitionCeiling, PartitionCeilingLayer, PartitionUnits,
};
use tower_headroom::sim::{DynamoCall, DynamoReply, DynamoSim, SimClassifier, TableConfig};

const TABLE: &str = "orders";

fn sim(t0: Instant) -> DynamoSim {
    DynamoSim::builder()
        .table(
            TableConfig::builder(TABLE)
                .rcu(100)
                .wcu(1_500)
                .build()
                .unwrap(),
        )
        .start(t0)
        .build()
        .unwrap()
}

fn units(call: &DynamoCall) -> Option<PartitionUnits> {
    Some(PartitionUnits::new(
        Arc::clone(&call.table),
        Access::Write,
        call.partition_key.as_bytes(),
        call.item_bytes.div_ceil(1024),
    ))
}

fn boxed(e: tower_headroom::sim::SimError) -> BoxError {
    e.into()
}

/// `hot` writes of 30 KB a second to one key for 5 s beside 10 writes a second of 1 KB to
/// other keys, through `ceiling` when given; returns the hot key's throttled attempts, the
/// other keys' and the calls that failed.
async fn burst(ceiling: Option<Arc<PartitionCeiling>>) -> (u64, u64, u64) {
    let t0 = Instant::now();
    let sim = sim(t0);
    let plain = ServiceBuilder::new()
        .map_err(boxed as fn(tower_headroom::sim::SimError) -> BoxError)
        .service(sim.clone());
    let client: BoxCloneService<DynamoCall, DynamoReply, BoxError> = match ceiling {
        Some(c) => BoxCloneService::new(
            PartitionCeilingLayer::new(c, SimClassifier, units as fn(&DynamoCall) -> _)
                .layer(plain),
        ),
        None => BoxCloneService::new(plain),
    };
    let mut calls = Vec::new();
    for second in 0..5u64 {
        for i in 0..50u64 {
            let at = t0 + Duration::from_secs(second) + Duration::from_millis(i * 20);
            let client = client.clone();
            calls.push(tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                client
                    .oneshot(DynamoCall::write(TABLE, "order#hot", 30 * 1024))
                    .await
            }));
        }
        for i in 0..10u64 {
            let at = t0 + Duration::from_secs(second) + Duration::from_millis(i * 100 + 5);
            let client = client.clone();
            let key = format!("order#{}", second * 10 + i);
            calls.push(tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                client.oneshot(DynamoCall::write(TABLE, key, 1024)).await
            }));
        }
    }
    let mut failed = 0;
    for call in calls {
        if call.await.unwrap().is_err() {
            failed += 1;
        }
    }
    let stats = sim.stats();
    let table = &stats.tables[0];
    let hot = table.key("order#hot").map_or(0, |k| k.writes_throttled);
    (hot, table.writes.throttled() - hot, failed)
}

#[tokio::test(start_paused = true)]
async fn a_hot_key_is_held_to_its_ceiling_and_named() {
    // Without the ceiling the hot key runs into its partition maximum.
    let (hot, others, failed) = burst(None).await;
    assert!(hot >= 20, "{hot}");
    assert_eq!(others, 0);
    assert_eq!(failed, hot);

    let ceiling = Arc::new(
        PartitionCeiling::builder()
            .salt(3)
            .metrics(false)
            .build()
            .unwrap(),
    );
    let (hot, others, failed) = burst(Some(Arc::clone(&ceiling))).await;
    assert_eq!((hot, others, failed), (0, 0, 0));
    let now = Instant::now();
    let report = ceiling.report(TABLE, Access::Write, now).unwrap();
    let top = &report.by_units()[0];
    assert_eq!(top.id, ceiling.id(b"order#hot"));
    assert_eq!(top.units, 5 * 50 * 30);
    // Its busiest second is the first, before it was seen hot; below what it asked for.
    assert!(top.peak_units_per_second < 1_500, "{top:?}");
    assert!(
        top.peak_share() > 0.5 * PARTITION_MAX_WCU as f64 / 1_000.0,
        "{top:?}"
    );
    assert!(top.key.is_none());
    assert_eq!(ceiling.hot_keys(now), 1);
}

/// The simulator's rejection as the Tower path classifies it: a key-range throttle is
/// `Throttled(Partition)` with its reason (the table's budget is not lowered), a table's
/// provisioned throttle `Throttled(Capacity)`.
#[test]
fn a_key_range_throttle_is_a_partition_throttle_on_the_tower_path() {
    use tower_headroom::sim::{SimError, ThrottlingReason};
    use tower_headroom::{OutcomeKind, ThrottleLimit, ThrottleScope};
    let error = |reason| {
        SimError::new(
            http::StatusCode::BAD_REQUEST,
            "ProvisionedThroughputExceededException",
            "The level of configured provisioned throughput for the table was exceeded.",
        )
        .with_throttling_reason(
            reason,
            "arn:aws:dynamodb:us-east-1:000000000000:table/orders",
        )
    };
    let hot = error(ThrottlingReason::TableWriteKeyRangeThroughputExceeded).outcome();
    assert_eq!(hot.kind, OutcomeKind::Throttled(ThrottleScope::Partition));
    assert_eq!(hot.reason.unwrap().limit, ThrottleLimit::KeyRange);
    assert!(!hot.kind.teaches_quota());
    let table = error(ThrottlingReason::TableWriteProvisionedThroughputExceeded).outcome();
    assert_eq!(table.kind, OutcomeKind::Throttled(ThrottleScope::Capacity));
    assert_eq!(table.reason.unwrap().limit, ThrottleLimit::Provisioned);
    assert!(table.kind.teaches_quota());
}
