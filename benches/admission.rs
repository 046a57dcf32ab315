//! `reserve` + `settle` on the success path, single-threaded and with two threads, side by
//! side with `governor`'s `check_n` in the same run, for both accountings: the sliding window
//! (the default) and the token bucket; and the sliding window with a day window beside it
//! (tokens per minute and per day), whose cost over the plain one the ratio table prints.
//!
//! `cargo bench --bench admission`. After criterion's groups, a ratio table measures the same
//! loops again in one go and prints headroom / governor and 2-thread / 1-thread throughput.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use governor::{Quota as GQuota, RateLimiter};
use std::sync::Arc;
use tokio::time::Instant;

use tower_headroom::admission::{
    Ask, Cost, Limit, MemorySlot, Quota, Reservation, Slot as _, Usage, Window,
};

const KEYS: [&str; 2] = ["claude-us-east-1", "claude-us-west-2"];

/// A limit no benchmark loop reaches, with the sliding window (the default).
fn window_quota() -> Quota<&'static str> {
    Quota::new(
        Limit::per_second()
            .requests(1 << 40)
            .units(1 << 40)
            .build()
            .unwrap(),
    )
}

/// The same limit as a token bucket with an hour of burst credit.
fn bucket_quota() -> Quota<&'static str> {
    Quota::new(
        Limit::per_second()
            .requests(1 << 40)
            .units(1 << 40)
            .burst(Duration::from_secs(3600))
            .build()
            .unwrap(),
    )
}

/// The sliding window with a day window beside it (Bedrock's TPM and TPD).
fn day_quota() -> Quota<&'static str> {
    Quota::new(
        Limit::per_second()
            .requests(1 << 40)
            .units(1 << 40)
            .also(Window::days(1).requests(1 << 41).units(1 << 41))
            .build()
            .unwrap(),
    )
}

fn quotas() -> [(&'static str, Quota<&'static str>); 3] {
    [
        ("sliding window", window_quota()),
        ("token bucket", bucket_quota()),
        ("sliding window + day window", day_quota()),
    ]
}

fn governor_direct() -> governor::DefaultDirectRateLimiter {
    RateLimiter::direct(GQuota::per_second(NonZeroU32::MAX).allow_burst(NonZeroU32::MAX))
}

fn governor_keyed() -> governor::DefaultKeyedRateLimiter<&'static str> {
    RateLimiter::keyed(GQuota::per_second(NonZeroU32::MAX).allow_burst(NonZeroU32::MAX))
}

const N: NonZeroU32 = NonZeroU32::new(10).unwrap();

#[inline(always)]
fn headroom_op(q: &Quota<&'static str>, key: &&'static str) {
    let now = Instant::now();
    let r = q.reserve(key, Cost::units(10), now).unwrap();
    r.settle(Usage::units(10), now);
}

/// The core as designed: time passed in (here a counter, no clock read).
#[inline(always)]
fn headroom_core_op(q: &Quota<&'static str>, key: &&'static str, now: Instant) {
    let r = q.reserve(key, Cost::units(10), now).unwrap();
    r.settle(Usage::units(10), now);
}

#[inline(always)]
fn headroom_refund_op(q: &Quota<&'static str>, key: &&'static str) {
    let now = Instant::now();
    let r = q.reserve(key, Cost::units(10), now).unwrap();
    r.settle(Usage::units(7), now);
}

/// Runs `op` `iters` times on each of two threads; returns the wall time.
fn two_threads(iters: u64, op: impl Fn(usize) + Sync) -> Duration {
    let barrier = std::sync::Barrier::new(3);
    std::thread::scope(|s| {
        for t in 0..2 {
            let (op, barrier) = (&op, &barrier);
            s.spawn(move || {
                barrier.wait();
                for _ in 0..iters {
                    op(t);
                }
            });
        }
        barrier.wait();
        let start = std::time::Instant::now();
        // The scope joins both threads when it ends; time until then.
        start
    })
    .elapsed()
}

