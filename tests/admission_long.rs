//! Long windows on a limit (tokens per minute *and* per day): a call is admitted only when
//! every window has room; the day window is exact over a simulated day, names itself when it
//! binds, is waited for when it has room within the deadline, learns from a daily throttle,
//! and is refused at configuration when it makes no sense. Time is passed in, or tokio's
//! paused clock runs the day.

use std::time::Duration;

use tokio::time::Instant;
use tower_headroom::admission::{
    Accounting, Ask, Cost, DAILY_HOLD, Grant, Headroom, Learning, Limit, MAX_LONG_WINDOWS,
    Priority, Quota, RejectReason, Usage, Window,
};
use tower_headroom::{Deadline, Outcome, ThrottleScope};

const MIN: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(24 * 3600);
/// A day window's time slot (a 96th of a day).
const SLOT: Duration = Duration::from_secs(15 * 60);

/// 5,000 tokens per minute and 20,000 per day.
fn tpm_tpd() -> Limit {
    Limit::per_minute()
        .units(5_000)
        .units_per_day(20_000)
        .learning(Learning::OFF)
        .build()
        .unwrap()
}

/// Spends the day of `key` in its first slot: four calls of 5,000, a minute (and a second,
/// for the minute's own slot rounding) apart.
fn fill(quota: &Quota<&'static str>, key: &'static str) {
    let t0 = quota.epoch();
    for m in 0..4u32 {
        let now = t0 + Duration::from_secs(61) * m;
        let r = quota.reserve(&key, Cost::units(5_000), now).unwrap();
        assert_eq!(r.grant(), Grant::Now);
        r.settle(Usage::units(5_000), now);
    }
}

fn exhausted_day() -> RejectReason {
    RejectReason::QuotaExhausted { window: Some(DAY) }
}

#[test]
fn the_day_admits_its_limit_then_names_itself_and_when_it_has_room() {
    let limit = Limit::per_minute()
        .units(1_000)
        .units_per_day(20_000)
        .build()
        .unwrap();
    let quota = Quota::new(limit);
    let t0 = quota.epoch();
    // One call of 100 tokens every 7 s: the minute has room for every one, the day for 200.
    let mut admitted = 0u64;
    let mut i = 0u64;
    let rejected = loop {
        let now = t0 + Duration::from_secs(7 * i);
        i += 1;
        match quota.reserve(&"model", Cost::units(100), now) {
            Ok(r) => {
                assert_eq!(r.grant(), Grant::Now, "call {i}");
                r.settle(Usage::units(100), now);
                admitted += 100;
            }
            Err(rejected) => break (now, rejected),
        }
    };
    assert_eq!(admitted, 20_000, "exactly the day's limit");
    let (now, rejected) = rejected;
    assert_eq!(rejected.reason, exhausted_day());
    assert_eq!(rejected.window(), Some(DAY));
    // The first slot (15 minutes) leaves when the whole slot has left the day: 24 h 15 min
    // after the start, never earlier.
    assert_eq!(rejected.retry_in, Some((DAY + SLOT) - (now - t0)));
    let res = rejected.to_response::<String>();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    let text = rejected.to_string();
    assert!(text.contains("the quota per day is exhausted"), "{text}");
    assert_eq!(rejected.reason.as_str(), "quota_exhausted");

    // All day long nothing more is admitted; just before the slot leaves, still nothing.
    let late = t0 + DAY + SLOT - Duration::from_secs(61);
    let r = quota.reserve(&"model", Cost::units(1), late).unwrap_err();
    assert_eq!(r.reason, exhausted_day());
    // At 24 h 15 min the first slot's 129 calls (12,900 tokens) have left: 129 more fit.
    let back = t0 + DAY + SLOT;
    let mut again = 0;
    for k in 0..129u64 {
        let now = back + Duration::from_secs(7 * k);
        let r = quota.reserve(&"model", Cost::units(100), now).unwrap();
        r.settle(Usage::units(100), now);
        again += 100;
    }
    // And no more until the next slot leaves: a call a second before waits for it.
    let r = quota
        .reserve(
            &"model",
            Cost::units(100),
            back + SLOT - Duration::from_secs(1),
        )
        .unwrap();
    assert_eq!(r.grant(), Grant::At(back + SLOT));
    assert_eq!(r.bound_by(), Some(DAY));
    assert_eq!(again, 12_900);
}

