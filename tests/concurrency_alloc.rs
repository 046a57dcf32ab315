//! The concurrency limit allocates nothing per call on the success path (nor when it learns
//! from a refusal), and exactly the boxed error when it sheds a call. Counted with a global
//! allocator, so this file holds only this test.

use tower_headroom::concurrency::{
    AdaptiveLimit, ConcurrencyConfig, ConcurrencyLimitLayer, ConcurrencyLimited,
};
use tower_headroom::observe::Labels;

#[path = "support/status.rs"]
mod status;
mod support;

#[global_allocator]
static GLOBAL: support::Counting = support::Counting;

use status::{allocations_answering, call_once, classify, echo};

#[test]
fn success_path_allocates_nothing_and_shedding_allocates_only_the_error() {
    let config = ConcurrencyConfig::builder()
        .initial_limit(4)
        .build()
        .unwrap();
    let limit = AdaptiveLimit::new(config, Labels::target("bench").region("us-east-1"));
    let layer = ConcurrencyLimitLayer::new(limit.clone(), classify);
    let mut service = tower::Layer::layer(&layer, echo());

    // Warm up (thread-locals of the clock, if any).
    assert_eq!(call_once(&mut service, 200).unwrap(), 200);
    assert_eq!(
        allocations_answering(&mut service, 1000, 200),
        0,
        "calls within the limit allocate nothing"
    );
    // Refusals by the backend are learned from without allocating either.
    assert_eq!(allocations_answering(&mut service, 100, 503), 0);

    // Fill the limit with calls held in flight, then every further call is shed.
    let held: Vec<_> =
        std::iter::from_fn(|| limit.try_acquire(tokio::time::Instant::now()).ok()).collect();
    assert!(!held.is_empty());
    let ((), shed_allocations) = support::allocations(|| {
        for _ in 0..1000 {
            let error = call_once(&mut service, 200).unwrap_err();
            assert!(error.is::<ConcurrencyLimited>());
        }
    });
    assert_eq!(shed_allocations, 1000, "one boxed error per shed call");
    drop(held);
    assert_eq!(limit.in_flight(), 0);
}
