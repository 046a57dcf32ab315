//! The success path allocates nothing: the core's reserve + settle, and a whole call through
//! the Tower layer. A counting global allocator (one per test binary) checks it.

use std::convert::Infallible;
use std::time::Duration;

use tokio::time::Instant;
use tower::{Service, ServiceExt};
use tower_headroom::admission::{
    AdmissionLayer, Cost, Fixed, FixedCost, Grant, HeaderUsage, Keyed, Limit, Quota, Usage,
};

mod support;

#[global_allocator]
static GLOBAL: support::Counting = support::Counting;

fn big_limit() -> Limit {
    Limit::per_second()
        .requests(1 << 40)
        .units(1 << 40)
        .burst(Duration::from_secs(3600))
        .build()
        .unwrap()
}

#[test]
fn core_reserve_and_settle_do_not_allocate() {
    let quota: Quota<&'static str> = Quota::new(big_limit());
    let t0 = Instant::now();
    // The first call creates the key's state (that allocates, once).
    quota
        .reserve(&"model", Cost::units(10), t0)
        .unwrap()
        .settle(Usage::units(10), t0);
    let ((), allocations) = support::allocations(|| {
        for i in 0..10_000u64 {
            let now = t0 + Duration::from_micros(i);
            let r = quota.reserve(&"model", Cost::units(100), now).unwrap();
            assert_eq!(r.grant(), Grant::Now);
            r.settle(Usage::units(40 + i % 100), now);
        }
    });
    assert_eq!(allocations, 0);
    // And a control that the counter counts.
    let (_v, allocations) = support::allocations(|| vec![1u8; 16]);
    assert_eq!(allocations, 1);
}

/// A day window keeps no per-call records: after the key's state is made, a day of calls
/// (one a second, settled at varying real spend) allocates nothing.
#[test]
fn a_day_window_does_not_allocate_per_call() {
    let limit = Limit::per_minute()
        .units(1 << 30)
        .units_per_day(1 << 40)
        .build()
        .unwrap();
    let quota: Quota<&'static str> = Quota::new(limit);
    let t0 = quota.epoch();
    quota
        .reserve(&"model", Cost::units(10), t0)
        .unwrap()
        .settle(Usage::units(10), t0);
    let ((), allocations) = support::allocations(|| {
        for i in 0..86_400u64 {
            let now = t0 + Duration::from_secs(i);
            let r = quota.reserve(&"model", Cost::units(100), now).unwrap();
            assert_eq!(r.grant(), Grant::Now);
            r.settle(Usage::units(40 + i % 100), now);
        }
    });
    assert_eq!(allocations, 0);
}

#[test]
fn tower_call_does_not_allocate() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let quota: Quota<&'static str> = Quota::new(big_limit());
    let layer = AdmissionLayer::new(
        quota.clone(),
        Fixed::new("model", FixedCost(Cost::units(50))),
    )
    .usage(HeaderUsage::new());
    let inner = tower::service_fn(|req: u64| {
        std::future::ready(Ok::<_, Infallible>(http::Response::new(req)))
    });
    let mut svc = tower::Layer::layer(&layer, inner);
    let keyed = AdmissionLayer::new(
        quota,
        Keyed::new(
            |req: &u64| if req % 2 == 0 { "even" } else { "odd" },
            |_: &u64| tower_headroom::admission::Ask::new(Cost::units(5)),
        ),
    );
    let mut keyed_svc = tower::Layer::layer(&keyed, inner);
    rt.block_on(async {
        // Warm up: state created, slot pinned.
        for i in 0..4 {
            svc.ready().await.unwrap().call(i).await.unwrap();
            keyed_svc.ready().await.unwrap().call(i).await.unwrap();
        }
    });
    let (sum, allocations) = support::allocations(|| {
        rt.block_on(async {
            let mut sum = 0;
            for i in 0..5_000u64 {
                let res = svc.ready().await.unwrap().call(i).await.unwrap();
                sum += *res.body();
                let res = keyed_svc.ready().await.unwrap().call(i).await.unwrap();
                sum += *res.body();
            }
            sum
        })
    });
    assert_eq!(sum, 2 * (0..5_000u64).sum::<u64>());
    assert_eq!(allocations, 0, "allocations on the success path");
}
