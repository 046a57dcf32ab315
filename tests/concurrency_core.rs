//! The adaptive concurrency limit with time passed in: cuts, growth, latency, releases,
//! configuration, and properties over random call sequences.

use std::collections::VecDeque;
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;
use tower_headroom::concurrency::{
    AdaptiveLimit, ConcurrencyConfig, ConcurrencyConfigBuilder, ConcurrencyPermit,
};
use tower_headroom::observe::Labels;
use tower_headroom::{Outcome, OutcomeKind, ThrottleScope};

const SECOND: Duration = Duration::from_secs(1);
const UNAVAILABLE: Outcome = Outcome::new(OutcomeKind::Unavailable);

fn limit_of(builder: ConcurrencyConfigBuilder) -> AdaptiveLimit {
    AdaptiveLimit::new(builder.build().unwrap(), Labels::target("test"))
}

/// Traffic that keeps the limit in full use: the calls in flight are topped up to the limit
/// before each completion.
struct FullUse<'a> {
    limit: &'a AdaptiveLimit,
    now: Instant,
    in_flight: VecDeque<ConcurrencyPermit>,
}

impl<'a> FullUse<'a> {
    fn new(limit: &'a AdaptiveLimit, now: Instant) -> Self {
        FullUse {
            limit,
            now,
            in_flight: VecDeque::new(),
        }
    }

    /// Completes the oldest call `calls` times with `outcome`, each `latency` after it
    /// started (completions spaced so that calls take `latency` at full use).
    fn run(&mut self, calls: usize, latency: Duration, outcome: Outcome) -> &mut Self {
        for _ in 0..calls {
            while let Ok(permit) = self.limit.try_acquire(self.now) {
                self.in_flight.push_back(permit);
            }
            self.now += latency / self.limit.limit().max(1);
            let permit = self
                .in_flight
                .pop_front()
                .expect("at least one call in flight");
            permit.record(&outcome, latency, self.now);
        }
        self
    }
}

#[test]
fn a_refusal_cuts_by_the_backoff_ratio_and_a_burst_cuts_once() {
    let limit = limit_of(ConcurrencyConfig::builder().initial_limit(10));
    let now = Instant::now();
    let permits: Vec<_> = (0..6).map(|_| limit.try_acquire(now).unwrap()).collect();
    for permit in permits {
        permit.record(&UNAVAILABLE, SECOND, now);
    }
    assert_eq!(limit.limit(), 9, "10 × 0.9, once for the whole burst");
    assert_eq!(limit.in_flight(), 0);
}

#[test]
fn overloaded_and_timeout_answers_cut_too() {
    for kind in [OutcomeKind::Overloaded, OutcomeKind::Timeout] {
        let limit = limit_of(ConcurrencyConfig::builder().initial_limit(20));
        let now = Instant::now();
        limit
            .try_acquire(now)
            .unwrap()
            .record(&Outcome::new(kind), SECOND, now);
        assert_eq!(limit.limit(), 18, "{kind}");
    }
}

#[test]
fn an_answer_to_a_call_sent_before_the_last_cut_does_not_cut_again() {
    let limit = limit_of(ConcurrencyConfig::builder().initial_limit(20));
    let t0 = Instant::now();
    let before = limit.try_acquire(t0).unwrap();
    limit
        .try_acquire(t0)
        .unwrap()
        .record(&UNAVAILABLE, SECOND, t0);
    assert_eq!(limit.limit(), 18);
    let after = limit.try_acquire(t0).unwrap();
    // Well past the interval: the old call's refusal reflects the old limit.
    before.record(&UNAVAILABLE, SECOND, t0 + 5 * SECOND);
    assert_eq!(limit.limit(), 18);
    // A call sent under the new limit and refused still cuts.
    after.record(&UNAVAILABLE, SECOND, t0 + 5 * SECOND);
    assert_eq!(limit.limit(), 16, "18 × 0.9 = 16.2");
}

