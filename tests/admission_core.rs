//! Behaviour of the quota core's token-bucket accounting, with time passed in (the sliding
//! window's is in `admission_window.rs`; learning, for both, there too).

use std::time::Duration;

use tokio::time::Instant;
use tower_headroom::admission::{
    Ask, Cost, Grant, Headroom, Learning, Limit, Priority, Quota, RejectReason, Rejected,
    Remaining, Tenant, Usage,
};
use tower_headroom::{Deadline, Outcome, ThrottleScope};

const S: Duration = Duration::from_secs(1);

fn rpm(n: u64) -> Limit {
    Limit::per_minute()
        .burst(Duration::ZERO)
        .requests(n)
        .learning(Learning::OFF)
        .build()
        .unwrap()
}

fn at(r: &Result<impl Sized, Rejected>) -> &impl Sized {
    r.as_ref().unwrap()
}

#[test]
fn paces_requests_at_the_limit() {
    let quota = Quota::new(rpm(60));
    let t0 = Instant::now();
    let a = quota.reserve(&"k", Cost::ONE_REQUEST, t0).unwrap();
    let b = quota.reserve(&"k", Cost::ONE_REQUEST, t0).unwrap();
    let c = quota.reserve(&"k", Cost::ONE_REQUEST, t0).unwrap();
    assert_eq!(a.grant(), Grant::Now);
    assert_eq!(b.grant(), Grant::At(t0 + S));
    assert_eq!(c.grant(), Grant::At(t0 + 2 * S));
    // Another key has its own budget.
    let other = quota.reserve(&"other", Cost::ONE_REQUEST, t0).unwrap();
    assert_eq!(other.grant(), Grant::Now);
    let _ = at(&Ok::<_, Rejected>(()));
}

#[test]
fn debt_when_more_refund_when_less() {
    let limit = Limit::per_minute()
        .burst(Duration::ZERO)
        .units(6_000)
        .learning(Learning::OFF)
        .build()
        .unwrap();
    let quota = Quota::new(limit);
    let t0 = Instant::now();
    quota
        .reserve(&"k", Cost::units(100), t0)
        .unwrap()
        .settle(Usage::units(700), t0); // 600 more: 7 s of debt at 100 tokens/s
    let next = quota.reserve(&"k", Cost::units(1), t0).unwrap();
    assert_eq!(next.grant(), Grant::At(t0 + 7 * S));
    next.cancel(t0);

    let quota = Quota::new(
        Limit::per_minute()
            .burst(Duration::ZERO)
            .units(6_000)
            .learning(Learning::OFF)
            .build()
            .unwrap(),
    );
    let t0 = Instant::now();
    quota
        .reserve(&"k", Cost::units(500), t0)
        .unwrap()
        .settle(Usage::units(200), t0); // 300 back: 2 s of debt
    let next = quota.reserve(&"k", Cost::units(1), t0).unwrap();
    assert_eq!(next.grant(), Grant::At(t0 + 2 * S));
}

#[test]
fn cost_beyond_window_plus_burst_is_rejected_not_waited_for() {
    let quota = Quota::new(
        Limit::per_minute()
            .burst(Duration::ZERO)
            .units(1_000)
            .burst(Duration::from_secs(60))
            .build()
            .unwrap(),
    );
    let t0 = Instant::now();
    let ok = quota.reserve(&"k", Cost::units(2_000), t0).unwrap();
    assert_eq!(ok.grant(), Grant::Now);
    let err = quota.reserve(&"k", Cost::units(2_001), t0).unwrap_err();
    assert_eq!(err.reason, RejectReason::CostTooLarge);
    assert_eq!(err.retry_in, None);
    assert!(
        err.to_string().contains("more than the quota window"),
        "{err}"
    );
    let err = quota
        .reserve(&"k", Cost::new(u64::MAX, u64::MAX), t0)
        .unwrap_err();
    assert_eq!(err.reason, RejectReason::CostTooLarge);
    assert_eq!(
        quota.admit_wait(&"k", Cost::units(u64::MAX), t0),
        None,
        "headroom says never"
    );
    assert_eq!(err.to_response::<()>().status(), 413);
}

