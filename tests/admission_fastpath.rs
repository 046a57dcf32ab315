//! The success path of `reserve` runs in one short critical section (the fast path) and falls
//! back to the general arithmetic for everything else. These tests pin the fallbacks from the
//! outside: a waiter queued while a fast-path reservation is live, a settle above the
//! estimate, and two threads reserving and settling on one key, whose totals must match the
//! general (locked) path's. (Inside the crate, a differential test compares the fast path with
//! the general one field by field over random walks.)

use std::time::Duration;

use tokio::time::Instant;
use tower_headroom::admission::{
    Ask, Cost, Grant, Learning, Limit, Priority, Quota, Reservation, Slot as _, Usage,
};

const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

/// 6,000 units a second, sliding window (the default accounting).
fn window() -> Limit {
    Limit::per_second()
        .units(6_000)
        .learning(Learning::OFF)
        .build()
        .unwrap()
}

/// 6,000 units a second as a token bucket with no burst beyond the second.
fn bucket() -> Limit {
    Limit::per_second()
        .units(6_000)
        .burst(Duration::ZERO)
        .learning(Learning::OFF)
        .build()
        .unwrap()
}

#[test]
fn a_waiter_queued_behind_a_fast_path_reservation_keeps_its_place() {
    for (name, limit) in [("sliding window", window()), ("token bucket", bucket())] {
        let quota = Quota::new(limit);
        let t0 = Instant::now();
        // Admitted at once (the fast path), most of the window.
        let first = quota.reserve(&"k", Cost::units(5_000), t0).unwrap();
        assert_eq!(first.grant(), Grant::Now, "{name}");
        // Too large for the room left: it waits.
        let waiter = quota.reserve(&"k", Cost::units(2_000), t0).unwrap();
        assert!(matches!(waiter.grant(), Grant::At(_)), "{name}");
        // A small call would fit the room left on its own, but the waiter's units come first
        // (FIFO in its lane): no fast path around the queue.
        let small = quota.reserve(&"k", Cost::units(500), t0 + MS).unwrap();
        let (Grant::At(small_at), Grant::At(waiter_at)) = (small.grant(), waiter.grant()) else {
            panic!(
                "{name}: the small call jumped the queue: {:?}",
                small.grant()
            );
        };
        assert!(small_at >= waiter_at, "{name}: behind the waiter");
        // The first call settles far below its estimate; then the waiter, and the small call
        // after it, get in.
        first.settle(Usage::units(1_000), t0 + 2 * MS);
        let mut waiter = waiter;
        assert_eq!(waiter.confirm(t0 + 3 * S).unwrap(), Grant::Now, "{name}");
        let mut small = small;
        let granted = small.confirm(t0 + 3 * S).unwrap();
        assert_eq!(granted, Grant::Now, "{name}");
        // Nobody waits any more: a new call is admitted at once again.
        let next = quota.reserve(&"k", Cost::units(100), t0 + 3 * S).unwrap();
        assert_eq!(next.grant(), Grant::Now, "{name}");
        for r in [waiter, small, next] {
            r.settle(Usage::units(100), t0 + 3 * S);
        }
    }
}

#[test]
fn a_settle_above_the_estimate_after_a_fast_reservation_is_debt() {
    let quota = Quota::new(
        Limit::per_minute()
            .units(6_000)
            .learning(Learning::OFF)
            .build()
            .unwrap(),
    );
    let t0 = Instant::now();
    let r = quota.reserve(&"k", Cost::units(1_000), t0).unwrap();
    assert_eq!(r.grant(), Grant::Now);
    // 3,000 more than estimated: the window holds the real spend, 4,000.
    r.settle(Usage::units(4_000), t0);
    let slot = quota.slot(&"k", t0);
    assert_eq!(slot.stats(t0).units_spent, Some(4_000));
    // Half a minute on, 2,000 fits what is left; 500 more does not (it would without the
    // debt): it waits for the debt to slide out.
    let t1 = t0 + 30 * S;
    let fits = quota.reserve(&"k", Cost::units(2_000), t1).unwrap();
    assert_eq!(fits.grant(), Grant::Now);
    let over = quota.reserve(&"k", Cost::units(500), t1).unwrap();
    assert!(matches!(over.grant(), Grant::At(_)), "the debt is counted");
    over.cancel(t1);
    let wait = slot.admit_wait(Cost::units(500), t1).unwrap();
    assert!(
        wait >= 30 * S,
        "waits for the debt to leave the window: {wait:?}"
    );
    // The debt slides out with the window; the later call stays.
    let later = t0 + 61 * S;
    assert_eq!(slot.stats(later).units_spent, Some(2_000));
    fits.settle(Usage::units(2_000), later);
}

/// What each call spends: at, below and above its estimate of 100.
fn usage_of(i: u64) -> u64 {
    match i % 4 {
        0 => 40,
        1 => 100,
        2 => 250,
        _ => 100,
    }
}

#[test]
fn two_threads_on_one_key_spend_what_the_general_path_spends() {
    const CALLS: u64 = 20_000;
    // Room for every call: the totals are exact sums.
    let limit = || {
        Limit::per_minute()
            .requests(1 << 30)
            .units(1 << 40)
            .learning(Learning::OFF)
            .build()
            .unwrap()
    };
    for (name, priority) in [
        // Interactive calls take the fast path; batch calls never do (their lane is paced).
        ("fast path", Priority::Interactive),
        ("general path", Priority::Batch),
    ] {
        let quota = Quota::new(limit());
        let t0 = Instant::now();
        let ask = Ask::new(Cost::new(1, 100)).priority(priority);
        std::thread::scope(|s| {
            for thread in 0..2u64 {
                let quota = &quota;
                s.spawn(move || {
                    let slot = quota.slot(&"k", t0);
                    for i in 0..CALLS {
                        // Time passed in, moving a little, differently on each thread.
                        let now = t0 + Duration::from_nanos(i * (3 + thread));
                        let r = Reservation::reserve(slot.clone(), &ask, now).unwrap();
                        assert_eq!(r.grant(), Grant::Now);
                        r.settle(Usage::units(usage_of(i)), now);
                    }
                });
            }
        });
        let stats = quota.slot(&"k", t0).stats(t0 + Duration::from_millis(1));
        let units: u64 = 2 * (0..CALLS).map(usage_of).sum::<u64>();
        assert_eq!(stats.requests_spent, Some(2 * CALLS), "{name}");
        assert_eq!(stats.units_spent, Some(units), "{name}");
        assert_eq!(stats.waiting, 0, "{name}");
    }
}
