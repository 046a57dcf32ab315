//! The whole stack (retry → fallback with per-target breakers → admission → client) built by
//! `StackBuilder`, on tokio's paused clock against the scripted backend: an overload episode,
//! a total outage, admission shedding and fail-fast answers as a gateway would send them, and
//! bad configuration.

mod scripted;

use std::sync::Arc;
use std::time::Duration;

use scripted::*;
use tokio::time::Instant;
use tower::ServiceExt;
use tower_headroom::admission::{FixedCost, Limit, Quota};
use tower_headroom::breaker::{BreakerConfig, State};
use tower_headroom::fallback::Target;
use tower_headroom::retry::RetryPolicy;
use tower_headroom::stack::{Profile, StackBuilder, error_response};
use tower_headroom::{ConfigError, Cost};

fn bedrock_route(
    builder: StackBuilder<&'static str, Classifier>,
) -> StackBuilder<&'static str, Classifier> {
    builder
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
}

fn rewrite_model(request: &mut Request, model: &&'static str) {
    *request.uri_mut() = format!("/model/{model}/converse").parse().unwrap();
}

fn seeded(profile: Profile) -> (RetryPolicy, BreakerConfig) {
    (
        profile.retry().seed(3).build().unwrap(),
        profile.breaker().seed(17).build().unwrap(),
    )
}

