//! The lifecycle's rules, on the cores with time passed in.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Attempt, Call, Ended, Next, Routing};
use crate::admission::{Ask, Cost, Limit, MemorySlot, Quota, Reservation, Usage};
use crate::breaker::{BreakerConfig, BreakerHandle, State};
use crate::fallback::{Choice, NoHeadroom, Route, Target};
use crate::observe::Labels;
use crate::retry::{RetryPolicy, StopReason};
use crate::{Outcome, OutcomeKind, ThrottleScope};

fn route() -> Route<&'static str> {
    Route::builder()
        .target(Target::new("sonnet", "sonnet").model("sonnet"))
        .target(Target::new("haiku", "haiku").model("haiku"))
        .build()
        .unwrap()
}

fn breakers(n: usize, now: Instant) -> Vec<Option<BreakerHandle>> {
    let config = BreakerConfig::builder()
        .consecutive_failures(1)
        .build()
        .unwrap();
    (0..n)
        .map(|_| Some(BreakerHandle::new_at(config.clone(), Labels::none(), now)))
        .collect()
}

fn policy() -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(3)
        .seed(3)
        .build()
        .unwrap()
}

fn sent(target: usize) -> Ended {
    Ended {
        target: Some(target),
        sent: true,
        limit: None,
    }
}

#[test]
fn an_overloaded_model_moves_to_the_next_before_the_retry_policy_is_asked() {
    let now = Instant::now();
    let (route, breakers, policy) = (route(), breakers(2, now), policy());
    let routing = Routing {
        route: &route,
        breakers: &breakers,
        headroom: &NoHeadroom,
    };
    let mut call = Call::start(&policy, Some(&route), None, now);
    assert!(matches!(
        call.choose(&routing, now),
        Choice::Call { target: 0, .. }
    ));
    let overloaded = Outcome::new(OutcomeKind::Overloaded);
    let next = call.next(&policy, Some(&routing), &sent(0), &overloaded, now);
    assert!(matches!(next, Next::Move { target: 1, .. }), "{next:?}");
    assert_eq!(call.retry().attempts(), 0, "a move is not a retry");
    // Nowhere left to move: the retry policy decides, and a retry starts over at the first.
    let next = call.next(&policy, Some(&routing), &sent(1), &overloaded, now);
    let Next::Retry(delay) = next else {
        panic!("{next:?}")
    };
    let later = now + delay;
    // (Recording outcomes is `Attempt::end`'s, not `next`'s: the breakers are still closed.)
    assert!(matches!(
        call.choose(&routing, later),
        Choice::Call { target: 0, .. }
    ));
}

#[test]
fn a_local_refusal_never_moves_and_an_open_breakers_refusal_stops_at_once() {
    let now = Instant::now();
    let (route, breakers, policy) = (route(), breakers(2, now), policy());
    let routing = Routing {
        route: &route,
        breakers: &breakers,
        headroom: &NoHeadroom,
    };
    let mut call = Call::start(&policy, Some(&route), None, now);
    let refused = Outcome::new(OutcomeKind::Unavailable).refused_locally();
    let unsent = Ended {
        target: Some(0),
        sent: false,
        limit: None,
    };
    let next = call.next(&policy, Some(&routing), &unsent, &refused, now);
    assert!(
        matches!(next, Next::Stop(StopReason::CircuitOpen)),
        "{next:?}"
    );
    assert_eq!(call.retry().attempts(), 0, "a refusal is not an attempt");
}

#[test]
fn success_is_done_and_counts_the_attempt() {
    let now = Instant::now();
    let policy = policy();
    let mut call = Call::start::<&str>(&policy, None, None, now);
    let next = call.next::<&str, NoHeadroom>(&policy, None, &sent(0), &Outcome::SUCCESS, now);
    assert!(matches!(next, Next::Done));
    assert_eq!(call.retry().attempts(), 1);
}

#[test]
fn the_ask_is_bound_by_the_calls_deadline_and_the_adapters_limit() {
    let now = Instant::now();
    let policy = policy();
    let call_deadline = crate::Deadline::from_now(now, Duration::from_secs(30));
    let call = Call::start::<&str>(&policy, None, Some(call_deadline), now);
    let signed = crate::Deadline::from_now(now, Duration::from_secs(10));
    let ask = call.ask(
        Cost::units(5),
        crate::admission::Priority::Batch,
        None,
        Some(signed),
    );
    assert_eq!(ask.deadline, Some(signed));
    let ask = call.ask(
        Cost::units(5),
        crate::admission::Priority::Batch,
        None,
        None,
    );
    assert_eq!(ask.deadline, Some(call_deadline));
}

