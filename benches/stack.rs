//! The whole stack's success-path overhead, side by side in one run with tower-resilience's
//! retry + rate limiter + circuit breaker + fallback: `cargo bench --bench stack`. Read the
//! ratios (printed at the end), not the absolute numbers.
//!
//! - `bare`: `poll_ready` + `call` + one poll of an always-ready `service_fn` answering
//!   `http::Response<()>`;
//! - `headroom_stack`: [`StackBuilder`] with two targets: retry (budget, deadline) → fallback
//!   router (a breaker per target) → admission per target (requests and units, usage settled)
//!   → the service, the first target answering;
//! - `headroom_no_admission`, `headroom_no_admission_no_breakers`: the same stack without
//!   admission, and without breakers too, to show where the time goes;
//! - `tower_resilience_stack`: tower-resilience 0.13: retry → fallback (primary, backup) →
//!   circuit breaker → rate limiter → the service, for each of the two targets;
//! - `headroom_open_fast_fail`: the stack with both targets' breakers open and one attempt (no
//!   inner call; the error is boxed), driven on a current-thread runtime;
//! - `bare_on_runtime`: the bare service driven the same way, what the runtime alone costs the
//!   fast-fail row;
//!
//! tower-resilience's own fast-fail path is not compared: with both breakers forced open
//! (`force_open`) its stack still reached the inner service in our runs, so there was no
//! like-for-like path to measure.
//!
//! Overhead is each stack's time minus `bare`; the goal is ours ≤ 0.5x theirs.

mod common;

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tower::{Layer, Service};
use tower_headroom::admission::{FixedCost, HeaderUsage, Limit, Quota};
use tower_headroom::breaker::{BreakerConfig, BreakerRegistry};
use tower_headroom::fallback::Target;
use tower_headroom::stack::{Profile, StackBuilder};
use tower_headroom::{BoxError, Cost, HttpClassifier};

type Response = http::Response<()>;

fn once<S>(service: &mut S, request: u16) -> Result<Response, S::Error>
where
    S: Service<u16, Response = Response>,
{
    let mut cx = Context::from_waker(Waker::noop());
    let Poll::Ready(Ok(())) = service.poll_ready(&mut cx) else {
        unreachable!("always ready")
    };
    let mut future = pin!(service.call(request));
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(result) => result,
        Poll::Pending => unreachable!("always ready"),
    }
}

/// A call expected to fail fast, driven on a runtime (the retry layer's future needs one when
/// it is handed a `retry_in`).
fn fail_fast<S>(runtime: &tokio::runtime::Runtime, service: &mut S, request: u16) -> S::Error
where
    S: Service<u16, Response = Response>,
{
    use tower::ServiceExt;
    runtime
        .block_on(async { service.ready().await?.call(request).await })
        .map(drop)
        .err()
        .unwrap_or_else(|| unreachable!("fails fast"))
}

fn bare()
-> impl Service<u16, Response = Response, Error = BoxError, Future: Send> + Clone + Send + 'static {
    tower::service_fn(|status: u16| {
        let mut response = http::Response::new(());
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
        std::future::ready(Ok::<_, BoxError>(response))
    })
}

fn big_limit() -> Limit {
    Limit::per_second()
        .requests(1 << 40)
        .units(1 << 40)
        .build()
        .unwrap()
}

fn headroom_stack(
    breakers: BreakerRegistry<Arc<str>>,
    attempts: u32,
) -> impl Service<u16, Response = Response, Error = BoxError> + Clone {
    StackBuilder::bedrock(HttpClassifier::new())
        .breaker_registry(breakers)
        .retry(
            Profile::Bedrock
                .retry()
                .max_attempts(attempts)
                .build()
                .unwrap(),
        )
        .target(Target::new("primary", "primary"))
        .target(Target::new("secondary", "secondary"))
        .admission(Quota::new(big_limit()), FixedCost(Cost::new(1, 100)))
        .usage(HeaderUsage::new())
        .services(vec![bare(), bare()])
        .unwrap()
}