#[test]
fn cuts_are_at_least_the_decrease_interval_apart() {
    let limit = limit_of(
        ConcurrencyConfig::builder()
            .initial_limit(100)
            .decrease_interval(2 * SECOND),
    );
    let t0 = Instant::now();
    limit
        .try_acquire(t0)
        .unwrap()
        .record(&UNAVAILABLE, SECOND, t0);
    assert_eq!(limit.limit(), 90);
    let early = t0 + Duration::from_millis(1_999);
    limit
        .try_acquire(early)
        .unwrap()
        .record(&UNAVAILABLE, SECOND, early);
    assert_eq!(limit.limit(), 90, "within the interval");
    let late = t0 + 2 * SECOND;
    limit
        .try_acquire(late)
        .unwrap()
        .record(&UNAVAILABLE, SECOND, late);
    assert_eq!(limit.limit(), 81);
}

#[test]
fn the_limit_never_falls_below_the_minimum() {
    let limit = limit_of(ConcurrencyConfig::builder().initial_limit(4).limits(3, 10));
    let mut now = Instant::now();
    for _ in 0..20 {
        limit
            .try_acquire(now)
            .unwrap()
            .record(&UNAVAILABLE, SECOND, now);
        now += 2 * SECOND;
    }
    assert_eq!(limit.limit(), 3);
}

#[test]
fn a_limit_in_full_use_grows_about_one_slot_per_round_trip() {
    let limit = limit_of(ConcurrencyConfig::builder().initial_limit(8).no_latency());
    // 100 completions at 8 to 16 calls in flight: about 9 round trips.
    FullUse::new(&limit, Instant::now()).run(100, 2 * SECOND, Outcome::SUCCESS);
    let grown = limit.limit();
    assert!((15..=18).contains(&grown), "8 + about 8 slots: {grown}");
}

#[test]
fn an_unused_limit_never_grows() {
    let limit = limit_of(ConcurrencyConfig::builder().initial_limit(10));
    let mut now = Instant::now();
    // Four calls in flight at most: under half of 10.
    for _ in 0..500 {
        let permits: Vec<_> = (0..4).map(|_| limit.try_acquire(now).unwrap()).collect();
        now += SECOND;
        for permit in permits {
            permit.record(&Outcome::SUCCESS, SECOND, now);
        }
    }
    assert_eq!(limit.limit(), 10);
    // In full use, it grows.
    FullUse::new(&limit, now).run(40, SECOND, Outcome::SUCCESS);
    assert!(limit.limit() > 10);
}

#[test]
fn the_limit_never_grows_past_the_maximum() {
    let limit = limit_of(ConcurrencyConfig::builder().initial_limit(4).limits(1, 6));
    FullUse::new(&limit, Instant::now()).run(500, SECOND, Outcome::SUCCESS);
    assert_eq!(limit.limit(), 6);
}

#[test]
fn near_the_level_of_the_last_cut_growth_is_slower() {
    let config = ConcurrencyConfig::builder().no_latency();
    // Cut from 10 to 9: regaining 10 and probing 11 is slow.
    let cut = limit_of(config.clone().initial_limit(10));
    let now = Instant::now();
    cut.try_acquire(now)
        .unwrap()
        .record(&UNAVAILABLE, SECOND, now);
    assert_eq!(cut.limit(), 9);
    // The same climb from 9 on a limit never cut.
    let fresh = limit_of(config.initial_limit(9));
    let climb = |limit: &AdaptiveLimit| {
        let mut load = FullUse::new(limit, now + 2 * SECOND);
        let mut successes = 0;
        while limit.limit() < 11 {
            load.run(1, SECOND, Outcome::SUCCESS);
            successes += 1;
        }
        let from = limit.limit();
        // Past the plateau: the usual pace, a slot per round trip.
        load.run(13, SECOND, Outcome::SUCCESS);
        assert_eq!(limit.limit(), from + 1);
        successes
    };
    let (slow, fast) = (climb(&cut), climb(&fresh));
    println!("successes from 9 to 11: {slow} after a cut at 10, {fast} without");
    assert!(slow >= 3 * fast, "{slow} vs {fast}");
}

