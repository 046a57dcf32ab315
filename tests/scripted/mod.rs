//! A scripted Bedrock-like backend for ten-minute scenarios on tokio's paused clock, and the
//! driver that sends one request every 500 ms through a service under test. Shared by the
//! fallback and stack scenarios.
#![allow(dead_code)] // each test binary uses its own part

use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Service, ServiceExt};
use tower_headroom::fallback::Served;
use tower_headroom::{BoxError, Outcome, OutcomeKind, ThrottleScope};

pub const MIN: Duration = Duration::from_secs(60);
pub const EVERY: Duration = Duration::from_millis(500);
pub const RUN: Duration = Duration::from_secs(600);

pub type Request = http::Request<()>;
pub type Response = http::Response<()>;

/// What the scripted backend does for a call to `target` at `elapsed` into the run:
/// `(status, latency)`.
pub type Script = dyn Fn(&str, Duration, &mut fastrand::Rng) -> (u16, Duration) + Send + Sync;

/// A backend whose behaviour per target over virtual time is scripted. The target is the
/// model id in the URI (`/model/{id}/converse`, as Bedrock) or, for one-client-per-region
/// routers, the client's own region.
#[derive(Clone)]
pub struct Scripted {
    start: Instant,
    region: Option<&'static str>,
    script: Arc<Script>,
    rng: Arc<Mutex<fastrand::Rng>>,
    calls: Arc<Mutex<Vec<(String, Duration)>>>,
}

impl Scripted {
    pub fn new(start: Instant, script: Arc<Script>) -> Self {
        Scripted {
            start,
            region: None,
            script,
            rng: Arc::new(Mutex::new(fastrand::Rng::with_seed(42))),
            calls: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub fn in_region(&self, region: &'static str) -> Self {
        Scripted {
            region: Some(region),
            ..self.clone()
        }
    }

    /// Calls to the backend started in `[from, to)`.
    pub fn calls_between(&self, from: Duration, to: Duration) -> Vec<String> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|(_, at)| *at >= from && *at < to)
            .map(|(t, _)| t.clone())
            .collect()
    }
}

impl Service<Request> for Scripted {
    type Response = Response;
    type Error = BoxError;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Response, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let target = match self.region {
            Some(region) => region.to_owned(),
            None => request
                .uri()
                .path()
                .split('/')
                .nth(2)
                .unwrap_or("")
                .to_owned(),
        };
        let elapsed = self.start.elapsed();
        let (status, latency) = (self.script)(&target, elapsed, &mut self.rng.lock().unwrap());
        self.calls.lock().unwrap().push((target, elapsed));
        Box::pin(async move {
            tokio::time::sleep(latency).await;
            let mut response = http::Response::new(());
            *response.status_mut() = http::StatusCode::from_u16(status)?;
            Ok(response)
        })
    }
}

pub fn classify(result: Result<&Response, &(dyn Error + 'static)>) -> Outcome {
    match result {
        Ok(r) if r.status().is_success() => Outcome::SUCCESS,
        Ok(r) => match r.status().as_u16() {
            429 => Outcome::throttled(ThrottleScope::Requests),
            529 => Outcome::new(OutcomeKind::Overloaded),
            503 => Outcome::new(OutcomeKind::Unavailable),
            _ => Outcome::FATAL,
        },
        Err(_) => Outcome::new(OutcomeKind::Transient),
    }
}

/// Normal latency of a Converse call: 800–1200 ms.
pub fn normal(rng: &mut fastrand::Rng) -> Duration {
    Duration::from_millis(800 + rng.u64(0..400))
}

pub struct Record {
    pub start: Duration,
    pub latency: Duration,
    pub result: Result<(u16, Served), BoxError>,
}

/// Sends one request every 500 ms for ten minutes, each on its own task, and waits for all.
/// A response without a [`Served`] record came from the route's first target, `primary`, at
/// once; the record is filled in as such.
pub async fn drive<S>(service: S, start: Instant, primary: &'static str) -> Vec<Record>
where
    S: Service<Request, Response = Response, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
{
    let mut tasks = Vec::new();
    let mut at = Duration::ZERO;
    while at < RUN {
        tokio::time::sleep_until(start + at).await;
        let service = service.clone();
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let request = http::Request::builder()
                .uri("/model/unset/converse")
                .body(())
                .unwrap();
            let result = service.oneshot(request).await.map(|response| {
                let served = response.extensions().get::<Served>().cloned();
                let served = served.unwrap_or_else(|| Served {
                    target: 0,
                    name: primary.into(),
                    degraded: false,
                    hops: 0,
                });
                (response.status().as_u16(), served)
            });
            Record {
                start: sent - start,
                latency: sent.elapsed(),
                result,
            }
        }));
        at += EVERY;
    }
    let mut records = Vec::new();
    for task in tasks {
        records.push(task.await.unwrap());
    }
    records
}

pub fn p99(mut latencies: Vec<Duration>) -> Duration {
    assert!(!latencies.is_empty());
    latencies.sort_unstable();
    latencies[(latencies.len() * 99).div_ceil(100) - 1]
}

/// [`classify`] for responses, and the crate's own error classifier for errors (so the typed
/// errors of the layers under test — `Rejected`, `NoTargetAvailable` — are seen as such).
pub fn classify_all(result: Result<&Response, &(dyn Error + 'static)>) -> Outcome {
    match result {
        Ok(_) => classify(result),
        Err(e) => tower_headroom::classify::classify_error(e),
    }
}
