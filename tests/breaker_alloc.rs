//! The breaker allocates nothing per call on the success path, and exactly the boxed error on
//! the fast-fail path. Counted with a global allocator, so this file holds only this test.

use std::error::Error;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tower::Service;
use tower_headroom::breaker::{BreakerConfig, BreakerHandle, BreakerLayer, CircuitOpen};
use tower_headroom::observe::Labels;
use tower_headroom::{Outcome, OutcomeKind};

mod support;

#[global_allocator]
static GLOBAL: support::Counting = support::Counting;

fn classify(result: Result<&u16, &(dyn Error + 'static)>) -> Outcome {
    match result {
        Ok(200) => Outcome::SUCCESS,
        Ok(_) => Outcome::new(OutcomeKind::Unavailable),
        Err(_) => Outcome::new(OutcomeKind::Transient),
    }
}

fn call_once<S>(service: &mut S, status: u16) -> Result<u16, tower_headroom::BoxError>
where
    S: Service<u16, Response = u16, Error = tower_headroom::BoxError>,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(service.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let mut future = pin!(service.call(status));
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(result) => result,
        Poll::Pending => unreachable!("the inner future is ready"),
    }
}

#[test]
fn success_path_allocates_nothing_and_fast_fail_allocates_only_the_error() {
    let config = BreakerConfig::builder()
        .consecutive_failures(5)
        .open_for(Duration::from_secs(3600))
        .build()
        .unwrap();
    let breaker = BreakerHandle::new(config, Labels::target("bench").region("us-east-1"));
    let layer = BreakerLayer::new(breaker, classify);
    let inner =
        tower::service_fn(|status: u16| std::future::ready(Ok::<_, std::io::Error>(status)));
    let mut service = tower::Layer::layer(&layer, inner);

    // Warm up (thread-locals of the clock and of fastrand, if any).
    assert_eq!(call_once(&mut service, 200).unwrap(), 200);

    let ((), success_allocations) = support::allocations(|| {
        for _ in 0..1000 {
            assert_eq!(call_once(&mut service, 200).unwrap(), 200);
        }
    });
    assert_eq!(
        success_allocations, 0,
        "closed-circuit calls allocate nothing"
    );

    // Failures that do not trip yet are counted without allocating either.
    let ((), allocations) = support::allocations(|| {
        for _ in 0..4 {
            assert_eq!(call_once(&mut service, 503).unwrap(), 503);
        }
    });
    assert_eq!(allocations, 0);
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
