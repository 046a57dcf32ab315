//! The fallback adapters: router over services, request rewriter, errors, seams.

use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Service, ServiceExt, service_fn};
use tower_headroom::breaker::{BreakerConfig, BreakerRegistry, State};
use tower_headroom::fallback::{
    FallbackBuilder, Headroom, NoAnnotation, NoTargetAvailable, Route, Served, Target,
};
use tower_headroom::{BoxError, Outcome, OutcomeKind};

type Response = http::Response<()>;

fn classify(result: Result<&Response, &(dyn Error + 'static)>) -> Outcome {
    match result {
        Ok(r) if r.status().is_success() => Outcome::SUCCESS,
        Ok(r) if r.status() == 503 => Outcome::new(OutcomeKind::Unavailable),
        Ok(r) if r.status() == 529 => Outcome::new(OutcomeKind::Overloaded),
        Ok(_) => Outcome::FATAL,
        Err(_) => Outcome::new(OutcomeKind::Timeout),
    }
}

fn status(code: u16) -> Response {
    let mut response = http::Response::new(());
    *response.status_mut() = http::StatusCode::from_u16(code).unwrap();
    response
}

/// A region client answering a fixed status and counting its calls.
fn region(
    code: u16,
    calls: &Arc<AtomicUsize>,
) -> impl Service<(), Response = Response, Error = BoxError, Future: Send> + Clone + Send + use<> {
    let calls = Arc::clone(calls);
    service_fn(move |()| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            if code == 0 {
                return Err::<Response, BoxError>("read timed out".into());
            }
            Ok(status(code))
        }
    })
}

fn regions() -> Route<()> {
    Route::builder()
        .target(Target::new("east", ()).region("us-east-1"))
        .target(Target::new("west", ()).region("us-west-2"))
        .target(Target::new("eu", ()).region("eu-west-1"))
        .build()
        .unwrap()
}

fn counters() -> [Arc<AtomicUsize>; 3] {
    Default::default()
}

fn count(c: &Arc<AtomicUsize>) -> usize {
    c.load(Ordering::SeqCst)
}

