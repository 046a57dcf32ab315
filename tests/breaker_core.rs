//! The breaker core and registry, with time passed in: transitions, windows, probes, config.

use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;
use tower_headroom::breaker::{
    BreakerConfig, BreakerCore, BreakerRegistry, State, Transition, Window,
};
use tower_headroom::observe::Labels;
use tower_headroom::{Outcome, OutcomeKind, ThrottleScope};

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

fn fail() -> Outcome {
    Outcome::new(OutcomeKind::Unavailable)
}

fn call(core: &mut BreakerCore, outcome: Outcome, now: Instant) -> Option<Transition> {
    let permit = core.acquire(now).expect("admitted");
    core.record(permit, outcome, 10 * MS, now)
}

fn no_jitter() -> tower_headroom::breaker::BreakerConfigBuilder {
    BreakerConfig::builder().open_jitter(0.0).seed(7)
}

#[test]
fn trips_on_exactly_n_consecutive_failures_and_success_resets_the_run() {
    let config = no_jitter()
        .consecutive_failures(3)
        .no_failure_rate()
        .build()
        .unwrap();
    let now = Instant::now();
    let mut core = BreakerCore::new(config, now);
    call(&mut core, fail(), now);
    call(&mut core, fail(), now);
    call(&mut core, Outcome::SUCCESS, now);
    call(&mut core, fail(), now);
    assert_eq!(call(&mut core, fail(), now), None);
    assert_eq!(core.state(), State::Closed);
    assert_eq!(
        call(&mut core, fail(), now),
        Some(Transition {
            from: State::Closed,
            to: State::Open
        })
    );
    assert_eq!(
        core.acquire(now).unwrap_err().retry_in,
        Duration::from_secs(30)
    );
}

#[test]
fn failure_rate_over_count_window_waits_for_minimum_calls() {
    let config = no_jitter()
        .no_consecutive_failures()
        .failure_rate(0.5)
        .window(Window::Count(10))
        .minimum_calls(6)
        .build()
        .unwrap();
    let now = Instant::now();
    let mut core = BreakerCore::new(config, now);
    // 5 calls, 3 failures: 60 % but below the minimum number of calls.
    for outcome in [fail(), Outcome::SUCCESS, fail(), Outcome::SUCCESS, fail()] {
        call(&mut core, outcome, now);
    }
    assert_eq!(core.state(), State::Closed);
    // Sixth call a success: 3/6 = 50 % reaches the threshold.
    call(&mut core, Outcome::SUCCESS, now);
    assert_eq!(core.state(), State::Open);
}

#[test]
fn count_window_forgets_the_oldest_call() {
    let config = no_jitter()
        .no_consecutive_failures()
        .failure_rate(0.5)
        .window(Window::Count(4))
        .minimum_calls(4)
        .build()
        .unwrap();
    let now = Instant::now();
    let mut core = BreakerCore::new(config, now);
    // F S S S: 25 %. Then S pushes the F out; then F S: window S S F S... never 2 of 4.
    for outcome in [fail(), Outcome::SUCCESS, Outcome::SUCCESS, Outcome::SUCCESS] {
        call(&mut core, outcome, now);
    }
    call(&mut core, fail(), now); // window S S S F: 25 %
    assert_eq!(core.state(), State::Closed);
    call(&mut core, fail(), now); // window S S F F: 50 %
    assert_eq!(core.state(), State::Open);
}

#[test]
fn time_window_expires_old_failures() {
    let config = no_jitter()
        .no_consecutive_failures()
        .failure_rate(0.5)
        .window(Window::Time(Duration::from_secs(10)))
        .minimum_calls(4)
        .build()
        .unwrap();
    let start = Instant::now();
    let mut core = BreakerCore::new(config, start);
    for _ in 0..3 {
        call(&mut core, fail(), start);
    }
    // 11 s later the three failures have left the window: 1 failure of 1 call, below minimum.
    let later = start + 11 * SEC;
    call(&mut core, fail(), later);
    assert_eq!(core.state(), State::Closed);
    // Within the window they count: 3 more failures make 4 calls, all failed.
    for _ in 0..3 {
        call(&mut core, fail(), later + SEC);
    }
    assert_eq!(core.state(), State::Open);
}

