//! The Redis store keeps the budget the way the in-process core does: random sequences of
//! takes, settles (real usage, throttles with and without `Retry-After`) and time steps, driven
//! through both — the in-process `Quota` and the Redis store's shared state on a real
//! `redis-server` — at the same instants, find the same decisions: admitted now, or the same
//! wait; and the same learned limit and spend after every take.
//!
//! Both run on the same clock here: the test passes its instants to the script (whole
//! milliseconds from the quota's start) instead of the server's `TIME`. Windows are chosen so
//! that a time slot (a 256th of the window) is a whole number of microseconds, the script's
//! unit, and the slot boundaries of both fall on the same instants. Decisions must then agree
//! exactly. Waits agree to the microsecond where both count them from slot boundaries, holds
//! and `Retry-After`s; a wait for more than the window holds is an estimate in both, and
//! agrees within one time slot.
//!
//! Some limits have a long window as well (3 to 24 windows long, 96 slots of whole
//! microseconds, as a day window is to a minute): both stores check it first, refuse a call it
//! cannot hold naming the window (`QuotaExhausted`), charge it, settle it in the grant's slot,
//! and spend it on a daily throttle (which, on a limit without a long window, holds the key
//! and then lets one call probe).
#![cfg(feature = "redis")]

use std::time::Duration;

use proptest::prelude::*;
use tower_headroom::admission::redis::{RedisStore, TestAnswer, TestOp};
use tower_headroom::admission::{
    Ask, Cost, Grant, Learning, Limit, Quota, RejectReason, Reservation, Usage, Window,
};
use tower_headroom::{Deadline, Outcome, ThrottleScope};

#[path = "support/redis.rs"]
mod redis_server;
use redis_server::RedisServer;

#[derive(Clone, Debug)]
struct Config {
    window_ms: u64,
    requests: u64,
    units: u64,
    learning: bool,
    /// A long window: (windows long, units, requests).
    long: Option<(u64, u64, Option<u64>)>,
}

#[derive(Clone, Debug)]
enum Op {
    Take {
        requests: u64,
        units_pct: u64,
    },
    Settle {
        pick: usize,
        percent: u64,
        throttle: Option<u8>,
        retry_after_ms: Option<u64>,
    },
    Step(u64),
}

fn config() -> impl Strategy<Value = Config> {
    (
        prop_oneof![Just(60_000u64), Just(12_800u64), Just(2_560u64)],
        1u64..40,
        100u64..10_000,
        any::<bool>(),
        proptest::option::weighted(
            0.5,
            (
                prop_oneof![Just(3u64), Just(6u64), Just(24u64)],
                0u64..1_000,
                proptest::option::of(0u64..1_000),
            ),
        ),
    )
        .prop_map(|(window_ms, requests, units, learning, long)| Config {
            window_ms,
            requests,
            units,
            learning,
            // Each long limit between the window's own and `k` times it.
            long: long.map(|(k, u, r)| {
                (
                    k,
                    units + units * (k - 1) * u / 1_000,
                    r.map(|r| requests + requests * (k - 1) * r / 1_000),
                )
            }),
        })
}

fn op(window_ms: u64) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..3, 0u64..=60).prop_map(|(requests, units_pct)| Op::Take { requests, units_pct }),
        3 => (
            any::<usize>(),
            0u64..150,
            proptest::option::weighted(0.3, 0u8..4),
            proptest::option::weighted(0.2, 1u64..5_000),
        )
            .prop_map(|(pick, percent, throttle, retry_after_ms)| Op::Settle {
                pick,
                percent,
                throttle,
                retry_after_ms,
            }),
        3 => prop_oneof![0u64..100, 0u64..window_ms, 0u64..2 * window_ms].prop_map(Op::Step),
    ]
}

fn schedule() -> impl Strategy<Value = (Config, Vec<Op>)> {
    config().prop_flat_map(|cfg| {
        let w = cfg.window_ms;
        (Just(cfg), proptest::collection::vec(op(w), 1..60))
    })
}

/// A call admitted by both: the core's reservation, the script's grant time and probe flag.
struct Admitted {
    reservation: Reservation,
    cost: Cost,
    at_us: u64,
    probe: u8,
}

