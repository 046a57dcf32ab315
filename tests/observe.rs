//! The retry layer reports in the observe vocabulary, and never leaks request data.

mod support {
    pub mod capture;
}

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tower::{ServiceBuilder, ServiceExt};
use tower_headroom::observe::Labels;
use tower_headroom::retry::{Backoff, RetryPolicy};
use tower_headroom::{BoxError, HttpClassifier, RetryLayer};

const CANARY: &str = "CANARY-prompt-sk-live-0123456789";

/// A service that answers 503 twice (headers and body carrying the canary), then 200.
fn flaky() -> impl tower::Service<
    http::Request<String>,
    Response = http::Response<String>,
    Error = BoxError,
    Future = impl Send,
> + Clone {
    let calls = Arc::new(AtomicU32::new(0));
    tower::service_fn(move |req: http::Request<String>| {
        assert!(req.body().contains(CANARY));
        let n = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            let status = if n < 2 { 503 } else { 200 };
            Ok::<_, BoxError>(
                http::Response::builder()
                    .status(status)
                    .header("x-debug", CANARY)
                    .header("retry-after", "1")
                    .body(format!("echo: {CANARY}"))
                    .unwrap(),
            )
        }
    })
}

fn layer() -> RetryLayer<HttpClassifier> {
    let policy = RetryPolicy::builder()
        .seed(1)
        .no_budget()
        .backoff(Backoff::builder().no_quota_window())
        .build()
        .unwrap();
    RetryLayer::new(policy, HttpClassifier::new()).labels(
        Labels::target("bedrock")
            .model("claude")
            .region("us-east-1"),
    )
}

fn request() -> http::Request<String> {
    http::Request::builder()
        .header("authorization", format!("Bearer {CANARY}"))
        .body(format!("prompt: {CANARY}"))
        .unwrap()
}

#[cfg(feature = "metrics")]
#[test]
fn metrics_count_attempts_by_class_with_the_users_labels_only() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let svc = metrics::with_local_recorder(&recorder, || {
        ServiceBuilder::new().layer(layer()).service(flaky())
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let response = rt.block_on(svc.oneshot(request())).unwrap();
    assert_eq!(response.status(), 200);

    let mut seen = Vec::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let labels: Vec<(String, String)> = key
            .labels()
            .map(|l| (l.key().to_string(), l.value().to_string()))
            .collect();
        for (k, v) in &labels {
            assert!(!v.contains(CANARY), "label {k}={v}");
        }
        let class = labels
            .iter()
            .find(|(k, _)| k == "class")
            .map(|(_, v)| v.clone());
        let target = labels
            .iter()
            .find(|(k, _)| k == "target")
            .map(|(_, v)| v.clone());
        assert_eq!(target.as_deref(), Some("bedrock"));
        if let DebugValue::Counter(n) = value {
            if n > 0 {
                seen.push((key.name().to_string(), class, n));
            }
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (
                tower_headroom::observe::names::ATTEMPTS.to_string(),
                Some("success".to_string()),
                1
            ),
            (
                tower_headroom::observe::names::ATTEMPTS.to_string(),
                Some("unavailable".to_string()),
                2
            ),
            (
                tower_headroom::observe::names::RETRIES.to_string(),
                Some("unavailable".to_string()),
                2
            ),
        ]
    );
}

#[test]
fn traces_and_errors_never_contain_request_or_response_data() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let ((), logs) = support::capture::logged(&["tower_headroom"], || {
        let svc = ServiceBuilder::new().layer(layer()).service(flaky());
        rt.block_on(svc.oneshot(request())).unwrap();

        // A call that fails for good: the error's Display must not echo the inner error.
        let failing = ServiceBuilder::new()
            .layer(layer())
            .service(tower::service_fn(|_: http::Request<String>| async {
                Err::<http::Response<String>, BoxError>(
                    std::io::Error::new(std::io::ErrorKind::ConnectionReset, CANARY).into(),
                )
            }));
        let err = rt.block_on(failing.oneshot(request())).unwrap_err();
        assert!(!err.to_string().contains(CANARY), "{err}");
        assert!(
            err.to_string().contains("gave up after 4 attempts"),
            "{err}"
        );
    });
    assert!(
        logs.contains("retrying"),
        "no retry events captured: {logs}"
    );
    assert!(
        logs.contains("target=bedrock model=claude region=us-east-1"),
        "{logs}"
    );
    assert!(!logs.contains(CANARY), "{logs}");
}