#[test]
fn time_window_counts_calls_inside_it() {
    let config = no_jitter()
        .no_consecutive_failures()
        .failure_rate(0.5)
        .window(Window::Time(Duration::from_secs(10)))
        .minimum_calls(4)
        .build()
        .unwrap();
    let start = Instant::now();
    let mut core = BreakerCore::new(config, start);
    call(&mut core, fail(), start);
    call(&mut core, fail(), start + 3 * SEC);
    call(&mut core, Outcome::SUCCESS, start + 6 * SEC);
    assert_eq!(core.state(), State::Closed);
    call(&mut core, Outcome::SUCCESS, start + 8 * SEC); // 2 of 4 within 10 s
    assert_eq!(core.state(), State::Open);
}

#[test]
fn fatal_and_quota_throttles_never_trip() {
    let config = no_jitter()
        .consecutive_failures(1)
        .failure_rate(0.01)
        .window(Window::Count(1))
        .minimum_calls(1)
        .build()
        .unwrap();
    let now = Instant::now();
    let mut core = BreakerCore::new(config, now);
    for outcome in [
        Outcome::FATAL,
        Outcome::throttled(ThrottleScope::Requests),
        Outcome::throttled(ThrottleScope::Tokens),
        Outcome::throttled(ThrottleScope::Capacity),
        Outcome::throttled(ThrottleScope::Unknown).with_retry_after(SEC),
    ] {
        for _ in 0..100 {
            assert_eq!(call(&mut core, outcome, now), None);
        }
    }
    assert_eq!(core.state(), State::Closed);
    // The same breaker does trip on one counted failure.
    call(&mut core, Outcome::new(OutcomeKind::Overloaded), now);
    assert_eq!(core.state(), State::Open);
}

fn tripped(probes: u32) -> (BreakerCore, Instant) {
    let config = no_jitter()
        .consecutive_failures(1)
        .half_open_probes(probes)
        .open_for(10 * SEC)
        .build()
        .unwrap();
    let now = Instant::now();
    let mut core = BreakerCore::new(config, now);
    call(&mut core, fail(), now);
    assert_eq!(core.state(), State::Open);
    (core, now)
}

#[test]
fn open_lasts_open_for_then_admits_exactly_the_probe_limit() {
    let (mut core, t0) = tripped(3);
    assert_eq!(core.acquire(t0 + 9 * SEC).unwrap_err().retry_in, SEC);
    let t = t0 + 10 * SEC;
    let (first, transition) = core.acquire_reporting(t);
    assert_eq!(
        transition,
        Some(Transition {
            from: State::Open,
            to: State::HalfOpen
        })
    );
    let first = first.unwrap();
    assert!(first.is_probe());
    let second = core.acquire(t).unwrap();
    let third = core.acquire(t).unwrap();
    assert!(core.acquire(t).is_err(), "a fourth probe is refused");
    assert!(core.would_admit(t).is_err());
    // Successes free no slot: three probes in total, then the breaker closes.
    assert_eq!(core.record(first, Outcome::SUCCESS, MS, t), None);
    assert!(core.acquire(t).is_err());
    assert_eq!(core.record(second, Outcome::SUCCESS, MS, t), None);
    assert_eq!(
        core.record(third, Outcome::SUCCESS, MS, t),
        Some(Transition {
            from: State::HalfOpen,
            to: State::Closed
        })
    );
    assert!(!core.acquire(t).unwrap().is_probe());
}

#[test]
fn a_failed_probe_reopens_at_once_and_old_probes_do_not_count() {
    let (mut core, t0) = tripped(2);
    let t = t0 + 10 * SEC;
    let a = core.acquire(t).unwrap();
    let b = core.acquire(t).unwrap();
    assert_eq!(
        core.record(a, Outcome::new(OutcomeKind::Timeout), MS, t),
        Some(Transition {
            from: State::HalfOpen,
            to: State::Open
        })
    );
    // The other probe of the old half-open period finishes late: ignored.
    assert_eq!(core.record(b, Outcome::SUCCESS, MS, t), None);
    assert_eq!(core.state(), State::Open);
    assert_eq!(core.acquire(t).unwrap_err().retry_in, 10 * SEC);
}

