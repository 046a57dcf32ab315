//! Ten-minute scenarios on tokio's paused clock, against a scripted Bedrock-like backend:
//! a primary-model overload episode, and a total outage.

mod scripted;

use std::sync::Arc;
use std::time::Duration;

use scripted::*;
use tokio::time::Instant;
use tower_headroom::breaker::BreakerConfig;
use tower_headroom::fallback::{FallbackBuilder, NoTargetAvailable, Route, Target};

/// Primary model overloaded from minute 4 to 6 of 10: every request is served (by Haiku during
/// the episode), p99 stays within 1.2x of normal, and traffic returns to Sonnet afterwards.
// Also checks the degraded counter, so it needs the `metrics` feature (on by default).
#[cfg(feature = "metrics")]
#[tokio::test(start_paused = true)]
async fn overload_episode_is_served_by_the_secondary_model_then_returns_to_the_primary() {
    let start = Instant::now();
    let script: Arc<Script> = Arc::new(|model, elapsed, rng| {
        let overloaded =
            model == "anthropic.claude-sonnet" && elapsed >= 4 * MIN && elapsed < 6 * MIN;
        if overloaded {
            // "Model is currently overloaded" comes back fast.
            (529, Duration::from_millis(50))
        } else {
            (200, normal(rng))
        }
    });
    let backend = Scripted::new(start, script);
    let route = Route::builder()
        .target(
            Target::new("sonnet", "anthropic.claude-sonnet")
                .model("sonnet")
                .region("us-east-1"),
        )
        .target(
            Target::new("haiku", "anthropic.claude-haiku")
                .model("haiku")
                .region("us-east-1"),
        )
        .build()
        .unwrap();
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let layer = metrics::with_local_recorder(&recorder, || {
        FallbackBuilder::new(route, classify)
            .breaker(BreakerConfig::builder().seed(17).build().unwrap())
            .rewrite(|request: &mut Request, model: &&'static str| {
                *request.uri_mut() = format!("/model/{model}/converse").parse().unwrap();
            })
    });
    let service = tower::Layer::layer(&layer, backend.clone());
    let records = drive(service.clone(), start, "sonnet").await;

    assert_eq!(records.len(), 1200);
    let failed = records
        .iter()
        .filter(|r| !matches!(r.result, Ok((200, _))))
        .count();
    assert_eq!(failed, 0, "zero failed requests");

    let served = |r: &Record| r.result.as_ref().unwrap().1.clone();
    let normal_p99 = p99(records
        .iter()
        .filter(|r| r.start < 4 * MIN)
        .map(|r| r.latency)
        .collect());
    let episode: Vec<&Record> = records
        .iter()
        .filter(|r| r.start >= 4 * MIN && r.start < 6 * MIN)
        .collect();
    let episode_p99 = p99(episode.iter().map(|r| r.latency).collect());
    println!("normal p99 {normal_p99:?}, episode p99 {episode_p99:?}");
    assert!(
        episode_p99.as_secs_f64() <= 1.2 * normal_p99.as_secs_f64(),
        "episode p99 {episode_p99:?} vs normal p99 {normal_p99:?}"
    );
    for r in &episode {
        let s = served(r);
        assert_eq!((&*s.name, s.degraded), ("haiku", true), "at {:?}", r.start);
    }
    for r in records.iter().filter(|r| r.start < 4 * MIN) {
        let s = served(r);
        assert_eq!((&*s.name, s.degraded, s.hops), ("sonnet", false, 0));
    }
    // Open lasts at most 36 s and three probes take about 1.2 s: from 6:45 on, Sonnet again.
    let after: Vec<&Record> = records
        .iter()
        .filter(|r| r.start >= 6 * MIN + Duration::from_secs(45))
        .collect();
    assert_eq!(after.len(), 390);
    for r in &after {
        assert_eq!(&*served(r).name, "sonnet", "at {:?}", r.start);
    }
    assert_eq!(
        service.breakers()[0].as_ref().unwrap().state(),
        tower_headroom::breaker::State::Closed
    );

    // The breaker kept Sonnet calls during the episode to the trip plus one probe per period.
    let sonnet_calls = backend
        .calls_between(4 * MIN, 6 * MIN)
        .iter()
        .filter(|m| *m == "anthropic.claude-sonnet")
        .count();
    println!("calls to the overloaded model during the episode: {sonnet_calls}");
    assert!(
        sonnet_calls <= 12,
        "{sonnet_calls} calls to the overloaded model"
    );

    // Degraded serving is counted, not silent.
    let degraded = records.iter().filter(|r| served(r).degraded).count() as u64;
    let mut counted = 0;
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        if key.name() == "headroom_fallback_total"
            && key
                .labels()
                .any(|l| l.key() == "degraded" && l.value() == "true")
        {
            assert!(
                key.labels()
                    .any(|l| l.key() == "target" && l.value() == "haiku")
            );
            if let metrics_util::debugging::DebugValue::Counter(n) = value {
                counted += n;
            }
        }
    }
    assert_eq!(counted, degraded);
    assert!(degraded >= 240);
}

/// Two regions behind one backend, both answering 503 from minute 2 to 8.
fn regional_outage(start: Instant) -> (Scripted, Route<()>) {
    let script: Arc<Script> = Arc::new(|_region, elapsed, rng| {
        if elapsed >= 2 * MIN && elapsed < 8 * MIN {
            (503, Duration::from_millis(200))
        } else {
            (200, normal(rng))
        }
    });
    let route = Route::builder()
        .target(Target::new("east", ()).region("us-east-1"))
        .target(Target::new("west", ()).region("us-west-2"))
        .build()
        .unwrap();
    (Scripted::new(start, script), route)
}

