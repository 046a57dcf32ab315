//! The plain endpoint simulator: fixed-window and token-bucket limits, `429` with
//! `Retry-After` in whole seconds rounded up, as `HttpClassifier` reads it.
#![cfg(feature = "sim")]

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tower::{Service, ServiceExt};
use tower_headroom::classify::Classify;
use tower_headroom::sim::{EndpointConfig, EndpointLimit, EndpointSim, SimCaller};
use tower_headroom::{HttpClassifier, OutcomeKind};

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn endpoint(limit: EndpointLimit, t0: Instant) -> EndpointSim {
    EndpointSim::builder()
        .limit(limit)
        .start(t0)
        .build()
        .unwrap()
}

fn retry_after(res: &http::Response<String>) -> &str {
    res.headers()["retry-after"].to_str().unwrap()
}

#[test]
fn fixed_window_answers_429_with_the_time_to_the_next_window() {
    let t0 = Instant::now();
    let sim = endpoint(
        EndpointLimit::FixedWindow {
            requests: 2,
            window: Duration::from_secs(10),
        },
        t0,
    );
    assert_eq!(sim.admit(None, t0), Ok(()));
    assert_eq!(sim.admit(None, t0 + ms(1)), Ok(()));
    assert_eq!(sim.admit(None, t0 + ms(1)), Err(ms(9_999)));
    assert_eq!(sim.admit(None, t0 + ms(7_500)), Err(ms(2_500)));
    let res = EndpointSim::response(sim.admit(None, t0 + ms(7_500)));
    assert_eq!(res.status(), 429);
    assert_eq!(retry_after(&res), "3", "2.5 s rounds up");
    let res = EndpointSim::response(sim.admit(None, t0 + ms(9_999)));
    assert_eq!(retry_after(&res), "1", "never 0");
    // The window edge resets the count.
    assert_eq!(sim.admit(None, t0 + ms(10_000)), Ok(()));
    assert_eq!(sim.admit(None, t0 + ms(19_999)), Ok(()));
    assert_eq!(sim.admit(None, t0 + ms(19_999)), Err(ms(1)));
    let stats = sim.stats_at(t0 + ms(20_000));
    assert_eq!(stats.counts.admitted, 4);
    assert_eq!(stats.counts.throttled_requests, 5);
}

#[test]
fn token_bucket_answers_429_with_the_time_until_a_request_has_refilled() {
    let t0 = Instant::now();
    // One request per 2 s, bursts of 2; starts full.
    let sim = endpoint(
        EndpointLimit::TokenBucket {
            requests: 1,
            per: Duration::from_secs(2),
            burst: 2,
        },
        t0,
    );
    assert_eq!(sim.admit(None, t0), Ok(()));
    assert_eq!(sim.admit(None, t0), Ok(()));
    assert_eq!(sim.admit(None, t0), Err(ms(2_000)));
    assert_eq!(sim.admit(None, t0 + ms(500)), Err(ms(1_500)));
    let res = EndpointSim::response(sim.admit(None, t0 + ms(500)));
    assert_eq!(retry_after(&res), "2");
    assert_eq!(sim.admit(None, t0 + ms(2_000)), Ok(()));
    assert_eq!(sim.admit(None, t0 + ms(2_000)), Err(ms(2_000)));
    // Idle time refills up to the burst, no more.
    assert_eq!(sim.admit(None, t0 + ms(100_000)), Ok(()));
    assert_eq!(sim.admit(None, t0 + ms(100_000)), Ok(()));
    assert!(sim.admit(None, t0 + ms(100_000)).is_err());
    // Several requests per period: 3 per second refills one every 333.33 ms.
    let fast = endpoint(
        EndpointLimit::TokenBucket {
            requests: 3,
            per: Duration::from_secs(1),
            burst: 1,
        },
        t0,
    );
    assert_eq!(fast.admit(None, t0), Ok(()));
    assert_eq!(fast.admit(None, t0), Err(Duration::from_nanos(333_333_334)));
    assert_eq!(
        fast.admit(None, t0 + Duration::from_nanos(333_333_334)),
        Ok(())
    );
}