#[test]
fn a_call_that_fits_the_minute_but_not_the_day_waits_when_the_day_has_room_in_time() {
    let quota = Quota::new(tpm_tpd());
    let t0 = quota.epoch();
    fill(&quota, "model");
    // 30 s before the first slot leaves, an interactive call (a minute's deadline) waits for it.
    let now = t0 + DAY + SLOT - Duration::from_secs(30);
    let mut r = quota.reserve(&"model", Cost::units(500), now).unwrap();
    assert_eq!(r.grant(), Grant::At(t0 + DAY + SLOT));
    assert_eq!(r.bound_by(), Some(DAY), "the day made it wait");
    // A call whose deadline ends sooner is refused, with the same wait.
    let short = Ask::new(Cost::units(500)).deadline(Deadline::at(now + Duration::from_secs(10)));
    let e = quota.reserve_ask(&"model", &short, now).unwrap_err();
    assert_eq!(e.reason, exhausted_day());
    assert_eq!(e.retry_in, Some(Duration::from_secs(30)));
    // At the instant, it is admitted.
    assert_eq!(r.confirm(t0 + DAY + SLOT).unwrap(), Grant::Now);
    r.settle(Usage::units(500), t0 + DAY + SLOT);
    // A call that waited only for the minute names no long window.
    let now = t0 + DAY + SLOT;
    let a = quota.reserve(&"other", Cost::units(5_000), now).unwrap();
    let two_minutes = Ask::new(Cost::units(10)).deadline(Deadline::at(now + 2 * MIN));
    let b = quota.reserve_ask(&"other", &two_minutes, now).unwrap();
    assert!(matches!(b.grant(), Grant::At(_)));
    assert_eq!(b.bound_by(), None);
    drop((a, b));
}

#[test]
fn settle_cancel_and_release_adjust_the_day() {
    let quota = Quota::new(tpm_tpd());
    let t0 = quota.epoch();
    let minute = |m: u32| t0 + Duration::from_secs(61) * m;
    // Estimates of 5,000 that spend 500 leave 4,500 each to the day: four spend 2,000.
    for m in 0..4 {
        quota
            .reserve(&"model", Cost::units(5_000), minute(m))
            .unwrap()
            .settle(Usage::units(500), minute(m));
    }
    // A call admitted but never sent gives its units back; one cancelled while waiting in the
    // minute's queue gives everything back.
    let now = minute(4);
    quota
        .reserve(&"model", Cost::units(5_000), now)
        .unwrap()
        .release_unsent(now);
    let first = quota.reserve(&"model", Cost::units(5_000), now).unwrap();
    let two_minutes = Ask::new(Cost::units(5_000)).deadline(Deadline::at(now + 2 * MIN));
    let waiting = quota.reserve_ask(&"model", &two_minutes, now).unwrap();
    assert!(matches!(waiting.grant(), Grant::At(_)));
    waiting.cancel(now);
    first.settle(Usage::units(5_000), now);
    // Spent so far: 2,000 + 5,000 = 7,000 of 20,000: 13,000 more fill the day.
    for (m, units) in [(5, 5_000), (6, 5_000), (7, 3_000)] {
        let r = quota
            .reserve(&"model", Cost::units(units), minute(m))
            .unwrap();
        assert_eq!(r.grant(), Grant::Now, "minute {m}");
        r.settle(Usage::units(units), minute(m));
    }
    let e = quota
        .reserve(&"model", Cost::units(1), minute(8))
        .unwrap_err();
    assert_eq!(e.reason, exhausted_day());
    // A settle above the estimate counts too: on a fresh key, one call of 1,000 that spent
    // 19,500 leaves 500 of the day.
    quota
        .reserve(&"big", Cost::units(1_000), t0)
        .unwrap()
        .settle(Usage::units(19_500), t0);
    let later = t0 + MIN * 2;
    assert_eq!(
        quota
            .reserve(&"big", Cost::units(600), later)
            .unwrap_err()
            .reason,
        exhausted_day()
    );
    assert_eq!(
        quota
            .reserve(&"big", Cost::units(500), later)
            .unwrap()
            .grant(),
        Grant::Now
    );
}

