//! OpenAI- and Anthropic-style answers through the retry layer and the router: the
//! `ErrorBodyLayer` reads each error body's first bytes for the classifier and hands the whole
//! body on; `x-should-retry` overrides the status.
#![cfg(feature = "llm-http")]

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt};
use tower_headroom::fallback::{FallbackBuilder, Route, Served, Target};
use tower_headroom::llm_http::{ErrorBodyLayer, MAX_ERROR_PREFIX, VendorError};
use tower_headroom::retry::RetryPolicy;
use tower_headroom::{BoxError, Classify, HttpClassifier, OutcomeKind, RetryLayer};

const INSUFFICIENT_QUOTA: &str = r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
const RATE_LIMITED: &str = r#"{"error":{"message":"Rate limit reached","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#;
const CONTEXT_LENGTH: &str = r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208310 tokens > 200000 maximum"}}"#;

fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> http::Response<String> {
    let mut builder = http::Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body.to_owned()).unwrap()
}

/// A backend answering `answers` in turn (the last one from then on), counting its calls.
fn backend(
    answers: Vec<http::Response<String>>,
    calls: Arc<AtomicUsize>,
) -> impl tower::Service<
    http::Request<String>,
    Response = http::Response<String>,
    Error = BoxError,
    Future = impl Send,
> + Clone {
    let answers = Arc::new(answers);
    tower::service_fn(move |_req: http::Request<String>| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        let a = &answers[n.min(answers.len() - 1)];
        let mut response = http::Response::new(a.body().clone());
        *response.status_mut() = a.status();
        *response.headers_mut() = a.headers().clone();
        async move { Ok::<_, BoxError>(response) }
    })
}

fn policy() -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(4)
        .seed(3)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_spent_balance_is_sent_once_and_its_body_reaches_the_caller() {
    let calls = Arc::new(AtomicUsize::new(0));
    let client = ServiceBuilder::new()
        .layer(RetryLayer::new(policy(), HttpClassifier::new()))
        .layer(ErrorBodyLayer::new())
        .service(backend(
            vec![answer(429, &[("retry-after-ms", "20")], INSUFFICIENT_QUOTA)],
            Arc::clone(&calls),
        ));
    let response = client
        .oneshot(http::Request::new(String::new()))
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "never retried");
    assert_eq!(response.status(), 429);
    assert_eq!(response.extensions().get(), Some(&VendorError::BillingStop));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, INSUFFICIENT_QUOTA.as_bytes());
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_is_retried_after_the_servers_delay() {
    let calls = Arc::new(AtomicUsize::new(0));
    let client = ServiceBuilder::new()
        .layer(RetryLayer::new(policy(), HttpClassifier::new()))
        .layer(ErrorBodyLayer::new())
        .service(backend(
            vec![
                answer(429, &[("retry-after-ms", "1500")], RATE_LIMITED),
                answer(200, &[], "{}"),
            ],
            Arc::clone(&calls),
        ));
    let start = Instant::now();
    let response = client
        .oneshot(http::Request::new(String::new()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(1500), "{waited:?}");
}

/// A prompt past one model's context: not retried there, moved to the next model at once.
#[tokio::test(start_paused = true)]
async fn a_context_length_error_moves_to_the_next_model() {
    let (small, large) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let route = Route::builder()
        .target(Target::new("small", "small").model("small"))
        .target(Target::new("large", "large").model("large"))
        .build()
        .unwrap();
    let layered = |svc| {
        ServiceBuilder::new()
            .layer(ErrorBodyLayer::new())
            .service(svc)
    };
    let router = FallbackBuilder::new(route, HttpClassifier::new())
        .services(vec![
            layered(backend(
                vec![answer(400, &[], CONTEXT_LENGTH)],
                Arc::clone(&small),
            )),
            layered(backend(vec![answer(200, &[], "{}")], Arc::clone(&large))),
        ])
        .unwrap();
    let client = ServiceBuilder::new()
        .layer(RetryLayer::new(policy(), HttpClassifier::new()))
        .service(router);
    let response = client
        .oneshot(http::Request::new(String::new()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        (small.load(Ordering::SeqCst), large.load(Ordering::SeqCst)),
        (1, 1)
    );
    assert_eq!(
        response.extensions().get::<Served>().unwrap().name.as_ref(),
        "large"
    );
}

#[tokio::test(start_paused = true)]
async fn x_should_retry_overrides_the_status() {
    for (status, header, body, expected_calls) in [
        // A 503 the server says not to retry.
        (503, "false", "", 1),
        // A 409 (Fatal by status) the server says to retry: retried until it succeeds.
        (409, "true", "", 2),
        // A rate limit the server says not to retry.
        (429, "false", RATE_LIMITED, 1),
    ] {
        let calls = Arc::new(AtomicUsize::new(0));
        let client = ServiceBuilder::new()
            .layer(RetryLayer::new(policy(), HttpClassifier::new()))
            .layer(ErrorBodyLayer::new())
            .service(backend(
                vec![
                    answer(status, &[("x-should-retry", header)], body),
                    answer(200, &[], "{}"),
                ],
                Arc::clone(&calls),
            ));
        client
            .oneshot(http::Request::new(String::new()))
            .await
            .unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            expected_calls,
            "{status} x-should-retry: {header}"
        );
    }
    // Any other value is ignored.
    let response = answer(503, &[("x-should-retry", "maybe")], "");
    assert_eq!(
        HttpClassifier::new().classify(Ok(&response)).kind,
        OutcomeKind::Unavailable
    );
}

/// A body of frames, then maybe an error.
struct Frames(VecDeque<Result<Bytes, std::io::Error>>);

impl Body for Frames {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(self.0.pop_front().map(|r| r.map(Frame::data)))
    }
}

