//! The stack's per-attempt timeout, on tokio's paused clock: an attempt that outlives it is
//! abandoned as a `Timeout`, counted by the target's breaker, and retried by the policy; the
//! timeout grows with the call's estimated cost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tower::ServiceExt;
use tower_headroom::admission::{Cost, Limit, Quota};
use tower_headroom::fallback::Target;
use tower_headroom::retry::{RetriesExhausted, RetryPolicy};
use tower_headroom::stack::{Profile, StackBuilder};
use tower_headroom::timeout::{AttemptTimedOut, AttemptTimeout};
use tower_headroom::{BoxError, HttpClassifier, OutcomeKind};

/// A backend whose first `slow` calls take a minute and the rest 100 ms.
fn backend(
    slow: u32,
    calls: Arc<AtomicU32>,
) -> impl tower::Service<
    http::Request<u64>,
    Response = http::Response<()>,
    Error = BoxError,
    Future = impl Send,
> + Clone {
    tower::service_fn(move |_req: http::Request<u64>| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            let took = if n < slow { 60_000 } else { 100 };
            tokio::time::sleep(Duration::from_millis(took)).await;
            Ok::<_, BoxError>(http::Response::new(()))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn an_attempt_past_its_timeout_is_abandoned_and_retried() {
    let calls = Arc::new(AtomicU32::new(0));
    let stack = StackBuilder::new(Profile::Http, HttpClassifier::new())
        .target(Target::new("api", "api"))
        .attempt_timeout(AttemptTimeout::fixed(Duration::from_secs(2)).unwrap())
        .retry(
            RetryPolicy::builder()
                .max_attempts(3)
                .seed(1)
                .build()
                .unwrap(),
        )
        .services(vec![backend(1, Arc::clone(&calls))])
        .unwrap();
    let start = Instant::now();
    let response = stack.clone().oneshot(http::Request::new(0)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let took = start.elapsed();
    // Two seconds to the timeout, a timeout backoff, 100 ms for the second attempt.
    assert!(took >= Duration::from_millis(2_100), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn the_last_timeout_is_the_calls_error_and_a_timeout_to_the_gateway() {
    let calls = Arc::new(AtomicU32::new(0));
    let stack = StackBuilder::new(Profile::Http, HttpClassifier::new())
        .target(Target::new("api", "api"))
        .attempt_timeout(AttemptTimeout::fixed(Duration::from_secs(2)).unwrap())
        .retry(
            RetryPolicy::builder()
                .max_attempts(2)
                .seed(1)
                .build()
                .unwrap(),
        )
        .services(vec![backend(u32::MAX, Arc::clone(&calls))])
        .unwrap();
    let error = stack.oneshot(http::Request::new(0)).await.unwrap_err();
    let exhausted = error.downcast_ref::<RetriesExhausted>().expect("{error}");
    assert_eq!(exhausted.last().kind, OutcomeKind::Timeout);
    assert!(tower_headroom::classify::find::<AttemptTimedOut>(&*error).is_some());
    let response = tower_headroom::stack::error_response::<()>(&*error);
    assert_eq!(response.status(), 504);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_call_estimated_larger_gets_longer() {
    // A second plus a millisecond per estimated unit; the backend always takes a minute.
    let timeout = AttemptTimeout::scaled(
        Duration::from_secs(1),
        Duration::from_millis(1),
        Duration::from_secs(600),
    )
    .unwrap();
    for (units, served) in [(1_000, false), (100_000, true)] {
        let calls = Arc::new(AtomicU32::new(0));
        let quota: Quota<&'static str> =
            Quota::new(Limit::per_minute().units(1_000_000).build().unwrap());
        let stack = StackBuilder::new(Profile::Http, HttpClassifier::new())
            .target(Target::new("api", "api"))
            .attempt_timeout(timeout)
            .retry(RetryPolicy::builder().max_attempts(1).build().unwrap())
            .admission(quota, |req: &http::Request<u64>| Cost::units(*req.body()))
            .services(vec![backend(u32::MAX, Arc::clone(&calls))])
            .unwrap();
        let result = stack.oneshot(http::Request::new(units)).await;
        assert_eq!(result.is_ok(), served, "{units} units: {result:?}");
    }
}