#[test]
fn deadline_rejects_without_charging() {
    let quota = Quota::new(rpm(60));
    let t0 = Instant::now();
    let _a = quota.reserve(&"k", Cost::ONE_REQUEST, t0).unwrap();
    let ask =
        Ask::new(Cost::ONE_REQUEST).deadline(Deadline::from_now(t0, Duration::from_millis(500)));
    let err = quota.reserve_ask(&"k", &ask, t0).unwrap_err();
    assert_eq!(err.reason, RejectReason::Deadline);
    assert_eq!(err.retry_in, Some(S));
    let res = err.to_response::<()>();
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "1");
    // The rejection took nothing: the next call still waits one second, not two.
    let b = quota.reserve(&"k", Cost::ONE_REQUEST, t0).unwrap();
    assert_eq!(b.grant(), Grant::At(t0 + S));
}

#[test]
fn queue_is_bounded_per_lane() {
    let limit = Limit::per_minute()
        .burst(Duration::ZERO)
        .requests(60)
        .max_queue(2)
        .build()
        .unwrap();
    let quota = Quota::new(limit);
    let t0 = Instant::now();
    let held: Vec<_> = (0..3)
        .map(|_| quota.reserve(&"k", Cost::ONE_REQUEST, t0).unwrap())
        .collect();
    assert_eq!(held[0].grant(), Grant::Now);
    let err = quota.reserve(&"k", Cost::ONE_REQUEST, t0).unwrap_err();
    assert_eq!(err.reason, RejectReason::QueueFull);
    assert_eq!(err.retry_in, Some(3 * S));
    // Batch has its own lane.
    let batch = Ask::new(Cost::ONE_REQUEST).priority(Priority::Batch);
    let _b = quota.reserve_ask(&"k", &batch, t0).unwrap();
    assert_eq!(quota.stats(&"k", t0).unwrap().waiting, 3);
}

#[test]
fn cancelling_a_waiting_reservation_refunds_it() {
    let quota = Quota::new(rpm(60));
    let t0 = Instant::now();
    let _a = quota.reserve(&"k", Cost::ONE_REQUEST, t0).unwrap();
    let b = quota.reserve(&"k", Cost::ONE_REQUEST, t0).unwrap();
    let c = quota.reserve(&"k", Cost::ONE_REQUEST, t0).unwrap();
    assert_eq!(quota.stats(&"k", t0).unwrap().waiting, 2);
    c.cancel(t0);
    assert_eq!(quota.stats(&"k", t0).unwrap().waiting, 1);
    let d = quota.reserve(&"k", Cost::ONE_REQUEST, t0).unwrap();
    assert_eq!(
        d.grant(),
        Grant::At(t0 + 2 * S),
        "the last booking's slot is given back"
    );
    // A booking in the middle keeps the later ones at their instants: its slot cannot be
    // handed to a later call without letting a window hold more than the limit.
    drop(b);
    assert_eq!(quota.stats(&"k", t0).unwrap().waiting, 1);
    let e = quota.reserve(&"k", Cost::ONE_REQUEST, t0).unwrap();
    assert_eq!(e.grant(), Grant::At(t0 + 3 * S));
    // Once the queue has drained, the bucket is whole again.
    drop((d, e));
    assert!(quota.stats(&"k", t0 + 10 * S).unwrap().at_rest);
}

