//! Metrics reach a recorder installed after the layers were built: a retry layer built with no
//! recorder reports to a local recorder current when it is called; a stack built with no
//! recorder, then a global `metrics` recorder installed, reports its calls.
//!
//! Both checks need "no global recorder yet" when their layers are built, and a global recorder
//! can be installed only once per process, so they run in order inside one test: as two tests
//! they raced (the global one could be installed while the local check built its layer, which
//! then rightly registered with the global recorder).
#![cfg(feature = "metrics")]

mod support {
    pub mod metrics;
}

use std::convert::Infallible;
use std::future::Future;

use metrics_util::debugging::DebuggingRecorder;
use support::metrics::counter;
use tower::{Service, ServiceExt};
use tower_headroom::admission::{FixedCost, HeaderUsage, Limit, Quota};
use tower_headroom::fallback::Target;
use tower_headroom::observe::{Labels, names};
use tower_headroom::retry::RetryPolicy;
use tower_headroom::stack::StackBuilder;
use tower_headroom::{Cost, HttpClassifier, RetryLayer};

#[test]
fn layers_built_without_a_recorder_report_to_the_one_current_when_called() {
    a_layer_built_without_a_recorder_reports_to_the_local_one_it_is_called_under();
    a_stack_built_before_the_global_recorder_reports_to_it();
}

fn a_stack_built_before_the_global_recorder_reports_to_it() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let limit = Limit::per_minute().units(1_000_000).build().unwrap();
    let upstream = tower::service_fn(|model: &'static str| {
        let mut response = http::Response::new(());
        if model != "sonnet" {
            *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        }
        std::future::ready(Ok::<_, Infallible>(response))
    });
    let mut stack = StackBuilder::bedrock(HttpClassifier::new())
        .target(Target::new("sonnet", "sonnet").region("r1"))
        .target(Target::new("haiku", "haiku").region("r1"))
        .admission(Quota::new(limit), FixedCost(Cost::new(1, 100)))
        .usage(HeaderUsage::new())
        .rewrite(upstream, |call: &mut &'static str, model: &&'static str| {
            *call = model
        })
        .unwrap();
    // One call before any recorder: nothing to report to, nothing registered.
    rt.block_on(async {
        let response = stack.ready().await.unwrap().call("").await.unwrap();
        assert_eq!(response.status(), 200);
    });

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::set_global_recorder(recorder).unwrap();
    assert_eq!(
        counter(&snapshotter.snapshot().into_vec(), names::ATTEMPTS, &[]),
        0
    );

    rt.block_on(async {
        for _ in 0..3 {
            let response = stack.ready().await.unwrap().call("").await.unwrap();
            assert_eq!(response.status(), 200);
        }
    });
    let series = snapshotter.snapshot().into_vec();
    let success = [("target", "sonnet"), ("region", "r1"), ("class", "success")];
    assert_eq!(counter(&series, names::ATTEMPTS, &success), 3);
    let first = [("target", "sonnet"), ("degraded", "false")];
    assert_eq!(counter(&series, names::FALLBACK, &first), 3);
}

fn a_layer_built_without_a_recorder_reports_to_the_local_one_it_is_called_under() {
    let layer = RetryLayer::new(RetryPolicy::default(), HttpClassifier::new())
        .labels(Labels::target("late-local"));
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(|_: ()| async {
            Ok::<_, Infallible>(http::Response::new(()))
        }));
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let response = metrics::with_local_recorder(&recorder, || {
        let mut call = std::pin::pin!(svc.oneshot(()));
        let waker = std::task::Waker::noop();
        match call
            .as_mut()
            .poll(&mut std::task::Context::from_waker(waker))
        {
            std::task::Poll::Ready(response) => response,
            std::task::Poll::Pending => panic!("an always-ready service answers at once"),
        }
    });
    assert_eq!(response.unwrap().status(), 200);
    let series = snapshotter.snapshot().into_vec();
    let success = [("target", "late-local"), ("class", "success")];
    assert_eq!(counter(&series, names::ATTEMPTS, &success), 1);
}