fn bench(c: &mut Criterion) {
    let gd = governor_direct();
    let gk = governor_keyed();
    let mut g = c.benchmark_group("admission");
    g.bench_function("governor check_n (direct)", |b| {
        b.iter(|| black_box(gd.check_n(N)).ok())
    });
    g.bench_function("governor check_key_n (keyed)", |b| {
        b.iter(|| black_box(gk.check_key_n(&KEYS[0], N)).ok())
    });
    for (name, q) in quotas() {
        g.bench_function(format!("headroom reserve+settle, {name}"), |b| {
            b.iter(|| headroom_op(&q, black_box(&KEYS[0])))
        });
        let t0 = Instant::now();
        g.bench_function(
            format!("headroom reserve+settle, {name} (time passed in)"),
            |b| {
                let mut i = 0u64;
                b.iter(|| {
                    i += 1;
                    headroom_core_op(&q, black_box(&KEYS[0]), t0 + Duration::from_nanos(i))
                })
            },
        );
        g.bench_function(format!("headroom reserve+settle, {name} (refund)"), |b| {
            b.iter(|| headroom_refund_op(&q, black_box(&KEYS[0])))
        });
        let slot = q.slot(&KEYS[0], Instant::now());
        let ask = Ask::new(Cost::units(10));
        g.bench_function(
            format!("headroom reserve+settle, {name} (pinned slot)"),
            |b| {
                b.iter(|| {
                    let now = Instant::now();
                    let r = Reservation::reserve(slot.clone(), black_box(&ask), now).unwrap();
                    r.settle(Usage::units(10), now);
                })
            },
        );
        g.bench_function(
            format!("headroom reserve+settle, {name} (borrowed slot)"),
            |b| {
                b.iter(|| {
                    let now = Instant::now();
                    let r = Reservation::reserve(&*slot, black_box(&ask), now).unwrap();
                    r.settle(Usage::units(10), now);
                })
            },
        );
        let _ = slot.admit_wait(Cost::units(1), Instant::now());
        g.bench_function(
            format!("headroom reserve+settle, {name}, 2 threads, own keys"),
            |b| b.iter_custom(|iters| two_threads(iters, |t| headroom_op(&q, &KEYS[t])) / 2),
        );
    }
    // Two threads: criterion's time per iteration is wall time / 2, i.e. per operation at the
    // aggregate throughput.
    g.bench_function("governor check_n (direct), 2 threads", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, |_| {
                black_box(gd.check_n(N)).ok();
            }) / 2
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}

/// `ops` calls of governor's `check_n`, timed: a function of its own, so that the loop's
/// placement does not move with the code around it.
#[inline(never)]
fn governor_loop(gd: &governor::DefaultDirectRateLimiter, ops: u64) -> Duration {
    let start = std::time::Instant::now();
    for _ in 0..ops {
        black_box(gd.check_n(N)).ok();
    }
    start.elapsed()
}

/// `ops` reservations settled at their estimate on a pinned slot, time passed in, each owning
/// a clone of the slot's `Arc`: a function of its own, as [`governor_loop`].
#[inline(never)]
fn pinned_loop(slot: &Arc<MemorySlot>, ask: &Ask, t0: Instant, ops: u64) -> Duration {
    let start = std::time::Instant::now();
    for i in 0..ops {
        let now = t0 + Duration::from_nanos(i);
        let r = Reservation::reserve(slot.clone(), black_box(ask), now).unwrap();
        r.settle(Usage::units(10), now);
    }
    start.elapsed()
}

/// [`pinned_loop`] with reservations that borrow the slot.
#[inline(never)]
fn borrowed_loop(slot: &MemorySlot, ask: &Ask, t0: Instant, ops: u64) -> Duration {
    let start = std::time::Instant::now();
    for i in 0..ops {
        let now = t0 + Duration::from_nanos(i);
        let r = Reservation::reserve(slot, black_box(ask), now).unwrap();
        r.settle(Usage::units(10), now);
    }
    start.elapsed()
}

/// Times `ops` runs of `f`.
fn timed(f: impl Fn()) -> impl Fn(u64) -> Duration {
    move |ops| {
        let start = std::time::Instant::now();
        for _ in 0..ops {
            f();
        }
        start.elapsed()
    }
}

