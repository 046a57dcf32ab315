//! Property tests of the quota core: thousands of random schedules of reserve, confirm,
//! settle, cancel and time steps, for both accountings.
//!
//! Invariants:
//! - sliding window: whenever a call is admitted, the calls admitted in the window of time up
//!   to it (itself included), each counted at its real spend if settled by then and at its
//!   estimate otherwise, never exceed the limit — the check a provider with fixed windows of
//!   any phase makes;
//! - token bucket: the units (and requests) admitted in any window, net of refunds, never
//!   exceed `limit + max(burst credit, largest single cost)`;
//! - every reservation ends exactly once (settle consumes it; a confirm that rejects spends it;
//!   the rest are cancelled), and the core's count of waiting calls always equals the test's;
//! - once everything is settled or cancelled and time has passed, every key is back at rest:
//!   cancellation leaks nothing.
//!
//! Schedules also throttle calls (with and without `Retry-After`) and report servers'
//! remaining budgets, with learning on or off: learning only ever lowers what is admitted.

use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;
use tower_headroom::admission::{
    Ask, Cost, Grant, Learning, Limit, Priority, Quota, Remaining, Reservation, Tenant, Usage,
};
use tower_headroom::{Deadline, Outcome, ThrottleScope};

#[derive(Clone, Debug)]
struct Config {
    sliding: bool,
    window_ms: u64,
    requests: u64,
    units: u64,
    burst_ms: u64,
    reserve: f64,
    shares: Option<Vec<u64>>,
    max_queue: u32,
    learning: bool,
}

#[derive(Clone, Debug)]
enum Op {
    Reserve {
        key: u8,
        requests: u64,
        units: u64,
        batch: bool,
        tenant: Option<u16>,
        deadline_ms: u64,
    },
    Step(u64),
    Settle {
        pick: usize,
        percent: u64,
    },
    CancelWaiting(usize),
    CancelInFlight(usize),
    /// Finish an in-flight call with a throttle (0 requests, 1 tokens, 2 unknown) or a
    /// success carrying the server's remaining tokens.
    Learn {
        pick: usize,
        throttle: Option<u8>,
        retry_after_ms: Option<u64>,
        remaining: Option<u64>,
    },
}

fn config() -> impl Strategy<Value = Config> {
    (
        prop_oneof![Just(1_000u64), Just(60_000u64), 10u64..5_000],
        1u64..200,
        10u64..100_000,
        prop_oneof![Just(0u64), 0u64..120_000],
        prop_oneof![Just(0.0), 0.0f64..=1.0],
        proptest::option::of(proptest::collection::vec(1u64..5, 1..4)),
        1u32..40,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(
                window_ms,
                requests,
                units,
                burst_ms,
                reserve,
                shares,
                max_queue,
                learning,
                sliding,
            )| Config {
                sliding,
                window_ms,
                requests,
                units,
                burst_ms,
                reserve,
                shares,
                max_queue,
                learning,
            },
        )
}

fn op(cfg_units: u64) -> impl Strategy<Value = Op> {
    let max_units = cfg_units.saturating_mul(2).max(2);
    prop_oneof![
        4 => (0u8..2, 0u64..3, 0..max_units, any::<bool>(), proptest::option::of(0u16..4), 0u64..200_000)
            .prop_map(|(key, requests, units, batch, tenant, deadline_ms)| Op::Reserve {
                key, requests, units, batch, tenant, deadline_ms
            }),
        3 => prop_oneof![0u64..50, 0u64..5_000, 0u64..120_000].prop_map(Op::Step),
        2 => (any::<usize>(), 0u64..150).prop_map(|(pick, percent)| Op::Settle { pick, percent }),
        1 => any::<usize>().prop_map(Op::CancelWaiting),
        1 => any::<usize>().prop_map(Op::CancelInFlight),
        1 => (
            any::<usize>(),
            proptest::option::of(0u8..3),
            proptest::option::of(0u64..10_000),
            proptest::option::of(0u64..1_000_000),
        )
            .prop_map(|(pick, throttle, retry_after_ms, remaining)| Op::Learn {
                pick,
                throttle,
                retry_after_ms,
                remaining,
            }),
    ]
}

fn schedule() -> impl Strategy<Value = (Config, Vec<Op>)> {
    config().prop_flat_map(|cfg| {
        let units = cfg.units;
        (Just(cfg), proptest::collection::vec(op(units), 1..160))
    })
}

struct Waiting {
    key: u8,
    r: Reservation,
    at: Instant,
    cost: Cost,
}

struct InFlight {
    key: u8,
    r: Reservation,
    cost: Cost,
    /// Index of the call's record in `calls`.
    call: usize,
}

/// (time in ns since t0, key, requests delta, units delta)
type Event = (u64, u8, i128, i128);

