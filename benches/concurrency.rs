//! Success-path cost per call of the adaptive concurrency limit, side by side with tower's own
//! fixed `ConcurrencyLimit` and the bare service in the same run:
//! `cargo bench --bench concurrency`. Read the ratios, not the absolute numbers.
//!
//! - `bare`: `poll_ready` + `call` + one poll of an always-ready `service_fn`;
//! - `tower_concurrency_limit`: the same through `tower::limit::ConcurrencyLimit` (a semaphore
//!   permit taken in `poll_ready`, given back when the future completes);
//! - `headroom_concurrency_limit`: the same through `ConcurrencyLimit` (a slot taken in
//!   `call`; the result classified, the latency sampled and the limit grown on completion).

use std::error::Error;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group};
use tower::{Layer, Service};
use tower_headroom::concurrency::{AdaptiveLimit, ConcurrencyConfig, ConcurrencyLimitLayer};
use tower_headroom::observe::Labels;
use tower_headroom::{BoxError, Outcome, OutcomeKind};

mod common;

fn classify(result: Result<&u16, &(dyn Error + 'static)>) -> Outcome {
    match result {
        Ok(200) => Outcome::SUCCESS,
        Ok(_) => Outcome::new(OutcomeKind::Unavailable),
        Err(_) => Outcome::new(OutcomeKind::Transient),
    }
}

fn bare() -> impl Service<u16, Response = u16, Error = BoxError> + Clone {
    tower::service_fn(|status: u16| std::future::ready(Ok::<u16, BoxError>(status)))
}

#[inline(always)]
fn once<S>(service: &mut S, cx: &mut Context<'_>, request: u16) -> u16
where
    S: Service<u16, Response = u16>,
{
    let Poll::Ready(Ok(())) = service.poll_ready(cx) else {
        unreachable!("always ready")
    };
    let mut future = pin!(service.call(request));
    match future.as_mut().poll(cx) {
        Poll::Ready(Ok(status)) => status,
        _ => unreachable!("the inner service answers at once"),
    }
}

fn bench(c: &mut Criterion) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut group = c.benchmark_group("concurrency");

    let mut service = bare();
    group.bench_function("bare", |b| {
        b.iter(|| once(&mut service, &mut cx, black_box(200)))
    });

    let mut service = tower::limit::ConcurrencyLimitLayer::new(256).layer(bare());
    group.bench_function("tower_concurrency_limit", |b| {
        b.iter(|| once(&mut service, &mut cx, black_box(200)))
    });

    let limit = AdaptiveLimit::new(ConcurrencyConfig::default(), Labels::target("bench"));
    let mut service = ConcurrencyLimitLayer::new(limit, classify).layer(bare());
    group.bench_function("headroom_concurrency_limit", |b| {
        b.iter(|| once(&mut service, &mut cx, black_box(200)))
    });
    group.finish();
}

criterion_group!(benches, bench);

fn main() {
    benches();
    common::finish(|| {
        println!("\nsuccess-path cost per call, as ratios (criterion medians of this run):");
        let (group, headroom, tower) = (
            "concurrency",
            "headroom_concurrency_limit",
            "tower_concurrency_limit",
        );
        common::print_ratio(group, headroom, tower);
        common::print_overhead_ratio(group, headroom, tower, "bare");
        common::print_ratio(group, headroom, "bare");
    });
}