#[tokio::test(start_paused = true)]
async fn router_over_services_fails_over_and_reports_the_serving_target() {
    let [a, b, c] = counters();
    let service = FallbackBuilder::new(regions(), classify)
        .services(vec![region(503, &a), region(200, &b), region(200, &c)])
        .unwrap();
    let response = service.clone().oneshot(()).await.unwrap();
    assert_eq!(response.status(), 200);
    let served = response.extensions().get::<Served>().unwrap();
    assert_eq!(
        served,
        &Served {
            target: 1,
            name: "west".into(),
            degraded: true,
            hops: 1
        }
    );
    assert_eq!((count(&a), count(&b), count(&c)), (1, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn errors_count_as_outcomes_and_fatal_stops_at_once() {
    let [a, b, c] = counters();
    // A timeout error from east moves on; a 400 from west is returned as it is.
    let service = FallbackBuilder::new(regions(), classify)
        .services(vec![region(0, &a), region(400, &b), region(200, &c)])
        .unwrap();
    let response = service.oneshot(()).await.unwrap();
    assert_eq!(response.status(), 400);
    let served = response.extensions().get::<Served>().unwrap();
    assert_eq!((served.target, served.hops), (1, 1));
    assert_eq!((count(&a), count(&b), count(&c)), (1, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn when_every_target_fails_the_last_answer_is_returned() {
    let [a, b, c] = counters();
    let service = FallbackBuilder::new(regions(), classify)
        .services(vec![region(503, &a), region(503, &b), region(0, &c)])
        .unwrap();
    let error = service.oneshot(()).await.unwrap_err();
    assert_eq!(error.to_string(), "read timed out");
    assert_eq!((count(&a), count(&b), count(&c)), (1, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn open_breakers_are_skipped_without_a_call_and_all_open_fails_fast() {
    let [a, b, c] = counters();
    let config = BreakerConfig::builder()
        .consecutive_failures(1)
        .open_for(Duration::from_secs(10))
        .open_jitter(0.0)
        .build()
        .unwrap();
    let mut service = FallbackBuilder::new(regions(), classify)
        .breaker(config)
        .services(vec![region(503, &a), region(503, &b), region(503, &c)])
        .unwrap();
    let response = service.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(response.status(), 503);
    for breaker in service.breakers() {
        assert_eq!(breaker.as_ref().unwrap().state(), State::Open);
    }
    tokio::time::advance(Duration::from_secs(3)).await;
    let error = service.ready().await.unwrap().call(()).await.unwrap_err();
    let none = error.downcast_ref::<NoTargetAvailable>().unwrap();
    assert_eq!(none.retry_in, Some(Duration::from_secs(7)));
    assert_eq!(
        error.to_string(),
        "no fallback target available: circuit open; retry in 7s"
    );
    assert_eq!((count(&a), count(&b), count(&c)), (1, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn rewriter_rewrites_a_fresh_copy_per_target() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let inner = {
        let seen = Arc::clone(&seen);
        service_fn(move |request: http::Request<String>| {
            let body = request.body().clone();
            seen.lock().unwrap().push(body.clone());
            async move { Ok::<_, BoxError>(status(if body.ends_with("haiku") { 200 } else { 529 })) }
        })
    };
    let route = Route::builder()
        .target(Target::new("sonnet", "sonnet").model("sonnet"))
        .target(Target::new("sonnet-eu", "sonnet").model("sonnet"))
        .target(Target::new("haiku", "haiku").model("haiku"))
        .build()
        .unwrap();
    let layer = FallbackBuilder::new(route, classify).rewrite(
        |request: &mut http::Request<String>, model: &&'static str| {
            request.body_mut().push_str(model)
        },
    );
    let service = tower::Layer::layer(&layer, inner);
    let response = service
        .oneshot(http::Request::new("model=".to_owned()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Overloaded moved to the next *model*, skipping sonnet-eu; each call got a clean copy.
    assert_eq!(*seen.lock().unwrap(), ["model=sonnet", "model=haiku"]);
    assert_eq!(
        response.extensions().get::<Served>().unwrap().name.as_ref(),
        "haiku"
    );
}

/// Admission's seam: the router asks each target's quota before calling.
struct Quota {
    empty: &'static str,
}

impl Headroom<&'static str> for Quota {
    fn admit_wait(&self, target: &&'static str, _now: Instant) -> Option<Duration> {
        Some(if *target == self.empty {
            Duration::from_secs(40)
        } else {
            Duration::ZERO
        })
    }
}

#[tokio::test(start_paused = true)]
async fn headroom_steers_away_from_an_exhausted_quota_before_any_call() {
    let [a, b, _] = counters();
    let route = Route::builder()
        .target(Target::new("east", "east"))
        .target(Target::new("west", "west"))
        .build()
        .unwrap();
    let service = FallbackBuilder::new(route, classify)
        .headroom(Quota { empty: "east" })
        .services(vec![region(200, &a), region(200, &b)])
        .unwrap();
    let response = service.oneshot(()).await.unwrap();
    let served = response.extensions().get::<Served>().unwrap();
    assert_eq!((served.target, served.degraded, served.hops), (1, true, 0));
    assert_eq!((count(&a), count(&b)), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn any_response_type_with_a_custom_annotation() {
    let route = Route::builder()
        .target(Target::new("a", ()))
        .target(Target::new("b", ()))
        .build()
        .unwrap();
    let classify = |r: Result<&(u16, Option<Served>), &(dyn Error + 'static)>| match r {
        Ok((200, _)) => Outcome::SUCCESS,
        _ => Outcome::new(OutcomeKind::Unavailable),
    };
    let svc = |code: u16| service_fn(move |()| async move { Ok::<_, BoxError>((code, None)) });
    let service = FallbackBuilder::new(route.clone(), classify)
        .annotate(|response: &mut (u16, Option<Served>), served: &Served| {
            response.1 = Some(served.clone())
        })
        .services(vec![svc(503), svc(200)])
        .unwrap();
    let (code, served) = service.oneshot(()).await.unwrap();
    assert_eq!((code, served.unwrap().target), (200, 1));
    let plain = FallbackBuilder::new(route, classify)
        .annotate(NoAnnotation)
        .services(vec![svc(200), svc(200)])
        .unwrap();
    assert_eq!(plain.oneshot(()).await.unwrap(), (200, None));
}

#[tokio::test(start_paused = true)]
async fn breakers_can_be_shared_through_a_registry() {
    let registry = BreakerRegistry::builder(
        BreakerConfig::builder()
            .consecutive_failures(1)
            .build()
            .unwrap(),
    )
    .build()
    .unwrap();
    let [a, b, c] = counters();
    let build = |x: &Arc<AtomicUsize>, y: &Arc<AtomicUsize>, z: &Arc<AtomicUsize>| {
        FallbackBuilder::new(regions(), classify)
            .breaker_registry(registry.clone())
            .services(vec![region(503, x), region(200, y), region(200, z)])
            .unwrap()
    };
    let first = build(&a, &b, &c);
    let second = build(&a, &b, &c);
    first.oneshot(()).await.unwrap();
    assert_eq!(registry.peek("east").unwrap().state(), State::Open);
    // The second router sees east's open breaker and does not call it.
    second.oneshot(()).await.unwrap();
    assert_eq!((count(&a), count(&b)), (1, 2));
}

#[test]
fn services_must_match_the_targets() {
    let [a, ..] = counters();
    let error = FallbackBuilder::new(regions(), classify)
        .services(vec![region(200, &a)])
        .unwrap_err();
    assert_eq!((error.field(), error.value()), ("services", "1"));
}
