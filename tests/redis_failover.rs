//! Redis killed mid-run and restarted: no call waits past its deadline, the store fails open
//! or closed as configured (with an event and a metric on each change), and the shared budget
//! resumes once the connection is back. Real time: the server's clock is real.
#![cfg(feature = "redis")]

use std::time::Duration;

use tokio::time::Instant;
use tower_headroom::Deadline;
use tower_headroom::admission::redis::{FailMode, RedisStore, StoreMode};
use tower_headroom::admission::{Ask, Cost, Limit, Quota, RejectReason, Usage};

#[path = "support/redis.rs"]
mod redis_server;
use redis_server::RedisServer;

const KEY: &str = "model";

async fn store(server: &RedisServer, fail: FailMode) -> RedisStore<String> {
    RedisStore::builder(
        "failover",
        Limit::per_second().units(1_000).build().unwrap(),
    )
    .lease(0.05)
    .fail(fail)
    .op_timeout(Duration::from_millis(100))
    .retry_interval(Duration::from_millis(100))
    .connect(&server.url())
    .await
    .unwrap()
}

/// One call of 10 units that may wait `max_wait`: admitted or the rejection's reason, and how
/// long it took.
async fn call(
    quota: Quota<String, RedisStore<String>>,
    max_wait: Duration,
) -> (Result<(), RejectReason>, Duration) {
    let start = Instant::now();
    let ask = Ask::new(Cost::units(10)).deadline(Deadline::after(max_wait));
    let result = match quota.acquire(&KEY.to_owned(), ask).await {
        Ok(r) => {
            r.settle(Usage::units(10), Instant::now());
            Ok(())
        }
        Err(rejected) => Err(rejected.reason),
    };
    (result, start.elapsed())
}

/// Calls for `span`, 10 at a time; returns (admitted, rejected with `reason`) and checks that
/// no call took longer than its deadline (plus scheduling slack).
async fn load(
    quota: &Quota<String, RedisStore<String>>,
    span: Duration,
    reason: Option<RejectReason>,
) -> (usize, usize) {
    let max_wait = Duration::from_millis(300);
    let until = Instant::now() + span;
    let (mut ok, mut rejected) = (0, 0);
    while Instant::now() < until {
        let calls: Vec<_> = (0..10)
            .map(|_| {
                let quota = quota.clone();
                tokio::spawn(call(quota, max_wait))
            })
            .collect();
        for c in calls {
            let (result, took) = c.await.unwrap();
            assert!(
                took <= max_wait + Duration::from_millis(150),
                "a call took {took:?}, past its {max_wait:?} deadline"
            );
            match result {
                Ok(()) => ok += 1,
                Err(r) => {
                    if let Some(expected) = reason {
                        assert!(
                            r == expected || r == RejectReason::Deadline,
                            "rejected for {r:?}"
                        );
                    }
                    rejected += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (ok, rejected)
}

async fn wait_for_mode(store: &RedisStore<String>, mode: StoreMode, within: Duration) {
    let quota = Quota::with_store(store.clone());
    let until = Instant::now() + within;
    while store.mode() != mode {
        assert!(
            Instant::now() < until,
            "store still {:?}, not {mode:?}, after {within:?}",
            store.mode()
        );
        // Demand is what makes the store try Redis again.
        let _ = call(quota.clone(), Duration::from_millis(50)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_rejects_within_deadlines_and_resumes() {
    let mut server = RedisServer::start();
    let store = store(&server, FailMode::Closed).await;
    let quota = Quota::with_store(store.clone());
    let (ok, _) = load(&quota, Duration::from_millis(500), None).await;
    assert!(ok > 0);
    assert_eq!(store.mode(), StoreMode::Shared);

    server.kill();
    let (ok, rejected) = load(
        &quota,
        Duration::from_secs(1),
        Some(RejectReason::StoreUnavailable),
    )
    .await;
    println!(
        "Redis down, failing closed: {ok} admitted (from the lease held), {rejected} rejected"
    );
    assert_eq!(store.mode(), StoreMode::FailingClosed);
    assert!(rejected > 0);
    // What was admitted came from the lease already held: at most one lease.
    assert!(ok * 10 <= 50 + 10, "{ok} calls admitted without Redis");

    server.restart();
    wait_for_mode(&store, StoreMode::Shared, Duration::from_secs(5)).await;
    let (ok, _) = load(&quota, Duration::from_millis(500), None).await;
    println!("Redis back: {ok} admitted in 0.5 s");
    assert!(ok >= 20, "only {ok} admitted after Redis came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_admits_the_local_fraction_and_resumes() {
    let mut server = RedisServer::start();
    // Redis gone: 20% of the quota, 200 units/s, locally.
    let store = store(&server, FailMode::Open { fraction: 0.2 }).await;
    let quota = Quota::with_store(store.clone());
    let (ok, _) = load(&quota, Duration::from_millis(300), None).await;
    assert!(ok > 0);

    server.kill();
    let start = Instant::now();
    let (ok, _) = load(&quota, Duration::from_secs(1), None).await;
    let secs = start.elapsed().as_secs_f64();
    println!("Redis down, failing open: {ok} calls of 10 units in {secs:.2} s");
    assert_eq!(store.mode(), StoreMode::FailingOpen);
    // The local budget (200/s) plus the lease held when Redis went (50) and the call in
    // flight.
    assert!(
        (ok * 10) as f64 <= 200.0 * secs + 50.0 + 10.0,
        "{ok} calls admitted failing open in {secs:.2} s"
    );
    assert!(ok * 10 >= 100, "failing open admitted only {ok} calls");

    server.restart();
    wait_for_mode(&store, StoreMode::Shared, Duration::from_secs(5)).await;
}

#[cfg(feature = "metrics")]
#[tokio::test]
async fn each_mode_change_is_counted() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use tower_headroom::observe::names;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // The store registers its metric handles when built, on this thread.
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mut server = RedisServer::start();
    let store = store(&server, FailMode::Closed).await;
    let quota = Quota::with_store(store.clone());
    let _ = call(quota.clone(), Duration::from_millis(200)).await;
    server.kill();
    wait_for_mode(&store, StoreMode::FailingClosed, Duration::from_secs(5)).await;
    server.restart();
    wait_for_mode(&store, StoreMode::Shared, Duration::from_secs(5)).await;

    let snapshot = snapshotter.snapshot().into_vec();
    let count = |to: &str| {
        snapshot
            .iter()
            .filter(|(k, ..)| {
                k.key().name() == names::QUOTA_STORE_TRANSITIONS
                    && k.key().labels().any(|l| l.key() == "to" && l.value() == to)
            })
            .map(|(.., v)| match v {
                DebugValue::Counter(n) => *n,
                _ => 0,
            })
            .sum::<u64>()
    };
    assert_eq!(count("fail_closed"), 1);
    assert_eq!(count("shared"), 1);
    let gauge = snapshot
        .iter()
        .find(|(k, ..)| k.key().name() == names::QUOTA_STORE_MODE)
        .map(|(.., v)| match v {
            DebugValue::Gauge(g) => g.into_inner(),
            _ => f64::NAN,
        });
    assert_eq!(gauge, Some(0.0), "back to shared");
}