#[test]
fn released_and_ignored_probes_free_their_slot() {
    let (mut core, t0) = tripped(1);
    let t = t0 + 10 * SEC;
    let probe = core.acquire(t).unwrap();
    assert!(core.acquire(t).is_err());
    core.release(probe); // the caller dropped the call
    let probe = core.acquire(t).expect("slot freed by release");
    core.record(probe, Outcome::throttled(ThrottleScope::Tokens), MS, t);
    let probe = core.acquire(t).expect("slot freed by an ignored outcome");
    assert_eq!(core.state(), State::HalfOpen);
    core.record(probe, Outcome::SUCCESS, MS, t);
    assert_eq!(core.state(), State::Closed);
}

#[test]
fn a_call_from_closed_finishing_after_the_trip_is_ignored() {
    let config = no_jitter().consecutive_failures(1).build().unwrap();
    let now = Instant::now();
    let mut core = BreakerCore::new(config, now);
    let slow = core.acquire(now).unwrap();
    call(&mut core, fail(), now);
    assert_eq!(core.state(), State::Open);
    assert_eq!(core.record(slow, Outcome::SUCCESS, MS, now), None);
    assert_eq!(core.state(), State::Open);
}

#[test]
fn slow_calls_trip_and_a_slow_probe_reopens() {
    let config = no_jitter()
        .no_consecutive_failures()
        .no_failure_rate()
        .slow_call(Duration::from_secs(5), 0.5)
        .window(Window::Count(4))
        .minimum_calls(4)
        .open_for(SEC)
        .build()
        .unwrap();
    let now = Instant::now();
    let mut core = BreakerCore::new(config, now);
    for latency in [SEC, 6 * SEC, SEC] {
        let p = core.acquire(now).unwrap();
        core.record(p, Outcome::SUCCESS, latency, now);
    }
    assert_eq!(core.state(), State::Closed);
    let p = core.acquire(now).unwrap();
    core.record(p, Outcome::SUCCESS, 5 * SEC, now); // 2 of 4 slow
    assert_eq!(core.state(), State::Open);
    let t = now + SEC;
    let p = core.acquire(t).unwrap();
    core.record(p, Outcome::SUCCESS, 7 * SEC, t);
    assert_eq!(core.state(), State::Open);
}

#[test]
fn jitter_stays_in_range_and_a_seed_repeats_it() {
    let open = |seed| {
        let config = BreakerConfig::builder()
            .consecutive_failures(1)
            .open_for(10 * SEC)
            .open_jitter(0.5)
            .seed(seed)
            .build()
            .unwrap();
        let now = Instant::now();
        let mut core = BreakerCore::new(config, now);
        call(&mut core, fail(), now);
        core.acquire(now).unwrap_err().retry_in
    };
    let mut distinct = std::collections::HashSet::new();
    for seed in 0..50 {
        let d = open(seed);
        assert!(d >= 10 * SEC && d <= 15 * SEC, "{d:?}");
        assert_eq!(d, open(seed));
        distinct.insert(d);
    }
    assert!(distinct.len() > 40, "jitter varies across seeds");
}

#[test]
fn trip_and_reset_are_operator_overrides() {
    let config = no_jitter().build().unwrap();
    let now = Instant::now();
    let mut core = BreakerCore::new(config, now);
    core.trip(now);
    assert!(core.acquire(now).is_err());
    core.reset(now);
    assert!(core.acquire(now).is_ok());
}

