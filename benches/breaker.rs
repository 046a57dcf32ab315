//! Cost of the breaker and the fallback router per call, against the bare service in the same
//! run: `cargo bench --bench breaker`. Read the ratios, not the absolute numbers.
//!
//! - `bare`: `poll_ready` + `call` + one poll of an always-ready `service_fn`;
//! - `breaker_closed`: the same through a closed `Breaker` (lock, classify, record);
//! - `breaker_open_fast_fail`: an open `Breaker` (no inner call; allocates the boxed error);
//! - `fallback_primary_ok`: a two-target `Fallback` router whose first target answers.

use std::error::Error;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tower::Service;
use tower_headroom::breaker::{BreakerConfig, BreakerHandle, BreakerLayer};
use tower_headroom::fallback::{FallbackBuilder, NoAnnotation, Route, Target};
use tower_headroom::observe::Labels;
use tower_headroom::{BoxError, Outcome, OutcomeKind};

fn classify(result: Result<&u16, &(dyn Error + 'static)>) -> Outcome {
    match result {
        Ok(200) => Outcome::SUCCESS,
        Ok(_) => Outcome::new(OutcomeKind::Unavailable),
        Err(_) => Outcome::new(OutcomeKind::Transient),
    }
}

fn once<S, E>(service: &mut S, request: u16) -> Result<u16, E>
where
    S: Service<u16, Response = u16, Error = E>,
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

fn bare() -> impl Service<u16, Response = u16, Error = BoxError> + Clone {
    tower::service_fn(|status: u16| std::future::ready(Ok::<u16, BoxError>(status)))
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker");

    let mut service = bare();
    group.bench_function("bare", |b| b.iter(|| once(&mut service, black_box(200))));

    let closed = BreakerHandle::new(BreakerConfig::default(), Labels::target("bench"));
    let mut service = tower::Layer::layer(&BreakerLayer::new(closed, classify), bare());
    group.bench_function("breaker_closed", |b| {
        b.iter(|| once(&mut service, black_box(200)))
    });

    let config = BreakerConfig::builder()
        .open_for(Duration::from_secs(1_000_000))
        .build()
        .unwrap();
    let open = BreakerHandle::new(config, Labels::target("bench"));
    open.trip(tokio::time::Instant::now());
    let mut service = tower::Layer::layer(&BreakerLayer::new(open, classify), bare());
    group.bench_function("breaker_open_fast_fail", |b| {
        b.iter(|| once(&mut service, black_box(200)).unwrap_err())
    });

    let route = Route::builder()
        .target(Target::new("primary", ()))
        .target(Target::new("secondary", ()))
        .build()
        .unwrap();
    let mut service = FallbackBuilder::new(route, classify)
        .annotate(NoAnnotation)
        .services(vec![bare(), bare()])
        .unwrap();
    group.bench_function("fallback_primary_ok", |b| {
        b.iter(|| once(&mut service, black_box(200)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
