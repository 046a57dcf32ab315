//! The fast path against the general one: from the same state, [`KeyState::reserve_fast`]
//! must either decline and leave the state exactly as it was, or admit and leave the state and
//! the ticket exactly as [`KeyState::reserve`] does. Random operations (reserves of every kind,
//! settles above, at and below the estimate, throttles, cancels, waits) on every kind of limit
//! drive the key through holds, probes, queues, learned limits and long windows, and the two
//! are compared, field by field (their `Debug` forms), at every reserve.

use std::time::Duration;

use super::{Admitted, KeyState, Ticket};
use crate::admission::cost::{Cost, Usage};
use crate::admission::limit::{Limit, Priority, Tenant};
use crate::admission::long::Window;
use crate::admission::quota::Ask;
use crate::{Outcome, ThrottleScope};

const SEC: u64 = 1_000_000_000;

/// A small deterministic generator (xorshift64*), so that a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn limits() -> Vec<(&'static str, Limit)> {
    let w = || Limit::per_second().requests(40).units(4_000);
    vec![
        ("sliding window", w().build().unwrap()),
        (
            "units only",
            Limit::per_second().units(4_000).build().unwrap(),
        ),
        (
            "token bucket",
            w().burst(Duration::from_millis(500)).build().unwrap(),
        ),
        (
            "sliding window + long window",
            w().also(
                Window::new(Duration::from_secs(10))
                    .requests(200)
                    .units(20_000),
            )
            .build()
            .unwrap(),
        ),
        (
            "token bucket + long window",
            w().burst(Duration::from_secs(1))
                .also(Window::new(Duration::from_secs(10)).units(20_000))
                .build()
                .unwrap(),
        ),
        (
            "sliding window + shares",
            w().shares(&[3, 1]).build().unwrap(),
        ),
        (
            "token bucket + shares",
            w().burst(Duration::from_secs(1))
                .shares(&[1, 1])
                .build()
                .unwrap(),
        ),
        (
            "sliding window, no room for a queue",
            w().max_queue(1).build().unwrap(),
        ),
    ]
}

fn random_ask(rng: &mut Rng) -> Ask {
    let units = match rng.below(8) {
        0 => 0,
        1 => 4_000,
        2 => 5_000,
        _ => 1 + rng.below(900),
    };
    let mut ask = Ask::new(Cost::new(1, units));
    if rng.below(5) == 0 {
        ask = ask.priority(Priority::Batch);
    }
    if rng.below(3) == 0 {
        ask = ask.tenant(Tenant(rng.below(3) as u16));
    }
    ask
}

fn random_outcome(rng: &mut Rng) -> Outcome {
    match rng.below(40) {
        0 => Outcome::throttled(ThrottleScope::Tokens),
        1 => Outcome::throttled(ThrottleScope::Requests)
            .with_retry_after(Duration::from_millis(rng.below(300))),
        2 if rng.below(50) == 0 => Outcome::throttled(ThrottleScope::Daily),
        _ => Outcome::SUCCESS,
    }
}

fn random_usage(rng: &mut Rng, t: &Ticket) -> Usage {
    match rng.below(4) {
        0 => Usage::units(t.cost.units),
        1 => Usage::units(t.cost.units / 2),
        2 => Usage::units(t.cost.units + rng.below(2_000)),
        _ => Usage::UNKNOWN,
    }
}

/// Reserves `ask` both ways from `s`; checks they agree; leaves `s` as `reserve` leaves it.
fn reserve_both(
    l: &Limit,
    s: &mut KeyState,
    ask: &Ask,
    deadline: u64,
    now: u64,
    fast_taken: &mut u32,
    declined: &mut u32,
) -> Option<Ticket> {
    let before = format!("{s:?}");
    let mut general = s.clone();
    let expected = general.reserve(l, ask, deadline, now);
    match s.reserve_fast(l, ask, now) {
        None => {
            assert_eq!(
                format!("{s:?}"),
                before,
                "a declined fast path changed the state"
            );
            *declined += 1;
            *s = general;
            expected.ok()
        }
        Some(Admitted { at, long_at }) => {
            *fast_taken += 1;
            let got = Admitted { at, long_at }.ticket(ask, deadline);
            let expected = expected.expect("the fast path admitted what reserve refuses");
            assert_eq!(
                format!("{got:?}"),
                format!("{expected:?}"),
                "tickets differ"
            );
            assert_eq!(format!("{s:?}"), format!("{general:?}"), "states differ");
            Some(got)
        }
    }
}

#[test]
fn the_fast_path_admits_exactly_as_reserve_or_declines_without_a_trace() {
    for (name, l) in limits() {
        let mut fast_taken = 0;
        let mut declined = 0;
        for seed in 1..=6u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ name.len() as u64);
            let mut s = KeyState::new(&l, 0);
            let mut now = 0u64;
            let mut live: Vec<Ticket> = Vec::new();
            for _ in 0..1_500 {
                // Time moves by a little (within a slot), by a slot or two, or by a window.
                now += match rng.below(10) {
                    0 => SEC,
                    1..=4 => rng.below(SEC / 16),
                    _ => rng.below(SEC / 200),
                };
                // Sometimes a caller on another thread passes a slightly older instant.
                let at = now.saturating_sub(rng.below(3) * 1_000);
                // Waiting calls whose instant has come confirm (most of the time).
                if rng.below(4) > 0
                    && let Some(i) = live.iter().position(|t| t.waiting && t.admit_at <= at)
                {
                    let mut t = live.swap_remove(i);
                    match s.confirm(&l, &mut t, at) {
                        Ok(_) => live.push(t),
                        Err(_) => assert!(!t.waiting, "a refused call left its queue"),
                    }
                }
                match rng.below(10) {
                    0..=3 => {
                        let ask = random_ask(&mut rng);
                        let deadline = at + rng.below(2 * SEC);
                        if let Some(t) = reserve_both(
                            &l,
                            &mut s,
                            &ask,
                            deadline,
                            at,
                            &mut fast_taken,
                            &mut declined,
                        ) {
                            live.push(t);
                        }
                    }
                    4..=7 if !live.is_empty() => {
                        let i = rng.below(live.len() as u64) as usize;
                        let mut t = live.swap_remove(i);
                        if t.waiting && rng.below(2) == 0 {
                            if let Ok(Some(_)) = s.confirm(&l, &mut t, at) {
                                live.push(t);
                            }
                            continue;
                        }
                        let outcome = random_outcome(&mut rng);
                        let usage = random_usage(&mut rng, &t);
                        s.settle(&l, &mut t, &outcome, &usage, at);
                    }
                    8 if !live.is_empty() => {
                        let i = rng.below(live.len() as u64) as usize;
                        let mut t = live.swap_remove(i);
                        if rng.below(2) == 0 {
                            s.cancel(&l, &mut t, at);
                        } else {
                            s.release_unsent(&l, &mut t, at);
                        }
                    }
                    _ => {}
                }
            }
        }
        // The walk must exercise the fast path (shares keep it out of play) and its
        // fallbacks.
        let shares = l.shares.is_some();
        assert!(
            shares || fast_taken > 300,
            "{name}: fast path taken {fast_taken} times"
        );
        assert!(
            declined > 300,
            "{name}: fast path declined {declined} times"
        );
    }
}