/// One admitted call, for the sliding-window check: when it was admitted (time, and its
/// place in the order of operations), its estimate, and at which operation it settled at what
/// spend (units; requests always count).
#[derive(Clone, Copy, Debug)]
struct Admitted {
    key: u8,
    at: u64,
    seq: usize,
    cost: Cost,
    settled: Option<(usize, u64)>,
}

/// What the window up to call `c`'s admission holds for its key in dimension `dim`: each call
/// admitted in `(c.at - w, c.at]` up to `c` itself, at its settled spend if it settled before
/// `c` was admitted, else at its estimate.
fn window_spend(calls: &[Admitted], c: &Admitted, dim: usize, w: u64) -> u128 {
    calls
        .iter()
        .filter(|o| o.key == c.key && o.seq <= c.seq && o.at <= c.at && o.at + w > c.at)
        .map(|o| {
            if dim == 0 {
                u128::from(o.cost.requests)
            } else {
                match o.settled {
                    Some((seq, spent)) if seq < c.seq => u128::from(spent),
                    _ => u128::from(o.cost.units),
                }
            }
        })
        .sum()
}

fn run(cfg: &Config, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut b = Limit::per_window(Duration::from_millis(cfg.window_ms))
        .requests(cfg.requests)
        .units(cfg.units)
        .interactive_reserve(cfg.reserve)
        .max_queue(cfg.max_queue)
        .learning(if cfg.learning {
            Learning::SHARED
        } else {
            Learning::OFF
        });
    if !cfg.sliding {
        b = b.burst(Duration::from_millis(cfg.burst_ms));
    }
    if let Some(w) = &cfg.shares {
        b = b.shares(w);
    }
    let limit = b.build().unwrap();
    let quota: Quota<u8> = Quota::new(limit);
    let t0 = Instant::now();
    let mut now = t0;
    let mut waiting: Vec<Waiting> = Vec::new();
    let mut in_flight: Vec<InFlight> = Vec::new();
    let mut events: Vec<Event> = Vec::new();
    let mut calls: Vec<Admitted> = Vec::new();
    let mut largest = Cost::default();
    let ns = |t: Instant| (t - t0).as_nanos() as u64;

    // Admissions and settles are numbered in the order they happen.
    let mut seq = 0usize;
    let admit = |events: &mut Vec<Event>,
                 calls: &mut Vec<Admitted>,
                 seq: &mut usize,
                 t: Instant,
                 key: u8,
                 cost: Cost| {
        events.push((ns(t), key, cost.requests.into(), cost.units.into()));
        *seq += 1;
        calls.push(Admitted {
            key,
            at: ns(t),
            seq: *seq,
            cost,
            settled: None,
        });
        calls.len() - 1
    };

    for op in ops {
        match op {
            Op::Reserve {
                key,
                requests,
                units,
                batch,
                tenant,
                deadline_ms,
            } => {
                let cost = Cost::new(*requests, *units);
                let deadline = Deadline::from_now(now, Duration::from_millis(*deadline_ms));
                let mut ask = Ask::new(cost).deadline(deadline);
                if *batch {
                    ask = ask.priority(Priority::Batch);
                }
                if let Some(t) = tenant {
                    ask = ask.tenant(Tenant(*t));
                }
                if let Ok(r) = quota.reserve_ask(key, &ask, now) {
                    largest.requests = largest.requests.max(cost.requests);
                    largest.units = largest.units.max(cost.units);
                    match r.grant() {
                        Grant::Now => {
                            let call = admit(&mut events, &mut calls, &mut seq, now, *key, cost);
                            in_flight.push(InFlight {
                                key: *key,
                                r,
                                cost,
                                call,
                            });
                        }
                        Grant::At(at) => {
                            prop_assert!(at > now);
                            waiting.push(Waiting {
                                key: *key,
                                r,
                                at,
                                cost,
                            });
                        }
                    }
                }
            }
            Op::Step(ms) => {
                let target = now + Duration::from_millis(*ms);
                // Wake every waiter exactly at its instant, in time order, as timers would.
                loop {
                    let next = waiting
                        .iter()
                        .map(|w| w.at)
                        .filter(|at| *at <= target)
                        .min();
                    let Some(at) = next else { break };
                    now = at;
                    let mut i = 0;
                    while i < waiting.len() {
                        if waiting[i].at > now {
                            i += 1;
                            continue;
                        }
                        let mut w = waiting.swap_remove(i);
                        match w.r.confirm(now) {
                            Ok(Grant::Now) => {
                                let call =
                                    admit(&mut events, &mut calls, &mut seq, now, w.key, w.cost);
                                in_flight.push(InFlight {
                                    key: w.key,
                                    r: w.r,
                                    cost: w.cost,
                                    call,
                                });
                            }
                            Ok(Grant::At(later)) => {
                                prop_assert!(later > now);
                                w.at = later;
                                waiting.push(w);
                            }
                            Err(_) => {} // spent: holds nothing
                        }
                    }
                }
                now = target;
            }
            Op::Settle { pick, percent } => {
                if !in_flight.is_empty() {
                    let f = in_flight.swap_remove(pick % in_flight.len());
                    let actual = (u128::from(f.cost.units) * u128::from(*percent) / 100) as u64;
                    if actual < f.cost.units {
                        events.push((ns(now), f.key, 0, -i128::from(f.cost.units - actual)));
                    }
                    seq += 1;
                    calls[f.call].settled = Some((seq, actual));
                    f.r.settle(Usage::units(actual), now);
                }
            }
            Op::CancelWaiting(pick) => {
                if !waiting.is_empty() {
                    let w = waiting.swap_remove(pick % waiting.len());
                    w.r.cancel(now);
                }
            }
            Op::Learn {
                pick,
                throttle,
                retry_after_ms,
                remaining,
            } => {
                if !in_flight.is_empty() {
                    let f = in_flight.swap_remove(pick % in_flight.len());
                    let outcome = match throttle {
                        Some(s) => Outcome::throttled(match s {
                            0 => ThrottleScope::Requests,
                            1 => ThrottleScope::Tokens,
                            _ => ThrottleScope::Unknown,
                        })
                        .with_retry_after_opt(retry_after_ms.map(Duration::from_millis)),
                        None => Outcome::SUCCESS,
                    };
                    let usage = Usage::UNKNOWN.with_remaining(Remaining {
                        units: *remaining,
                        ..Remaining::UNKNOWN
                    });
                    seq += 1;
                    calls[f.call].settled = Some((seq, f.cost.units));
                    f.r.finish(&outcome, usage, now);
                }
            }
            Op::CancelInFlight(pick) => {
                if !in_flight.is_empty() {
                    let f = in_flight.swap_remove(pick % in_flight.len());
                    f.r.cancel(now);
                }
            }
        }
        for key in 0..2u8 {
            let core = quota.stats(&key, now).map_or(0, |s| s.waiting);
            let ours = waiting.iter().filter(|w| w.key == key).count() as u32;
            prop_assert_eq!(core, ours, "waiting count of key {}", key);
        }
    }

    // The sliding window's invariant, at every admission, per key and dimension.
    if cfg.sliding {
        let w = cfg.window_ms * 1_000_000;
        for c in &calls {
            for (dim, limit) in [(0, cfg.requests), (1, cfg.units)] {
                let held = window_spend(&calls, c, dim, w);
                prop_assert!(
                    held <= u128::from(limit),
                    "key {} dim {dim}: {held} in the window up to {} ns (limit {limit})",
                    c.key,
                    c.at
                );
            }
        }
    }

    // The bucket's window invariant, per key and dimension.
    let w = i128::from(cfg.window_ms) * 1_000_000;
    let burst = i128::from(cfg.burst_ms) * 1_000_000;
    events.sort_by_key(|e| e.0);
    for key in (0..2u8).filter(|_| !cfg.sliding) {
        let ev: Vec<_> = events.iter().filter(|e| e.1 == key).collect();
        for (dim, limit, n_max) in [
            (0, cfg.requests, largest.requests),
            (1, cfg.units, largest.units),
        ] {
            let limit = i128::from(limit);
            // Scaled by the window: sum * W <= L * W + max(burst * L, n_max * W).
            let bound = limit * w + (burst * limit).max(i128::from(n_max) * w);
            for (i, start) in ev.iter().enumerate() {
                let delta = |e: &Event| if dim == 0 { e.2 } else { e.3 };
                if delta(start) <= 0 {
                    continue;
                }
                let end = i128::from(start.0) + w;
                let sum: i128 = ev[i..]
                    .iter()
                    .take_while(|e| i128::from(e.0) < end)
                    .map(|e| delta(e))
                    .sum();
                prop_assert!(
                    sum * w <= bound,
                    "key {key} dim {dim}: {sum} admitted in the window from {} ns (limit {limit})",
                    start.0
                );
            }
        }
    }

    // Everything ends; after long enough every key is at rest, nothing waiting.
    for w in waiting.drain(..) {
        w.r.cancel(now);
    }
    for f in in_flight.drain(..) {
        f.r.settle(Usage::UNKNOWN, now);
    }
    let later = now + Duration::from_secs(3_600 * 24 * 30);
    for key in 0..2u8 {
        if let Some(s) = quota.stats(&key, later) {
            prop_assert_eq!(s.waiting, 0);
            prop_assert!(s.at_rest, "key {} leaked quota", key);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    #[test]
    fn schedules_keep_the_window_bound_and_leak_nothing((cfg, ops) in schedule()) {
        run(&cfg, &ops)?;
    }
}