async fn run(cfg: Config, ops: Vec<Op>, case: u64, url: &str) -> Result<(), TestCaseError> {
    let mut builder = Limit::per_window(Duration::from_millis(cfg.window_ms))
        .requests(cfg.requests)
        .units(cfg.units)
        .learning(if cfg.learning {
            Learning::SHARED
        } else {
            Learning::OFF
        });
    if let Some((k, units, requests)) = cfg.long {
        let mut w = Window::new(Duration::from_millis(cfg.window_ms * k)).units(units);
        if let Some(r) = requests {
            w = w.requests(r);
        }
        builder = builder.also(w);
    }
    let limit = builder.build().unwrap();
    let quota: Quota<&'static str> = Quota::new(limit.clone());
    let store: RedisStore<&'static str> =
        RedisStore::builder(format!("differential-{case}"), limit)
            .lease(0.0)
            // Semantics, not latency: a loaded machine (CI runs many test threads) must not
            // turn a slow answer into a store error.
            .op_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .expect("connect to the test's redis-server");
    const KEY: &str = "model";
    let t0 = quota.epoch();
    // Instants of the core and microseconds of the script, from the same start.
    let mut now_ms = 0u64;
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut flight: Vec<Admitted> = Vec::new();
    // Slot length in microseconds: waits estimated beyond the window agree within it.
    let slot_us = cfg.window_ms * 1_000 / 256;

    for op in ops {
        match op {
            Op::Step(ms) => now_ms += ms,
            Op::Take {
                requests,
                units_pct,
            } => {
                // Nothing above the limit: the store refuses that before asking the script.
                let cost = Cost::new(requests.min(cfg.requests), cfg.units * units_pct / 100);
                let now = at(now_ms);
                // Nothing waits: admitted now, or rejected with the wait it would need.
                let ask = Ask::new(cost).deadline(Deadline::at(now));
                let core = quota.reserve_ask(&KEY, &ask, now);
                let redis = store
                    .test_op(&KEY, TestOp::Take(cost), now_ms * 1_000)
                    .await
                    .unwrap();
                match (core, redis) {
                    (Ok(reservation), TestAnswer::Granted { probe, at_us }) => {
                        prop_assert_eq!(reservation.grant(), Grant::Now);
                        flight.push(Admitted {
                            reservation,
                            cost,
                            at_us,
                            probe,
                        });
                    }
                    (Err(rejected), TestAnswer::Exhausted { us, window }) => {
                        prop_assert_eq!(rejected.reason, RejectReason::QuotaExhausted { window });
                        let core_us = rejected.retry_in.unwrap().as_micros() as u64;
                        prop_assert_eq!(core_us, us, "at {} ms, bound by {:?}", now_ms, window);
                    }
                    (Err(rejected), TestAnswer::Wait(us)) => {
                        prop_assert_eq!(rejected.reason, RejectReason::Deadline);
                        let core_us = rejected.retry_in.unwrap().as_micros() as u64;
                        prop_assert!(
                            core_us.abs_diff(us) <= slot_us,
                            "at {} ms: the core waits {} us, Redis {} us",
                            now_ms,
                            core_us,
                            us
                        );
                    }
                    (core, redis) => {
                        return Err(TestCaseError::fail(format!(
                            "at {now_ms} ms, {cost:?}: the core answered {:?}, Redis {redis:?}",
                            core.map(|r| r.grant())
                        )));
                    }
                }
                // The learned limits and the spend agree after every take.
                let stats = quota.stats(&KEY, now).unwrap();
                let TestAnswer::State([requests, units]) = store
                    .test_op(&KEY, TestOp::State, now_ms * 1_000)
                    .await
                    .unwrap()
                else {
                    panic!("state answers a state")
                };
                let core = (
                    stats.requests_limit,
                    stats.requests_spent,
                    stats.units_limit,
                    stats.units_spent,
                );
                let redis = (
                    requests.map(|(l, _)| l),
                    requests.map(|(_, s)| s),
                    units.map(|(l, _)| l),
                    units.map(|(_, s)| s),
                );
                prop_assert_eq!(
                    core,
                    redis,
                    "at {} ms, (requests limit, spent, units limit, spent)",
                    now_ms
                );
            }
            Op::Settle {
                pick,
                percent,
                throttle,
                retry_after_ms,
            } => {
                if flight.is_empty() {
                    continue;
                }
                let call = flight.swap_remove(pick % flight.len());
                let now = at(now_ms);
                let outcome = match throttle {
                    None => Outcome::SUCCESS,
                    Some(scope) => Outcome::throttled(match scope {
                        0 => ThrottleScope::Requests,
                        1 => ThrottleScope::Tokens,
                        2 => ThrottleScope::Unknown,
                        _ => ThrottleScope::Daily,
                    })
                    .with_retry_after_opt(retry_after_ms.map(Duration::from_millis)),
                };
                // A throttled call spent nothing, as the adapters settle it.
                let spent = if outcome.is_success() {
                    call.cost.units * percent / 100
                } else {
                    0
                };
                call.reservation.finish(&outcome, Usage::units(spent), now);
                let units = i64::try_from(call.cost.units).unwrap() - i64::try_from(spent).unwrap();
                store
                    .test_op(
                        &KEY,
                        TestOp::Give {
                            units,
                            at_us: call.at_us,
                        },
                        now_ms * 1_000,
                    )
                    .await
                    .unwrap();
                store
                    .test_op(
                        &KEY,
                        TestOp::Learn {
                            outcome,
                            probe: call.probe,
                            at_us: call.at_us,
                        },
                        now_ms * 1_000,
                    )
                    .await
                    .unwrap();
            }
        }
    }
    for call in flight {
        call.reservation.settle(Usage::UNKNOWN, at(now_ms));
    }
    Ok(())
}

