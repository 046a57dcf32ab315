//! `headroom_quota_lease_balance`: a key on the Redis store reports the units its leases took
//! from a real `redis-server` and have not spent yet, sampled when an attempt ends.
#![cfg(all(feature = "redis", feature = "metrics"))]

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokio::time::Instant;
use tower::ServiceExt;
use tower_headroom::admission::redis::RedisStore;
use tower_headroom::admission::{Cost, FixedCost, Limit, Quota};
use tower_headroom::fallback::Target;
use tower_headroom::observe::names;
use tower_headroom::stack::{Profile, StackBuilder};
use tower_headroom::{BoxError, HttpClassifier};

#[path = "support/redis.rs"]
mod redis_server;
use redis_server::RedisServer;

/// The lease balance gauge of `target`, if it has one.
fn lease_gauge(snapshotter: &Snapshotter, target: &str) -> Option<f64> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find_map(|(key, .., value)| {
            let ours = key.key().name() == names::QUOTA_LEASE_BALANCE
                && key
                    .key()
                    .labels()
                    .any(|l| l.key() == "target" && l.value() == target);
            match value {
                DebugValue::Gauge(v) if ours => Some(v.into_inner()),
                _ => None,
            }
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_key_reports_its_unspent_lease() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("the only recorder of this test");
    let server = RedisServer::start();
    // 100,000 units a minute, leased a tenth at a time.
    let limit = Limit::per_minute().units(100_000).build().unwrap();
    let store: RedisStore<&'static str> = RedisStore::builder("lease-gauge", limit)
        .lease(0.1)
        .connect(&server.url())
        .await
        .expect("connect to the test's redis-server");
    let quota = Quota::with_store(store);
    let backend = tower::service_fn(|_req: http::Request<()>| async {
        Ok::<_, BoxError>(http::Response::new(()))
    });
    let stack = StackBuilder::new(Profile::Http, HttpClassifier::new())
        .target(Target::new("model-a", "model-a"))
        .deadline(Duration::from_secs(5))
        .admission(quota.clone(), FixedCost(Cost::new(1, 1_000)))
        .services(vec![backend])
        .unwrap();
    assert_eq!(
        lease_gauge(&snapshotter, "model-a"),
        None,
        "no series before a call"
    );
    let response = stack.oneshot(http::Request::new(())).await.unwrap();
    assert_eq!(response.status(), 200);

    let leased = quota.slot(&"model-a", Instant::now()).leased();
    // The call took a lease of 10,000 units and spent 1,000 of it (its estimate; nothing
    // read its usage).
    assert!(
        (1..=10_000).contains(&leased),
        "a lease of at most a tenth of the limit, part spent: {leased}"
    );
    assert_eq!(lease_gauge(&snapshotter, "model-a"), Some(leased as f64));
}