#[tokio::test(start_paused = true)]
async fn the_service_answers_http_that_the_http_classifier_reads() {
    let sim = EndpointSim::builder()
        .limit(EndpointLimit::FixedWindow {
            requests: 1,
            window: Duration::from_secs(60),
        })
        .latency(ms(40))
        .error_latency(ms(3))
        .build()
        .unwrap();
    let mut svc = sim.clone();
    let request = |caller: &str| -> http::Request<()> {
        let mut req = http::Request::new(());
        req.extensions_mut().insert(SimCaller(Arc::from(caller)));
        req
    };
    let start = Instant::now();
    let ok = ServiceExt::<http::Request<()>>::ready(&mut svc)
        .await
        .unwrap()
        .call(request("a"))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), ms(40));
    assert_eq!(ok.status(), 200);
    assert!(HttpClassifier::new().classify(Ok(&ok)).is_success());

    tokio::time::advance(Duration::from_secs(20)).await;
    let start = Instant::now();
    let limited = ServiceExt::<http::Request<()>>::ready(&mut svc)
        .await
        .unwrap()
        .call(request("b"))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), ms(3));
    assert_eq!(limited.status(), 429);
    // 60 - 20.04 s = 39.96 s, rounded up.
    assert_eq!(retry_after(&limited), "40");
    let outcome = HttpClassifier::new().classify(Ok(&limited));
    assert!(matches!(outcome.kind, OutcomeKind::Throttled(_)));
    assert_eq!(outcome.retry_after, Some(Duration::from_secs(40)));

    let stats = sim.stats();
    assert_eq!(stats.callers.len(), 2);
    assert_eq!(stats.callers[0].counts.admitted, 1);
    assert_eq!(stats.callers[1].counts.throttled_requests, 1);
}

#[test]
fn bad_configuration_is_a_config_error_naming_field_and_value() {
    let t0 = Instant::now();
    let build = |limit| EndpointSim::builder().limit(limit).start(t0).build();
    let cases = [
        (
            build(EndpointLimit::FixedWindow {
                requests: 0,
                window: ms(1),
            }),
            "limit.requests",
            "0",
        ),
        (
            build(EndpointLimit::FixedWindow {
                requests: 1,
                window: Duration::ZERO,
            }),
            "limit.window",
            "0ns",
        ),
        (
            build(EndpointLimit::TokenBucket {
                requests: 1,
                per: Duration::ZERO,
                burst: 1,
            }),
            "limit.per",
            "0ns",
        ),
        (
            build(EndpointLimit::TokenBucket {
                requests: 1,
                per: ms(1),
                burst: 0,
            }),
            "limit.burst",
            "0",
        ),
        (EndpointSim::builder().build(), "limit", "\"unset\""),
    ];
    for (result, field, value) in cases {
        let err = result.unwrap_err();
        assert_eq!(err.field(), field, "{err}");
        assert_eq!(err.value(), value, "{err}");
    }
    let config: EndpointConfig = serde_json::from_str(
        r#"{ "limit": { "kind": "token_bucket", "requests": 10, "per_s": 1, "burst": 20 },
             "latency_ms": 80 }"#,
    )
    .unwrap();
    assert_eq!(
        config.limit,
        EndpointLimit::TokenBucket {
            requests: 10,
            per: Duration::from_secs(1),
            burst: 20
        }
    );
    assert_eq!(config.latency, ms(80));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    assert!(EndpointSim::from_config(config).is_ok());
    let bad = serde_json::from_str::<EndpointConfig>(
        r#"{ "limit": { "kind": "leaky", "requests": 10 } }"#,
    )
    .unwrap_err();
    assert!(bad.to_string().contains("leaky"), "{bad}");
}
