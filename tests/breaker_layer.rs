//! `BreakerLayer` / `Breaker<S>` under tokio's paused clock.

mod support {
    pub mod capture;
}

use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Service, ServiceBuilder, ServiceExt};
use tower_headroom::breaker::{
    BreakerConfig, BreakerHandle, BreakerLayer, BreakerRegistry, CircuitOpen, State,
};
use tower_headroom::observe::Labels;
use tower_headroom::{BoxError, Outcome, OutcomeKind, ThrottleScope};

/// The scripted backend answers with a status code; `u16` stands in for a response.
fn classify(result: Result<&u16, &(dyn Error + 'static)>) -> Outcome {
    match result {
        Ok(200) => Outcome::SUCCESS,
        Ok(429) => Outcome::throttled(ThrottleScope::Requests),
        Ok(503) => Outcome::new(OutcomeKind::Unavailable),
        Ok(_) => Outcome::FATAL,
        Err(_) => Outcome::new(OutcomeKind::Transient),
    }
}

#[derive(Clone)]
struct Backend {
    status: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
    latency: Duration,
}

impl Backend {
    fn new(status: u16) -> Self {
        Backend {
            status: Arc::new(AtomicUsize::new(status.into())),
            calls: Arc::new(AtomicUsize::new(0)),
            latency: Duration::from_millis(100),
        }
    }
    fn set(&self, status: u16) {
        self.status.store(status.into(), Ordering::SeqCst);
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Service<&'static str> for Backend {
    type Response = u16;
    type Error = std::io::Error;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<u16, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: &'static str) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let status = self.status.load(Ordering::SeqCst) as u16;
        let latency = self.latency;
        Box::pin(async move {
            tokio::time::sleep(latency).await;
            if status == 0 {
                Err(std::io::Error::other("connection reset"))
            } else {
                Ok(status)
            }
        })
    }
}

fn config() -> BreakerConfig {
    BreakerConfig::builder()
        .consecutive_failures(3)
        .open_for(Duration::from_secs(10))
        .open_jitter(0.0)
        .half_open_probes(1)
        .build()
        .unwrap()
}

async fn send<S>(service: &mut S) -> Result<u16, BoxError>
where
    S: Service<&'static str, Response = u16, Error = BoxError>,
{
    service.ready().await?.call("req").await
}

#[tokio::test(start_paused = true)]
async fn open_circuit_fails_fast_without_calling_and_recovers_through_a_probe() {
    let backend = Backend::new(503);
    let breaker = BreakerHandle::new(config(), Labels::target("search").region("eu-west-1"));
    let mut service = ServiceBuilder::new()
        .layer(BreakerLayer::new(breaker.clone(), classify))
        .service(backend.clone());

    for _ in 0..3 {
        assert_eq!(send(&mut service).await.unwrap(), 503);
    }
    assert_eq!(breaker.state(), State::Open);
    let started = tokio::time::Instant::now();
    let error = send(&mut service).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO, "no inner call, no wait");
    let open = error.downcast_ref::<CircuitOpen>().expect("CircuitOpen");
    assert_eq!(open.retry_in, Duration::from_secs(10));
    assert_eq!(
        error.to_string(),
        "circuit breaker open (target=search region=eu-west-1); retry in 10s"
    );
    assert_eq!(backend.calls(), 3);

    tokio::time::advance(Duration::from_secs(4)).await;
    let error = send(&mut service).await.unwrap_err();
    assert_eq!(
        error.downcast_ref::<CircuitOpen>().unwrap().retry_in,
        Duration::from_secs(6)
    );

    // The backend heals; after the open period one probe goes through and closes the circuit.
    backend.set(200);
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(send(&mut service).await.unwrap(), 200);
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(backend.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn quota_throttles_and_client_errors_pass_through_without_tripping() {
    let backend = Backend::new(429);
    let breaker = BreakerHandle::new(config(), Labels::none());
    let mut service = tower::Layer::layer(
        &BreakerLayer::new(breaker.clone(), classify),
        backend.clone(),
    );
    for _ in 0..20 {
        assert_eq!(send(&mut service).await.unwrap(), 429);
    }
    backend.set(400);
    for _ in 0..20 {
        assert_eq!(send(&mut service).await.unwrap(), 400);
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(backend.calls(), 40);
    // Errors from the inner service are boxed, classified (transient here) and counted.
    backend.set(0);
    for _ in 0..3 {
        let e = send(&mut service).await.unwrap_err();
        assert_eq!(e.to_string(), "connection reset");
    }
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn state_is_shared_by_all_clones() {
    let backend = Backend::new(503);
    let breaker = BreakerHandle::new(config(), Labels::none());
    let layer = BreakerLayer::new(breaker, classify);
    let mut a = tower::Layer::layer(&layer, backend.clone());
    let mut b = a.clone();
    let mut c = tower::Layer::layer(&layer, backend.clone());
    send(&mut a).await.unwrap();
    send(&mut b).await.unwrap();
    send(&mut c).await.unwrap();
    for s in [&mut a, &mut b, &mut c] {
        assert!(send(s).await.unwrap_err().is::<CircuitOpen>());
    }
    assert_eq!(backend.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_frees_its_slot() {
    let backend = Backend::new(503);
    let breaker = BreakerHandle::new(config(), Labels::none());
    let mut service = tower::Layer::layer(
        &BreakerLayer::new(breaker.clone(), classify),
        backend.clone(),
    );
    for _ in 0..3 {
        send(&mut service).await.unwrap();
    }
    tokio::time::advance(Duration::from_secs(10)).await;
    backend.set(200);
    // A probe starts, and its caller gives up before the answer.
    let probe = service.ready().await.unwrap().call("req");
    assert_eq!(breaker.state(), State::HalfOpen);
    assert!(
        send(&mut service).await.unwrap_err().is::<CircuitOpen>(),
        "one probe at a time"
    );
    drop(probe);
    assert_eq!(send(&mut service).await.unwrap(), 200);
    assert_eq!(breaker.state(), State::Closed);
}

/// A service that is not ready until told so.
#[derive(Clone)]
struct Gate {
    open: Arc<AtomicBool>,
}

impl Service<&'static str> for Gate {
    type Response = u16;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<u16, std::io::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.open.load(Ordering::SeqCst) {
            Poll::Ready(Ok(()))
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    fn call(&mut self, _req: &'static str) -> Self::Future {
        std::future::ready(Ok(200))
    }
}

#[tokio::test(start_paused = true)]
async fn poll_ready_is_the_inner_readiness() {
    let gate = Gate {
        open: Arc::new(AtomicBool::new(false)),
    };
    let breaker = BreakerHandle::new(config(), Labels::none());
    let mut service = tower::Layer::layer(&BreakerLayer::new(breaker, classify), gate.clone());
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    assert!(service.poll_ready(&mut cx).is_pending());
    gate.open.store(true, Ordering::SeqCst);
    assert!(matches!(service.poll_ready(&mut cx), Poll::Ready(Ok(()))));
}

#[tokio::test(start_paused = true)]
async fn keyed_breakers_are_independent_per_key() {
    let registry = BreakerRegistry::builder(config())
        .labels(|region: &&'static str| Labels::target("bedrock").region(*region))
        .build()
        .unwrap();
    let backend = Backend::new(503);
    let layer = BreakerLayer::keyed(registry.clone(), |req: &&'static str| *req, classify);
    let mut service = tower::Layer::layer(&layer, backend.clone());
    for _ in 0..3 {
        service
            .ready()
            .await
            .unwrap()
            .call("us-east-1")
            .await
            .unwrap();
    }
    let east = service
        .ready()
        .await
        .unwrap()
        .call("us-east-1")
        .await
        .unwrap_err();
    assert_eq!(
        east.downcast_ref::<CircuitOpen>()
            .unwrap()
            .labels()
            .region_name(),
        Some("us-east-1")
    );
    assert_eq!(
        service
            .ready()
            .await
            .unwrap()
            .call("us-west-2")
            .await
            .unwrap(),
        503
    );
    assert_eq!(registry.len(), 2);
    assert_eq!(backend.calls(), 4);
}

#[cfg(feature = "metrics")]
#[test]
fn transitions_are_reported_as_metrics() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let breaker = metrics::with_local_recorder(&recorder, || {
        BreakerHandle::new(config(), Labels::target("bedrock").model("sonnet"))
    });
    let now = tokio::time::Instant::now();
    for _ in 0..3 {
        breaker.acquire(now).unwrap().record(
            Outcome::new(OutcomeKind::Overloaded),
            Duration::ZERO,
            now,
        );
    }
    let later = now + Duration::from_secs(10);
    breaker
        .acquire(later)
        .unwrap()
        .record(Outcome::SUCCESS, Duration::ZERO, later);

    let mut state = None;
    let mut transitions = std::collections::HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let label = |k: &str| {
            key.labels()
                .find(|l| l.key() == k)
                .map(|l| l.value().to_string())
        };
        assert_eq!(label("target").as_deref(), Some("bedrock"));
        assert_eq!(label("model").as_deref(), Some("sonnet"));
        match (key.name(), value) {
            ("headroom_breaker_state", DebugValue::Gauge(v)) => state = Some(v.into_inner()),
            ("headroom_breaker_transitions_total", DebugValue::Counter(n)) => {
                transitions.insert(label("to").unwrap(), n);
            }
            (name, _) => panic!("unexpected metric {name}"),
        }
    }
    assert_eq!(state, Some(0.0), "closed again");
    assert_eq!(transitions["open"], 1);
    assert_eq!(transitions["half_open"], 1);
    assert_eq!(transitions["closed"], 1);
}

#[test]
fn transitions_are_tracing_events_with_labels_and_no_request_data() {
    let ((), logs) = support::capture::logged(&["tower_headroom"], || {
        let breaker = BreakerHandle::new(config(), Labels::target("bedrock").region("us-east-1"));
        let now = tokio::time::Instant::now();
        for _ in 0..3 {
            breaker.acquire(now).unwrap().record(
                Outcome::new(OutcomeKind::Unavailable),
                Duration::ZERO,
                now,
            );
        }
    });
    assert_eq!(logs.lines().count(), 1, "{logs}");
    assert!(logs.contains("WARN"), "{logs}");
    for needle in [
        "circuit breaker opened",
        "target_name=\"bedrock\"",
        "region=\"us-east-1\"",
        "from=\"closed\"",
        "to=\"open\"",
    ] {
        assert!(logs.contains(needle), "{needle} missing in {logs}");
    }
}
