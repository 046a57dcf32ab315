//! The breaker allocates nothing per call on the success path, and exactly the boxed error on
//! the fast-fail path. Counted with a global allocator, so this file holds only this test.

use std::time::Duration;

use tower_headroom::breaker::{BreakerConfig, BreakerHandle, BreakerLayer, CircuitOpen};
use tower_headroom::observe::Labels;

#[path = "support/status.rs"]
mod status;
mod support;

#[global_allocator]
static GLOBAL: support::Counting = support::Counting;

use status::{allocations_answering, call_once, classify, echo};

#[test]
fn success_path_allocates_nothing_and_fast_fail_allocates_only_the_error() {
    let config = BreakerConfig::builder()
        .consecutive_failures(5)
        .open_for(Duration::from_secs(3600))
        .build()
        .unwrap();
    let breaker = BreakerHandle::new(config, Labels::target("bench").region("us-east-1"));
    let layer = BreakerLayer::new(breaker, classify);
    let mut service = tower::Layer::layer(&layer, echo());

    // Warm up (thread-locals of the clock and of fastrand, if any).
    assert_eq!(call_once(&mut service, 200).unwrap(), 200);
    assert_eq!(
        allocations_answering(&mut service, 1000, 200),
        0,
        "closed-circuit calls allocate nothing"
    );
    // Failures that do not trip yet are counted without allocating either.
    assert_eq!(allocations_answering(&mut service, 4, 503), 0);
    assert_eq!(call_once(&mut service, 503).unwrap(), 503); // trips (the event may allocate)

    let ((), fast_fail_allocations) = support::allocations(|| {
        for _ in 0..1000 {
            let error = call_once(&mut service, 200).unwrap_err();
            assert!(error.is::<CircuitOpen>());
        }
    });
    assert_eq!(
        fast_fail_allocations, 1000,
        "one allocation per fast fail: the boxed error"
    );
}
