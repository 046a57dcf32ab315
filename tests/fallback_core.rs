//! The route core, with time passed in: target choice, policy, hops, headroom, config errors.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;
use tower_headroom::fallback::{
    Action, After, Choice, Exhaustion, FallbackPolicy, Headroom, NoHeadroom, Plan, Route, Target,
};
use tower_headroom::{Deadline, Outcome, OutcomeKind, ThrottleScope};

const SEC: Duration = Duration::from_secs(1);

/// sonnet@east, sonnet@west, haiku@east, haiku@west.
fn route(max_hops: u32) -> Route<&'static str> {
    Route::builder()
        .target(
            Target::new("sonnet-east", "sonnet")
                .model("sonnet")
                .region("us-east-1"),
        )
        .target(
            Target::new("sonnet-west", "sonnet")
                .model("sonnet")
                .region("us-west-2"),
        )
        .target(
            Target::new("haiku-east", "haiku")
                .model("haiku")
                .region("us-east-1"),
        )
        .target(
            Target::new("haiku-west", "haiku")
                .model("haiku")
                .region("us-west-2"),
        )
        .max_hops(max_hops)
        .build()
        .unwrap()
}

fn open_none(_: usize) -> Result<(), Duration> {
    Ok(())
}

fn first(route: &Route<&'static str>, plan: &mut tower_headroom::fallback::Plan) -> usize {
    match route.choose(plan, Instant::now(), &NoHeadroom, open_none) {
        Choice::Call { target, .. } => target,
        Choice::Exhausted { .. } => panic!("exhausted"),
    }
}

#[test]
fn default_policy_follows_the_design_table() {
    let p = FallbackPolicy::default();
    assert_eq!(p.action(OutcomeKind::Overloaded), Action::NextModel);
    assert_eq!(
        p.action(OutcomeKind::Throttled(ThrottleScope::Requests)),
        Action::NextTarget
    );
    assert_eq!(
        p.action(OutcomeKind::Throttled(ThrottleScope::Tokens)),
        Action::NextTarget
    );
    assert_eq!(p.action(OutcomeKind::Unavailable), Action::NextTarget);
    assert_eq!(p.action(OutcomeKind::Timeout), Action::NextTarget);
    for kind in [
        OutcomeKind::Fatal,
        OutcomeKind::Transient,
        OutcomeKind::Throttled(ThrottleScope::Capacity),
        OutcomeKind::Throttled(ThrottleScope::Unknown),
        OutcomeKind::Success,
    ] {
        assert_eq!(p.action(kind), Action::Stop, "{kind}");
        assert!(
            !kind.moves_fallback(),
            "policy agrees with Outcome::moves_fallback"
        );
    }
    // Success cannot be made to move.
    assert_eq!(
        p.on(OutcomeKind::Success, Action::NextTarget)
            .action(OutcomeKind::Success),
        Action::Stop
    );
}

#[test]
fn overloaded_moves_to_the_next_model_unavailable_to_the_next_target() {
    let route = route(3);
    let mut plan = route.plan();
    assert_eq!(first(&route, &mut plan), 0);
    assert_eq!(
        route.after(&mut plan, 0, Outcome::new(OutcomeKind::Overloaded)),
        After::Move
    );
    assert_eq!(first(&route, &mut plan), 2, "skips sonnet-west: same model");

    let mut plan = route.plan();
    assert_eq!(first(&route, &mut plan), 0);
    assert_eq!(
        route.after(&mut plan, 0, Outcome::new(OutcomeKind::Unavailable)),
        After::Move
    );
    assert_eq!(first(&route, &mut plan), 1);
}

#[test]
fn next_region_prefers_another_region_and_falls_back_to_any() {
    let policy = FallbackPolicy::default().on(OutcomeKind::Unavailable, Action::NextRegion);
    let route = Route::builder()
        .target(Target::new("a", 0).region("us-east-1"))
        .target(Target::new("b", 1).region("us-east-1"))
        .target(Target::new("c", 2).region("us-west-2"))
        .policy(policy)
        .max_hops(5)
        .build()
        .unwrap();
    let mut plan = route.plan();
    let call = |plan: &mut _| match route.choose(plan, Instant::now(), &NoHeadroom, open_none) {
        Choice::Call { target, .. } => target,
        Choice::Exhausted { .. } => usize::MAX,
    };
    assert_eq!(call(&mut plan), 0);
    route.after(&mut plan, 0, Outcome::new(OutcomeKind::Unavailable));
    assert_eq!(call(&mut plan), 2);
    route.after(&mut plan, 2, Outcome::new(OutcomeKind::Unavailable));
    assert_eq!(
        call(&mut plan),
        1,
        "no other region left: any untried target"
    );
}

