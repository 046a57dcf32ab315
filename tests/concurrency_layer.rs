//! `ConcurrencyLimitLayer` / `ConcurrencyLimit<S>` under tokio's paused clock: shedding,
//! slots held from `call` to completion or drop, learning through the classifier, the
//! refusal's classification, and its metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Layer, Service, ServiceExt};
use tower_headroom::classify::{Classify, classify_error};
use tower_headroom::concurrency::{
    AdaptiveLimit, ConcurrencyConfig, ConcurrencyLimit, ConcurrencyLimitLayer, ConcurrencyLimited,
};
use tower_headroom::observe::Labels;
use tower_headroom::retry::{RetriesExhausted, RetryPolicy, StopReason};
use tower_headroom::{HttpClassifier, OutcomeKind, RetryLayer};

const CANARY: &str = "CANARY-prompt-sk-live-0123456789";

/// A backend answering every request with its status after its latency, counting calls.
#[derive(Clone)]
struct Backend(Arc<(AtomicU16, AtomicUsize)>, Duration);

impl Backend {
    fn new(status: u16, latency: Duration) -> Self {
        Backend(
            Arc::new((AtomicU16::new(status), AtomicUsize::new(0))),
            latency,
        )
    }

    fn answer(&self, status: u16) {
        self.0.0.store(status, Ordering::SeqCst);
    }

    fn calls(&self) -> usize {
        self.0.1.load(Ordering::SeqCst)
    }
}

type Request = http::Request<String>;
type Response = http::Response<String>;

impl Service<Request> for Backend {
    type Response = Response;
    type Error = std::io::Error;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Response, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request) -> Self::Future {
        self.0.1.fetch_add(1, Ordering::SeqCst);
        let (status, latency) = (self.0.0.load(Ordering::SeqCst), self.1);
        Box::pin(async move {
            tokio::time::sleep(latency).await;
            Ok(http::Response::builder()
                .status(status)
                .body(String::new())
                .unwrap())
        })
    }
}

fn request() -> Request {
    http::Request::builder()
        .header("authorization", format!("Bearer {CANARY}"))
        .body(format!("prompt: {CANARY}"))
        .unwrap()
}

fn limit(initial: u32) -> AdaptiveLimit {
    let config = ConcurrencyConfig::builder()
        .initial_limit(initial)
        .build()
        .unwrap();
    AdaptiveLimit::new(config, Labels::target("bedrock").region("us-east-1"))
}

fn limited(limit: &AdaptiveLimit, backend: &Backend) -> ConcurrencyLimit<Backend, HttpClassifier> {
    ConcurrencyLimitLayer::new(limit.clone(), HttpClassifier::new()).layer(backend.clone())
}

#[tokio::test(start_paused = true)]
async fn a_full_limit_sheds_at_once_without_calling_the_backend() {
    let limit = limit(2);
    let backend = Backend::new(200, Duration::from_secs(5));
    let mut service = limited(&limit, &backend);
    let first = service.ready().await.unwrap().call(request());
    let second = service.ready().await.unwrap().call(request());
    assert_eq!(limit.in_flight(), 2);

    let started = tokio::time::Instant::now();
    let error = service
        .ready()
        .await
        .unwrap()
        .call(request())
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO, "shed at once");
    assert_eq!(
        backend.calls(),
        2,
        "the shed call never reached the backend"
    );
    let shed = error.downcast_ref::<ConcurrencyLimited>().unwrap();
    assert_eq!((shed.limit, shed.in_flight), (2, 2));
    assert_eq!(
        shed.retry_in,
        Duration::from_secs(1),
        "no latency sample yet"
    );
    assert_eq!(shed.labels(), limit.labels());
    let text = error.to_string();
    assert_eq!(
        text,
        "concurrency limit reached (target=bedrock region=us-east-1): \
         2 calls in flight, limit 2; retry in 1s"
    );
    assert!(!format!("{error:?}").contains(CANARY));

    let (a, b) = tokio::join!(first, second);
    assert_eq!(a.unwrap().status(), 200);
    assert_eq!(b.unwrap().status(), 200);
    assert_eq!(limit.in_flight(), 0, "completed calls free their slots");
}

