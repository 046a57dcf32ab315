//! A long window through the Redis store's ordinary path (leases, the refill task, the
//! server's clock): a call the long window cannot hold before its deadline is refused with
//! `QuotaExhausted` naming the window, and so is the next one at once, told when the window
//! has room. (The decisions themselves are held to the in-process core by
//! `redis_differential.rs`.)
#![cfg(feature = "redis")]

use std::time::Duration;

use tokio::time::Instant;
use tower_headroom::admission::redis::RedisStore;
use tower_headroom::admission::{Ask, Cost, Limit, Quota, RejectReason, Usage, Window};
use tower_headroom::{Deadline, Outcome, ThrottleScope};

#[path = "support/redis.rs"]
mod redis_server;
use redis_server::RedisServer;

#[tokio::test]
async fn a_spent_long_window_refuses_and_names_itself() {
    let server = RedisServer::start();
    // 5,000 units per second, 10,000 per minute.
    let limit = Limit::per_second()
        .units(5_000)
        .also(Window::new(Duration::from_secs(60)).units(10_000))
        .build()
        .unwrap();
    let store: RedisStore<&'static str> = RedisStore::builder("long", limit)
        .lease(0.0)
        .connect(&server.url())
        .await
        .unwrap();
    let quota = Quota::with_store(store.clone());
    for _ in 0..2 {
        let ask = Ask::new(Cost::units(5_000))
            .deadline(Deadline::at(Instant::now() + Duration::from_secs(5)));
        let r = quota.acquire(&"model", ask).await.unwrap();
        r.settle(Usage::units(5_000), Instant::now());
        tokio::time::sleep(Duration::from_millis(1_100)).await;
    }
    // The second is free again, the minute is not: this call waits for the server's answer,
    // then is refused at its deadline, naming the minute.
    let short = || {
        Ask::new(Cost::units(1_000)).deadline(Deadline::at(Instant::now() + Duration::from_secs(2)))
    };
    let e = quota.acquire(&"model", short()).await.unwrap_err();
    let minute = Some(Duration::from_secs(60));
    assert_eq!(e.reason, RejectReason::QuotaExhausted { window: minute });
    assert_eq!(e.window(), minute);
    // The next one is refused at once, told about when the minute has room again.
    let e = quota.acquire(&"model", short()).await.unwrap_err();
    assert_eq!(e.reason, RejectReason::QuotaExhausted { window: minute });
    let retry = e.retry_in.unwrap();
    assert!(
        retry > Duration::from_secs(40) && retry <= Duration::from_secs(61),
        "{retry:?}"
    );
    store.shutdown().await;
}

#[tokio::test]
async fn a_daily_throttle_spends_the_shared_long_window() {
    let server = RedisServer::start();
    let limit = Limit::per_second()
        .units(5_000)
        .also(Window::new(Duration::from_secs(60)).units(10_000))
        .build()
        .unwrap();
    let store: RedisStore<&'static str> = RedisStore::builder("long-daily", limit)
        .lease(0.0)
        .connect(&server.url())
        .await
        .unwrap();
    let quota = Quota::with_store(store.clone());
    let ask = || {
        Ask::new(Cost::units(1_000)).deadline(Deadline::at(Instant::now() + Duration::from_secs(2)))
    };
    let r = quota.acquire(&"model", ask()).await.unwrap();
    r.finish(
        &Outcome::throttled(ThrottleScope::Daily),
        Usage::units(0),
        Instant::now(),
    );
    // The report reaches the server in the background.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = quota.acquire(&"model", ask()).await.unwrap_err();
    assert_eq!(
        e.reason,
        RejectReason::QuotaExhausted {
            window: Some(Duration::from_secs(60))
        }
    );
    // Another key of the same quota is untouched.
    assert!(quota.acquire(&"other", ask()).await.is_ok());
    store.shutdown().await;
}
