//! The retry layer end to end, on tokio's paused clock.

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_headroom::retry::RetryInfo;
use tower_headroom::retry::{
    Backoff, Fatal, QuotaWindow, RetriesExhausted, RetryPolicy, StopReason,
};
use tower_headroom::{BoxError, Outcome, OutcomeKind, RetryLayer, ThrottleScope};

/// An error that says which outcome it stands for.
#[derive(Debug)]
struct Failure(Outcome);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scripted failure: {}", self.0)
    }
}

impl Error for Failure {}

fn classify(result: Result<&u32, &(dyn Error + 'static)>) -> Outcome {
    match result {
        Ok(_) => Outcome::SUCCESS,
        Err(e) => e
            .downcast_ref::<Failure>()
            .map_or(Outcome::FATAL, |failure| failure.0),
    }
}

/// Every call: the instant it arrived; answers from the script, then successes.
#[derive(Clone)]
struct Scripted {
    script: Arc<Mutex<Vec<Outcome>>>,
    calls: Arc<Mutex<Vec<Instant>>>,
}

impl Scripted {
    fn new(failures: impl IntoIterator<Item = Outcome>) -> Self {
        let mut script: Vec<_> = failures.into_iter().collect();
        script.reverse();
        Scripted {
            script: Arc::new(Mutex::new(script)),
            calls: Arc::default(),
        }
    }

    fn failing(outcome: Outcome) -> impl Fn(u32) -> Result<u32, Failure> + Clone {
        move |_| Err(Failure(outcome))
    }

    fn calls(&self) -> Vec<Instant> {
        self.calls.lock().unwrap().clone()
    }
}

impl Service<u32> for Scripted {
    type Response = u32;
    type Error = Failure;
    type Future = std::future::Ready<Result<u32, Failure>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Failure>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u32) -> Self::Future {
        self.calls.lock().unwrap().push(Instant::now());
        let next = self.script.lock().unwrap().pop();
        std::future::ready(match next {
            Some(outcome) => Err(Failure(outcome)),
            None => Ok(req),
        })
    }
}

fn policy() -> tower_headroom::retry::RetryPolicyBuilder {
    RetryPolicy::builder().seed(11).no_budget()
}