#[test]
fn headroom_says_the_wait_until_the_day_has_room() {
    let quota = Quota::new(tpm_tpd());
    let t0 = quota.epoch();
    assert_eq!(
        quota.admit_wait(&"model", Cost::units(500), t0),
        Some(Duration::ZERO)
    );
    fill(&quota, "model");
    let now = t0 + MIN * 21;
    // The minute has room, the day has none for another day: a router moves on.
    let wait = quota.admit_wait(&"model", Cost::units(500), now).unwrap();
    assert_eq!(wait, DAY + SLOT - MIN * 21);
    assert_eq!(
        quota.admit_wait(&"fresh", Cost::units(500), now),
        Some(Duration::ZERO)
    );
    // A cost above the day's limit (possible for a dimension the minute does not limit) can
    // never be admitted.
    let requests = Limit::per_minute()
        .units(1_000)
        .requests_per_day(5)
        .build()
        .unwrap();
    let quota = Quota::new(requests);
    assert_eq!(quota.admit_wait(&"m", Cost::new(6, 1), t0), None);
    let e = quota.reserve(&"m", Cost::new(6, 1), t0).unwrap_err();
    assert_eq!(e.reason, RejectReason::CostTooLarge);
    for _ in 0..5 {
        quota
            .reserve(&"m", Cost::new(1, 1), t0)
            .unwrap()
            .settle(Usage::units(1), t0);
    }
    assert_eq!(
        quota.reserve(&"m", Cost::new(1, 1), t0).unwrap_err().reason,
        exhausted_day()
    );
}

/// The fallback router reads the quota's headroom: a target whose day is spent has no room
/// within the call's deadline, so the router takes the next one at once, and when every day
/// is spent it says when the first has room again.
#[test]
fn the_router_moves_to_a_target_whose_day_has_room() {
    use tower_headroom::fallback::{Choice, Exhaustion, QuotaHeadroom, Route, Target};

    let quota = Quota::new(tpm_tpd());
    let t0 = quota.epoch();
    fill(&quota, "sonnet");
    let route = Route::builder()
        .target(Target::new("sonnet", "sonnet"))
        .target(Target::new("haiku", "haiku"))
        .build()
        .unwrap();
    let headroom = QuotaHeadroom::new(quota.clone(), Cost::units(1_000));
    let now = t0 + 10 * MIN;
    let mut plan = route
        .plan()
        .with_deadline(Some(Deadline::from_now(now, MIN)));
    match route.choose(&mut plan, now, &headroom, |_| Ok::<_, Duration>(())) {
        Choice::Call { target, wait, .. } => assert_eq!((target, wait), (1, Duration::ZERO)),
        other => panic!("{other:?}"),
    }
    fill(&quota, "haiku");
    let mut plan = route
        .plan()
        .with_deadline(Some(Deadline::from_now(now, MIN)));
    assert_eq!(
        route.choose(&mut plan, now, &headroom, |_| Ok::<_, Duration>(())),
        Choice::Exhausted {
            retry_in: Some(DAY + SLOT - 10 * MIN),
            cause: Exhaustion::NoHeadroom
        }
    );
}

