//! The retry layer's success path does not touch the heap: proved with a counting allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::error::Error;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use tower::{Layer, Service};
use tower_headroom::retry::RetryPolicy;
use tower_headroom::{Outcome, RetryLayer};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

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

    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let mut sum = 0;
    for i in 0..10_000 {
        sum += call_once(&mut svc, &mut cx, i);
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(sum, (1..=10_000).sum::<u64>());
    assert_eq!(allocations, 0, "{allocations} allocations in 10,000 calls");

    // The counter itself works: a boxed value is seen.
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let boxed = std::hint::black_box(Box::new(1u64));
    assert_eq!(ALLOCATIONS.load(Ordering::Relaxed) - before, 1);
    drop(boxed);
}
