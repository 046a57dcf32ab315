//! Property tests of the backoff rules: bounds, server delays, window alignment, determinism.

use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;
use tower_headroom::retry::{Backoff, Jitter, QuotaWindow, Schedule, ScheduleClass, StopReason};
use tower_headroom::{Outcome, OutcomeKind, ThrottleScope};

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated),
    ]
}

fn retryable() -> impl Strategy<Value = OutcomeKind> {
    prop_oneof![
        Just(OutcomeKind::Throttled(ThrottleScope::Requests)),
        Just(OutcomeKind::Throttled(ThrottleScope::Tokens)),
        Just(OutcomeKind::Throttled(ThrottleScope::Capacity)),
        Just(OutcomeKind::Throttled(ThrottleScope::Unknown)),
        Just(OutcomeKind::Overloaded),
        Just(OutcomeKind::Unavailable),
        Just(OutcomeKind::Timeout),
        Just(OutcomeKind::Transient),
    ]
}

fn class_of(kind: OutcomeKind) -> ScheduleClass {
    match kind {
        OutcomeKind::Throttled(_) => ScheduleClass::Throttled,
        OutcomeKind::Overloaded => ScheduleClass::Overloaded,
        OutcomeKind::Unavailable => ScheduleClass::Unavailable,
        OutcomeKind::Timeout => ScheduleClass::Timeout,
        _ => ScheduleClass::Transient,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn schedule_delays_stay_within_zero_and_cap(
        base_ms in 1u64..10_000,
        extra_ms in 0u64..600_000,
        jitter in jitter(),
        retry in any::<u32>(),
        previous_ms in any::<u32>(),
        seed in any::<u64>(),
    ) {
        let base = Duration::from_millis(base_ms);
        let cap = base + Duration::from_millis(extra_ms);
        let schedule = Schedule::new(base, cap, jitter).unwrap();
        let mut rng = fastrand::Rng::with_seed(seed);
        let d = schedule.delay(retry, Duration::from_millis(u64::from(previous_ms)), &mut rng);
        prop_assert!(d <= cap, "{d:?} > cap {cap:?}");
        if jitter == Jitter::Decorrelated {
            prop_assert!(d >= base.min(cap));
        }
    }

    #[test]
    fn server_delays_are_never_shortened(
        kind in retryable(),
        asked_ms in 0u64..200_000,
        max_s in 1u64..120,
        percent in 0u32..=100,
        retry in 0u32..20,
        seed in any::<u64>(),
    ) {
        let backoff = Backoff::builder()
            .max_server_delay(Duration::from_secs(max_s))
            .server_jitter(percent)
            .build()
            .unwrap();
        let asked = Duration::from_millis(asked_ms);
        let outcome = Outcome::new(kind).with_retry_after(asked);
        let mut rng = fastrand::Rng::with_seed(seed);
        match backoff.delay(retry, &outcome, Duration::ZERO, Instant::now(), &mut rng) {
            Ok(d) => {
                prop_assert!(asked <= backoff.max_server_delay());
                prop_assert!(d >= asked, "{d:?} < asked {asked:?}");
                prop_assert!(d <= asked + asked * percent / 100);
            }
            Err(reason) => {
                prop_assert_eq!(reason, StopReason::ServerDelayTooLong);
                prop_assert!(asked > backoff.max_server_delay());
            }
        }
    }

    #[test]
    fn quota_throttles_land_early_in_the_next_window(
        length_s in 1u64..300,
        spread_permille in 0u64..=1000,
        offset_ms in 0u64..10_000_000,
        tokens in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let anchor = Instant::now();
        let length = Duration::from_secs(length_s);
        let spread = length * u32::try_from(spread_permille).unwrap() / 1000;
        let window = QuotaWindow::new(length, anchor, spread).unwrap();
        let backoff = Backoff::builder().quota_window_at(window).build().unwrap();
        let scope = if tokens { ThrottleScope::Tokens } else { ThrottleScope::Requests };
        let now = anchor + Duration::from_millis(offset_ms);
        let mut rng = fastrand::Rng::with_seed(seed);
        let d = backoff
            .delay(0, &Outcome::throttled(scope), Duration::ZERO, now, &mut rng)
            .unwrap();
        let retry_at = (now + d - anchor).as_nanos();
        let len = length.as_nanos();
        let current_window = (now - anchor).as_nanos() / len;
        // The retry lands in a later window than the throttle, within `spread` of its start.
        prop_assert_eq!(retry_at / len, current_window + 1);
        prop_assert!(retry_at % len <= spread.as_nanos());
    }

    #[test]
    fn schedules_apply_per_class_without_server_delay(
        kind in retryable(),
        retry in 0u32..30,
        seed in any::<u64>(),
    ) {
        let backoff = Backoff::builder().no_quota_window().build().unwrap();
        let mut rng = fastrand::Rng::with_seed(seed);
        let d = backoff.delay(retry, &Outcome::new(kind), Duration::ZERO, Instant::now(), &mut rng).unwrap();
        prop_assert!(d <= backoff.schedule(class_of(kind)).cap());
    }

    #[test]
    fn same_seed_same_delays(kind in retryable(), seed in any::<u64>()) {
        let backoff = Backoff::builder().no_quota_window().build().unwrap();
        let now = Instant::now();
        let run = |seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            (0..10)
                .map(|n| backoff.delay(n, &Outcome::new(kind), Duration::from_millis(100), now, &mut rng).unwrap())
                .collect::<Vec<_>>()
        };
        prop_assert_eq!(run(seed), run(seed));
    }
}

#[test]
fn fatal_is_never_delayed() {
    let backoff = Backoff::default();
    let mut rng = fastrand::Rng::with_seed(0);
    assert_eq!(
        backoff.delay(0, &Outcome::FATAL, Duration::ZERO, Instant::now(), &mut rng),
        Err(StopReason::NotRetryable)
    );
}