#[test]
fn a_daily_throttle_spends_the_longest_window_and_never_cuts_the_minute() {
    let limit = Limit::per_minute()
        .units(1_000)
        .also(Window::hours(1).units(10_000))
        .units_per_day(20_000)
        .build()
        .unwrap();
    let quota = Quota::new(limit);
    let t0 = quota.epoch();
    let r = quota.reserve(&"model", Cost::units(500), t0).unwrap();
    let moved = r.finish(
        &Outcome::throttled(ThrottleScope::Daily),
        Usage::units(0),
        t0,
    );
    let stats = quota.stats(&"model", t0).unwrap();
    assert_eq!(stats.units_limit, Some(1_000), "the minute learned nothing");
    assert!(moved.is_none());
    // The day is spent from now on: a whole day (this client spent nothing else in it).
    let now = t0 + MIN;
    let e = quota.reserve(&"model", Cost::units(1), now).unwrap_err();
    assert_eq!(e.reason, exhausted_day());
    assert_eq!(e.retry_in, Some(DAY + SLOT - MIN));
    // Another key is untouched.
    assert!(quota.reserve(&"other", Cost::units(1), now).is_ok());
}

#[test]
fn a_daily_throttle_without_a_long_window_holds_the_key_then_probes() {
    let limit = Limit::per_minute().units(1_000).build().unwrap();
    let quota = Quota::new(limit);
    let t0 = quota.epoch();
    quota
        .reserve(&"model", Cost::units(100), t0)
        .unwrap()
        .finish(
            &Outcome::throttled(ThrottleScope::Daily),
            Usage::units(0),
            t0,
        );
    assert_eq!(
        quota.stats(&"model", t0).unwrap().units_limit,
        Some(1_000),
        "not learned as a per-minute cut"
    );
    let now = t0 + MIN;
    let e = quota.reserve(&"model", Cost::units(1), now).unwrap_err();
    assert_eq!(e.reason, RejectReason::QuotaExhausted { window: None });
    assert_eq!(e.retry_in, Some(DAILY_HOLD - MIN));
    // A batch call (fifteen minutes' deadline) waits for the hold to end.
    let batch = Ask::new(Cost::units(1)).priority(Priority::Batch);
    let waiting = quota.reserve_ask(&"model", &batch, now).unwrap();
    assert_eq!(waiting.grant(), Grant::At(t0 + DAILY_HOLD));
    waiting.cancel(now);
    // After the hold one call probes; the others wait for its answer.
    let after = t0 + DAILY_HOLD;
    let probe = quota.reserve(&"model", Cost::units(100), after).unwrap();
    assert_eq!(probe.grant(), Grant::Now);
    let other = quota.reserve(&"model", Cost::units(100), after).unwrap();
    assert!(matches!(other.grant(), Grant::At(_)));
    drop(other);
    // The day is still spent: held again.
    probe.finish(
        &Outcome::throttled(ThrottleScope::Daily),
        Usage::units(0),
        after,
    );
    let e = quota.reserve(&"model", Cost::units(1), after).unwrap_err();
    assert_eq!(e.retry_in, Some(DAILY_HOLD));
    // The next probe gets through: the key is released.
    let later = after + DAILY_HOLD;
    let probe = quota.reserve(&"model", Cost::units(100), later).unwrap();
    probe.settle(Usage::units(100), later);
    for _ in 0..3 {
        let r = quota.reserve(&"model", Cost::units(100), later).unwrap();
        assert_eq!(r.grant(), Grant::Now);
        r.settle(Usage::units(100), later);
    }
    // A probe dropped in flight lets another call probe.
    let key = "dropped";
    quota.reserve(&key, Cost::units(1), t0).unwrap().finish(
        &Outcome::throttled(ThrottleScope::Daily),
        Usage::units(0),
        t0,
    );
    let probe = quota.reserve(&key, Cost::units(1), after).unwrap();
    probe.cancel(after);
    assert_eq!(
        quota.reserve(&key, Cost::units(1), after).unwrap().grant(),
        Grant::Now
    );
}

