//! Three clients with their own connections share one quota through a real `redis-server`:
//! per-window totals stay within the documented bound, the quota is used, shares hold across
//! processes, skewed local clocks change nothing, and leasing keeps Redis off the hot path.
//! Redis keeps real time, so these tests run on the real clock with one-second windows, one
//! test at a time: run side by side on a two-core machine, five tests' clients and servers
//! compete for the cores, and how the quota splits between clients measures the scheduler.
#![cfg(feature = "redis")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Service, ServiceExt};
use tower_headroom::Deadline;
use tower_headroom::admission::redis::{RedisStore, StoreMode};
use tower_headroom::admission::{
    AdmissionLayer, Ask, Cost, Fixed, FixedCost, Grant, Limit, Quota, Tenant, Usage,
};

#[path = "support/redis.rs"]
mod redis_server;
use redis_server::RedisServer;

/// Held by each test for its whole run (see the module docs).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const KEY: &str = "model/us-east-1";

type Store = RedisStore<&'static str>;

async fn client(server: &RedisServer, name: &str, limit: &Limit, lease: f64) -> Store {
    RedisStore::builder(name, limit.clone())
        .lease(lease)
        .connect(&server.url())
        .await
        .expect("connect to the test's redis-server")
}

/// Admissions: (when, units).
type Log = Arc<Mutex<Vec<(Instant, u64)>>>;

/// Admits `ask` as a client whose local clock is off by `skew` (plus or minus), waiting as
/// told (or until the store wakes it).
async fn admit(
    quota: &Quota<&'static str, Store>,
    ask: Ask,
    ahead: Duration,
    behind: Duration,
) -> bool {
    let local = || Instant::now() + ahead - behind;
    // A call waits at most 2 s unless it says otherwise (by the caller's clock).
    let ask = match ask.deadline {
        Some(_) => ask,
        None => ask.deadline(Deadline::from_now(local(), Duration::from_secs(2))),
    };
    let Ok(mut r) = quota.reserve_ask(&KEY, &ask, local()) else {
        return false;
    };
    loop {
        match r.grant() {
            Grant::Now => break,
            Grant::At(at) => {
                let real = at + behind - ahead;
                let mut sleep = std::pin::pin!(tokio::time::sleep_until(real));
                std::future::poll_fn(|cx| {
                    if sleep.as_mut().poll(cx).is_ready() {
                        return std::task::Poll::Ready(());
                    }
                    r.poll_wake(cx)
                })
                .await;
                if r.confirm(local()).is_err() {
                    return false;
                }
            }
        }
    }
    r.settle(Usage::units(ask.cost.units), local());
    true
}

/// Runs `tasks` callers of `ask` on one client until `until`, logging admissions.
fn hungry(
    quota: &Quota<&'static str, Store>,
    ask: Ask,
    tasks: usize,
    until: Instant,
    log: &Log,
    skew: (Duration, Duration),
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..tasks)
        .map(|_| {
            let (quota, log) = (quota.clone(), Arc::clone(log));
            tokio::spawn(async move {
                while Instant::now() < until {
                    if admit(&quota, ask, skew.0, skew.1).await {
                        log.lock().unwrap().push((Instant::now(), ask.cost.units));
                    } else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            })
        })
        .collect()
}

/// The most units admitted in any one-second window (sliding, starting at each admission).
fn worst_window(logs: &[&Log]) -> u64 {
    let mut all: Vec<(Instant, u64)> = logs
        .iter()
        .flat_map(|l| l.lock().unwrap().clone())
        .collect();
    all.sort_by_key(|(t, _)| *t);
    let (mut worst, mut sum, mut j) = (0, 0, 0);
    for i in 0..all.len() {
        while j < all.len() && all[j].0 < all[i].0 + Duration::from_secs(1) {
            sum += all[j].1;
            j += 1;
        }
        worst = worst.max(sum);
        sum -= all[i].1;
    }
    worst
}

fn total(log: &Log) -> u64 {
    log.lock().unwrap().iter().map(|(_, u)| u).sum()
}

/// The share of the quota admitted at steady state: over the run less its first and last half
/// second (at the start the leases are being taken; at the end calls still queued finish late,
/// and each process still holds part of a lease).
fn utilisation(logs: &[&Log], start: Instant, until: Instant, limit: u64) -> f64 {
    let (from, to) = (
        start + Duration::from_millis(500),
        until - Duration::from_millis(500),
    );
    let units: u64 = logs
        .iter()
        .flat_map(|l| l.lock().unwrap().clone())
        .filter(|(t, _)| *t > from && *t <= to)
        .map(|(_, u)| u)
        .sum();
    units as f64 / (limit as f64 * (to - from).as_secs_f64())
}