fn quota() -> (Quota<&'static str>, Arc<MemorySlot>) {
    let quota = Quota::new(Limit::per_minute().units(1_000).build().unwrap());
    let slot = quota.slot(&"k", Instant::now());
    (quota, slot)
}

#[test]
fn an_unsent_attempt_gives_its_units_back_and_its_permit_up_unrecorded() {
    let now = Instant::now();
    let (quota, slot) = quota();
    let breaker = breakers(1, now).pop().flatten().unwrap();
    let reservation = Reservation::reserve(slot, &Ask::new(Cost::units(400)), now).unwrap();
    let mut attempt = Attempt::new(Some(0), Some(breaker.acquire(now).unwrap()), now);
    attempt.reserved(reservation);
    let failed = Outcome::new(OutcomeKind::Transient);
    let ended = attempt.end(&failed, Usage::UNKNOWN, now);
    assert!(!ended.sent);
    let stats = quota.stats(&"k", now).unwrap();
    assert_eq!(stats.units_spent, Some(0), "the units went back");
    assert_eq!(
        breaker.state(),
        State::Closed,
        "an unsent failure teaches nothing"
    );
}

#[test]
fn a_sent_attempt_settles_and_records_and_a_refused_one_spent_nothing() {
    let now = Instant::now();
    let (quota, slot) = quota();
    let breaker = breakers(1, now).pop().flatten().unwrap();
    // Served: settled at its real usage.
    let r = Reservation::reserve(slot.clone(), &Ask::new(Cost::units(400)), now).unwrap();
    let mut attempt = Attempt::new(Some(0), Some(breaker.acquire(now).unwrap()), now);
    attempt.reserved(r);
    attempt.sent();
    attempt.end(&Outcome::SUCCESS, Usage::units(150), now);
    assert_eq!(quota.stats(&"k", now).unwrap().units_spent, Some(150));
    // Throttled by the server, usage unknown: it spent nothing (not its estimate).
    let r = Reservation::reserve(slot, &Ask::new(Cost::units(400)), now).unwrap();
    let mut attempt = Attempt::new(Some(0), Some(breaker.acquire(now).unwrap()), now);
    attempt.reserved(r);
    attempt.sent();
    let throttled = Outcome::throttled(ThrottleScope::Tokens);
    attempt.end(&throttled, Usage::UNKNOWN, now);
    assert_eq!(quota.stats(&"k", now).unwrap().units_spent, Some(150));
    // A sent failure is recorded: one failure opens this breaker.
    let permit = breaker.acquire(now).unwrap();
    let mut attempt: Attempt<Arc<MemorySlot>> = Attempt::new(Some(0), Some(permit), now);
    attempt.sent();
    attempt.end(&Outcome::new(OutcomeKind::Unavailable), Usage::UNKNOWN, now);
    assert_eq!(breaker.state(), State::Open);
}

#[test]
fn the_preferred_target_admitting_at_once_is_the_choice_choose_makes() {
    let now = Instant::now();
    let (route, breakers, policy) = (route(), breakers(2, now), policy());
    let routing = Routing {
        route: &route,
        breakers: &breakers,
        headroom: &NoHeadroom,
    };
    let mut call = Call::start(&policy, Some(&route), None, now);
    let (permit, admitted) = call
        .choose_admitted(&routing, now, || Some("reserved"))
        .expect("the preferred target admits at once");
    assert!(permit.is_some(), "the preferred target's breaker permit");
    assert_eq!(admitted, "reserved");
    assert_eq!(call.plan().map(|p| p.calls()), Some(1));
    assert!(call.plan().is_some_and(|p| p.tried(0)));
    // Its second choice is the route's: the preferred target was tried.
    assert!(call.choose_admitted(&routing, now, || Some(())).is_none());
    assert!(matches!(
        call.choose(&routing, now),
        Choice::Call { target: 1, .. }
    ));
}

#[test]
fn nothing_is_taken_or_held_when_the_preferred_target_cannot_admit_at_once() {
    let now = Instant::now();
    let (route, breakers, policy) = (route(), breakers(2, now), policy());
    let routing = Routing {
        route: &route,
        breakers: &breakers,
        headroom: &NoHeadroom,
    };
    let mut call = Call::start(&policy, Some(&route), None, now);
    // The quota would make it wait: no target taken, the plan untouched.
    assert!(call.choose_admitted(&routing, now, || None::<()>).is_none());
    assert_eq!(call.plan().map(|p| p.calls()), Some(0));
    // An open breaker: `admit` is never asked (nothing reserved), and `choose` moves on.
    breakers[0].as_ref().unwrap().trip(now);
    let mut asked = false;
    let fast = call.choose_admitted(&routing, now, || {
        asked = true;
        Some(())
    });
    assert!(fast.is_none() && !asked);
    assert!(matches!(
        call.choose(&routing, now),
        Choice::Call { target: 1, .. }
    ));
}