#[test]
fn config_errors_name_field_and_value() {
    let cases = [
        (
            BreakerConfig::builder().window(Window::Count(0)),
            "window",
            "Count(0)",
        ),
        (
            BreakerConfig::builder().window(Window::Time(Duration::ZERO)),
            "window",
            "Time(0ns)",
        ),
        (
            BreakerConfig::builder().failure_rate(1.5),
            "failure_rate",
            "1.5",
        ),
        (
            BreakerConfig::builder().failure_rate(f64::NAN),
            "failure_rate",
            "NaN",
        ),
        (
            BreakerConfig::builder().failure_rate(0.0),
            "failure_rate",
            "0.0",
        ),
        (
            BreakerConfig::builder().consecutive_failures(0),
            "consecutive_failures",
            "0",
        ),
        (
            BreakerConfig::builder().minimum_calls(0),
            "minimum_calls",
            "0",
        ),
        (
            BreakerConfig::builder()
                .window(Window::Count(5))
                .minimum_calls(6),
            "minimum_calls",
            "6",
        ),
        (
            BreakerConfig::builder().open_for(Duration::ZERO),
            "open_for",
            "0ns",
        ),
        (
            BreakerConfig::builder().open_jitter(-0.1),
            "open_jitter",
            "-0.1",
        ),
        (
            BreakerConfig::builder().half_open_probes(0),
            "half_open_probes",
            "0",
        ),
        (
            BreakerConfig::builder().slow_call(Duration::ZERO, 0.5),
            "slow_call.threshold",
            "0ns",
        ),
        (
            BreakerConfig::builder().slow_call(SEC, 2.0),
            "slow_call.rate",
            "2.0",
        ),
        (
            BreakerConfig::builder()
                .no_consecutive_failures()
                .no_failure_rate(),
            "consecutive_failures",
            "None",
        ),
    ];
    for (builder, field, value) in cases {
        let error = builder.build().unwrap_err();
        assert_eq!(error.field(), field);
        assert_eq!(error.value(), value);
        let message = error.to_string();
        assert!(
            message.contains(field) && message.contains(value),
            "{message}"
        );
    }
    assert!(BreakerConfig::builder().build().is_ok());
}

#[test]
fn registry_creates_on_demand_and_evicts_only_idle_unreferenced_breakers() {
    let registry = BreakerRegistry::builder(no_jitter().consecutive_failures(1).build().unwrap())
        .labels(|key: &String| Labels::target("bedrock").model(key.clone()))
        .idle_after(60 * SEC)
        .shards(4)
        .build()
        .unwrap();
    let t0 = Instant::now();
    assert!(registry.is_empty());
    let sonnet = registry.get("sonnet", t0);
    let haiku = registry.get("haiku", t0);
    assert_eq!(registry.len(), 2);
    assert_eq!(sonnet.labels().model_name(), Some("sonnet"));
    // Same key, same breaker: tripping through one handle is seen through another.
    sonnet.trip(t0);
    assert_eq!(registry.get("sonnet", t0).state(), State::Open);
    assert_eq!(haiku.state(), State::Closed);

    drop(haiku);
    // Not idle long enough.
    assert_eq!(registry.evict_idle(t0 + 59 * SEC), 0);
    // `sonnet` is still held by this test: never evicted, however idle.
    assert_eq!(registry.evict_idle(t0 + 120 * SEC), 1);
    assert_eq!(registry.len(), 1);
    assert!(registry.peek("haiku").is_none());
    drop(sonnet);
    // Lookups sweep their shard: after idling, a new breaker (closed) replaces the old one.
    let t2 = t0 + 300 * SEC;
    assert_eq!(registry.evict_idle(t2), 1);
    assert_eq!(registry.get("sonnet", t2).state(), State::Closed);
}

#[test]
fn registry_config_errors() {
    let e = BreakerRegistry::<String>::builder(BreakerConfig::default())
        .idle_after(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!((e.field(), e.value()), ("idle_after", "0ns"));
    let e = BreakerRegistry::<String>::builder(BreakerConfig::default())
        .shards(0)
        .build()
        .unwrap_err();
    assert_eq!((e.field(), e.value()), ("shards", "0"));
}

fn any_outcome() -> impl Strategy<Value = Outcome> {
    use OutcomeKind as K;
    use ThrottleScope as S;
    prop_oneof![
        Just(K::Success),
        Just(K::Throttled(S::Requests)),
        Just(K::Throttled(S::Tokens)),
        Just(K::Throttled(S::Capacity)),
        Just(K::Throttled(S::Unknown)),
        Just(K::Overloaded),
        Just(K::Unavailable),
        Just(K::Timeout),
        Just(K::Transient),
        Just(K::Fatal),
    ]
    .prop_map(Outcome::new)
}

#[derive(Clone, Debug)]
enum Op {
    Acquire,
    Record(usize, Outcome, u64),
    Release(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Acquire),
        4 => (any::<usize>(), any_outcome(), 0..20_000u64).prop_map(|(i, o, l)| Op::Record(i, o, l)),
        1 => any::<usize>().prop_map(Op::Release),
        2 => (0..20_000u64).prop_map(Op::Advance),
    ]
}

