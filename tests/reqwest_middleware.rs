//! reqwest users: a `reqwest_middleware::ClientWithMiddleware` running the Tower stack through
//! `TowerMiddleware`, and a plain `reqwest::Client` behind `ReqwestService` — against
//! loopback servers that fail for real: retries, fallback across base URLs, an attempt timeout
//! that drops the attempt, and a streamed request body sent once, unretried.
#![cfg(feature = "reqwest")]

mod support {
    pub mod loopback;
}

use std::sync::atomic::Ordering;
use std::time::Duration;

use support::loopback::{Behave, server};
use tower::ServiceBuilder;
use tower_headroom::fallback::{Served, Target};
use tower_headroom::reqwest::{BaseUrl, NextService, ReqwestService, TowerMiddleware, rebase};
use tower_headroom::retry::RetryPolicy;
use tower_headroom::stack::StackBuilder;
use tower_headroom::timeout::AttemptTimeout;
use tower_headroom::{HttpClassifier, RetryLayer};

fn policy() -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(4)
        .seed(5)
        .build()
        .unwrap()
}

/// A client whose middleware runs `stack`.
fn through<S>(stack: S) -> reqwest_middleware::ClientWithMiddleware
where
    TowerMiddleware<S>: reqwest_middleware::Middleware,
{
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(TowerMiddleware::new(stack))
        .build()
}

/// The retry layer alone over the rest of the chain.
fn retrying() -> impl tower::Service<
    http::Request<bytes::Bytes>,
    Response = http::Response<reqwest::Body>,
    Error = tower_headroom::BoxError,
    Future = impl Send,
> + Clone
+ Send
+ Sync
+ 'static {
    ServiceBuilder::new()
        .layer(RetryLayer::new(policy(), HttpClassifier::new()))
        .service(NextService::new())
}

/// `http://addr` and a path prefix, as a stack target's key.
fn base(addr: std::net::SocketAddr, prefix: &str) -> BaseUrl {
    BaseUrl::parse(&format!("http://{addr}{prefix}")).unwrap()
}

#[tokio::test]
async fn a_retry_layer_as_middleware_retries_a_503() {
    let (addr, connections) = server(vec![Behave::Status(503), Behave::Status(200)]).await;
    let stack = retrying();
    let client = through(stack);
    let response = client
        .post(format!("http://{addr}/v1/chat/completions"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok");
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

/// The stack over two base URLs: the first answers 503 every time, the second serves; the
/// caller wrote its request against the first.
#[tokio::test]
async fn the_stack_falls_back_to_another_base_url() {
    let (down, down_calls) = server(vec![Behave::Status(503)]).await;
    let (up, up_calls) = server(vec![Behave::Status(200)]).await;
    let stack = StackBuilder::http()
        .retry(policy())
        .target(Target::new("primary", base(down, "")))
        .target(Target::new("backup", base(up, "")))
        .rewrite(NextService::new(), rebase)
        .unwrap();
    let client = through(stack);
    let response = client
        .post(format!("http://{down}/v1/chat/completions"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.extensions().get::<Served>().unwrap().name.as_ref(),
        "backup"
    );
    assert_eq!(
        (
            down_calls.load(Ordering::SeqCst),
            up_calls.load(Ordering::SeqCst)
        ),
        (1, 1)
    );
}

/// An attempt that hangs is abandoned at the stack's attempt timeout (the middleware drops
/// it) and the retry gets the answer.
#[tokio::test]
async fn an_attempt_timeout_drops_the_hanging_attempt() {
    let (addr, connections) = server(vec![Behave::Hang, Behave::Status(200)]).await;
    let stack = StackBuilder::http()
        .retry(policy())
        .attempt_timeout(AttemptTimeout::fixed(Duration::from_millis(300)).unwrap())
        .target(Target::new("only", ()))
        .services(vec![NextService::new()])
        .unwrap();
    let client = through(stack);
    let started = std::time::Instant::now();
    let response = client
        .get(format!("http://{addr}/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

/// A body that cannot be read twice goes through once, as it is, whatever it gets back.
#[tokio::test]
async fn a_streamed_body_is_sent_once_unretried() {
    let (addr, connections) = server(vec![Behave::Status(503), Behave::Status(200)]).await;
    let stack = retrying();
    let client = through(stack);
    let stream = http_body_util::StreamBody::new(tokio_stream_once(b"{}"));
    let response = client
        .post(format!("http://{addr}/v1/chat/completions"))
        .body(reqwest::Body::wrap(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

/// A one-frame stream (no `futures` dependency needed).
fn tokio_stream_once(
    bytes: &'static [u8],
) -> impl futures_core::Stream<Item = Result<http_body::Frame<bytes::Bytes>, std::io::Error>> {
    struct Once(Option<&'static [u8]>);
    impl futures_core::Stream for Once {
        type Item = Result<http_body::Frame<bytes::Bytes>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(
                self.0
                    .take()
                    .map(|b| Ok(http_body::Frame::data(bytes::Bytes::from_static(b)))),
            )
        }
    }
    Once(Some(bytes))
}

/// A plain `reqwest::Client` behind the stack, with the request written as a path only: the
/// first base URL is down, the second serves.
#[tokio::test]
async fn reqwest_service_behind_the_stack_with_base_urls() {
    let (down, _) = server(vec![Behave::Status(502)]).await;
    let (up, up_calls) = server(vec![Behave::Status(200)]).await;
    let stack = StackBuilder::http()
        .retry(policy())
        .target(Target::new("primary", base(down, "/v1")))
        .target(Target::new("backup", base(up, "/v1")))
        .rewrite(ReqwestService::new(reqwest::Client::new()), rebase)
        .unwrap();
    let request = http::Request::post("/chat/completions")
        .body(bytes::Bytes::from_static(b"{}"))
        .unwrap();
    let response = tower::ServiceExt::oneshot(stack, request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(up_calls.load(Ordering::SeqCst), 1);
}

/// A request's own reqwest timeout travels with each attempt: the first attempt times out in
/// reqwest (a `Timeout`, retried), the second is answered.
#[tokio::test]
async fn a_requests_own_timeout_holds_for_each_attempt() {
    let (addr, connections) = server(vec![Behave::Hang, Behave::Status(200)]).await;
    let stack = retrying();
    let client = through(stack);
    let started = std::time::Instant::now();
    let response = client
        .get(format!("http://{addr}/v1/models"))
        .timeout(Duration::from_millis(200))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    // Without its timeout the first attempt would hang for the server's 30 s.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}