#[test]
fn refunds_reach_a_queue_within_the_burst_room() {
    let limit = Limit::per_minute()
        .burst(Duration::ZERO)
        .units(6_000) // 100 tokens/s
        .burst(Duration::from_secs(10)) // 1,000 tokens of credit
        .learning(Learning::OFF)
        .build()
        .unwrap();
    let quota = Quota::new(limit);
    let t0 = Instant::now();
    let first = quota.reserve(&"k", Cost::units(600), t0).unwrap();
    let second = quota.reserve(&"k", Cost::units(600), t0).unwrap();
    let third = quota.reserve(&"k", Cost::units(600), t0).unwrap();
    assert_eq!(first.grant(), Grant::Now);
    assert_eq!(second.grant(), Grant::At(t0 + 2 * S));
    assert_eq!(third.grant(), Grant::At(t0 + 8 * S));
    // 500 tokens come back, but the booked calls will each find 600 at their instants: only
    // 400 more fit under the 1,000 capacity.
    first.settle(Usage::units(100), t0);
    let fourth = quota.reserve(&"k", Cost::units(600), t0).unwrap();
    assert_eq!(
        fourth.grant(),
        Grant::At(t0 + 10 * S),
        "14 s without the credit"
    );
    // Once the booked calls have gone, refunds are credited whole again (up to capacity).
    let t = t0 + 20 * S;
    drop((second, third, fourth));
    let fifth = quota.reserve(&"k", Cost::units(900), t).unwrap();
    assert_eq!(fifth.grant(), Grant::Now);
    fifth.settle(Usage::units(0), t);
    assert_eq!(
        quota.admit_wait(&"k", Cost::units(1_000), t),
        Some(Duration::ZERO)
    );
}

#[test]
fn in_flight_cancellation_keeps_the_estimate() {
    let quota = Quota::new(rpm(60));
    let t0 = Instant::now();
    let a = quota.reserve(&"k", Cost::ONE_REQUEST, t0).unwrap();
    a.cancel(t0); // admitted, then the call was cancelled: it may have reached the server
    let b = quota.reserve(&"k", Cost::ONE_REQUEST, t0).unwrap();
    assert_eq!(b.grant(), Grant::At(t0 + S));
}

#[test]
fn interactive_goes_before_waiting_batch() {
    let quota = Quota::new(rpm(60));
    let t0 = Instant::now();
    let _a = quota.reserve(&"k", Cost::ONE_REQUEST, t0).unwrap();
    let batch = Ask::new(Cost::ONE_REQUEST).priority(Priority::Batch);
    let mut b = quota.reserve_ask(&"k", &batch, t0).unwrap();
    assert_eq!(b.grant(), Grant::At(t0 + S));
    // An interactive call arriving later is booked ahead of the waiting batch call.
    let c = quota.reserve(&"k", Cost::ONE_REQUEST, t0).unwrap();
    assert_eq!(c.grant(), Grant::At(t0 + S));
    assert_eq!(b.confirm(t0 + S).unwrap(), Grant::At(t0 + 2 * S));
    assert_eq!(b.confirm(t0 + 2 * S).unwrap(), Grant::Now);
}

#[test]
fn batch_leaves_a_cushion_for_interactive() {
    let limit = Limit::per_minute()
        .burst(Duration::ZERO)
        .units(60_000)
        .burst(Duration::from_secs(10)) // 10,000 tokens of credit
        .interactive_reserve(0.5)
        .learning(Learning::OFF)
        .build()
        .unwrap();
    let quota = Quota::new(limit);
    let t0 = Instant::now();
    let batch = Ask::new(Cost::units(5_000)).priority(Priority::Batch);
    let b1 = quota.reserve_ask(&"k", &batch, t0).unwrap();
    assert_eq!(b1.grant(), Grant::Now);
    // 5,000 left is exactly the cushion: a second batch call waits for a full bucket.
    let b2 = quota.reserve_ask(&"k", &batch, t0).unwrap();
    assert_eq!(b2.grant(), Grant::At(t0 + 5 * S));
    // Interactive calls still find room at once.
    let i = quota.reserve(&"k", Cost::units(4_000), t0).unwrap();
    assert_eq!(i.grant(), Grant::Now);
}

