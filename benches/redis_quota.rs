//! The shared quota on a local `redis-server` (started by the bench on a free port): the
//! latency an admitted call pays (reserve + settle) with leasing, without leasing, and in
//! process as the baseline, side by side in one run; then Redis round trips per call, counted
//! twice (the store's own counter and the server's `INFO commandstats`).
//!
//! `cargo bench --features redis --bench redis_quota` (needs `redis-server`: `scripts/redis`).

use std::time::{Duration, Instant as StdInstant};

use criterion::{Criterion, criterion_group};
use tokio::time::Instant;
use tower_headroom::admission::redis::RedisStore;
use tower_headroom::admission::{Ask, Cost, Limit, Quota, QuotaStore, Usage};

mod common;
#[path = "../tests/support/redis.rs"]
mod redis_server;

const KEY: &str = "bench";
const GROUP: &str = "redis_quota";
/// A lease of about 11,000 units: 110 calls of 100 (about 180 once refunds settle).
const LEASE: f64 = 1e-8;

fn limit() -> Limit {
    // Large enough that the budget never makes a call wait: this measures the mechanism.
    Limit::per_second().units(1 << 40).build().unwrap()
}

async fn one<S: QuotaStore<&'static str>>(quota: &Quota<&'static str, S>) {
    let r = quota
        .acquire(&KEY, Ask::new(Cost::units(100)))
        .await
        .expect("admitted");
    r.settle(Usage::units(60), Instant::now());
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn store(
    rt: &tokio::runtime::Runtime,
    url: &str,
    name: &str,
    lease: f64,
) -> RedisStore<&'static str> {
    rt.block_on(RedisStore::builder(name, limit()).lease(lease).connect(url))
        .expect("connect to the bench's redis-server")
}

/// `EVALSHA` + `EVAL` calls the server has answered.
fn server_script_calls(url: &str) -> u64 {
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_connection().unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut con)
        .unwrap();
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

fn bench(c: &mut Criterion) {
    let server = redis_server::RedisServer::start();
    let url = server.url();
    let rt = runtime();
    let memory: Quota<&'static str> = Quota::new(limit());
    let leased = Quota::with_store(store(&rt, &url, "leased", LEASE));
    let unleased = Quota::with_store(store(&rt, &url, "unleased", 0.0));

    let mut g = c.benchmark_group(GROUP);
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("in-process reserve+settle", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = StdInstant::now();
                for _ in 0..iters {
                    one(&memory).await;
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("redis leased reserve+settle", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = StdInstant::now();
                for _ in 0..iters {
                    one(&leased).await;
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("redis unleased reserve+settle", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = StdInstant::now();
                for _ in 0..iters {
                    one(&unleased).await;
                }
                start.elapsed()
            })
        })
    });
    g.finish();

    // Round trips per call at steady state, counted by the store and by the server.
    let calls = 20_000u64;
    println!("\nround trips per admitted call ({calls} calls each, after warm-up):");
    for (name, store_name, quota, lease) in [
        ("leased", "leased", &leased, LEASE),
        ("unleased", "unleased", &unleased, 0.0),
    ] {
        let calls = if lease > 0.0 { calls } else { calls / 10 };
        let store = store(&rt, &url, store_name, lease);
        let q = Quota::with_store(store.clone());
        rt.block_on(one(&q));
        let (before, server_before) = (store.round_trips(), server_script_calls(&url));
        let start = StdInstant::now();
        rt.block_on(async {
            for _ in 0..calls {
                one(&q).await;
            }
        });
        let took = start.elapsed();
        let by_store = (store.round_trips() - before) as f64 / calls as f64;
        let by_server = (server_script_calls(&url) - server_before) as f64 / calls as f64;
        println!(
            "  {name:12} {by_store:.4} by the store's counter, {by_server:.4} by INFO commandstats; {:.2} us per call",
            took.as_secs_f64() * 1e6 / calls as f64
        );
        let _ = quota;
    }
    let base = common::median_ns(GROUP, "in-process reserve+settle");
    let leased_ns = common::median_ns(GROUP, "redis leased reserve+settle");
    let unleased_ns = common::median_ns(GROUP, "redis unleased reserve+settle");
    if let (Some(base), Some(l), Some(u)) = (base, leased_ns, unleased_ns) {
        println!("\nlatency per admitted call (criterion medians, same run):");
        println!("  in process (baseline):      {base:>9.0} ns");
        println!(
            "  redis, leased:              {l:>9.0} ns = {:.2}x baseline, +{:.0} ns",
            l / base,
            l - base
        );
        println!(
            "  redis, unleased:            {u:>9.0} ns = {:.1}x baseline, +{:.0} ns (one round trip)",
            u / base,
            u - base
        );
    }
    drop(server);
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