#[test]
fn the_token_bucket_keeps_a_day_window_too() {
    let limit = Limit::per_minute()
        .units(1_000)
        .burst(Duration::ZERO)
        .units_per_day(2_000)
        .build()
        .unwrap();
    assert!(matches!(limit.accounting(), Accounting::TokenBucket { .. }));
    let quota = Quota::new(limit);
    let t0 = quota.epoch();
    for m in 0..2u32 {
        let now = t0 + MIN * m;
        let r = quota.reserve(&"model", Cost::units(1_000), now).unwrap();
        assert_eq!(r.grant(), Grant::Now, "minute {m}");
        r.settle(Usage::units(1_000), now);
    }
    let e = quota
        .reserve(&"model", Cost::units(1), t0 + MIN * 3)
        .unwrap_err();
    assert_eq!(e.reason, exhausted_day());
}

#[test]
fn configuration_errors_are_typed() {
    let base = || Limit::per_minute().units(1_000);
    let field = |b: tower_headroom::admission::LimitBuilder| b.build().unwrap_err().field();
    assert_eq!(
        field(base().also(Window::new(MIN).units(5_000))),
        "also.window"
    );
    assert_eq!(
        field(base().also(Window::days(2).units(5_000))),
        "also.window"
    );
    assert_eq!(field(base().units_per_day(999)), "also.units");
    assert_eq!(field(base().units_per_day(0)), "also.units");
    assert_eq!(field(base().units_per_day(u64::MAX)), "also.units");
    assert_eq!(field(base().also(Window::days(1))), "also.requests");
    assert_eq!(
        field(base().units_per_day(5_000).units_per_day(6_000)),
        "also.window"
    );
    let mut many = base();
    for h in 0..=MAX_LONG_WINDOWS as u64 {
        many = many.also(Window::hours(h + 1).units(100_000));
    }
    assert_eq!(field(many), "also");
    // Requests per day need no requests per minute; windows come back sorted.
    let ok = base()
        .units_per_day(1_440_000)
        .also(Window::hours(1).units(60_000).requests(100))
        .build()
        .unwrap();
    let windows: Vec<_> = ok.long_windows().iter().map(|w| w.duration()).collect();
    assert_eq!(windows, [Duration::from_secs(3600), DAY]);
    assert_eq!(ok.long_windows()[0].requests_limit(), Some(100));
}