#[test]
fn shares_protect_a_tenant_from_a_noisy_one() {
    let limit = Limit::per_minute()
        .burst(Duration::ZERO)
        .requests(60)
        .shares(&[1, 1])
        .share_burst(Duration::from_secs(6)) // 3 requests of credit at 30 rpm
        .learning(Learning::OFF)
        .build()
        .unwrap();
    let quota = Quota::new(limit);
    let t0 = Instant::now();
    let noisy = Ask::new(Cost::ONE_REQUEST).tenant(Tenant(0));
    let mut held: Vec<_> = (0..6)
        .map(|_| quota.reserve_ask(&"k", &noisy, t0).unwrap())
        .collect();
    let grants: Vec<_> = held.iter().map(|r| r.grant()).collect();
    assert_eq!(
        grants[..4],
        [
            Grant::Now,
            Grant::At(t0 + S),
            Grant::At(t0 + 2 * S),
            Grant::At(t0 + 3 * S), // borrowing: not booked, told when it might go
        ]
    );
    // The quiet tenant, arriving later, is within its share: booked before the borrowers.
    let quiet = Ask::new(Cost::ONE_REQUEST).tenant(Tenant(1));
    let q = quota.reserve_ask(&"k", &quiet, t0).unwrap();
    assert_eq!(q.grant(), Grant::At(t0 + 3 * S));
    assert_eq!(held[3].confirm(t0 + 3 * S).unwrap(), Grant::At(t0 + 4 * S));
    assert_eq!(held[3].confirm(t0 + 4 * S).unwrap(), Grant::Now);
    // A call with no tenant only borrows, behind everything within share.
    let anon = quota.reserve(&"k", Cost::ONE_REQUEST, t0).unwrap();
    assert!(matches!(anon.grant(), Grant::At(t) if t >= t0 + 5 * S));
}

#[test]
fn retry_after_and_remaining_headers_correct_the_bucket() {
    let quota = Quota::new(
        Limit::per_minute()
            .burst(Duration::ZERO)
            .units(60_000)
            .burst(Duration::from_secs(60))
            .learning(Learning::OFF)
            .build()
            .unwrap(),
    );
    let t0 = Instant::now();
    quota.reserve(&"k", Cost::units(10), t0).unwrap().finish(
        &Outcome::throttled(ThrottleScope::Tokens).with_retry_after(5 * S),
        Usage::UNKNOWN,
        t0,
    );
    // Five seconds of debt, then the one token the call needs (1 ms at 1,000 tokens/s).
    assert_eq!(
        quota.admit_wait(&"k", Cost::units(1), t0),
        Some(5 * S + Duration::from_millis(1))
    );

    let quota = Quota::new(
        Limit::per_minute()
            .burst(Duration::ZERO)
            .units(60_000)
            .burst(Duration::from_secs(60))
            .build()
            .unwrap(),
    );
    quota
        .reserve(&"k", Cost::units(10), t0)
        .unwrap()
        .settle(Usage::units(10).with_remaining(Remaining::units(1_000)), t0);
    // The server says 1,000 left although the bucket held 59,990: 2,000 tokens take 1 s.
    assert_eq!(quota.admit_wait(&"k", Cost::units(2_000), t0), Some(S));
}

#[test]
fn headroom_reads_without_reserving() {
    let quota = Quota::new(rpm(60));
    let t0 = Instant::now();
    assert_eq!(
        quota.admit_wait(&"new", Cost::ONE_REQUEST, t0),
        Some(Duration::ZERO)
    );
    assert_eq!(quota.keys(), 0, "peeking does not create state");
    let _a = quota.reserve(&"k", Cost::ONE_REQUEST, t0).unwrap();
    assert_eq!(quota.admit_wait(&"k", Cost::ONE_REQUEST, t0), Some(S));
    assert_eq!(quota.admit_wait(&"k", Cost::ONE_REQUEST, t0), Some(S));
    let b = quota.reserve(&"k", Cost::ONE_REQUEST, t0).unwrap();
    assert_eq!(b.grant(), Grant::At(t0 + S));
    let h: &dyn Headroom<&str> = &quota;
    assert_eq!(
        h.admit_wait(&"k", Cost::ONE_REQUEST, t0 + 2 * S),
        Some(Duration::ZERO)
    );
}

