//! The stack's latency histograms, on tokio's paused clock: each attempt's duration under its
//! target and outcome class, the call's under the target and class it ended with.
#![cfg(feature = "metrics")]

mod support {
    pub mod metrics;
}

use std::convert::Infallible;
use std::time::Duration;

use metrics_util::debugging::DebuggingRecorder;
use support::metrics::{counter, gauge, histogram};
use tower::ServiceExt;
use tower_headroom::HttpClassifier;
use tower_headroom::fallback::Target;
use tower_headroom::observe::names;
use tower_headroom::stack::StackBuilder;

#[tokio::test(start_paused = true)]
async fn attempt_and_call_durations_by_target_and_class() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    // The first target answers 503 after 2 s, the second 200 after 3 s.
    let upstream = tower::service_fn(|model: &'static str| async move {
        let (status, after) = match model {
            "sonnet" => (503, 2),
            _ => (200, 3),
        };
        tokio::time::sleep(Duration::from_secs(after)).await;
        let mut response = http::Response::new(());
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
        Ok::<_, Infallible>(response)
    });
    let stack = StackBuilder::bedrock(HttpClassifier::new())
        .target(Target::new("sonnet", "sonnet").model("sonnet"))
        .target(Target::new("haiku", "haiku").model("haiku"))
        .rewrite(upstream, |call: &mut &'static str, model: &&'static str| {
            *call = model
        })
        .unwrap();
    let response = stack.oneshot("").await.unwrap();
    assert_eq!(response.status(), 200);

    let series = snapshotter.snapshot().into_vec();
    let attempts = |target, class| {
        histogram(
            &series,
            names::ATTEMPT_DURATION,
            &[("target", target), ("class", class)],
        )
    };
    assert_eq!(attempts("sonnet", "unavailable"), vec![2.0]);
    assert_eq!(attempts("haiku", "success"), vec![3.0]);
    assert!(attempts("sonnet", "success").is_empty());
    // The call: both attempts, under the target that ended it.
    let calls = |target, class| {
        histogram(
            &series,
            names::CALL_DURATION,
            &[("target", target), ("class", class)],
        )
    };
    assert_eq!(calls("haiku", "success"), vec![5.0]);
    assert!(calls("sonnet", "unavailable").is_empty());
    // One call, a success, under the target that ended it.
    assert_eq!(
        counter(
            &series,
            names::CALLS,
            &[("target", "haiku"), ("result", "success")]
        ),
        1
    );
    assert_eq!(
        counter(
            &series,
            names::CALLS,
            &[("target", "haiku"), ("result", "failure")]
        ),
        0
    );
    assert_eq!(
        counter(
            &series,
            names::CALLS,
            &[("target", "sonnet"), ("result", "success")]
        ),
        0
    );

    // A call that fails on its only target counts as one failure, whatever its attempts.
    let failing = tower::service_fn(|_: &'static str| async {
        let mut response = http::Response::new(());
        *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        Ok::<_, Infallible>(response)
    });
    let stack = StackBuilder::bedrock(HttpClassifier::new())
        .target(Target::new("opus", "opus").model("opus"))
        .rewrite(failing, |call: &mut &'static str, model: &&'static str| {
            *call = model
        })
        .unwrap();
    // The stack hands the last answer back once its retries are spent.
    assert_eq!(stack.oneshot("").await.unwrap().status(), 503);
    let series = snapshotter.snapshot().into_vec();
    assert_eq!(
        counter(
            &series,
            names::CALLS,
            &[("target", "opus"), ("result", "failure")]
        ),
        1
    );
    assert_eq!(
        counter(
            &series,
            names::CALLS,
            &[("target", "opus"), ("result", "success")]
        ),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn quota_utilization_is_sampled_at_most_once_a_second() {
    use tower::Service;
    use tower_headroom::Cost;
    use tower_headroom::admission::{FixedCost, Limit, Quota};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let upstream =
        tower::service_fn(|_: &'static str| async { Ok::<_, Infallible>(http::Response::new(())) });
    let limit = Limit::per_minute().requests(10).build().unwrap();
    let mut stack = StackBuilder::bedrock(HttpClassifier::new())
        .target(Target::new("sonnet", "sonnet"))
        .admission(Quota::new(limit), FixedCost(Cost::new(1, 1)))
        .rewrite(upstream, |call: &mut &'static str, model: &&'static str| {
            *call = model
        })
        .unwrap();
    let mut call = async || {
        let response = stack.ready().await.unwrap().call("").await.unwrap();
        assert_eq!(response.status(), 200);
    };
    // Sampled after the first call (1 of 10); the next four, in the same second, are not.
    for _ in 0..5 {
        call().await;
    }
    let series = snapshotter.snapshot().into_vec();
    assert_eq!(
        gauge(&series, names::QUOTA_UTILIZATION, &[("target", "sonnet")]),
        Some(0.1)
    );
    assert_eq!(
        gauge(
            &series,
            names::ADMISSION_QUEUE_DEPTH,
            &[("target", "sonnet")]
        ),
        Some(0.0)
    );
    // A second later the sixth call samples again: 6 of 10 spent in the trailing minute.
    tokio::time::advance(Duration::from_secs(1)).await;
    call().await;
    let series = snapshotter.snapshot().into_vec();
    assert_eq!(
        gauge(&series, names::QUOTA_UTILIZATION, &[("target", "sonnet")]),
        Some(0.6)
    );
}