fn config() -> impl Strategy<Value = BreakerConfig> {
    (
        1..6u32,
        0.1..1.0f64,
        prop_oneof![
            (1..20u32).prop_map(Window::Count),
            (1..60u64).prop_map(|s| Window::Time(Duration::from_secs(s)))
        ],
        1..4u32,
        0.0..1.0f64,
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(|(consecutive, rate, window, probes, jitter, seed, slow)| {
            let min = match window {
                Window::Count(n) => n.min(5),
                Window::Time(_) => 5,
            };
            let mut b = BreakerConfig::builder()
                .consecutive_failures(consecutive)
                .failure_rate(rate)
                .window(window)
                .minimum_calls(min)
                .half_open_probes(probes)
                .open_for(Duration::from_secs(5))
                .open_jitter(jitter)
                .seed(seed);
            if slow {
                b = b.slow_call(Duration::from_secs(10), 0.5);
            }
            b.build().unwrap()
        })
}

proptest! {
    /// Whatever happens: only the documented transitions occur, open never admits early,
    /// half-open never has more than `half_open_probes` probes out, and outcomes that the
    /// breaker does not count never cause a transition.
    #[test]
    fn transitions_follow_the_state_machine(config in config(), ops in proptest::collection::vec(op(), 1..200)) {
        let probes = config.half_open_probes();
        let open_for = config.open_for();
        let start = Instant::now();
        let mut now = start;
        let mut core = BreakerCore::new(config, now);
        let mut held = Vec::new();
        let mut opened_at = None;
        for op in ops {
            let before = core.state();
            let transition = match op {
                Op::Acquire => {
                    let (result, transition) = core.acquire_reporting(now);
                    if before == State::Open && result.is_ok() {
                        let opened: Instant = opened_at.unwrap();
                        prop_assert!(now - opened >= open_for, "admitted before the open period ended");
                    }
                    if let Ok(p) = result { held.push(p); }
                    transition
                }
                Op::Record(i, outcome, latency_ms) if !held.is_empty() => {
                    let permit = held.swap_remove(i % held.len());
                    let t = core.record(permit, outcome, Duration::from_millis(latency_ms), now);
                    if !outcome.kind.counts_for_breaker() && !outcome.is_success() {
                        prop_assert_eq!(t, None);
                    }
                    if outcome.kind.counts_for_breaker() {
                        prop_assert_ne!(t.map(|t| t.to), Some(State::Closed));
                    }
                    t
                }
                Op::Release(i) if !held.is_empty() => {
                    core.release(held.swap_remove(i % held.len()));
                    None
                }
                Op::Advance(ms) => { now += Duration::from_millis(ms); None }
                _ => None,
            };
            if let Some(Transition { from, to }) = transition {
                prop_assert_eq!(from, before);
                let allowed = matches!(
                    (from, to),
                    (State::Closed, State::Open) | (State::Open, State::HalfOpen)
                        | (State::HalfOpen, State::Open) | (State::HalfOpen, State::Closed)
                );
                prop_assert!(allowed, "{:?} -> {:?}", from, to);
                if to == State::Open { opened_at = Some(now); }
            }
            prop_assert_eq!(core.state(), transition.map_or(before, |t| t.to));
            if core.state() == State::HalfOpen {
                let mut extra = 0;
                let mut trial = core.clone();
                while trial.acquire(now).is_ok() { extra += 1; prop_assert!(extra <= probes); }
            }
        }
    }

    /// With every counted trigger as sensitive as it gets, outcomes the breaker does not count
    /// never move it.
    #[test]
    fn uncounted_outcomes_never_move_the_breaker(
        kinds in proptest::collection::vec(prop_oneof![
            Just(OutcomeKind::Fatal),
            Just(OutcomeKind::Throttled(ThrottleScope::Requests)),
            Just(OutcomeKind::Throttled(ThrottleScope::Tokens)),
            Just(OutcomeKind::Throttled(ThrottleScope::Capacity)),
            Just(OutcomeKind::Throttled(ThrottleScope::Unknown)),
        ], 1..300),
    ) {
        let config = BreakerConfig::builder()
            .consecutive_failures(1).failure_rate(0.01).window(Window::Count(1)).minimum_calls(1)
            .slow_call(MS, 0.01)
            .build().unwrap();
        let now = Instant::now();
        let mut core = BreakerCore::new(config, now);
        for kind in kinds {
            let p = core.acquire(now).unwrap();
            prop_assert_eq!(core.record(p, Outcome::new(kind), SEC, now), None);
        }
        prop_assert_eq!(core.state(), State::Closed);
    }
}

proptest! {
    /// The time window against a reference model: a call counts while its 1/10-window bucket is
    /// one of the last ten, so a call older than the window never counts and one younger than
    /// nine tenths of it always does. The breaker trips exactly when the reference says so.
    #[test]
    fn time_window_matches_the_reference_model(
        rate in 0.2..1.0f64,
        minimum in 1..8u32,
        events in proptest::collection::vec((0..4_000u64, any::<bool>()), 1..120),
    ) {
        let window = Duration::from_secs(10);
        let width_ms = 1_000u64;
        let config = BreakerConfig::builder()
            .no_consecutive_failures()
            .failure_rate(rate)
            .window(Window::Time(window))
            .minimum_calls(minimum)
            .build()
            .unwrap();
        let start = Instant::now();
        let mut core = BreakerCore::new(config, start);
        let mut at_ms = 0u64;
        let mut seen: Vec<(u64, bool)> = Vec::new();
        for (advance, failure) in events {
            at_ms += advance;
            let now = start + Duration::from_millis(at_ms);
            seen.push((at_ms, failure));
            let outcome = if failure { fail() } else { Outcome::SUCCESS };
            let transition = call(&mut core, outcome, now);

            let current = at_ms / width_ms;
            let counted: Vec<bool> = seen
                .iter()
                .filter(|(t, _)| t / width_ms + 9 >= current)
                .map(|(_, f)| *f)
                .collect();
            for (t, _) in &seen {
                if at_ms - t > window.as_millis() as u64 {
                    prop_assert!(t / width_ms + 9 < current, "a call older than the window counted");
                }
            }
            let calls = counted.len() as u32;
            let failures = counted.iter().filter(|f| **f).count() as u32;
            let expected = calls >= minimum && f64::from(failures) >= rate * f64::from(calls);
            prop_assert_eq!(transition.is_some(), expected, "calls {} failures {}", calls, failures);
            if expected {
                break;
            }
        }
    }
}

#[test]
fn registry_gives_one_breaker_per_key_across_threads() {
    let registry = BreakerRegistry::builder(BreakerConfig::default())
        .build()
        .unwrap();
    let now = Instant::now();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let registry = registry.clone();
            std::thread::spawn(move || {
                for i in 0..200u32 {
                    let breaker = registry.get(&(i % 16), now);
                    if i % 16 == 3 {
                        breaker.trip(now);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(registry.len(), 16);
    assert_eq!(registry.get(&3, now).state(), State::Open);
    assert_eq!(registry.get(&4, now).state(), State::Closed);
}

#[test]
fn open_backoff_lengthens_each_failed_probe_period_and_a_close_resets_it() {
    let config = no_jitter()
        .consecutive_failures(1)
        .open_for(10 * SEC)
        .open_backoff(2.0, 35 * SEC)
        .half_open_probes(1)
        .build()
        .unwrap();
    let mut now = Instant::now();
    let mut core = BreakerCore::new(config, now);
    call(&mut core, fail(), now);
    let mut periods = Vec::new();
    for _ in 0..4 {
        let open = core.acquire(now).unwrap_err().retry_in;
        periods.push(open.as_secs());
        now += open;
        call(&mut core, fail(), now); // the probe fails
    }
    assert_eq!(periods, [10, 20, 35, 35]);
    now += core.acquire(now).unwrap_err().retry_in;
    call(&mut core, Outcome::SUCCESS, now);
    assert_eq!(core.state(), State::Closed);
    call(&mut core, fail(), now);
    assert_eq!(core.acquire(now).unwrap_err().retry_in, 10 * SEC);
    let e = BreakerConfig::builder()
        .open_backoff(0.5, 60 * SEC)
        .build()
        .unwrap_err();
    assert_eq!((e.field(), e.value()), ("open_backoff.multiplier", "0.5"));
    let e = BreakerConfig::builder()
        .open_backoff(2.0, SEC)
        .build()
        .unwrap_err();
    assert_eq!((e.field(), e.value()), ("open_backoff.max", "1s"));
}

/// A late failure (a stream that broke after its `200` was counted as a success) turns one
/// success of the window into a failure: the call stays one call.
#[test]
fn a_late_failure_turns_a_counted_success_and_the_call_stays_one_call() {
    for window in [Window::Count(4), Window::Time(Duration::from_secs(10))] {
        let config = no_jitter()
            .no_consecutive_failures()
            .failure_rate(0.5)
            .window(window)
            .minimum_calls(4)
            .build()
            .unwrap();
        let now = Instant::now();
        let mut core = BreakerCore::new(config, now);
        // F S S S: 1 of 4 failed.
        for outcome in [fail(), Outcome::SUCCESS, Outcome::SUCCESS, Outcome::SUCCESS] {
            call(&mut core, outcome, now);
        }
        assert_eq!(core.state(), State::Closed);
        // A quota throttle or a fatal error after the 200 says nothing about the backend.
        let throttled = Outcome::new(OutcomeKind::Throttled(ThrottleScope::Tokens));
        assert_eq!(core.record_late(throttled, now), None);
        assert_eq!(
            core.record_late(Outcome::new(OutcomeKind::Fatal), now),
            None
        );
        assert_eq!(core.state(), State::Closed);
        // One success turned: 2 of 4 (had the late failure been a fifth call, 2 of 5 < 50 %
        // in a time window, and the count window would have pushed the first F out).
        assert_eq!(
            core.record_late(fail(), now),
            Some(Transition {
                from: State::Closed,
                to: State::Open
            }),
            "{window:?}"
        );
    }
}

#[test]
fn a_late_failure_counts_in_the_consecutive_run_and_reopens_a_half_open_breaker() {
    let config = no_jitter()
        .consecutive_failures(3)
        .no_failure_rate()
        .half_open_probes(2)
        .build()
        .unwrap();
    let now = Instant::now();
    let mut core = BreakerCore::new(config, now);
    // Streams that each fail after their 200: success, then the late failure. The run goes
    // on through the successes they turned.
    call(&mut core, Outcome::SUCCESS, now);
    core.record_late(fail(), now);
    call(&mut core, Outcome::SUCCESS, now);
    core.record_late(fail(), now);
    assert_eq!(core.state(), State::Closed, "a run of 2");
    // A real success in between ends the run: the late failure starts a new one.
    call(&mut core, Outcome::SUCCESS, now);
    call(&mut core, Outcome::SUCCESS, now);
    core.record_late(fail(), now);
    call(&mut core, Outcome::SUCCESS, now);
    core.record_late(fail(), now);
    assert_eq!(
        core.state(),
        State::Closed,
        "a run of 2 after the real success"
    );
    // Two streams in flight together: both 200s, then both failures. The second 200 ended an
    // empty run, so the pair starts a run of its own (the documented approximation).
    call(&mut core, Outcome::SUCCESS, now);
    call(&mut core, Outcome::SUCCESS, now);
    core.record_late(fail(), now);
    core.record_late(fail(), now);
    assert_eq!(core.state(), State::Closed, "a run of 2");
    call(&mut core, Outcome::SUCCESS, now);
    core.record_late(fail(), now);
    assert_eq!(core.state(), State::Open, "a run of 3");
    // Open: a late failure changes nothing.
    assert_eq!(core.record_late(fail(), now), None);
    // Half-open: a probe counted as a success that fails late reopens the breaker.
    let later = now + Duration::from_secs(31);
    call(&mut core, Outcome::SUCCESS, later);
    assert_eq!(core.state(), State::HalfOpen);
    assert_eq!(
        core.record_late(fail(), later),
        Some(Transition {
            from: State::HalfOpen,
            to: State::Open
        })
    );
}