/// Nanoseconds per operation, best of three runs of `ops` operations.
fn per_op(ops: u64, run: impl Fn(u64) -> Duration) -> f64 {
    (0..3)
        .map(|_| run(ops).as_nanos() as f64 / ops as f64)
        .fold(f64::INFINITY, f64::min)
}

fn ratios() {
    const OPS: u64 = 2_000_000;
    let gd = governor_direct();
    let g1 = per_op(OPS, |ops| governor_loop(&gd, ops));
    let gk = governor_keyed();
    let gk1 = per_op(
        OPS,
        timed(|| {
            black_box(gk.check_key_n(&KEYS[0], N)).ok();
        }),
    );
    let g2 = per_op(OPS, |ops| {
        two_threads(ops, |_| {
            black_box(gd.check_n(N)).ok();
        }) / 2
    });
    println!();
    println!(
        "ratios (ns per operation, best of 3 x {OPS}; 2-thread figures are wall time / ops at aggregate throughput)"
    );
    println!("  governor check_n, 1 thread:                 {g1:>7.1} ns");
    println!("  governor check_key_n (keyed), 1 thread:     {gk1:>7.1} ns");
    println!(
        "  governor check_n, 2 threads:                {g2:>7.1} ns   = {:.2}x its 1-thread throughput",
        g1 / g2
    );
    let mut pinned = Vec::new();
    for (name, q) in quotas() {
        let t0 = Instant::now();
        let hc = per_op(OPS, |ops| {
            let start = std::time::Instant::now();
            for i in 0..ops {
                headroom_core_op(&q, black_box(&KEYS[0]), t0 + Duration::from_nanos(i));
            }
            start.elapsed()
        });
        let slot = q.slot(&KEYS[0], t0);
        let ask = Ask::new(Cost::units(10));
        let hp = per_op(OPS, |ops| pinned_loop(&slot, &ask, t0, ops));
        // The same, borrowing the slot instead of owning a clone of its `Arc` (the shape of
        // governor's `check_n` on a limiter the caller holds).
        let hb = per_op(OPS, |ops| borrowed_loop(&slot, &ask, t0, ops));
        pinned.push((name, hc, hp));
        let h1 = per_op(OPS, timed(|| headroom_op(&q, black_box(&KEYS[0]))));
        let h2 = per_op(OPS, |ops| {
            two_threads(ops, |t| headroom_op(&q, &KEYS[t])) / 2
        });
        let h2s = per_op(OPS, |ops| {
            two_threads(ops, |_| headroom_op(&q, &KEYS[0])) / 2
        });
        println!("  {name}:");
        println!(
            "    reserve+settle, time passed in:           {hc:>7.1} ns   = {:.2}x governor check_n, {:.2}x check_key_n",
            hc / g1,
            hc / gk1
        );
        println!(
            "    reserve+settle, pinned slot, time passed in: {hp:>7.1} ns = {:.2}x governor check_n",
            hp / g1
        );
        println!(
            "    reserve+settle, borrowed slot, time passed in: {hb:>5.1} ns = {:.2}x governor check_n",
            hb / g1
        );
        println!(
            "    reserve+settle with Instant::now():       {h1:>7.1} ns   = {:.2}x governor check_n, {:.2}x check_key_n",
            h1 / g1,
            h1 / gk1
        );
        println!(
            "    2 threads on their own keys:              {h2:>7.1} ns   = {:.2}x its 1-thread throughput",
            h1 / h2
        );
        println!(
            "    2 threads on one key:                     {h2s:>7.1} ns   = {:.2}x its 1-thread throughput",
            h1 / h2s
        );
    }
    if let ([(_, plain_c, plain_p), ..], Some((_, day_c, day_p))) = (&pinned[..], pinned.last()) {
        println!(
            "  day window beside the sliding window: keyed {:.2}x, pinned {:.2}x the plain one",
            day_c / plain_c,
            day_p / plain_p
        );
    }
    println!(
        "  available parallelism: {:?}",
        std::thread::available_parallelism()
    );
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // Only under `cargo bench`: `cargo test --benches` runs each benchmark once, unoptimised.
    if std::env::args().any(|a| a == "--bench") {
        ratios();
    }
}
