//! The whole stack's success path allocates nothing: retry, the fallback router with a breaker
//! per target, admission and usage settling, for a call the preferred target answers at once.
//! A counting global allocator (one per test binary) checks it.

use std::convert::Infallible;
use std::time::Duration;

use tower::{Service, ServiceExt};
use tower_headroom::admission::{FixedCost, HeaderUsage, Limit, Quota};
use tower_headroom::fallback::{Served, Target};
use tower_headroom::stack::StackBuilder;
use tower_headroom::{Cost, HttpClassifier};

mod support;

#[global_allocator]
static GLOBAL: support::Counting = support::Counting;

/// A request that clones without allocating, rewritten per target like a model id.
#[derive(Clone, Debug)]
struct Call {
    model: &'static str,
}

#[test]
fn stack_success_path_does_not_allocate() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let limit = Limit::per_second()
        .requests(1 << 40)
        .units(1 << 40)
        .build()
        .unwrap();
    let upstream = tower::service_fn(|call: Call| {
        let mut response = http::Response::new(());
        if call.model != "sonnet" {
            *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        }
        std::future::ready(Ok::<_, Infallible>(response))
    });
    let mut stack = StackBuilder::bedrock(HttpClassifier::new())
        .target(Target::new("sonnet", "sonnet"))
        .target(Target::new("haiku", "haiku"))
        .admission(Quota::new(limit), FixedCost(Cost::new(1, 100)))
        .usage(HeaderUsage::new())
        .rewrite(upstream, |call: &mut Call, model: &&'static str| {
            call.model = model
        })
        .unwrap();
    rt.block_on(async {
        // Warm up: each target's quota state created and pinned, metric handles registered.
        for _ in 0..4 {
            let response = stack.ready().await.unwrap().call(Call { model: "" }).await;
            assert_eq!(response.unwrap().status(), 200);
        }
    });
    let (served, allocations) = support::allocations(|| {
        rt.block_on(async {
            let mut served = 0;
            for _ in 0..10_000 {
                let response = stack.ready().await.unwrap().call(Call { model: "" }).await;
                let response = response.unwrap();
                assert!(response.extensions().get::<Served>().is_none());
                served += usize::from(response.status() == 200);
            }
            served
        })
    });
    assert_eq!(served, 10_000);
    assert_eq!(allocations, 0, "allocations in 10,000 calls");

    // A control: a fallback answer is annotated, which allocates its extension.
    let mut fallback = StackBuilder::bedrock(HttpClassifier::new())
        .target(Target::new("opus", "opus"))
        .target(Target::new("sonnet", "sonnet"))
        .retry(
            tower_headroom::retry::RetryPolicy::builder()
                .max_attempts(1)
                .deadline(Duration::from_secs(1))
                .build()
                .unwrap(),
        )
        .rewrite(upstream, |call: &mut Call, model: &&'static str| {
            call.model = model
        })
        .unwrap();
    let (response, allocations) = support::allocations(|| {
        rt.block_on(async {
            fallback
                .ready()
                .await
                .unwrap()
                .call(Call { model: "" })
                .await
        })
    });
    assert!(allocations > 0);
    let served = response
        .unwrap()
        .extensions()
        .get::<Served>()
        .cloned()
        .unwrap();
    assert_eq!((&*served.name, served.degraded), ("sonnet", true));
}