/// Runs three hungry clients (optionally with skewed clocks) for `secs` and checks the bound
/// and the utilisation.
async fn three_clients(skews: [(Duration, Duration); 3], tag: &str) -> [u64; 3] {
    let server = RedisServer::start();
    const LIMIT: u64 = 1_000;
    let limit = Limit::per_second()
        .units(LIMIT)
        .burst(Duration::ZERO)
        .build()
        .unwrap();
    let lease = 0.05;
    let lease_units = 50;
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(client(&server, tag, &limit, lease).await);
    }
    let run = Duration::from_secs(3);
    let start = Instant::now();
    let until = start + run;
    let logs: Vec<Log> = (0..3).map(|_| Log::default()).collect();
    let mut handles = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        let quota = Quota::with_store(store.clone());
        handles.extend(hungry(
            &quota,
            Ask::new(Cost::units(10)),
            4,
            until,
            &logs[i],
            skews[i],
        ));
    }
    for h in handles {
        h.await.unwrap();
    }
    let totals = [total(&logs[0]), total(&logs[1]), total(&logs[2])];
    let sum: u64 = totals.iter().sum();
    let worst = worst_window(&[&logs[0], &logs[1], &logs[2]]);
    // limit + max(burst, lease + 20 ms of refill) + lease x processes x tenants (one each).
    let bound = LIMIT + lease_units + LIMIT / 50 + lease_units * 3;
    let utilisation = utilisation(&[&logs[0], &logs[1], &logs[2]], start, until, LIMIT);
    println!(
        "{tag}: per client {totals:?} (total {sum}) in {run:?}; steady state {:.1}% of the quota; worst 1 s window {worst} (bound {bound}); round trips {:?}",
        utilisation * 100.0,
        stores.iter().map(|s| s.round_trips()).collect::<Vec<_>>()
    );
    assert!(worst <= bound, "worst window {worst} > bound {bound}");
    assert!(utilisation >= 0.95, "utilisation {utilisation:.3} < 0.95");
    for s in &stores {
        assert_eq!(s.mode(), StoreMode::Shared);
    }
    totals
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_clients_share_one_quota_within_the_lease_bound() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let none = (Duration::ZERO, Duration::ZERO);
    three_clients([none; 3], "shared").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_with_skewed_clocks_agree_on_the_budget() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    // One client's clock runs 3 s ahead, another's 2 s behind: the budget is kept on the
    // server's clock, so the bound and the utilisation hold and nobody gets a head start.
    let skews = [
        (Duration::ZERO, Duration::ZERO),
        (Duration::from_secs(3), Duration::ZERO),
        (Duration::ZERO, Duration::from_secs(2)),
    ];
    let totals = three_clients(skews, "skewed").await;
    let sum: u64 = totals.iter().sum();
    for t in totals {
        assert!(t * 5 >= sum, "a client got {t} of {sum}: less than a fifth");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_hold_across_processes() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let server = RedisServer::start();
    const LIMIT: u64 = 900;
    let limit = Limit::per_second()
        .units(LIMIT)
        .shares(&[1, 1, 1])
        .burst(Duration::ZERO)
        .build()
        .unwrap();
    let lease_units = 45;
    let a = client(&server, "shares", &limit, 0.05).await;
    let b = client(&server, "shares", &limit, 0.05).await;
    let c = client(&server, "shares", &limit, 0.05).await;
    let start = Instant::now();
    let until = start + Duration::from_secs(3);
    let (la, lb, lc) = (Log::default(), Log::default(), Log::default());
    let none = (Duration::ZERO, Duration::ZERO);
    // App A is greedy; B and C each want 200 units/s, under their share of 300.
    let mut handles = hungry(
        &Quota::with_store(a.clone()),
        Ask::new(Cost::units(10)).tenant(Tenant(0)),
        6,
        until,
        &la,
        none,
    );
    let mut demanded = [0u64; 2];
    let mut paced = Vec::new();
    for (i, (store, log)) in [(&b, &lb), (&c, &lc)].into_iter().enumerate() {
        let quota = Quota::with_store(store.clone());
        let log = Arc::clone(log);
        demanded[i] = 3 * 200;
        paced.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            let mut calls = Vec::new();
            for _ in 0..60 {
                tick.tick().await;
                let (quota, log) = (quota.clone(), Arc::clone(&log));
                calls.push(tokio::spawn(async move {
                    let ask = Ask::new(Cost::units(10))
                        .tenant(Tenant(1 + i as u16))
                        .deadline(Deadline::after(Duration::from_millis(500)));
                    if admit(&quota, ask, Duration::ZERO, Duration::ZERO).await {
                        log.lock().unwrap().push((Instant::now(), 10));
                    }
                }));
            }
            for c in calls {
                c.await.unwrap();
            }
        }));
    }
    for h in handles.drain(..).chain(paced) {
        h.await.unwrap();
    }
    let (ta, tb, tc) = (total(&la), total(&lb), total(&lc));
    let worst = worst_window(&[&la, &lb, &lc]);
    // limit + lease + 20 ms of refill + lease x 3 processes x 1 tenant each + one lease of
    // share debt.
    let bound = LIMIT + lease_units + LIMIT / 50 + lease_units * 3 + lease_units;
    println!(
        "shares: A {ta}, B {tb} of {}, C {tc} of {}; worst 1 s window {worst} (bound {bound})",
        demanded[0], demanded[1]
    );
    assert!(worst <= bound, "worst window {worst} > bound {bound}");
    assert!(tb * 10 >= demanded[0] * 9, "B got {tb} of {}", demanded[0]);
    assert!(tc * 10 >= demanded[1] * 9, "C got {tc} of {}", demanded[1]);
    // A borrows what B and C leave: the quota is used.
    let utilisation = utilisation(&[&la, &lb, &lc], start, until, LIMIT);
    println!(
        "shares: steady state {:.1}% of the quota",
        utilisation * 100.0
    );
    assert!(utilisation >= 0.95, "utilisation {utilisation:.3}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leasing_keeps_redis_off_the_hot_path() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let server = RedisServer::start();
    let limit = Limit::per_second().units(1_000_000).build().unwrap();
    for (lease, tag) in [(0.01, "leased"), (0.0, "unleased")] {
        let store = client(&server, tag, &limit, lease).await;
        let quota = Quota::with_store(store.clone());
        let layer = AdmissionLayer::new(quota, Fixed::new(KEY, FixedCost(Cost::units(100))));
        let mut svc = tower::ServiceBuilder::new()
            .layer(layer)
            .service_fn(|n: u64| async move { Ok::<_, std::io::Error>(n) });
        // Warm up: the first lease.
        svc.ready().await.unwrap().call(0).await.unwrap();
        let before = store.round_trips();
        let calls = 2_000;
        for n in 0..calls {
            assert_eq!(svc.ready().await.unwrap().call(n).await.unwrap(), n);
        }
        let per_call = (store.round_trips() - before) as f64 / calls as f64;
        println!("{tag}: {per_call:.4} round trips per call");
        if lease > 0.0 {
            assert!(
                per_call <= 0.1,
                "{per_call} round trips per call with leasing"
            );
        } else {
            assert!(
                (0.9..=1.1).contains(&per_call),
                "{per_call} without leasing"
            );
        }
        store.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_leases_go_back_on_shutdown() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let server = RedisServer::start();
    // Ten requests per second, leases of half of it.
    let limit = Limit::per_second().requests(10).build().unwrap();
    let a = client(&server, "giveback", &limit, 0.5).await;
    let b = client(&server, "giveback", &limit, 0.5).await;
    let qa = Quota::with_store(a.clone());
    let qb = Quota::with_store(b.clone());
    // A takes a lease of five and uses one.
    let r = qa.acquire(&KEY, Ask::new(Cost::ONE_REQUEST)).await.unwrap();
    r.settle(Usage::UNKNOWN, Instant::now());
    assert_eq!(qa.slot(&KEY, Instant::now()).lease_balance(None), (4, 0));
    // The window holds A's lease of five: six more do not fit until A gives its four back.
    assert!(
        b.take_now(&KEY, Cost::new(6, 0), None)
            .await
            .unwrap()
            .is_some()
    );
    a.shutdown().await;
    assert_eq!(b.take_now(&KEY, Cost::new(6, 0), None).await.unwrap(), None);
    assert!(
        b.take_now(&KEY, Cost::new(4, 0), None)
            .await
            .unwrap()
            .is_some(),
        "the window now holds 1 + 6 + the new 4 > 10"
    );
    drop(qb);
}