#[test]
fn fatal_and_non_moving_outcomes_stop() {
    let route = route(3);
    for outcome in [
        Outcome::FATAL,
        Outcome::new(OutcomeKind::Transient),
        Outcome::throttled(ThrottleScope::Capacity),
    ] {
        let mut plan = route.plan();
        let t = first(&route, &mut plan);
        assert_eq!(route.after(&mut plan, t, outcome), After::Stop);
    }
    let mut plan = route.plan();
    let t = first(&route, &mut plan);
    assert_eq!(route.after(&mut plan, t, Outcome::SUCCESS), After::Done);
}

#[test]
fn hop_cap_limits_calls_per_request() {
    let route = route(1);
    let mut plan = route.plan();
    let a = first(&route, &mut plan);
    assert_eq!(
        route.after(&mut plan, a, Outcome::new(OutcomeKind::Unavailable)),
        After::Move
    );
    let b = first(&route, &mut plan);
    assert_eq!(
        route.after(&mut plan, b, Outcome::new(OutcomeKind::Unavailable)),
        After::Stop
    );
    assert_eq!(plan.calls(), 2);
    assert!(!route.may_move(&plan));
    assert_eq!(
        route.choose(&mut plan, Instant::now(), &NoHeadroom, open_none),
        Choice::Exhausted {
            retry_in: None,
            cause: Exhaustion::Hops
        }
    );
}

#[test]
fn open_breakers_are_skipped_and_the_earliest_reopening_is_reported() {
    let route = route(3);
    let mut plan = route.plan();
    let open = |i: usize| {
        if i < 2 {
            Err(Duration::from_secs(20 - i as u64))
        } else {
            Ok(i)
        }
    };
    match route.choose(&mut plan, Instant::now(), &NoHeadroom, open) {
        Choice::Call { target, permit, .. } => assert_eq!((target, permit), (2, 2)),
        other => panic!("{other:?}"),
    }
    assert!(!plan.tried(0), "a skipped target was not called");
    let mut plan = route.plan();
    let all_open = |i: usize| Err::<(), _>(Duration::from_secs(10 + i as u64));
    assert_eq!(
        route.choose(&mut plan, Instant::now(), &NoHeadroom, all_open),
        Choice::Exhausted {
            retry_in: Some(Duration::from_secs(10)),
            cause: Exhaustion::BreakerOpen
        }
    );
    assert_eq!(plan.calls(), 0);
}

struct Waits(HashMap<&'static str, Option<Duration>>);

impl Headroom<&'static str> for Waits {
    fn admit_wait(&self, target: &&'static str, _now: Instant) -> Option<Duration> {
        self.0.get(target).copied().unwrap_or(Some(Duration::ZERO))
    }
}

fn by_key() -> Route<&'static str> {
    Route::builder()
        .target(Target::new("east", "east"))
        .target(Target::new("west", "west"))
        .target(Target::new("eu", "eu"))
        .build()
        .unwrap()
}

/// A plan whose admission waits may last 5 s.
fn bounded(route: &Route<&'static str>) -> Plan {
    route
        .plan()
        .with_deadline(Some(Deadline::from_now(Instant::now(), 5 * SEC)))
}

