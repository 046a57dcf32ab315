//! Bad input gives typed errors that say what to check, never a panic, and never the
//! password: an unparsable or unreachable URL, a wrong password, a script the server refuses,
//! and bad configuration.
#![cfg(feature = "redis")]

use std::time::Duration;

use tokio::time::Instant;
use tower_headroom::Deadline;
use tower_headroom::admission::redis::{FailMode, RedisStore, StoreError, StoreMode};
use tower_headroom::admission::{Ask, Cost, Limit, Quota, RejectReason};

#[path = "support/redis.rs"]
mod redis_server;
use redis_server::RedisServer;

fn builder() -> tower_headroom::admission::redis::RedisStoreBuilder<&'static str> {
    RedisStore::builder("errors", Limit::per_second().units(100).build().unwrap())
        .connect_timeout(Duration::from_millis(500))
        .op_timeout(Duration::from_millis(200))
}

#[tokio::test]
async fn unparsable_and_unreachable_urls() {
    let e = builder().connect("nonsense://nowhere").await.unwrap_err();
    assert_eq!(e, StoreError::InvalidUrl);
    assert!(e.to_string().contains("does not parse"), "{e}");

    let port = redis_server::free_port();
    let start = std::time::Instant::now();
    let e = builder()
        .connect(&format!("redis://:hunter2@127.0.0.1:{port}/"))
        .await
        .unwrap_err();
    assert_eq!(e, StoreError::Unreachable, "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "connect took {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn wrong_or_missing_password() {
    let server = RedisServer::with_password("s3cret-pw");
    let wrong = format!("redis://:not-it@127.0.0.1:{}/", server.port());
    let e = builder().connect(&wrong).await.unwrap_err();
    assert_eq!(e, StoreError::Auth, "{e}");
    assert!(!e.to_string().contains("not-it"), "{e}");
    assert!(e.to_string().contains("password"), "{e}");

    let none = format!("redis://127.0.0.1:{}/", server.port());
    assert_eq!(
        builder().connect(&none).await.unwrap_err(),
        StoreError::Auth
    );

    let store = builder().connect(&server.url()).await.unwrap();
    assert_eq!(store.take_now(&"k", Cost::units(10), None).await, Ok(None));
}

#[tokio::test]
async fn a_script_the_server_refuses() {
    let server = RedisServer::start();
    let store = builder()
        .retry_interval(Duration::from_millis(50))
        .connect(&server.url())
        .await
        .unwrap();
    // Something else wrote the quota's key as a string.
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_connection().unwrap();
    let _: () = redis::cmd("SET")
        .arg(store.redis_key(&"k"))
        .arg("not a hash")
        .query(&mut con)
        .unwrap();

    let e = store
        .take_now(&"k", Cost::units(10), None)
        .await
        .unwrap_err();
    assert_eq!(
        e,
        StoreError::Script {
            code: "WRONGTYPE".into()
        }
    );
    assert!(e.to_string().contains("WRONGTYPE"), "{e}");

    // Through the quota, failing closed: the call is rejected within its deadline, and the
    // operator can see why.
    let quota = Quota::with_store(store.clone());
    let start = Instant::now();
    let ask = Ask::new(Cost::units(10)).deadline(Deadline::after(Duration::from_millis(300)));
    let rejected = quota.acquire(&"k", ask).await.unwrap_err();
    assert!(
        start.elapsed() <= Duration::from_millis(450),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(
            rejected.reason,
            RejectReason::StoreUnavailable | RejectReason::Deadline
        ),
        "{rejected:?}"
    );
    assert_eq!(store.mode(), StoreMode::FailingClosed);
    assert!(matches!(
        store.last_error(),
        Some(StoreError::Script { .. })
    ));

    // Cleared by the operator: the store recovers on its own.
    let _: () = redis::cmd("DEL")
        .arg(store.redis_key(&"k"))
        .query(&mut con)
        .unwrap();
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        let ask = Ask::new(Cost::units(10)).deadline(Deadline::after(Duration::from_millis(200)));
        if quota.acquire(&"k", ask).await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < until,
            "no recovery after the key was fixed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.mode(), StoreMode::Shared);
}

#[tokio::test]
async fn bad_configuration_names_the_field() {
    let cases: [(_, &str); 5] = [
        (builder().lease(1.5), "lease"),
        (builder().lease(f64::NAN), "lease"),
        (
            builder().fail(FailMode::Open { fraction: 0.0 }),
            "fail.fraction",
        ),
        (builder().op_timeout(Duration::ZERO), "op_timeout"),
        (
            RedisStore::builder("a{b}", Limit::per_second().units(1).build().unwrap()),
            "name",
        ),
    ];
    for (b, field) in cases {
        match b.connect("redis://127.0.0.1:1/").await.unwrap_err() {
            StoreError::Config(e) => assert_eq!(e.field(), field),
            other => panic!("{field}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_cost_no_window_can_hold_is_rejected_at_once() {
    let server = RedisServer::start();
    let store = builder().connect(&server.url()).await.unwrap();
    let quota = Quota::with_store(store);
    let err = quota
        .reserve(&"k", Cost::units(1_000), Instant::now())
        .unwrap_err();
    assert_eq!(err.reason, RejectReason::CostTooLarge);
}