type Classifier =
    fn(Result<&Response, &(dyn std::error::Error + 'static)>) -> tower_headroom::Outcome;
const CLASSIFY: Classifier = classify_all;

/// Primary model overloaded from minute 4 to 6 of 10, through the full stack with admission
/// (200 requests per minute per model, so admission never holds a call back at 120/min):
/// zero failed requests, p99 within 1.2x of normal, Haiku during the episode, Sonnet after.
#[tokio::test(start_paused = true)]
async fn overload_episode_is_served_by_the_secondary_through_the_whole_stack() {
    let start = Instant::now();
    let script: Arc<Script> = Arc::new(|model, elapsed, rng| {
        if model == "anthropic.claude-sonnet" && elapsed >= 4 * MIN && elapsed < 6 * MIN {
            (529, Duration::from_millis(50))
        } else {
            (200, normal(rng))
        }
    });
    let backend = Scripted::new(start, script);
    let quota = Quota::new(Limit::per_minute().requests(200).build().unwrap());
    let (retry, breaker) = seeded(Profile::Bedrock);
    let service = bedrock_route(StackBuilder::bedrock(CLASSIFY))
        .retry(retry)
        .breaker(breaker)
        .admission(quota.clone(), FixedCost(Cost::ONE_REQUEST))
        .rewrite(backend.clone(), rewrite_model)
        .unwrap();
    let records = drive(service.clone(), start, "sonnet").await;

    assert_eq!(records.len(), 1200);
    let failed = records
        .iter()
        .filter(|r| !matches!(r.result, Ok((200, _))))
        .count();
    assert_eq!(failed, 0, "zero failed requests");
    let normal_p99 = p99(records
        .iter()
        .filter(|r| r.start < 4 * MIN)
        .map(|r| r.latency)
        .collect());
    let episode = |r: &&Record| r.start >= 4 * MIN && r.start < 6 * MIN;
    let episode_p99 = p99(records.iter().filter(episode).map(|r| r.latency).collect());
    println!("stack: normal p99 {normal_p99:?}, episode p99 {episode_p99:?}");
    assert!(episode_p99.as_secs_f64() <= 1.2 * normal_p99.as_secs_f64());
    for r in records.iter().filter(episode) {
        let served = &r.result.as_ref().unwrap().1;
        assert_eq!((&*served.name, served.degraded), ("haiku", true));
    }
    for r in records
        .iter()
        .filter(|r| r.start >= 6 * MIN + Duration::from_secs(45))
    {
        assert_eq!(&*r.result.as_ref().unwrap().1.name, "sonnet");
    }
    assert_eq!(
        service.breakers()[0].as_ref().unwrap().state(),
        State::Closed
    );
    // Every call the backend saw was admitted against its own model's key.
    let now = Instant::now();
    assert!(quota.stats(&"anthropic.claude-sonnet", now).is_some());
    assert!(quota.stats(&"anthropic.claude-haiku", now).is_some());
}

/// Both regions answer 503 from minute 2 to 8, one client per region, with the DynamoDB-ish
/// HTTP defaults: the breakers open, calls that reach a backend stay ≤ 1.1 per request over
/// the outage (retries included), and a gateway answers 503 with `Retry-After`.
#[tokio::test(start_paused = true)]
async fn total_outage_through_the_whole_stack_keeps_attempts_per_request_low() {
    let start = Instant::now();
    let script: Arc<Script> = Arc::new(|_region, elapsed, rng| {
        if elapsed >= 2 * MIN && elapsed < 8 * MIN {
            (503, Duration::from_millis(200))
        } else {
            (200, normal(rng))
        }
    });
    let backend = Scripted::new(start, script);
    let (retry, breaker) = seeded(Profile::Http);
    let service = StackBuilder::new(Profile::Http, CLASSIFY)
        .target(Target::new("east", "us-east-1").region("us-east-1"))
        .target(Target::new("west", "us-west-2").region("us-west-2"))
        .retry(retry)
        .breaker(breaker)
        .services(vec![
            backend.in_region("us-east-1"),
            backend.in_region("us-west-2"),
        ])
        .unwrap();
    let records = drive(service, start, "east").await;

    let outage = |r: &&Record| r.start >= 2 * MIN && r.start < 8 * MIN;
    let requests = records.iter().filter(outage).count();
    let attempts = backend.calls_between(2 * MIN, 8 * MIN).len();
    let per_request = attempts as f64 / requests as f64;
    println!("stack outage: {attempts} backend calls for {requests} requests ({per_request:.3})");
    assert_eq!(requests, 720);
    assert!(per_request <= 1.1, "{per_request}");
    // What a gateway answers for each request of the outage: 503, with `Retry-After` on the
    // fail-fast answers (the breakers know when they half-open).
    let mut fast = 0;
    for r in records.iter().filter(outage) {
        match &r.result {
            // A retry that waited past the recovery succeeds.
            Ok((200, _)) => assert!(r.start + r.latency >= 8 * MIN),
            Ok((status, _)) => assert_eq!(*status, 503),
            Err(e) => {
                let response = error_response::<()>(e.as_ref());
                assert_eq!(response.status(), 503, "{e}");
                assert!(response.headers().contains_key("retry-after"), "{e}");
                fast += 1;
            }
        }
    }
    println!("stack outage: {fast} of {requests} failed fast");
    assert!(fast >= 600, "{fast} of {requests} failed fast");
    for r in records
        .iter()
        .filter(|r| r.start >= 8 * MIN + Duration::from_secs(45))
    {
        let (status, served) = r.result.as_ref().unwrap();
        assert_eq!((*status, &*served.name), (200, "east"));
    }
}

/// Admission sheds what cannot be admitted within the call's deadline; a gateway answers 429
/// with the wait, rounded up, as `Retry-After`; nothing reaches the backend.
#[tokio::test(start_paused = true)]
async fn admission_shed_becomes_429_with_retry_after() {
    let start = Instant::now();
    let backend = Scripted::new(start, Arc::new(|_, _, _| (200, Duration::from_millis(10))));
    let limit = Limit::per_minute().requests(1).build().unwrap();
    let service = StackBuilder::bedrock(CLASSIFY)
        .deadline(Duration::from_secs(1))
        .target(Target::new("sonnet", "anthropic.claude-sonnet"))
        .retry(RetryPolicy::builder().max_attempts(1).build().unwrap())
        .admission(Quota::new(limit), FixedCost(Cost::ONE_REQUEST))
        .rewrite(backend.clone(), rewrite_model)
        .unwrap();
    let request = || http::Request::builder().uri("/").body(()).unwrap();
    assert_eq!(
        service.clone().oneshot(request()).await.unwrap().status(),
        200
    );
    let error = service.clone().oneshot(request()).await.unwrap_err();
    let response = error_response::<()>(error.as_ref());
    assert_eq!(response.status(), 429, "{error}");
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // The first call leaves the window a minute after it, up to one time slot late (a 256th of
    // the window); rounded up to whole seconds.
    assert!((59..=61).contains(&retry_after), "{retry_after}");
    assert_eq!(backend.calls_between(Duration::ZERO, MIN).len(), 1);
}

/// With every breaker open the stack fails fast — no backend call, no wait — and a gateway
/// answers 503 with the time until the first breaker half-opens.
#[tokio::test(start_paused = true)]
async fn every_breaker_open_fails_fast_with_503() {
    let start = Instant::now();
    let backend = Scripted::new(start, Arc::new(|_, _, _| (503, Duration::from_millis(10))));
    let breaker = BreakerConfig::builder()
        .consecutive_failures(2)
        .open_for(Duration::from_secs(30))
        .open_jitter(0.0)
        .build()
        .unwrap();
    let service = bedrock_route(StackBuilder::bedrock(CLASSIFY))
        .retry(RetryPolicy::builder().max_attempts(1).build().unwrap())
        .breaker(breaker)
        .rewrite(backend.clone(), rewrite_model)
        .unwrap();
    let request = || http::Request::builder().uri("/").body(()).unwrap();
    // Each call tries both models; two calls trip both breakers.
    for _ in 0..2 {
        let response = service.clone().oneshot(request()).await.unwrap();
        assert_eq!(response.status(), 503);
    }
    let calls = backend.calls_between(Duration::ZERO, MIN).len();
    assert_eq!(calls, 4);
    let sent = Instant::now();
    let error = service.clone().oneshot(request()).await.unwrap_err();
    assert_eq!(sent.elapsed(), Duration::ZERO);
    assert_eq!(backend.calls_between(Duration::ZERO, MIN).len(), calls);
    let response = error_response::<()>(error.as_ref());
    assert_eq!(response.status(), 503, "{error}");
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((29..=30).contains(&retry_after), "{retry_after}");
}

fn config_error(result: Result<impl Sized, ConfigError>) -> String {
    match result {
        Ok(_) => panic!("accepted a bad configuration"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_configuration_is_a_typed_error_naming_the_field() {
    let backend = || Scripted::new(Instant::now(), Arc::new(|_, _, _| (200, Duration::ZERO)));
    let no_targets = StackBuilder::<&str, _>::bedrock(CLASSIFY).rewrite(backend(), rewrite_model);
    let message = config_error(no_targets);
    assert!(message.contains("targets"), "{message}");

    let duplicate = StackBuilder::bedrock(CLASSIFY)
        .target(Target::new("sonnet", "a"))
        .target(Target::new("sonnet", "b"))
        .rewrite(backend(), rewrite_model);
    let message = config_error(duplicate);
    assert!(
        message.contains("duplicate") && message.contains("sonnet"),
        "{message}"
    );

    let one_short = StackBuilder::bedrock(CLASSIFY)
        .target(Target::new("east", "us-east-1"))
        .target(Target::new("west", "us-west-2"))
        .services(vec![backend()]);
    let message = config_error(one_short);
    assert!(
        message.contains("services") && message.contains('1'),
        "{message}"
    );

    let zero_window = Limit::per_window(Duration::ZERO).requests(10).build();
    assert!(config_error(zero_window).contains("window"));
    let zero_breaker_window = BreakerConfig::builder()
        .window(tower_headroom::breaker::Window::Time(Duration::ZERO))
        .build();
    assert!(config_error(zero_breaker_window).contains("window"));
    let zero_attempts = Profile::Bedrock.retry().max_attempts(0).build();
    assert!(config_error(zero_attempts).contains("max_attempts"));
}
