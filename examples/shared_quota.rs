//! Three clients, each with its own Redis connection (as three replicas would be), share one
//! quota of 600 requests per second through a local `redis-server`; each wants far more. The
//! example prints what each one was admitted per second and the total against the quota.
//!
//! `cargo run --features redis --example shared_quota` starts its own `redis-server` on a free
//! port (install it with `scripts/redis`), or uses `REDIS_URL` when set.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_headroom::admission::redis::RedisStore;
use tower_headroom::admission::{AdmissionLayer, Cost, Fixed, FixedCost, Limit, Quota};

#[path = "../tests/support/redis.rs"]
mod redis_server;

const QUOTA: u64 = 600;
const SECONDS: u64 = 4;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (url, _server) = match std::env::var("REDIS_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let server = redis_server::RedisServer::start();
            (server.url(), Some(server))
        }
    };
    let limit = Limit::per_second()
        .requests(QUOTA)
        .burst(Duration::ZERO)
        .build()?;
    let quota_name = format!("shared-quota-example-{}", std::process::id());

    let until = Instant::now() + Duration::from_secs(SECONDS);
    let mut clients = Vec::new();
    for name in ["app-a", "app-b", "app-c"] {
        // Each client connects on its own and leases 2% of the quota (12 requests) at a time.
        let store = RedisStore::builder(quota_name.clone(), limit.clone())
            .lease(0.02)
            .connect(&url)
            .await?;
        let admitted = Arc::new(AtomicU64::new(0));
        let layer = AdmissionLayer::new(
            Quota::with_store(store.clone()),
            Fixed::new("model/us-east-1", FixedCost(Cost::ONE_REQUEST)),
        );
        let svc = ServiceBuilder::new()
            .layer(layer)
            .service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) });
        // Eight callers per client, each calling as fast as it is admitted.
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let (mut svc, admitted) = (svc.clone(), Arc::clone(&admitted));
                tokio::spawn(async move {
                    while Instant::now() < until {
                        match svc.ready().await {
                            Ok(ready) => match ready.call(()).await {
                                Ok(()) => {
                                    admitted.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                            },
                            Err(_) => break,
                        }
                    }
                })
            })
            .collect();
        clients.push((name, store, admitted, callers));
    }

    let mut total = 0;
    println!("quota: {QUOTA} requests/s shared by 3 clients for {SECONDS} s");
    for (name, store, admitted, callers) in clients {
        for c in callers {
            c.await?;
        }
        store.shutdown().await;
        let n = admitted.load(Ordering::Relaxed);
        total += n;
        println!(
            "  {name}: {:>6.1} requests/s admitted ({} Redis round trips for {n} calls)",
            n as f64 / SECONDS as f64,
            store.round_trips()
        );
    }
    let rate = total as f64 / SECONDS as f64;
    println!(
        "  total: {rate:>6.1} requests/s = {:.1}% of the quota",
        rate / QUOTA as f64 * 100.0
    );
    Ok(())
}