/// The 200 random schedules share one server, owned by the test (a server in a `static` would
/// never be dropped, and so never stopped, when the test binary exits).
#[test]
fn the_redis_store_decides_as_the_core_does() {
    let server = RedisServer::start();
    let url = server.url();
    let config = ProptestConfig {
        // Failing cases are saved beside this file, as `proptest!` saves them.
        source_file: Some(file!()),
        ..ProptestConfig::with_cases(200)
    };
    let case = std::cell::Cell::new(0);
    let result = proptest::test_runner::TestRunner::new(config).run(&schedule(), |(cfg, ops)| {
        case.set(case.get() + 1);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run(cfg, ops, case.get(), &url))
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}

/// A token bucket starts where the provider's starts, on the server as in process: with one
/// window of credit by default (DynamoDB's second), with the whole burst only when told, and
/// more credit only from capacity left unused.
#[tokio::test]
async fn a_bucket_starts_with_its_initial_credit_on_the_server_as_in_process() {
    let server = RedisServer::start();
    let url = server.url();
    async fn decide(
        limit: Limit,
        name: &str,
        steps: &[(u64, u64)],
        url: &str,
    ) -> Vec<(bool, bool)> {
        let quota: Quota<&'static str> = Quota::new(limit.clone());
        let store: RedisStore<&'static str> = RedisStore::builder(name.to_owned(), limit)
            .lease(0.0)
            .op_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .expect("connect to the test's redis-server");
        let t0 = quota.epoch();
        let mut seen = Vec::new();
        for &(ms, units) in steps {
            let now = t0 + Duration::from_millis(ms);
            let cost = Cost::units(units);
            let ask = Ask::new(cost).deadline(Deadline::at(now));
            let core = quota.reserve_ask(&"table", &ask, now);
            let redis = store
                .test_op(&"table", TestOp::Take(cost), ms * 1_000)
                .await
                .unwrap();
            let granted = matches!(redis, TestAnswer::Granted { .. });
            if let Ok(r) = core {
                r.settle(Usage::units(units), now);
                seen.push((true, granted));
            } else {
                seen.push((false, granted));
            }
        }
        seen
    }
    let bucket = || {
        Limit::per_second()
            .units(100)
            .burst(Duration::from_secs(300))
            .learning(Learning::OFF)
    };
    // One second of credit: 100 units pass at once, 50 more do not; after 10 s idle, 1,000
    // more have been saved.
    let steps = [(0, 100), (0, 50), (10_000, 1_000), (10_000, 500)];
    let expected = vec![(true, true), (false, false), (true, true), (false, false)];
    let seen = decide(
        bucket().build().unwrap(),
        "bucket-start-default",
        &steps,
        &url,
    )
    .await;
    assert_eq!(seen, expected);
    // Told the bucket is full: 20,000 units at once.
    let full = bucket()
        .initial_credit(Duration::from_secs(300))
        .build()
        .unwrap();
    let seen = decide(full, "bucket-start-full", &[(0, 20_000), (0, 10_001)], &url).await;
    assert_eq!(seen, vec![(true, true), (false, false)]);
}
