//! The retry layer's success path does not touch the heap: proved with a counting allocator.

use std::error::Error;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use tower::{Layer, Service};
use tower_headroom::retry::RetryPolicy;
use tower_headroom::{Outcome, RetryLayer};

mod support;

#[global_allocator]
static GLOBAL: support::Counting = support::Counting;

fn classify(result: Result<&u64, &(dyn Error + 'static)>) -> Outcome {
    match result {
        Ok(_) => Outcome::SUCCESS,
        Err(_) => Outcome::FATAL,
    }
}

fn call_once<S: Service<u64, Response = u64>>(svc: &mut S, cx: &mut Context<'_>, req: u64) -> u64
where
    S::Error: std::fmt::Debug,
{
    assert!(svc.poll_ready(cx).is_ready());
    let mut fut = pin!(svc.call(req));
    match fut.as_mut().poll(cx) {
        Poll::Ready(out) => out.unwrap(),
        Poll::Pending => panic!("the inner service is always ready"),
    }
}

#[test]
fn success_path_makes_no_heap_allocation() {
    let inner = tower::service_fn(|req: u64| std::future::ready(Ok::<_, std::io::Error>(req + 1)));
    let policy = RetryPolicy::builder().build().unwrap();
    let mut svc = RetryLayer::new(policy, classify).layer(inner);
    let mut cx = Context::from_waker(Waker::noop());
    // Warm up: lazily initialised statics (tracing callsites, the clock) may allocate once.
    for i in 0..10 {
        call_once(&mut svc, &mut cx, i);
    }

    let (sum, allocations) = support::allocations(|| {
        (0..10_000)
            .map(|i| call_once(&mut svc, &mut cx, i))
            .sum::<u64>()
    });
    assert_eq!(sum, (1..=10_000).sum::<u64>());
    assert_eq!(allocations, 0, "{allocations} allocations in 10,000 calls");

    // The counter itself works: a boxed value is seen.
    let (boxed, allocations) = support::allocations(|| std::hint::black_box(Box::new(1u64)));
    assert_eq!(allocations, 1);
    drop(boxed);
}
