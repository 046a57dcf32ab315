//! The whole stack over the Redis store: two stacks with their own connections (two processes,
//! say) share each model's quota through a real `redis-server`, and the router reads the
//! shared quota as headroom (the store's own queue for a key, until the server answers). Redis keeps real time, so this runs on the real clock with
//! one-second windows.
#![cfg(feature = "redis")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tower::ServiceExt;
use tower_headroom::admission::redis::RedisStore;
use tower_headroom::admission::{Cost, FixedCost, Limit, Quota};
use tower_headroom::fallback::Target;
use tower_headroom::stack::{Profile, StackBuilder};
use tower_headroom::{BoxError, HttpClassifier};

#[path = "support/redis.rs"]
mod redis_server;
use redis_server::RedisServer;

type Log = Arc<Mutex<Vec<(Instant, String)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stacks_share_each_models_quota_through_redis() {
    let server = RedisServer::start();
    // Ten requests a second per model, in both processes together.
    let limit = Limit::per_second().requests(10).build().unwrap();
    let log: Log = Arc::default();
    let backend = {
        let log = Arc::clone(&log);
        tower::service_fn(move |req: http::Request<()>| {
            log.lock()
                .unwrap()
                .push((Instant::now(), req.uri().path().to_owned()));
            async { Ok::<_, BoxError>(http::Response::new(())) }
        })
    };
    let mut stacks = Vec::new();
    for _process in 0..2 {
        let store: RedisStore<&'static str> = RedisStore::builder("stack", limit.clone())
            .lease(0.0)
            .connect(&server.url())
            .await
            .expect("connect to the test's redis-server");
        let stack = StackBuilder::new(Profile::Http, HttpClassifier::new())
            .target(Target::new("a", "model-a"))
            .target(Target::new("b", "model-b"))
            .deadline(Duration::from_secs(5))
            .admission(Quota::with_store(store), FixedCost(Cost::ONE_REQUEST))
            .rewrite(
                backend.clone(),
                |req: &mut http::Request<()>, model: &&str| {
                    *req.uri_mut() = format!("/{model}").parse().unwrap();
                },
            )
            .unwrap();
        stacks.push(stack);
    }
    let start = Instant::now();
    let calls: Vec<_> = (0..30)
        .map(|i| {
            let stack = stacks[i % 2].clone();
            tokio::spawn(stack.oneshot(http::Request::new(())))
        })
        .collect();
    for call in calls {
        let response = call.await.unwrap().expect("every call is served in time");
        assert_eq!(response.status(), 200);
    }
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 30);
    let early = |model: &str| {
        log.iter()
            .filter(|(at, m)| *at < start + Duration::from_millis(900) && m == model)
            .count()
    };
    let (a, b) = (early("/model-a"), early("/model-b"));
    println!(
        "first 0.9 s: model-a {a}, model-b {b}; all 30 by {:?}",
        log.iter().map(|(t, _)| *t - start).max()
    );
    // Neither model's quota is exceeded by the two processes together: the calls beyond it
    // waited for the next second.
    assert!(a <= 10, "model-a served {a} calls in its first second");
    assert!(b <= 10, "model-b served {b} calls in its first second");
    // The router read the shared store's headroom: the calls queued on the first model made
    // it busier than the second, which took calls in the same second.
    assert!(b > 0, "the router never used the second model");
    let last = log.iter().map(|(t, _)| *t - start).max().unwrap();
    assert!(last >= Duration::from_millis(900), "{last:?}");
}
