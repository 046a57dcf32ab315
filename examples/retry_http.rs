//! Retries against an in-process HTTP endpoint that throttles, on virtual time.
//!
//! The endpoint allows 10 requests per 1-second fixed window and answers `429 Too Many
//! Requests` with `Retry-After` beyond that. Forty clients each send five requests at once,
//! first with no retries, then through `RetryLayer` with the `HttpClassifier`. Run with:
//!
//! ```text
//! cargo run --example retry_http
//! ```
//!
//! The clock is tokio's paused clock, so the minutes of simulated traffic take milliseconds
//! and the numbers are the same on every run.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tokio::time::Instant;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_headroom::retry::{Backoff, RetryInfo, RetryPolicy};
use tower_headroom::{HttpClassifier, RetryLayer};

const LIMIT_PER_WINDOW: u32 = 10;
const WINDOW: Duration = Duration::from_secs(1);
const CLIENTS: u32 = 40;
const REQUESTS_PER_CLIENT: u32 = 5;

/// A fixed-window rate limiter answering 429 with `Retry-After`, like a Modal-style endpoint.
#[derive(Clone)]
struct ThrottlingEndpoint {
    state: Arc<Mutex<(Instant, u32)>>,
    attempts: Arc<AtomicU32>,
    throttled: Arc<AtomicU32>,
}

impl ThrottlingEndpoint {
    fn new() -> Self {
        ThrottlingEndpoint {
            state: Arc::new(Mutex::new((Instant::now(), 0))),
            attempts: Arc::default(),
            throttled: Arc::default(),
        }
    }

    fn handle(&self) -> Response<String> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut state = self.state.lock().unwrap();
        while now >= state.0 + WINDOW {
            *state = (state.0 + WINDOW, 0);
        }
        if state.1 < LIMIT_PER_WINDOW {
            state.1 += 1;
            return Response::new("ok".into());
        }
        self.throttled.fetch_add(1, Ordering::Relaxed);
        let wait = (state.0 + WINDOW - now).as_secs_f64().ceil() as u64;
        Response::builder()
            .status(StatusCode::TOO_MANY_REQUESTS)
            .header("retry-after", wait.max(1).to_string())
            .body("slow down".into())
            .unwrap()
    }
}

impl Service<Request<String>> for ThrottlingEndpoint {
    type Response = Response<String>;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Response<String>, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<String>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(this.handle())
        })
    }
}

struct Report {
    completed: u32,
    failed: u32,
    attempts: u32,
    throttled: u32,
    p50: Duration,
    max: Duration,
}

async fn run<S>(client: S, endpoint: &ThrottlingEndpoint) -> Report
where
    S: Service<Request<String>, Response = Response<String>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut results = Vec::new();
            for _ in 0..REQUESTS_PER_CLIENT {
                let start = Instant::now();
                let result = client.clone().oneshot(Request::new(String::new())).await;
                let ok = matches!(&result, Ok(res) if res.status().is_success());
                let retried = result
                    .ok()
                    .and_then(|res| res.extensions().get::<RetryInfo>().copied());
                results.push((ok, start.elapsed(), retried));
            }
            results
        }));
    }
    let mut latencies = Vec::new();
    let (mut completed, mut failed) = (0, 0);
    for task in tasks {
        for (ok, latency, _) in task.await.unwrap() {
            if ok {
                completed += 1;
                latencies.push(latency);
            } else {
                failed += 1;
            }
        }
    }
    latencies.sort();
    Report {
        completed,
        failed,
        attempts: endpoint.attempts.load(Ordering::Relaxed),
        throttled: endpoint.throttled.load(Ordering::Relaxed),
        p50: latencies
            .get(latencies.len() / 2)
            .copied()
            .unwrap_or_default(),
        max: latencies.last().copied().unwrap_or_default(),
    }
}

fn print(name: &str, r: &Report) {
    println!(
        "{name:<28} {:>9} {:>6} {:>8} {:>9} {:>8.2}s {:>8.2}s",
        r.completed,
        r.failed,
        r.attempts,
        r.throttled,
        r.p50.as_secs_f64(),
        r.max.as_secs_f64()
    );
}

async fn main_async() -> Result<(), BoxError> {
    println!(
        "{} clients x {} requests against a {LIMIT_PER_WINDOW} requests / {WINDOW:?} endpoint (virtual time)\n",
        CLIENTS, REQUESTS_PER_CLIENT
    );
    println!(
        "{:<28} {:>9} {:>6} {:>8} {:>9} {:>9} {:>9}",
        "strategy", "completed", "failed", "attempts", "throttled", "p50", "max"
    );

    let endpoint = ThrottlingEndpoint::new();
    let report = run(endpoint.clone(), &endpoint).await;
    print("no retry", &report);

    let endpoint = ThrottlingEndpoint::new();
    let policy = RetryPolicy::builder()
        .max_attempts(30)
        .deadline(Duration::from_secs(60))
        // The endpoint's windows are 1 s; Retry-After says so too, and it wins.
        .backoff(Backoff::builder().no_quota_window())
        .no_budget()
        .seed(7)
        .build()?;
    let client = ServiceBuilder::new()
        .layer(RetryLayer::new(policy, HttpClassifier::new()))
        .service(endpoint.clone());
    let report = run(client, &endpoint).await;
    print("RetryLayer (Retry-After)", &report);
    Ok(())
}

fn main() -> Result<(), BoxError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()?
        .block_on(main_async())
}