/// A long error body in many frames, cut by a transport error: the caller gets every byte in
/// order and then the error; the classifier saw a prefix only.
#[tokio::test(start_paused = true)]
async fn a_long_error_body_is_replayed_whole_and_its_error_last() {
    let chunk = Bytes::from(vec![b'x'; 1000]);
    let n = MAX_ERROR_PREFIX / 1000 + 5;
    let mut frames: VecDeque<_> = (0..n).map(|_| Ok(chunk.clone())).collect();
    frames.push_back(Err(std::io::Error::from(
        std::io::ErrorKind::ConnectionReset,
    )));
    let upstream = tower::service_fn(move |_req: http::Request<()>| {
        let body = Frames(frames.clone_frames());
        async move { Ok::<_, BoxError>(http::Response::builder().status(500).body(body).unwrap()) }
    });
    let response = tower::Layer::layer(&ErrorBodyLayer::new(), upstream)
        .oneshot(http::Request::new(()))
        .await
        .unwrap();
    assert!(response.extensions().get::<VendorError>().is_none());
    let mut body = response.into_body();
    let mut received = 0;
    let error = loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                let data = frame.into_data().unwrap();
                assert!(data.iter().all(|&b| b == b'x'));
                received += data.len();
            }
            Some(Err(error)) => break error,
            None => panic!("the body ended without its error"),
        }
    };
    assert_eq!(received, n * 1000);
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);
    assert!(body.frame().await.is_none());
}

/// Frames cloned for each call (an `io::Error` is not `Clone`).
trait CloneFrames {
    fn clone_frames(&self) -> VecDeque<Result<Bytes, std::io::Error>>;
}

impl CloneFrames for VecDeque<Result<Bytes, std::io::Error>> {
    fn clone_frames(&self) -> VecDeque<Result<Bytes, std::io::Error>> {
        self.iter()
            .map(|r| match r {
                Ok(b) => Ok(b.clone()),
                Err(e) => Err(std::io::Error::from(e.kind())),
            })
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn a_success_passes_through_unread() {
    let calls = Arc::new(AtomicUsize::new(0));
    let upstream = backend(vec![answer(200, &[], "hello")], calls);
    let response = tower::Layer::layer(&ErrorBodyLayer::new(), upstream)
        .oneshot(http::Request::new(String::new()))
        .await
        .unwrap();
    assert!(response.extensions().get::<VendorError>().is_none());
    let body = response.into_body();
    assert_eq!(body.size_hint().exact(), Some(5));
    assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
}