#[test]
fn throttles_client_errors_transient_faults_and_local_refusals_teach_nothing() {
    let outcomes = [
        Outcome::throttled(ThrottleScope::Tokens),
        Outcome::throttled(ThrottleScope::Requests),
        Outcome::FATAL,
        Outcome::new(OutcomeKind::Transient),
        UNAVAILABLE.refused_locally(),
        Outcome::new(OutcomeKind::Overloaded).refused_locally(),
    ];
    for outcome in outcomes {
        let limit = limit_of(ConcurrencyConfig::builder().initial_limit(8));
        let mut load = FullUse::new(&limit, Instant::now());
        load.run(200, SECOND, outcome);
        assert_eq!(limit.limit(), 8, "{outcome:?}");
        assert_eq!(
            limit.in_flight(),
            7,
            "one call of the full limit just completed"
        );
    }
}

#[test]
fn dropped_permits_free_their_slot_and_teach_nothing() {
    let limit = limit_of(ConcurrencyConfig::builder().initial_limit(3));
    let now = Instant::now();
    for _ in 0..100 {
        let permits: Vec<_> = (0..3).map(|_| limit.try_acquire(now).unwrap()).collect();
        let full = limit.try_acquire(now).unwrap_err();
        assert_eq!((full.limit, full.in_flight), (3, 3));
        drop(permits);
        assert_eq!(limit.in_flight(), 0);
    }
    assert_eq!(limit.limit(), 3);
}

#[test]
fn queueing_latency_cuts_the_limit_and_output_length_noise_does_not() {
    let run = |config: ConcurrencyConfigBuilder| {
        let limit = limit_of(config.initial_limit(10));
        let mut load = FullUse::new(&limit, Instant::now());
        // Latency that varies threefold with the answer's length, around 2 s: no cut.
        for i in 0..300 {
            let latency = Duration::from_millis([1_000, 3_000, 2_000][i % 3]);
            load.run(1, latency, Outcome::SUCCESS);
        }
        let steady = limit.limit();
        // A backend that starts queueing: 6 s for the same calls. The short-term mean passes
        // twice the long-term one (which creeps up too) after 14 of them.
        load.run(20, 6 * SECOND, Outcome::SUCCESS);
        (steady, limit.limit())
    };
    let (steady, queueing) = run(ConcurrencyConfig::builder());
    println!("latency: {steady} calls while steady, {queueing} once queueing");
    assert!(steady >= 20, "it grew while in use: {steady}");
    assert!(
        queueing < steady && f64::from(queueing) >= f64::from(steady) * 0.9 - 1.0,
        "one cut by the backoff ratio: {steady} -> {queueing}"
    );
    // Without latency learning the same run only grows.
    let (steady, queueing) = run(ConcurrencyConfig::builder().no_latency());
    assert!(queueing >= steady);
}

#[test]
fn the_retry_hint_is_the_mean_time_between_completions() {
    // With latency learning or without, the hint reads the recent latency.
    for config in [
        ConcurrencyConfig::builder(),
        ConcurrencyConfig::builder().no_latency(),
    ] {
        let limit = limit_of(config.initial_limit(8));
        let now = Instant::now();
        let held: Vec<_> = (0..8).map(|_| limit.try_acquire(now).unwrap()).collect();
        assert_eq!(
            limit.try_acquire(now).unwrap_err().retry_in,
            SECOND,
            "no sample yet"
        );
        drop(held);
        let mut load = FullUse::new(&limit, now);
        load.run(8, 2 * SECOND, Outcome::SUCCESS);
        let _held: Vec<_> = std::iter::from_fn(|| limit.try_acquire(load.now).ok()).collect();
        let full = limit.try_acquire(load.now).unwrap_err();
        let expected = 2.0 / f64::from(full.in_flight);
        assert!(
            (full.retry_in.as_secs_f64() - expected).abs() < 0.01,
            "{full:?}"
        );
    }
}

#[test]
fn the_shared_types_can_cross_threads() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<AdaptiveLimit>();
    send_sync::<ConcurrencyPermit>();
    send_sync::<tower_headroom::concurrency::ConcurrencyLimited>();
}