fn tower_resilience_stack() -> impl Service<u16, Response = Response, Error: std::fmt::Debug> + Clone
{
    use tower_resilience::circuitbreaker::CircuitBreakerLayer;
    use tower_resilience::fallback::FallbackLayer;
    use tower_resilience::ratelimiter::RateLimiterLayer;
    use tower_resilience::retry::RetryLayer;

    let target = || {
        let limiter = RateLimiterLayer::builder()
            .limit_for_period(1 << 30)
            .refresh_period(Duration::from_secs(1))
            .timeout_duration(Duration::ZERO)
            .build()
            .unwrap();
        let breaker = CircuitBreakerLayer::builder()
            .failure_rate_threshold(0.5)
            .sliding_window_size(100)
            .build()
            .unwrap();
        breaker.layer(limiter.layer(bare()))
    };
    let primary = target();
    let backup = target();
    let fallback = FallbackLayer::tower_service(backup).layer(primary);
    RetryLayer::builder()
        .max_attempts(4)
        .exponential_backoff(Duration::from_millis(100))
        .build()
        .layer(fallback)
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("stack");
    // No runtime context is entered: with tokio's `test-util` (a dev-dependency feature) an
    // `Instant::now()` inside a runtime reads the runtime's mockable clock behind a mutex,
    // which no production build pays.

    let mut service = bare();
    group.bench_function("bare", |b| b.iter(|| once(&mut service, black_box(200))));

    let registry = || {
        BreakerRegistry::builder(BreakerConfig::default())
            .build()
            .unwrap()
    };
    let mut ours = headroom_stack(registry(), 4);
    group.bench_function("headroom_stack", |b| {
        b.iter(|| once(&mut ours, black_box(200)).unwrap())
    });

    let mut no_admission = StackBuilder::bedrock(HttpClassifier::new())
        .target(Target::new("primary", "primary"))
        .target(Target::new("secondary", "secondary"))
        .services(vec![bare(), bare()])
        .unwrap();
    group.bench_function("headroom_no_admission", |b| {
        b.iter(|| once(&mut no_admission, black_box(200)).unwrap())
    });
    let mut no_breakers = StackBuilder::bedrock(HttpClassifier::new())
        .target(Target::new("primary", "primary"))
        .target(Target::new("secondary", "secondary"))
        .no_breakers()
        .services(vec![bare(), bare()])
        .unwrap();
    group.bench_function("headroom_no_admission_no_breakers", |b| {
        b.iter(|| once(&mut no_breakers, black_box(200)).unwrap())
    });
    let mut theirs = tower_resilience_stack();
    group.bench_function("tower_resilience_stack", |b| {
        b.iter(|| once(&mut theirs, black_box(200)).unwrap())
    });

    let open = registry();
    let mut ours_open = headroom_stack(open.clone(), 1);
    for name in ["primary", "secondary"] {
        open.get(&Arc::<str>::from(name), tokio::time::Instant::now())
            .trip(tokio::time::Instant::now());
    }
    group.bench_function("headroom_open_fast_fail", |b| {
        b.iter(|| fail_fast(&runtime, &mut ours_open, black_box(200)))
    });
    // What driving one call on the runtime costs by itself, for the fast-fail row.
    let mut service = bare();
    group.bench_function("bare_on_runtime", |b| {
        b.iter(|| {
            runtime.block_on(async {
                use tower::ServiceExt;
                service.ready().await?.call(black_box(200)).await
            })
        })
    });

    group.finish();

    common::print_overhead_ratio("stack", "headroom_stack", "tower_resilience_stack", "bare");
    common::print_ratio("stack", "headroom_stack", "tower_resilience_stack");
    common::print_ratio("stack", "headroom_open_fast_fail", "headroom_stack");
    common::print_ratio("stack", "headroom_open_fast_fail", "bare_on_runtime");
}

criterion_group!(benches, bench);
criterion_main!(benches);
