//! What DynamoDB's per-key ceiling and hot-key report add to a call, side by side in the same
//! run with what the call already pays: `cargo bench --features dynamodb --bench dynamodb`.
//! Read the ratios the bench prints at the end, not the absolute numbers.
//!
//! Group `dynamodb_ceiling`, time passed in (a counter, no clock read):
//! - `quota reserve+settle (baseline)`: the table's write quota (`orders:write`, the DynamoDB
//!   profile's token bucket) reserving and settling one WCU, which every admitted call pays;
//! - `ceiling admit+record, cold key of 10,000`: `PartitionCeiling::admit_id` and `record` of
//!   a successful one-WCU write on keys that never get hot, cycling through 10,000 of them —
//!   what every write to a table with a declared partition key adds;
//! - `ceiling admit+record, hot key`: the same on a key with a budget of its own (held at
//!   half the partition maximum, so it stays hot and never waits);
//! - `ceiling id (SipHash of the key value)`: hashing one 24-byte key value.
//!
//! Group `hot_keys`: `HotKeys::record` of a one-unit attempt on 10,000 keys cycling (the
//! bounded Space-Saving summary, per second over a 60 s window) against an exact count in a
//! `HashMap` keyed by the key bytes (std's SipHash, memory growing with every key seen).

mod common;

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use tokio::time::Instant;
use tower_headroom::Profile;
use tower_headroom::admission::{Ask, Cost, Quota, Usage};
use tower_headroom::dynamodb::{Access, PartitionCeiling, TableLimits as _, write_key};
use tower_headroom::hot_keys::{HotKeys, KeyId};
use tower_headroom::{Outcome, ThrottleScope};

const TABLE: &str = "orders";
const KEYS: usize = 10_000;

fn key_values() -> Vec<Vec<u8>> {
    (0..KEYS)
        .map(|i| format!("customer#{i:015}").into_bytes())
        .collect()
}

/// A clock the loops advance by `step` per call, starting now.
struct Clock {
    now: Instant,
    step: Duration,
}

impl Clock {
    fn new(step: Duration) -> Self {
        Clock {
            now: Instant::now(),
            step,
        }
    }

    fn tick(&mut self) -> Instant {
        self.now += self.step;
        self.now
    }
}

fn ceiling() -> PartitionCeiling {
    PartitionCeiling::builder()
        .metrics(false)
        .salt(7)
        .build()
        .unwrap()
}

fn ceiling_group(c: &mut Criterion) {
    let mut g = c.benchmark_group("dynamodb_ceiling");

    let quota: Quota<Arc<str>> =
        Quota::builder(Profile::DynamoDb.limit().units(1 << 40).build().unwrap())
            .table(TABLE, 1 << 40, 1 << 40)
            .unwrap()
            .build();
    let write: Arc<str> = Arc::from(write_key(TABLE));
    let mut clock = Clock::new(Duration::from_micros(1));
    g.bench_function("quota reserve+settle (baseline)", |b| {
        b.iter(|| {
            let now = clock.tick();
            let r = quota
                .reserve(black_box(&write), Cost::units(1), now)
                .unwrap();
            r.settle(Usage::units(1), now);
        })
    });

    let cold = ceiling();
    let ids: Vec<KeyId> = key_values().iter().map(|k| cold.id(k)).collect();
    let mut clock = Clock::new(Duration::from_micros(1));
    let mut next = 0;
    g.bench_function("ceiling admit+record, cold key of 10,000", |b| {
        b.iter(|| {
            let now = clock.tick();
            next = (next + 1) % KEYS;
            let ask = Ask::new(Cost::units(1));
            let ticket = cold
                .admit_id(TABLE, Access::Write, black_box(ids[next]), ask, now)
                .unwrap();
            cold.record(ticket, &Outcome::SUCCESS, now);
        })
    });
    assert_eq!(cold.hot_keys(clock.now), 0, "the cold keys stayed cold");

    let hot = ceiling();
    let id = hot.id(b"customer#hot");
    let mut clock = Clock::new(Duration::from_millis(2));
    // A key-range throttle gives the key its own budget; one WCU every 2 ms is half the
    // partition maximum, which keeps it hot without waiting.
    let now = clock.tick();
    let ticket = hot
        .admit_id(TABLE, Access::Write, id, Ask::new(Cost::units(1)), now)
        .unwrap();
    hot.record(ticket, &Outcome::throttled(ThrottleScope::Partition), now);
    g.bench_function("ceiling admit+record, hot key", |b| {
        b.iter(|| {
            let now = clock.tick();
            let ask = Ask::new(Cost::units(1));
            let ticket = hot
                .admit_id(TABLE, Access::Write, black_box(id), ask, now)
                .unwrap();
            debug_assert!(ticket.is_hot());
            hot.record(ticket, &Outcome::SUCCESS, now);
        })
    });
    assert_eq!(hot.hot_keys(clock.now), 1, "the hot key stayed hot");

    let value = b"customer#000000000004242";
    g.bench_function("ceiling id (SipHash of the key value)", |b| {
        b.iter(|| hot.id(black_box(value)))
    });
    g.finish();
}

fn hot_keys_group(c: &mut Criterion) {
    let mut g = c.benchmark_group("hot_keys");
    let keys = key_values();

    let mut counts: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut next = 0;
    g.bench_function("exact HashMap count (baseline)", |b| {
        b.iter(|| {
            next = (next + 1) % KEYS;
            let key = black_box(&keys[next]);
            match counts.get_mut(key.as_slice()) {
                Some(units) => *units += 1,
                None => {
                    counts.insert(key.clone(), 1);
                }
            }
        })
    });

    let report = HotKeys::builder("orders:write")
        .partition_max(1_000)
        .metrics(false)
        .salt(7)
        .build()
        .unwrap();
    let mut clock = Clock::new(Duration::from_micros(1));
    let mut next = 0;
    g.bench_function("HotKeys record, 10,000 keys", |b| {
        b.iter(|| {
            next = (next + 1) % KEYS;
            report.record(black_box(&keys[next]), 1, false, clock.tick())
        })
    });
    g.finish();
}

fn ratios() {
    println!("ratios (medians of this run):");
    let ceiling = "dynamodb_ceiling";
    let baseline = "quota reserve+settle (baseline)";
    common::print_ratio(
        ceiling,
        "ceiling admit+record, cold key of 10,000",
        baseline,
    );
    common::print_ratio(ceiling, "ceiling admit+record, hot key", baseline);
    common::print_ratio(ceiling, "ceiling id (SipHash of the key value)", baseline);
    common::print_ratio(
        "hot_keys",
        "HotKeys record, 10,000 keys",
        "exact HashMap count (baseline)",
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = ceiling_group, hot_keys_group
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if std::env::args().any(|a| a == "--bench") {
        ratios();
    }
}