#[test]
fn nonsense_settings_are_typed_errors() {
    let b = ConcurrencyConfig::builder;
    let cases = [
        (b().limits(0, 10), "min_limit"),
        (b().limits(10, 5), "max_limit"),
        (b().initial_limit(300), "initial_limit"),
        (b().limits(4, 8).initial_limit(2), "initial_limit"),
        (b().backoff_ratio(1.0), "backoff_ratio"),
        (b().backoff_ratio(0.2), "backoff_ratio"),
        (b().backoff_ratio(f64::NAN), "backoff_ratio"),
        (b().latency_tolerance(1.0), "latency_tolerance"),
        (b().latency_tolerance(f64::INFINITY), "latency_tolerance"),
        (b().latency_windows(0, 10), "latency_windows.short"),
        (b().latency_windows(10, 10), "latency_windows.long"),
    ];
    for (builder, field) in cases {
        assert_eq!(builder.build().unwrap_err().field(), field);
    }
    let config = ConcurrencyConfig::default();
    assert_eq!(
        (
            config.initial_limit(),
            config.min_limit(),
            config.max_limit()
        ),
        (16, 1, 256)
    );
    assert_eq!(config.latency(), Some((2.0, 10, 100)));
    assert_eq!(b().no_latency().build().unwrap().latency(), None);
    assert!(b().decrease_interval(Duration::ZERO).build().is_ok());
}

#[derive(Clone, Debug)]
enum Op {
    Acquire,
    Record(usize, u8, u16),
    Drop(usize),
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Acquire),
        3 => (any::<usize>(), 0u8..8, 1u16..10_000).prop_map(|(i, k, ms)| Op::Record(i, k, ms)),
        1 => any::<usize>().prop_map(Op::Drop),
        2 => (0u16..3_000).prop_map(Op::Advance),
    ]
}

fn outcome(k: u8) -> Outcome {
    match k {
        0..=3 => Outcome::SUCCESS,
        4 => UNAVAILABLE,
        5 => Outcome::new(OutcomeKind::Overloaded),
        6 => Outcome::throttled(ThrottleScope::Tokens),
        _ => UNAVAILABLE.refused_locally(),
    }
}

proptest! {
    #[test]
    fn the_limit_holds_its_invariants(
        ops in prop::collection::vec(op(), 1..400),
        min in 1u32..5,
        span in 0u32..40,
        interval_ms in 0u64..3_000,
    ) {
        let max = min + span;
        let interval = Duration::from_millis(interval_ms);
        let limit = limit_of(
            ConcurrencyConfig::builder()
                .limits(min, max)
                .initial_limit(min + span / 2)
                .decrease_interval(interval),
        );
        let mut now = Instant::now();
        // Each permit with whether the limit was in use (half or more) when it was taken.
        let mut permits: Vec<(ConcurrencyPermit, bool)> = Vec::new();
        let mut last_cut: Option<Instant> = None;
        for op in ops {
            let before = limit.limit();
            prop_assert!((min..=max).contains(&before));
            match op {
                Op::Acquire => match limit.try_acquire(now) {
                    Ok(permit) => {
                        prop_assert!(permits.len() < before as usize, "a slot past the limit");
                        permits.push((permit, (permits.len() + 1) * 2 >= before as usize));
                    }
                    Err(full) => {
                        prop_assert!(permits.len() >= before as usize, "refused with room");
                        prop_assert_eq!((full.limit, full.in_flight as usize), (before, permits.len()));
                    }
                },
                Op::Record(i, k, ms) if !permits.is_empty() => {
                    let (permit, used) = permits.swap_remove(i % permits.len());
                    let outcome = outcome(k);
                    permit.record(&outcome, Duration::from_millis(ms.into()), now);
                    let after = limit.limit();
                    if after < before {
                        prop_assert!(
                            matches!(outcome.kind, OutcomeKind::Unavailable | OutcomeKind::Overloaded | OutcomeKind::Success)
                                && !outcome.local,
                            "cut by {:?}", outcome
                        );
                        if let Some(last) = last_cut {
                            prop_assert!(now - last >= interval, "two cuts within the interval");
                        }
                        last_cut = Some(now);
                    }
                    if after > before {
                        prop_assert!(outcome.is_success() && used, "grew on an unused limit");
                    }
                }
                Op::Drop(i) if !permits.is_empty() => {
                    drop(permits.swap_remove(i % permits.len()));
                    prop_assert_eq!(limit.limit(), before, "a drop taught something");
                }
                Op::Advance(ms) => now += Duration::from_millis(ms.into()),
                _ => {}
            }
            prop_assert_eq!(limit.in_flight() as usize, permits.len());
        }
        drop(permits);
        prop_assert_eq!(limit.in_flight(), 0);
    }
}