#[tokio::test(start_paused = true)]
async fn poll_ready_holds_no_slot() {
    let limit = limit(1);
    let backend = Backend::new(200, Duration::from_secs(1));
    let mut a = limited(&limit, &backend);
    let mut b = a.clone();
    // Both clones ready, many times over: readiness takes nothing.
    for _ in 0..10 {
        a.ready().await.unwrap();
        b.ready().await.unwrap();
    }
    assert_eq!(limit.in_flight(), 0);
    let call = a.call(request());
    assert_eq!(limit.in_flight(), 1, "the slot is taken in call");
    let shed = b.call(request()).await.unwrap_err();
    assert!(shed.is::<ConcurrencyLimited>());
    call.await.unwrap();
    b.ready().await.unwrap().call(request()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_dropped_call_frees_its_slot_and_teaches_nothing() {
    let limit = limit(4);
    let backend = Backend::new(503, Duration::from_secs(1));
    let mut service = limited(&limit, &backend);
    let calls: Vec<_> = (0..4).map(|_| service.call(request())).collect();
    assert_eq!(limit.in_flight(), 4);
    drop(calls);
    assert_eq!(limit.in_flight(), 0);
    assert_eq!(limit.limit(), 4, "cancelled 503s were never seen");
}

#[tokio::test(start_paused = true)]
async fn unavailable_answers_cut_the_limit_and_successes_in_full_use_grow_it() {
    let limit = limit(10);
    let backend = Backend::new(503, Duration::from_millis(50));
    let service = limited(&limit, &backend);
    // A burst of ten 503s: one cut.
    let burst = (0..10).map(|_| service.clone().oneshot(request()));
    for response in join_all(burst).await {
        assert_eq!(response.unwrap().status(), 503);
    }
    assert_eq!(limit.limit(), 9);

    backend.answer(200);
    for _ in 0..20 {
        let round = (0..limit.limit()).map(|_| service.clone().oneshot(request()));
        for response in join_all(round).await {
            assert_eq!(response.unwrap().status(), 200);
        }
    }
    assert!(limit.limit() > 9, "grew in use: {}", limit.limit());
}

/// Awaits every future, in order (the crate has no `futures` dependency).
async fn join_all<F: Future + Send + 'static>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(tasks.len());
    for task in tasks {
        outputs.push(task.await.unwrap());
    }
    outputs
}

#[tokio::test(start_paused = true)]
async fn the_refusal_is_a_local_unavailable_that_spends_no_attempt() {
    let limit = limit(1);
    let backend = Backend::new(200, Duration::from_secs(3));
    let service = limited(&limit, &backend);
    let held = service.clone().oneshot(request());
    let held = tokio::spawn(held);
    tokio::task::yield_now().await;
    assert_eq!(limit.in_flight(), 1);

    let error = service.clone().oneshot(request()).await.unwrap_err();
    for outcome in [
        classify_error(&*error),
        HttpClassifier::new().classify(Err::<&Response, _>(&*error)),
    ] {
        assert_eq!(outcome.kind, OutcomeKind::Unavailable);
        assert!(outcome.local);
        assert_eq!(outcome.retry_after, Some(Duration::from_secs(1)));
    }

    // A retry layer outside: no attempt spent, no wait, the limit's error as the source.
    let policy = RetryPolicy::builder().seed(1).build().unwrap();
    let retried = RetryLayer::new(policy, HttpClassifier::new()).layer(service.clone());
    let started = tokio::time::Instant::now();
    let error = retried.oneshot(request()).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO);
    let exhausted = error.downcast_ref::<RetriesExhausted>().unwrap();
    assert_eq!(exhausted.attempts(), 0, "a local refusal is not an attempt");
    assert_eq!(exhausted.reason(), StopReason::CircuitOpen);
    assert!(tower_headroom::classify::find::<ConcurrencyLimited>(&*error).is_some());
    assert_eq!(backend.calls(), 1);
    held.await.unwrap().unwrap();
}

#[cfg(feature = "metrics")]
#[tokio::test(start_paused = true)]
async fn the_limit_and_its_refusals_are_reported_under_the_labels() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use tower_headroom::observe::names;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let limit = metrics::with_local_recorder(&recorder, || limit(2));
    let backend = Backend::new(503, Duration::from_secs(1));
    let mut service = limited(&limit, &backend);
    let calls: Vec<_> = (0..2).map(|_| service.call(request())).collect();
    for _ in 0..3 {
        service.call(request()).await.unwrap_err();
    }
    for call in calls {
        call.await.unwrap();
    }
    assert_eq!(limit.limit(), 1, "2 × 0.9");

    let mut seen = 0;
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let labels: Vec<_> = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        assert!(!labels.iter().any(|(_, v)| v.contains(CANARY)));
        assert!(labels.contains(&("target".into(), "bedrock".into())));
        assert!(labels.contains(&("region".into(), "us-east-1".into())));
        match (key.name(), value) {
            (names::CONCURRENCY_LIMIT, DebugValue::Gauge(v)) => {
                assert_eq!(v.into_inner(), 1.0);
                seen += 1;
            }
            (names::CONCURRENCY_REJECTED, DebugValue::Counter(n)) => {
                assert_eq!(n, 3);
                seen += 1;
            }
            _ => {}
        }
    }
    assert_eq!(seen, 2);
}