#[test]
fn quota_headroom_prefers_a_target_that_admits_now() {
    let route = by_key();
    let headroom = Waits(HashMap::from([
        ("east", Some(3 * SEC)),
        ("west", Some(Duration::ZERO)),
    ]));
    let mut plan = bounded(&route);
    match route.choose(&mut plan, Instant::now(), &headroom, open_none) {
        Choice::Call { target, wait, .. } => assert_eq!((target, wait), (1, Duration::ZERO)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn when_no_quota_admits_now_it_waits_for_the_shortest_within_the_deadline() {
    let route = by_key();
    let headroom = Waits(HashMap::from([
        ("east", Some(4 * SEC)),
        ("west", Some(2 * SEC)),
        ("eu", Some(9 * SEC)),
    ]));
    let mut plan = bounded(&route);
    match route.choose(&mut plan, Instant::now(), &headroom, open_none) {
        Choice::Call { target, wait, .. } => assert_eq!((target, wait), (1, 2 * SEC)),
        other => panic!("{other:?}"),
    }
    // Nothing within the deadline, or nothing at all: exhausted with the earliest time.
    let headroom = Waits(HashMap::from([
        ("east", Some(7 * SEC)),
        ("west", None),
        ("eu", Some(9 * SEC)),
    ]));
    let mut plan = bounded(&route);
    assert_eq!(
        route.choose(&mut plan, Instant::now(), &headroom, open_none),
        Choice::Exhausted {
            retry_in: Some(7 * SEC),
            cause: Exhaustion::NoHeadroom
        }
    );
}

#[test]
fn a_throttled_target_moves_to_one_with_headroom() {
    let route = by_key();
    let mut plan = bounded(&route);
    assert_eq!(
        route.choose(&mut plan, Instant::now(), &NoHeadroom, open_none),
        Choice::Call {
            target: 0,
            wait: Duration::ZERO,
            permit: ()
        }
    );
    assert_eq!(
        route.after(&mut plan, 0, Outcome::throttled(ThrottleScope::Tokens)),
        After::Move
    );
    // The quota learned from the throttle: west is out of tokens too, eu has room.
    let headroom = Waits(HashMap::from([
        ("east", Some(60 * SEC)),
        ("west", Some(30 * SEC)),
    ]));
    match route.choose(&mut plan, Instant::now(), &headroom, open_none) {
        Choice::Call { target, .. } => assert_eq!(target, 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn config_errors_name_field_and_value() {
    let e = Route::<u8>::builder().build().unwrap_err();
    assert_eq!((e.field(), e.value()), ("targets", "0"));
    let e = Route::builder()
        .target(Target::new("sonnet", 1))
        .target(Target::new("haiku", 2))
        .target(Target::new("sonnet", 3))
        .build()
        .unwrap_err();
    assert_eq!((e.field(), e.value()), ("targets.name", "\"sonnet\""));
    assert!(e.to_string().contains("duplicate"), "{e}");
    let e = Route::builder()
        .target(Target::new("", 1))
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "targets.name");
    let mut many = Route::builder();
    for i in 0..65 {
        many = many.target(Target::new(format!("t{i}"), i));
    }
    let e = many.build().unwrap_err();
    assert_eq!((e.field(), e.value()), ("targets", "65"));
}

fn any_outcome() -> impl Strategy<Value = Outcome> {
    use OutcomeKind as K;
    use ThrottleScope as S;
    prop_oneof![
        Just(K::Success),
        Just(K::Throttled(S::Requests)),
        Just(K::Throttled(S::Tokens)),
        Just(K::Throttled(S::Capacity)),
        Just(K::Overloaded),
        Just(K::Unavailable),
        Just(K::Timeout),
        Just(K::Transient),
        Just(K::Fatal),
    ]
    .prop_map(Outcome::new)
}

proptest! {
    /// Whatever the outcomes and open breakers: no target is called twice, calls never exceed
    /// `1 + max_hops`, a skipped (open) target is never called, and the loop ends on success
    /// or on a stopping outcome.
    #[test]
    fn a_request_never_calls_a_target_twice_nor_exceeds_the_hop_cap(
        max_hops in 0..5u32,
        open in proptest::collection::vec(any::<bool>(), 4),
        outcomes in proptest::collection::vec(any_outcome(), 8),
    ) {
        let route = route(max_hops);
        let mut plan = route.plan();
        let mut called = Vec::new();
        let now = Instant::now();
        for outcome in outcomes {
            let choice = route.choose(&mut plan, now, &NoHeadroom, |i| {
                if open[i] { Err(SEC) } else { Ok(()) }
            });
            let Choice::Call { target, .. } = choice else { break };
            prop_assert!(!open[target]);
            prop_assert!(!called.contains(&target));
            called.push(target);
            match route.after(&mut plan, target, outcome) {
                After::Done => { prop_assert!(outcome.is_success()); break }
                After::Stop => {
                    prop_assert!(!outcome.kind.moves_fallback() || called.len() as u32 > max_hops
                        || called.len() == 4);
                    break
                }
                After::Move => prop_assert!(outcome.kind.moves_fallback()),
            }
        }
        prop_assert!(called.len() as u32 <= max_hops + 1);
        prop_assert_eq!(plan.calls() as usize, called.len());
    }
}