#[tokio::test(start_paused = true)]
async fn fails_n_times_then_succeeds() {
    let unavailable = Outcome::new(OutcomeKind::Unavailable);
    let inner = Scripted::new([unavailable; 3]);
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(
            policy().max_attempts(4).build().unwrap(),
            classify,
        ))
        .service(inner.clone());
    assert_eq!(svc.oneshot(7).await.unwrap(), 7);
    let calls = inner.calls();
    assert_eq!(calls.len(), 4);
    // Unavailable backs off on its own schedule: 1 s base, full jitter, so each gap is at
    // most 1 s, 2 s, 4 s.
    for (i, pair) in calls.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        assert!(gap <= Duration::from_secs(1 << i), "gap {i} was {gap:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn one_attempt_too_few_gives_typed_error_with_source() {
    let transient = Outcome::new(OutcomeKind::Transient);
    let inner = Scripted::new([transient; 3]);
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(
            policy().max_attempts(3).build().unwrap(),
            classify,
        ))
        .service(inner.clone());
    let err = svc.oneshot(1).await.unwrap_err();
    let exhausted = err.downcast_ref::<RetriesExhausted>().expect("typed error");
    assert_eq!(exhausted.attempts(), 3);
    assert_eq!(exhausted.reason(), StopReason::MaxAttempts);
    assert_eq!(exhausted.last().kind, OutcomeKind::Transient);
    let source = exhausted.source().unwrap();
    assert!(source.downcast_ref::<Failure>().is_some());
    assert_eq!(inner.calls().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn fatal_is_not_retried() {
    let inner = Scripted::new([Outcome::FATAL, Outcome::FATAL]);
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy().build().unwrap(), classify))
        .service(inner.clone());
    let err = svc.oneshot(1).await.unwrap_err();
    let fatal = err.downcast_ref::<Fatal>().expect("a Fatal error");
    assert_eq!(fatal.attempts(), 1);
    assert_eq!(inner.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_never_cut_short() {
    let asked = Duration::from_millis(2_500);
    let throttled = Outcome::throttled(ThrottleScope::Capacity).with_retry_after(asked);
    let inner = Scripted::new([throttled; 2]);
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy().build().unwrap(), classify))
        .service(inner.clone());
    svc.oneshot(1).await.unwrap();
    let calls = inner.calls();
    assert_eq!(calls.len(), 3);
    for pair in calls.windows(2) {
        let gap = pair[1] - pair[0];
        // At least what was asked, at most 10% more (the default server jitter).
        assert!(gap >= asked && gap <= asked + asked / 10, "gap {gap:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn server_delay_above_the_cap_ends_the_call_without_an_early_retry() {
    let throttled =
        Outcome::throttled(ThrottleScope::Requests).with_retry_after(Duration::from_secs(600));
    let inner = Scripted::new([throttled]);
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy().build().unwrap(), classify))
        .service(inner.clone());
    let err = svc.oneshot(1).await.unwrap_err();
    let exhausted = err.downcast_ref::<RetriesExhausted>().unwrap();
    assert_eq!(exhausted.reason(), StopReason::ServerDelayTooLong);
    assert_eq!(exhausted.last().retry_after, Some(Duration::from_secs(600)));
    assert_eq!(inner.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn quota_throttles_wait_for_the_next_window() {
    let start = Instant::now();
    let window = QuotaWindow::new(Duration::from_secs(60), start, Duration::from_secs(5)).unwrap();
    let policy = policy()
        .backoff(Backoff::builder().quota_window_at(window))
        .build()
        .unwrap();
    tokio::time::advance(Duration::from_secs(42)).await;
    let inner = Scripted::new([Outcome::throttled(ThrottleScope::Tokens)]);
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy, classify))
        .service(inner.clone());
    svc.oneshot(1).await.unwrap();
    let calls = inner.calls();
    assert_eq!(calls.len(), 2);
    let retry_at = calls[1] - start;
    assert!(
        retry_at >= Duration::from_secs(60) && retry_at <= Duration::from_secs(65),
        "retried at {retry_at:?}, outside the first 5 s of the next window"
    );
}

#[tokio::test(start_paused = true)]
async fn deadline_is_respected() {
    let overloaded = Outcome::new(OutcomeKind::Overloaded);
    let inner = Scripted::new([overloaded; 100]);
    let deadline = Duration::from_secs(20);
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(
            policy()
                .max_attempts(100)
                .deadline(deadline)
                .build()
                .unwrap(),
            classify,
        ))
        .service(inner.clone());
    let start = Instant::now();
    let err = svc.oneshot(1).await.unwrap_err();
    assert!(Instant::now() - start <= deadline);
    let exhausted = err.downcast_ref::<RetriesExhausted>().unwrap();
    assert_eq!(exhausted.reason(), StopReason::Deadline);
    assert!(
        exhausted.attempts() > 2,
        "{} attempts",
        exhausted.attempts()
    );
    assert!(inner.calls().iter().all(|t| *t - start <= deadline));
}

#[tokio::test(start_paused = true)]
async fn budget_caps_amplification_in_a_total_outage() {
    const REQUESTS: u32 = 10_000;
    let unavailable = Outcome::new(OutcomeKind::Unavailable);
    let attempts = Arc::new(AtomicU32::new(0));
    let counter = attempts.clone();
    let fail = Scripted::failing(unavailable);
    let inner = tower::service_fn(move |req: u32| {
        counter.fetch_add(1, Ordering::Relaxed);
        std::future::ready(fail(req))
    });
    // The default budget: 10% of requests over 10 s, floor 10 retries per window.
    let policy = RetryPolicy::builder().seed(5).build().unwrap();
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy, classify))
        .service(inner);
    // 10,000 requests over 100 s of virtual time, 100 in flight at a time.
    let mut handles = Vec::new();
    for i in 0..REQUESTS {
        handles.push(tokio::spawn(svc.clone().oneshot(i)));
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let mut budget_stops = 0;
    for h in handles {
        let err = h.await.unwrap().unwrap_err();
        let exhausted = err.downcast_ref::<RetriesExhausted>().unwrap();
        budget_stops += u32::from(exhausted.reason() == StopReason::Budget);
    }
    let amplification = f64::from(attempts.load(Ordering::Relaxed)) / f64::from(REQUESTS);
    println!("amplification under total outage: {amplification:.4} attempts/request");
    assert!(amplification <= 1.1, "amplification {amplification}");
    assert!(
        amplification > 1.05,
        "the budget should allow ~10% retries: {amplification}"
    );
    assert!(
        budget_stops > 8_000,
        "{budget_stops} calls stopped by the budget"
    );
}