#[test]
fn the_fast_path_leaves_a_breaker_that_is_not_closed_to_the_route() {
    let now = Instant::now();
    let (route, breakers, policy) = (route(), breakers(2, now), policy());
    let breaker = breakers[0].as_ref().unwrap();
    breaker.trip(now);
    // Past the open period: one probe allowed.
    let later = now + Duration::from_secs(3_600);
    let routing = Routing {
        route: &route,
        breakers: &breakers,
        headroom: &NoHeadroom,
    };
    let mut call = Call::start(&policy, Some(&route), None, later);
    let mut asked = false;
    let fast = call.choose_admitted(&routing, later, || {
        asked = true;
        Some(())
    });
    // Not closed: the fast path stands aside without taking the probe or moving the breaker.
    assert!(fast.is_none() && !asked);
    assert_eq!(breaker.state(), State::Open);
    // The route's own choice takes the probe.
    assert!(matches!(
        call.choose(&routing, later),
        Choice::Call { target: 0, .. }
    ));
}

#[test]
fn a_spent_day_moves_at_once_and_a_retry_does_not_go_back_there() {
    let now = Instant::now();
    let (route, breakers, policy) = (route(), breakers(2, now), policy());
    let routing = Routing {
        route: &route,
        breakers: &breakers,
        headroom: &NoHeadroom,
    };
    let mut call = Call::start(&policy, Some(&route), None, now);
    assert!(matches!(
        call.choose(&routing, now),
        Choice::Call { target: 0, .. }
    ));
    let daily = Outcome::throttled(ThrottleScope::Daily);
    let next = call.next(&policy, Some(&routing), &sent(0), &daily, now);
    assert!(matches!(next, Next::Move { target: 1, .. }), "{next:?}");
    // The second target fails otherwise: the retry starts at the second, not the spent first.
    let overloaded = Outcome::new(OutcomeKind::Overloaded);
    let Next::Retry(delay) = call.next(&policy, Some(&routing), &sent(1), &overloaded, now) else {
        panic!("expected a retry")
    };
    assert!(matches!(
        call.choose(&routing, now + delay),
        Choice::Call { target: 1, .. }
    ));
}

#[test]
fn a_spent_day_everywhere_stops_the_call_at_once() {
    let now = Instant::now();
    let (route, breakers, policy) = (route(), breakers(2, now), policy());
    let routing = Routing {
        route: &route,
        breakers: &breakers,
        headroom: &NoHeadroom,
    };
    let deadline = crate::Deadline::from_now(now, Duration::from_secs(150));
    let mut call = Call::start(&policy, Some(&route), Some(deadline), now);
    call.choose(&routing, now);
    let daily = Outcome::throttled(ThrottleScope::Daily);
    assert!(matches!(
        call.next(&policy, Some(&routing), &sent(0), &daily, now),
        Next::Move { target: 1, .. }
    ));
    // The fallback's day is spent too, and returns only in an hour: no retry within 150 s.
    let hour = daily.with_retry_after(Duration::from_secs(3_600));
    let next = call.next(&policy, Some(&routing), &sent(1), &hour, now);
    assert!(
        matches!(next, Next::Stop(StopReason::QuotaExhausted)),
        "{next:?}"
    );
    assert_eq!(call.retry().attempts(), 1, "the stop spent no retry");
}

#[test]
fn a_retry_for_a_day_that_returns_goes_back_to_that_target_only() {
    let now = Instant::now();
    let (route, breakers, policy) = (route(), breakers(2, now), policy());
    let routing = Routing {
        route: &route,
        breakers: &breakers,
        headroom: &NoHeadroom,
    };
    let deadline = crate::Deadline::from_now(now, Duration::from_secs(150));
    let mut call = Call::start(&policy, Some(&route), Some(deadline), now);
    call.choose(&routing, now);
    // The first model's day is spent with no word on its return; the second's returns in 30 s.
    let daily = Outcome::throttled(ThrottleScope::Daily);
    assert!(matches!(
        call.next(&policy, Some(&routing), &sent(0), &daily, now),
        Next::Move { target: 1, .. }
    ));
    let soon = daily.with_retry_after(Duration::from_secs(30));
    let Next::Retry(delay) = call.next(&policy, Some(&routing), &sent(1), &soon, now) else {
        panic!("expected a retry within the deadline")
    };
    assert!(delay >= Duration::from_secs(30));
    // The retry goes to the second, whose day is back, not to the first, whose day is not.
    assert!(matches!(
        call.choose(&routing, now + delay),
        Choice::Call { target: 1, .. }
    ));
}