#[test]
fn idle_keys_are_evicted_but_not_while_held() {
    let quota = Quota::builder(rpm(60))
        .idle_timeout(Duration::from_secs(60))
        .build();
    let t0 = Instant::now();
    for k in 0..100u32 {
        quota
            .reserve(&k, Cost::ONE_REQUEST, t0)
            .unwrap()
            .settle(Usage::UNKNOWN, t0);
    }
    let held = quota.reserve(&1000, Cost::ONE_REQUEST, t0).unwrap();
    assert_eq!(quota.keys(), 101);
    assert_eq!(quota.evict_idle(t0 + 59 * S), 0, "not idle long enough");
    assert_eq!(quota.evict_idle(t0 + 61 * S), 100);
    assert_eq!(quota.keys(), 1, "a key with a live reservation stays");
    drop(held);
    assert_eq!(quota.evict_idle(t0 + 61 * S), 1);
    assert_eq!(quota.keys(), 0);

    // A key in debt is not forgotten until the debt is paid.
    quota
        .reserve(&7, Cost::ONE_REQUEST, t0)
        .unwrap()
        .settle(Usage::UNKNOWN, t0);
    for _ in 0..120 {
        let t = t0 + 100 * S;
        let ask =
            Ask::new(Cost::ONE_REQUEST).deadline(Deadline::from_now(t, Duration::from_secs(300)));
        if let Ok(r) = quota.reserve_ask(&7, &ask, t) {
            r.settle(Usage::UNKNOWN, t); // booked ahead, settled at once: the debt stays
        }
    }
    assert_eq!(quota.evict_idle(t0 + 170 * S), 0);
    assert_eq!(quota.evict_idle(t0 + 400 * S), 1);

    // Without explicit sweeps, new keys sweep old idle ones as they arrive.
    for k in 0..1_000u32 {
        let _ = quota.reserve(&k, Cost::ONE_REQUEST, t0 + 500 * S);
    }
    for k in 10_000..12_048u32 {
        let _ = quota.reserve(&k, Cost::ONE_REQUEST, t0 + 1_000 * S);
    }
    assert!(quota.keys() < 2_048 + 200, "{} keys left", quota.keys());
}

#[test]
fn absurd_inputs_neither_panic_nor_wait_forever() {
    let limit = Limit::per_window(Duration::from_secs(24 * 3600))
        .burst(Duration::ZERO)
        .requests(1 << 50)
        .units(1 << 50)
        .burst(Duration::from_secs(24 * 3600))
        .build()
        .unwrap();
    let quota = Quota::new(limit);
    let t0 = Instant::now();
    let r = quota
        .reserve(&"k", Cost::new(1 << 50, 1 << 51), t0)
        .unwrap();
    r.settle(Usage::units(u64::MAX), t0);
    let err = quota.reserve(&"k", Cost::units(1), t0).unwrap_err();
    assert_eq!(err.reason, RejectReason::Deadline);
    assert!(err.retry_in.unwrap() > Duration::from_secs(3600));
    let far = t0 + Duration::from_secs(100 * 365 * 24 * 3600);
    assert!(quota.reserve(&"k", Cost::units(1), far).is_ok());
    // A time before the quota existed is treated as its start.
    let early = Instant::now() - Duration::from_secs(1);
    let _ = quota.reserve(&"early", Cost::units(1), early).unwrap();

    let tiny = Quota::new(
        Limit::per_second()
            .burst(Duration::ZERO)
            .units(1)
            .build()
            .unwrap(),
    );
    assert_eq!(
        tiny.reserve(&"k", Cost::units(2), t0).unwrap_err().reason,
        RejectReason::CostTooLarge
    );
    let a = tiny.reserve(&"k", Cost::units(1), t0).unwrap();
    assert_eq!(a.grant(), Grant::Now);
    let huge_wait = Ask::new(Cost::units(1)).deadline(Deadline::from_now(t0, Duration::MAX));
    assert!(tiny.reserve_ask(&"k", &huge_wait, t0).is_ok());
}
