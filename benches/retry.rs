//! Success-path overhead of `RetryLayer` against a bare service and against tower's own `Retry`
//! with a trivial policy, measured side by side.
//!
//! `cargo bench --bench retry` prints criterion's timings, then the ratios between them.

use std::error::Error;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group};

mod common;
use tower::{Layer, Service};
use tower_headroom::retry::RetryPolicy;
use tower_headroom::{Outcome, RetryLayer};

fn bare() -> impl Service<u64, Response = u64, Error = std::io::Error, Future: Unpin> + Clone {
    tower::service_fn(|req: u64| std::future::ready(Ok::<_, std::io::Error>(req + 1)))
}

/// tower's retry with a policy that never retries but clones the request, as any real one does.
#[derive(Clone)]
struct NeverRetry;

impl<Res, E> tower::retry::Policy<u64, Res, E> for NeverRetry {
    type Future = std::future::Ready<()>;

    fn retry(&mut self, _: &mut u64, _: &mut Result<Res, E>) -> Option<Self::Future> {
        None
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

/// tower's retry with its own retry budget, as tower's docs show it: a deposit per request.
#[derive(Clone)]
struct Budgeted(std::sync::Arc<tower::retry::budget::TpsBudget>);

impl<Res, E> tower::retry::Policy<u64, Res, E> for Budgeted {
    type Future = std::future::Ready<()>;

    fn retry(&mut self, _: &mut u64, result: &mut Result<Res, E>) -> Option<Self::Future> {
        use tower::retry::budget::Budget;
        match result {
            Ok(_) => {
                self.0.deposit();
                None
            }
            Err(_) => self.0.withdraw().then(|| std::future::ready(())),
        }
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

fn tower_budgeted() -> impl Service<u64, Response = u64> + Clone {
    let budget = tower::retry::budget::TpsBudget::new(Duration::from_secs(10), 10, 0.1);
    tower::retry::RetryLayer::new(Budgeted(std::sync::Arc::new(budget))).layer(bare())
}

fn classify(result: Result<&u64, &(dyn Error + 'static)>) -> Outcome {
    match result {
        Ok(_) => Outcome::SUCCESS,
        Err(_) => Outcome::FATAL,
    }
}

#[inline(always)]
fn call<S>(svc: &mut S, cx: &mut Context<'_>, req: u64) -> u64
where
    S: Service<u64, Response = u64>,
{
    let _ = svc.poll_ready(cx);
    let mut fut = pin!(svc.call(req));
    match fut.as_mut().poll(cx) {
        Poll::Ready(Ok(out)) => out,
        _ => unreachable!("the inner service answers at once"),
    }
}

fn headroom() -> impl Service<u64, Response = u64> + Clone {
    let policy = RetryPolicy::builder().build().expect("valid policy");
    RetryLayer::new(policy, classify).layer(bare())
}

fn tower_retry() -> impl Service<u64, Response = u64> + Clone {
    tower::retry::RetryLayer::new(NeverRetry).layer(bare())
}

fn bench(c: &mut Criterion) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut group = c.benchmark_group("retry_success_path");
    let mut svc = bare();
    group.bench_function("bare", |b| b.iter(|| call(&mut svc, &mut cx, black_box(1))));
    let mut svc = tower_retry();
    group.bench_function("tower_retry", |b| {
        b.iter(|| call(&mut svc, &mut cx, black_box(1)))
    });
    let mut svc = tower_budgeted();
    group.bench_function("tower_retry_with_budget", |b| {
        b.iter(|| call(&mut svc, &mut cx, black_box(1)))
    });
    let mut svc = headroom();
    group.bench_function("headroom_retry", |b| {
        b.iter(|| call(&mut svc, &mut cx, black_box(1)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if std::env::args().any(|a| a == "--bench") {
        println!("\nsuccess-path cost per call, as ratios (criterion medians of this run):");
        let group = "retry_success_path";
        common::print_ratio(group, "headroom_retry", "tower_retry");
        common::print_ratio(group, "headroom_retry", "tower_retry_with_budget");
        common::print_ratio(group, "headroom_retry", "bare");
    }
}
