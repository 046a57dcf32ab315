//! Transport failures produced for real against a local socket that misbehaves, through
//! hyper-util's client and through reqwest: each error classified as the retry policy needs it
//! (refused and reset connections and incomplete messages `Transient`, timeouts `Timeout`, a
//! garbled answer `Fatal`), and a stale-connection failure retried through `ReqwestService`.
#![cfg(all(feature = "hyper", feature = "reqwest"))]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::{ServiceBuilder, ServiceExt};
use tower_headroom::classify::classify_error;
use tower_headroom::reqwest::ReqwestService;
use tower_headroom::retry::RetryPolicy;
use tower_headroom::{HttpClassifier, OutcomeKind, RetryLayer};

/// How the server treats each connection.
#[derive(Clone, Copy, Debug)]
enum Misbehave {
    /// Reads the request, then closes without a byte of answer.
    CloseSilently,
    /// Reads the request, then resets the connection (`SO_LINGER` 0).
    Reset,
    /// Reads the request and never answers.
    Hang,
    /// Answers with bytes that are not HTTP.
    Garbage,
    /// Answers `200 OK`.
    Answer,
}

/// Reads one request head.
async fn read_head(stream: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A server on loopback treating its n-th connection as `script[n]` (the last one after).
async fn server(script: Vec<Misbehave>) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let behave = script[n.min(script.len() - 1)];
            tokio::spawn(async move {
                read_head(&mut stream).await;
                match behave {
                    Misbehave::CloseSilently => drop(stream),
                    Misbehave::Reset => {
                        stream.set_zero_linger().unwrap();
                        drop(stream);
                    }
                    Misbehave::Hang => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                    Misbehave::Garbage => {
                        let _ = stream.write_all(b"NOT HTTP AT ALL\r\n\r\n").await;
                        let _ = stream.shutdown().await;
                    }
                    Misbehave::Answer => {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                        let _ = stream.shutdown().await;
                    }
                }
            });
        }
    });
    (addr, connections)
}

/// An address nobody listens on: bound, then released.
async fn refused() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

async fn hyper_get(addr: SocketAddr) -> hyper_util::client::legacy::Error {
    let client = HyperClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let uri: http::Uri = format!("http://{addr}/v1/chat/completions")
        .parse()
        .unwrap();
    client.get(uri).await.unwrap_err()
}

async fn reqwest_get(addr: SocketAddr, timeout: Option<Duration>) -> reqwest::Error {
    let mut builder = reqwest::Client::builder();
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    let client = builder.build().unwrap();
    client
        .post(format!("http://{addr}/v1/chat/completions"))
        .body("{}")
        .send()
        .await
        .unwrap_err()
}

#[tokio::test]
async fn hyper_errors_are_classified() {
    let cases = [
        (refused().await, OutcomeKind::Transient),
        (
            server(vec![Misbehave::CloseSilently]).await.0,
            OutcomeKind::Transient,
        ),
        (
            server(vec![Misbehave::Reset]).await.0,
            OutcomeKind::Transient,
        ),
        (server(vec![Misbehave::Garbage]).await.0, OutcomeKind::Fatal),
    ];
    for (addr, expected) in cases {
        let error = hyper_get(addr).await;
        assert_eq!(classify_error(&error).kind, expected, "{error:?}");
    }
}

#[tokio::test]
async fn reqwest_errors_are_classified() {
    let cases = [
        (refused().await, None, OutcomeKind::Transient),
        (
            server(vec![Misbehave::CloseSilently]).await.0,
            None,
            OutcomeKind::Transient,
        ),
        (
            server(vec![Misbehave::Reset]).await.0,
            None,
            OutcomeKind::Transient,
        ),
        (
            server(vec![Misbehave::Hang]).await.0,
            Some(Duration::from_millis(200)),
            OutcomeKind::Timeout,
        ),
        (
            server(vec![Misbehave::Garbage]).await.0,
            None,
            OutcomeKind::Fatal,
        ),
    ];
    for (addr, timeout, expected) in cases {
        let error = reqwest_get(addr, timeout).await;
        assert_eq!(classify_error(&error).kind, expected, "{error:?}");
    }
}

/// The first connection closes without an answer (the stale-connection race); the retry layer
/// over `ReqwestService` sends again and gets the answer.
#[tokio::test]
async fn a_connection_closed_before_the_answer_is_retried_through_reqwest() {
    let (addr, connections) = server(vec![Misbehave::CloseSilently, Misbehave::Answer]).await;
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .seed(1)
        .build()
        .unwrap();
    let client = ServiceBuilder::new()
        .layer(RetryLayer::new(policy, HttpClassifier::new()))
        .service(ReqwestService::new(reqwest::Client::new()));
    let request = http::Request::post(format!("http://{addr}/v1/chat/completions"))
        .body(Bytes::from_static(b"{}"))
        .unwrap();
    let response = client.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

/// A request reqwest cannot send is its error, unsent, and not retried.
#[tokio::test]
async fn a_relative_uri_is_a_fatal_error_unsent() {
    let error = ReqwestService::new(reqwest::Client::new())
        .oneshot(http::Request::new(String::new()))
        .await
        .unwrap_err();
    assert_eq!(classify_error(&error).kind, OutcomeKind::Fatal);
}
