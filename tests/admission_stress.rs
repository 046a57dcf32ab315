//! Two threads, one million operations on the quota core, on one shared key: the window bound
//! holds and nothing leaks.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tower_headroom::Deadline;
use tower_headroom::admission::{Ask, Cost, Grant, Learning, Limit, Quota, Usage};

const OPS_PER_THREAD: usize = 500_000;
const WINDOW_NS: u64 = 100_000_000;
const UNITS: u64 = 100_000;
const REQUESTS: u64 = 5_000;
const BURST_NS: u64 = 50_000_000;
const MAX_COST: u64 = 50;

/// (ns since t0, requests delta, units delta)
type Event = (u64, i64, i64);

#[test]
fn two_threads_keep_the_window_bound() {
    let limit = Limit::per_window(Duration::from_nanos(WINDOW_NS))
        .requests(REQUESTS)
        .units(UNITS)
        .burst(Duration::from_nanos(BURST_NS))
        .max_queue(100_000)
        .learning(Learning::OFF)
        .build()
        .unwrap();
    let quota: Quota<&'static str> = Quota::new(limit);
    let t0 = Instant::now();
    let clock = AtomicU64::new(0);

    let worker = |seed: u64| {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut events: Vec<Event> = Vec::with_capacity(OPS_PER_THREAD * 2);
        let mut open = VecDeque::new();
        let mut admitted = 0u64;
        for _ in 0..OPS_PER_THREAD {
            let now_ns = clock.fetch_add(rng.u64(0..20_000), Ordering::Relaxed);
            let now = t0 + Duration::from_nanos(now_ns);
            let cost = Cost::units(rng.u64(1..=MAX_COST));
            let ask = Ask::new(cost).deadline(Deadline::from_now(now, Duration::from_millis(50)));
            if let Ok(r) = quota.reserve_ask(&"hot", &ask, now) {
                let waiting = matches!(r.grant(), Grant::At(_));
                if waiting && rng.u8(0..10) == 0 {
                    r.cancel(now); // never admitted: no event
                } else {
                    let at = (r.admitted_at() - t0).as_nanos() as u64;
                    events.push((at, 1, cost.units as i64));
                    admitted += 1;
                    open.push_back((at, r, cost));
                }
            }
            // Settle the calls whose admission instant has come.
            while open.front().is_some_and(|(at, _, _)| *at <= now_ns) {
                let (_, r, cost) = open.pop_front().unwrap();
                if rng.bool() {
                    let actual = rng.u64(0..=cost.units);
                    if actual < cost.units {
                        events.push((now_ns, 0, -((cost.units - actual) as i64)));
                    }
                    r.settle(Usage::units(actual), now);
                } else {
                    drop(r); // dropped in flight: kept at the estimate
                }
            }
        }
        // Whatever is still booked ahead is given up.
        let end = t0 + Duration::from_nanos(clock.load(Ordering::Relaxed));
        for (at, r, cost) in open {
            if r.admitted_at() > end {
                events.retain(|e| !(e.0 == at && e.1 == 1 && e.2 == cost.units as i64));
                r.cancel(end);
            } else {
                r.settle(Usage::UNKNOWN, end);
            }
        }
        (events, admitted)
    };

    let ((mut events, a1), (e2, a2)) = std::thread::scope(|s| {
        let h1 = s.spawn(|| worker(1));
        let h2 = s.spawn(|| worker(2));
        (h1.join().unwrap(), h2.join().unwrap())
    });
    events.extend(e2);
    events.sort_unstable_by_key(|e| e.0);
    assert!(
        a1 > 10_000 && a2 > 10_000,
        "both threads admitted calls: {a1} {a2}"
    );

    // Sliding window sums with prefix sums: every window [s, s + W) starting at an event.
    for (dim, limit, n_max, burst_units) in [
        (
            0,
            REQUESTS as i128,
            1i128,
            (REQUESTS * BURST_NS / WINDOW_NS) as i128,
        ),
        (
            1,
            UNITS as i128,
            MAX_COST as i128,
            (UNITS * BURST_NS / WINDOW_NS) as i128,
        ),
    ] {
        let bound = limit + burst_units.max(n_max);
        let delta = |e: &Event| if dim == 0 { e.1 as i128 } else { e.2 as i128 };
        let mut prefix = Vec::with_capacity(events.len() + 1);
        prefix.push(0i128);
        for e in &events {
            prefix.push(prefix.last().unwrap() + delta(e));
        }
        let mut j = 0;
        let mut worst = 0;
        for i in 0..events.len() {
            while j < events.len() && events[j].0 < events[i].0 + WINDOW_NS {
                j += 1;
            }
            worst = worst.max(prefix[j] - prefix[i]);
        }
        assert!(
            worst <= bound,
            "dim {dim}: {worst} in one window, bound {bound}"
        );
        println!("dim {dim}: busiest window {worst} of bound {bound}");
    }

    let later = t0 + Duration::from_secs(3_600);
    let stats = quota.stats(&"hot", later).unwrap();
    assert_eq!(stats.waiting, 0, "nothing left waiting");
    assert!(stats.at_rest, "nothing leaked");
}