/// Both regions down from minute 2 to 8: the breakers open within their window, calls per
/// request stay at or below 1.1, callers fail fast with `NoTargetAvailable { retry_in }`, and
/// service resumes in the primary region after recovery.
#[tokio::test(start_paused = true)]
async fn total_outage_opens_the_breakers_and_keeps_attempts_per_request_low() {
    let start = Instant::now();
    let (backend, route) = regional_outage(start);
    let breaker = BreakerConfig::builder().seed(17).build().unwrap();
    let open_max = breaker.open_for().mul_f64(1.0 + breaker.open_jitter());
    let service = FallbackBuilder::new(route, classify)
        .breaker(breaker)
        .services(vec![
            backend.in_region("us-east-1"),
            backend.in_region("us-west-2"),
        ])
        .unwrap();
    let records = drive(service.clone(), start, "east").await;

    let outage = |r: &&Record| r.start >= 2 * MIN && r.start < 8 * MIN;
    let requests = records.iter().filter(outage).count();
    let attempts = backend.calls_between(2 * MIN, 8 * MIN).len();
    assert_eq!(requests, 720);
    let per_request = attempts as f64 / requests as f64;
    println!("outage: {attempts} attempts for {requests} requests ({per_request:.3} per request)");
    assert!(
        per_request <= 1.1,
        "{attempts} attempts for {requests} requests"
    );

    // The breakers opened within their window (5 consecutive failures, 30 s): the first
    // fail-fast answer comes within a few requests of the outage's start.
    let first_fast = records
        .iter()
        .filter(outage)
        .find(|r| matches!(&r.result, Err(e) if e.is::<NoTargetAvailable>()))
        .expect("the router fails fast during the outage");
    assert!(
        first_fast.start < 2 * MIN + Duration::from_secs(5),
        "{:?}",
        first_fast.start
    );
    let mut fast = 0;
    for r in records.iter().filter(outage) {
        match &r.result {
            Err(e) => {
                let e = e.downcast_ref::<NoTargetAvailable>().expect("typed error");
                let retry_in = e.retry_in.expect("breakers say when");
                assert!(retry_in > Duration::ZERO && retry_in <= open_max);
                assert_eq!(r.latency, Duration::ZERO, "fail fast");
                fast += 1;
            }
            // Requests that reached a backend get its own answer: the 503.
            Ok((status, _)) => assert_eq!(*status, 503),
        }
    }
    println!(
        "outage: {fast} of {requests} failed fast; first at {:?}",
        first_fast.start
    );
    assert!(
        fast as f64 >= 0.95 * requests as f64,
        "{fast} of {requests} failed fast"
    );

    for r in records.iter().filter(|r| r.start < 2 * MIN) {
        let (status, served) = r.result.as_ref().unwrap();
        assert_eq!((*status, &*served.name), (200, "east"));
    }
    let recovered: Vec<&Record> = records
        .iter()
        .filter(|r| r.start >= 8 * MIN + Duration::from_secs(45))
        .collect();
    assert_eq!(recovered.len(), 150);
    for r in recovered {
        let (status, served) = r.result.as_ref().unwrap();
        assert_eq!(
            (*status, &*served.name, served.degraded),
            (200, "east", false)
        );
    }
}

/// The same outage with the retry layer (default policy and budget) on top of the router:
/// the retries it adds wait for the breakers' `retry_in` and stay inside the budget, so calls
/// that reach a backend still stay at or below 1.1 per request.
#[tokio::test(start_paused = true)]
async fn total_outage_with_retries_on_top_keeps_attempts_per_request_low() {
    use tower_headroom::retry::RetryPolicy;
    let start = Instant::now();
    let (backend, route) = regional_outage(start);
    let router = FallbackBuilder::new(route, classify)
        .breaker(BreakerConfig::builder().seed(17).build().unwrap())
        .services(vec![
            backend.in_region("us-east-1"),
            backend.in_region("us-west-2"),
        ])
        .unwrap();
    let policy = RetryPolicy::builder().seed(3).build().unwrap();
    let service = tower::ServiceBuilder::new()
        .layer(tower_headroom::RetryLayer::new(policy, classify_all))
        .service(router);
    let records = drive(service, start, "east").await;

    let outage = |r: &&Record| r.start >= 2 * MIN && r.start < 8 * MIN;
    let requests = records.iter().filter(outage).count();
    let attempts = backend.calls_between(2 * MIN, 8 * MIN).len();
    let per_request = attempts as f64 / requests as f64;
    let total = backend.calls_between(Duration::ZERO, 2 * RUN).len() as f64 / records.len() as f64;
    println!(
        "outage with retries: {attempts} backend calls for {requests} requests \
         ({per_request:.3} per request; {total:.3} over the whole run)"
    );
    assert!(per_request <= 1.1, "{per_request}");
    assert!(total <= 1.1, "{total}");
    // After recovery every request succeeds on the primary region.
    for r in records
        .iter()
        .filter(|r| r.start >= 8 * MIN + Duration::from_secs(45))
    {
        let (status, served) = r.result.as_ref().unwrap();
        assert_eq!((*status, &*served.name), (200, "east"));
    }
}