/// A service that is ready only every other poll, counting readiness checks.
#[derive(Clone)]
struct Flaky {
    polls: Arc<AtomicU32>,
    calls: Arc<AtomicU32>,
}

impl Service<u32> for Flaky {
    type Response = u32;
    type Error = Failure;
    type Future = Pin<Box<dyn Future<Output = Result<u32, Failure>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Failure>> {
        if self.polls.fetch_add(1, Ordering::SeqCst) % 2 == 0 {
            cx.waker().wake_by_ref();
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn call(&mut self, req: u32) -> Self::Future {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if n < 2 {
                Err(Failure(Outcome::new(OutcomeKind::Transient)))
            } else {
                Ok(req)
            }
        })
    }
}

#[tokio::test(start_paused = true)]
async fn readiness_is_checked_before_each_retry() {
    let flaky = Flaky {
        polls: Arc::default(),
        calls: Arc::default(),
    };
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy().build().unwrap(), classify))
        .service(flaky.clone());
    let out = svc.ready().await.unwrap().call(3).await.unwrap();
    assert_eq!(out, 3);
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
    // One readiness poll pair before the first call, one before each of the two retries.
    assert_eq!(flaky.polls.load(Ordering::SeqCst), 6);
}

#[tokio::test(start_paused = true)]
async fn clones_share_the_budget() {
    let policy = RetryPolicy::builder()
        .seed(1)
        .budget(Duration::from_secs(10), 0.0, 2)
        .build()
        .unwrap();
    let layer = RetryLayer::new(policy, classify);
    let transient = Outcome::new(OutcomeKind::Transient);
    let inner =
        tower::service_fn(move |_: u32| std::future::ready(Err::<u32, _>(Failure(transient))));
    let a = ServiceBuilder::new().layer(layer.clone()).service(inner);
    let b = ServiceBuilder::new().layer(layer).service(inner);
    let mut retries = 0;
    for svc in [a.clone(), b.clone(), a, b] {
        let err = svc.oneshot(0).await.unwrap_err();
        retries += err.downcast_ref::<RetriesExhausted>().unwrap().attempts() - 1;
    }
    // The floor of two retries per window is shared by both services.
    assert_eq!(retries, 2);
}
#[tokio::test(start_paused = true)]
async fn http_responses_carry_attempts_and_wait() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let inner = tower::service_fn(move |_req: http::Request<()>| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let status = if n < 2 { 503 } else { 200 };
            let mut res = http::Response::new(());
            *res.status_mut() = http::StatusCode::from_u16(status).unwrap();
            Ok::<_, BoxError>(res)
        }
    });
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(
            policy().build().unwrap(),
            tower_headroom::HttpClassifier::new(),
        ))
        .service(inner);
    let res = svc.oneshot(http::Request::new(())).await.unwrap();
    assert_eq!(res.status(), 200);
    let info = res.extensions().get::<RetryInfo>().expect("retry record");
    assert_eq!(info.attempts, 3);
    assert!(info.waited > Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_final_failure_response_is_returned_as_is() {
    let inner = tower::service_fn(|_req: http::Request<()>| async {
        let mut res = http::Response::new(());
        *res.status_mut() = http::StatusCode::TOO_MANY_REQUESTS;
        Ok::<_, BoxError>(res)
    });
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(
            policy()
                .max_attempts(2)
                .backoff(Backoff::builder().no_quota_window())
                .build()
                .unwrap(),
            tower_headroom::HttpClassifier::new(),
        ))
        .service(inner);
    let res = svc.oneshot(http::Request::new(())).await.unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(res.extensions().get::<RetryInfo>().unwrap().attempts, 2);
}