/// Over simulated days on tokio's paused clock, callers that keep asking are admitted exactly
/// the day's limit per day, and no interval of one day ever holds more.
#[tokio::test(start_paused = true)]
async fn on_the_paused_clock_no_day_holds_more_than_its_limit() {
    let quota = Quota::new(tpm_tpd());
    let start = Instant::now();
    let mut log: Vec<(Duration, u64)> = Vec::new();
    // Batch calls of 250 tokens every 10 s for two and a half days, each waiting up to
    // fifteen minutes.
    while start.elapsed() < DAY * 5 / 2 {
        let ask = Ask::new(Cost::units(250)).priority(Priority::Batch);
        match quota.acquire(&"model", ask).await {
            Ok(r) => {
                log.push((start.elapsed(), 250));
                r.settle(Usage::units(250), Instant::now());
            }
            Err(e) => assert_eq!(e.reason, exhausted_day()),
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    let first_day: u64 = log.iter().filter(|(t, _)| *t < DAY).map(|(_, u)| u).sum();
    assert_eq!(first_day, 20_000);
    for (i, (t, _)) in log.iter().enumerate() {
        let in_day: u64 = log[i..]
            .iter()
            .take_while(|(u, _)| *u < *t + DAY)
            .map(|(_, u)| u)
            .sum();
        assert!(in_day <= 20_000, "{in_day} tokens in the day from {t:?}");
    }
    let total: u64 = log.iter().map(|(_, u)| u).sum();
    assert!(total >= 40_000, "the following days admit again: {total}");
}

mod props {
    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        Take(u64),
        Settle { pick: usize, percent: u64 },
        Cancel(usize),
        Step(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1u64..=1_000).prop_map(Op::Take),
            3 => (any::<usize>(), 0u64..=100).prop_map(|(pick, percent)| Op::Settle { pick, percent }),
            1 => any::<usize>().prop_map(Op::Cancel),
            3 => prop_oneof![0u64..50, 0u64..1_000, 0u64..9_000].prop_map(Op::Step),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Over random takes, settles at or below the estimate, cancellations in flight and
        /// time steps, no interval of one long window ever holds more than its limit, counting
        /// every admitted call at what it finally spent (its estimate while in flight).
        #[test]
        fn no_long_window_interval_holds_more_than_its_limit(ops in proptest::collection::vec(op(), 1..200)) {
            // 1,000 units per second, 3,000 per 8 s.
            let limit = Limit::per_second()
                .units(1_000)
                .also(Window::new(Duration::from_secs(8)).units(3_000))
                .build()
                .unwrap();
            let quota = Quota::new(limit);
            let t0 = quota.epoch();
            let mut now_ms = 0u64;
            let mut flight = Vec::new();
            // (admitted at ms, units counted)
            let mut log: Vec<(u64, u64)> = Vec::new();
            for op in ops {
                let now = t0 + Duration::from_millis(now_ms);
                match op {
                    Op::Step(ms) => now_ms += ms,
                    Op::Take(units) => {
                        let ask = Ask::new(Cost::units(units)).deadline(Deadline::at(now));
                        if let Ok(r) = quota.reserve_ask(&"k", &ask, now) {
                            prop_assert_eq!(r.grant(), Grant::Now);
                            log.push((now_ms, units));
                            flight.push((r, log.len() - 1));
                        }
                    }
                    Op::Settle { pick, percent } if !flight.is_empty() => {
                        let (r, i) = flight.swap_remove(pick % flight.len());
                        let spent = log[i].1 * percent / 100;
                        log[i].1 = spent;
                        r.settle(Usage::units(spent), now);
                    }
                    Op::Cancel(pick) if !flight.is_empty() => {
                        // Dropped in flight: its estimate stays counted.
                        let (r, _) = flight.swap_remove(pick % flight.len());
                        r.cancel(now);
                    }
                    _ => {}
                }
            }
            for (i, (t, _)) in log.iter().enumerate() {
                let in_window: u64 = log[i..]
                    .iter()
                    .take_while(|(u, _)| *u < *t + 8_000)
                    .map(|(_, n)| n)
                    .sum();
                prop_assert!(in_window <= 3_000, "{} units in the 8 s from {} ms", in_window, t);
            }
        }
    }
}

#[test]
fn a_call_in_flight_when_the_day_is_spent_gives_nothing_back_to_it() {
    let limit = Limit::per_minute()
        .units(10_000)
        .units_per_day(20_000)
        .build()
        .unwrap();
    let quota = Quota::new(limit);
    let t0 = quota.epoch();
    let a = quota.reserve(&"model", Cost::units(5_000), t0).unwrap();
    let b = quota.reserve(&"model", Cost::units(1_000), t0).unwrap();
    b.finish(
        &Outcome::throttled(ThrottleScope::Daily),
        Usage::units(0),
        t0,
    );
    let now = t0 + Duration::from_secs(1);
    assert_eq!(
        quota
            .reserve(&"model", Cost::units(1), now)
            .unwrap_err()
            .reason,
        exhausted_day()
    );
    // The call that was in flight settles far below its estimate: its slack is of the spent
    // day, and opens no room in it.
    a.settle(Usage::units(100), now);
    let e = quota
        .reserve(&"model", Cost::units(4_000), now)
        .unwrap_err();
    assert_eq!(e.reason, exhausted_day());
}
